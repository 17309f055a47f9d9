"""Hyperliquid spot order books (``l2Book``): pure parser, venue description, spotMeta instruments.

Wire format (PROTOCOLS.md §12), ``wss://api.hyperliquid.xyz/ws``:

* subscribe ``{"method":"subscribe","subscription":{"type":"l2Book","coin":"@107"}}``, one
  subscription per message; acknowledged with ``{"channel":"subscriptionResponse","data":{"method":
  "subscribe","subscription":{...,"nSigFigs":null,"mantissa":null}}}``; errors are
  ``{"channel":"error","data":"<text>"}``.
* every ``l2Book`` message is a complete book of up to 20 levels per side:
  ``{"channel":"l2Book","data":{"coin":"@107","time":<ms>,"levels":[[bids],[asks]]}}`` with levels
  ``{"px":"30.123","sz":"12.5","n":3}`` (``n`` = order count), best first. Each becomes a snapshot
  :class:`BookMsg` with ``seq = time``: there is no sequence or checksum to verify, and a missed
  message is harmless (the next replaces the book). A crossed book is still refused.
* keepalive: the server closes a connection that has *sent* nothing for 60 s, however busy the
  stream, so the client sends ``{"method":"ping"}`` periodically and gets ``{"channel":"pong"}``.
  Limits are per IP: 100 connections, 1000 subscriptions, 2000 client messages a minute.

Instruments: ``POST /info`` with ``{"type":"spotMeta"}`` returns ``tokens`` (``name``, ``index``,
``szDecimals``) and ``universe`` (``name``, ``tokens`` = [base index, quote index]). The venue id
(the ``coin`` of a subscription) is the universe ``name``: ``PURR/USDC`` for the one canonical pair,
``@<index>`` for the others (``@107`` is HYPE/USDC). The unified symbol is built from the token names
exactly as Hyperliquid spells them: bridged ``UBTC`` stays ``UBTC/USDC``; whether UBTC is "BTC" is
an asset-identity question answered elsewhere, not by this module. Sizes have ``szDecimals``
decimals (the lot). Prices may have at most ``8 - szDecimals`` decimals (``tick`` below) *and* at
most 5 significant figures (integers are always allowed), so the real step at a given price is
often coarser than ``tick``: 0.001 for a HYPE price of 30, 1 for a UBTC price of 65000.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from scanner.book.errors import ParseError
from scanner.book.l2 import pick_rows
from scanner.book.sync import GAP, SyncedBook
from scanner.markets import Market, unified
from scanner.model import BookMsg, Control
from scanner.venues.spec import Parser, VenueSpec

NAME = "hyperliquid"
WS_URL = "wss://api.hyperliquid.xyz/ws"
REST_URL = "https://api.hyperliquid.xyz"
CHANNELS = ("l2Book",)
MAX_LEVELS = 20  # per side in every l2Book message
SPOT_PX_DECIMALS = 8  # spot prices: at most 8 - szDecimals decimals (perps: 6 - szDecimals)
INSTRUMENTS_BODY = b'{"type":"spotMeta"}'


def _levels(rows: object) -> list[list[str]]:
    out = pick_rows(rows, "px", "sz")
    if out is not None:  # every level well-formed: built by the compiled kernel
        return out
    if type(rows) is not list:
        raise ParseError("hyperliquid: a side of levels is not a list")
    out = []
    for lv in rows:
        px, sz = lv["px"], lv["sz"]
        if type(px) is not str or type(sz) is not str:
            raise ParseError("hyperliquid: px/sz must be decimal strings")
        out.append([px, sz])
    return out


class HyperliquidParser(Parser):
    """Raw Hyperliquid text frame → :class:`BookMsg` (always a snapshot) / :class:`Control`."""

    __slots__ = ("channel",)

    def __init__(self, channel: str = "l2Book", markets: Sequence[Market] = ()) -> None:
        self.channel = channel

    def parse(self, raw: bytes | str, recv_ns: int) -> list[BookMsg | Control]:
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"hyperliquid: not JSON: {exc}") from None
        if type(d) is not dict:
            raise ParseError(f"hyperliquid: expected an object, got {type(d).__name__}")
        ch = d.get("channel")
        if ch == "l2Book":
            try:
                data = d["data"]
                coin, levels = data["coin"], data["levels"]
                if type(coin) is not str or type(levels) is not list or len(levels) != 2:
                    raise ParseError("hyperliquid: l2Book needs a coin and levels [bids, asks]")
                t = int(data["time"])
                return [BookMsg(coin, True, _levels(levels[0]), _levels(levels[1]), t, 0, 0, t, recv_ns)]
            except (KeyError, TypeError, ValueError) as exc:
                raise ParseError(f"hyperliquid: malformed l2Book: {exc!r}") from None
        if ch == "pong":
            return [Control("pong")]
        if ch == "subscriptionResponse":
            return [_ack(d.get("data"))]
        if ch == "error":
            return [Control("error", "", str(d.get("data")))]
        if type(ch) is str:
            return [Control("ignored", "", ch)]
        raise ParseError("hyperliquid: frame without a channel")


def _ack(data: object) -> Control:
    if type(data) is not dict or type(data.get("subscription")) is not dict:
        raise ParseError("hyperliquid: subscriptionResponse without a subscription")
    sub = data["subscription"]
    coin = str(sub.get("coin", ""))
    if sub.get("type") != "l2Book":
        return Control("info", coin, f"{data.get('method')} {sub.get('type')}")
    return Control("unsubscribed" if data.get("method") == "unsubscribe" else "subscribed", coin)


def relation(msg: BookMsg, local: int, first: bool) -> int:
    """Never consulted in practice: ``l2Book`` has no diffs, every message is a snapshot."""
    return GAP


def make_book(channel: str) -> SyncedBook:
    return SyncedBook(relation, None, max_levels=MAX_LEVELS)


def _request(method: str, coin: str) -> str:
    return orjson.dumps({"method": method, "subscription": {"type": "l2Book", "coin": coin}}).decode()


def subscribe(insts: Sequence[str], channel: str) -> list[str]:
    """One message per subscription: Hyperliquid has no batched subscribe."""
    return [_request("subscribe", coin) for coin in insts]


def resubscribe(inst: str, channel: str) -> list[str]:
    """A subscribe is answered with the current book at once: unsubscribe, then subscribe."""
    return [_request("unsubscribe", inst), _request("subscribe", inst)]


def decimal_step(places: int) -> str:
    """The increment of ``places`` decimals ("0.001" for 3; "1" for 0 or fewer)."""
    return "1" if places <= 0 else "0." + "0" * (places - 1) + "1"


def parse_instruments(body: bytes) -> list[Market]:
    """``POST /info {"type":"spotMeta"}`` → markets. ``tick`` is the decimal limit
    (``8 - szDecimals`` places); prices are further limited to 5 significant figures."""
    try:
        d = orjson.loads(body)
        tokens = {int(t["index"]): t for t in d["tokens"]}
        out = []
        for u in d["universe"]:
            bi, qi = u["tokens"]
            base, quote = tokens[int(bi)], tokens[int(qi)]
            sz = int(base["szDecimals"])
            if not 0 <= sz <= SPOT_PX_DECIMALS:
                raise ParseError(f"hyperliquid: szDecimals {sz} of {base['name']} out of range")
            lot = decimal_step(sz)
            out.append(Market(NAME, u["name"], unified(base["name"], quote["name"]), base["name"], quote["name"],
                              decimal_step(SPOT_PX_DECIMALS - sz), lot, lot, True))
        return out
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise ParseError(f"hyperliquid: malformed spotMeta: {exc!r}") from None


VENUE = VenueSpec(
    name=NAME,
    channels=CHANNELS,
    ws_url=WS_URL,
    rest_url=REST_URL,
    make_parser=HyperliquidParser,
    make_book=make_book,
    subscribe=subscribe,
    resubscribe=resubscribe,
    snapshot_request=None,  # every message is a snapshot: nothing to bridge
    parse_snapshot=None,
    instruments_path="/info",
    parse_instruments=parse_instruments,
    rest_seed_after=0,
    snapshot_on_subscribe=False,
    text_ping=b'{"method":"ping"}',
    text_pong=b'{"channel":"pong"}',
    ping_idle_s=30.0,  # with the 10 s pong wait, a ping every 40 s; the server closes after 60 s of silence
    watchdog_s=60.0,  # books are pushed on change only: a quiet spot pair may stay silent for a while
    max_connection_age_s=0.0,
    max_sends_per_s=10.0,  # 2000 messages/min per IP is the limit; one subscription per message
    max_instruments_per_conn=50,
    rest_weight_per_min=1200,
    instruments_body=INSTRUMENTS_BODY,
    ping_periodically=True,
)
