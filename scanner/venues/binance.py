"""Binance spot diff-depth books: pure parser, bridging rule, and venue description.

Wire format (PROTOCOLS.md §3): ``<sym>@depth@100ms`` events carry ``U`` (first) and
``u`` (last) update ids. A REST ``/api/v3/depth`` snapshot's ``lastUpdateId`` is bridged
to the buffered stream: drop events with ``u <= lastUpdateId``; the first kept has
``U <= lastUpdateId+1 <= u``; afterwards ``U == previous u + 1``. The server pings every
20 s (answered by the websocket client), allows 5 client frames/s and 24 h per connection.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from scanner.book.errors import ParseError
from scanner.book.sync import APPLY, GAP, STALE, SyncedBook
from scanner.markets import Market, unified
from scanner.model import BookMsg, Control
from scanner.venues.spec import Parser, SnapshotRequest, VenueSpec

NAME = "binance"
WS_URL = "wss://stream.binance.com:9443/stream"
REST_URL = "https://api.binance.com"
CHANNELS = ("depth@100ms", "depth")
SUBSCRIBE_BATCH = 200  # streams per SUBSCRIBE; a connection takes at most 1024
SNAPSHOT_LIMIT = 500


def depth_weight(limit: int) -> int:
    """REST weight of ``/api/v3/depth`` for a given ``limit``."""
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


class BinanceParser(Parser):
    """Raw Binance frame (raw or combined-stream) → :class:`BookMsg` / :class:`Control`."""

    __slots__ = ("channel",)

    def __init__(self, channel: str = "depth@100ms", markets: Sequence[Market] = ()) -> None:
        self.channel = channel

    def parse(self, raw: bytes | str, recv_ns: int) -> list[BookMsg | Control]:
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"binance: not JSON: {exc}") from None
        if type(d) is not dict:
            raise ParseError(f"binance: expected an object, got {type(d).__name__}")
        stream = d.get("stream")
        if stream is not None:
            d = d.get("data")
            if type(d) is not dict:
                raise ParseError("binance: combined frame without data")
        ev = d.get("e")
        if ev == "depthUpdate":
            try:
                bids, asks = d["b"], d["a"]
                if type(bids) is not list or type(asks) is not list:
                    raise ParseError("binance: b/a are not lists")
                return [BookMsg(d["s"], False, bids, asks, int(d["u"]), int(d["U"]), 0, int(d["E"]), recv_ns)]
            except (KeyError, TypeError, ValueError) as exc:
                raise ParseError(f"binance: malformed depthUpdate: {exc!r}") from None
        if "result" in d and "id" in d:
            return [Control("subscribed", "", str(d.get("id")))]
        if "code" in d and "msg" in d:
            return [Control("error", "", f"{d.get('code')} {d.get('msg')}")]
        if ev == "serverShutdown":
            return [Control("reconnect", "", "serverShutdown")]
        if isinstance(stream, str) or ev is not None:
            return [Control("ignored", str(d.get("s", "")), str(stream or ev))]
        raise ParseError("binance: unrecognised frame")


def relation(msg: BookMsg, local: int, first: bool) -> int:
    """Drop events already in the book (``u <= local``); apply when ``U <= local+1``."""
    if msg.seq <= local:
        return STALE
    if msg.prev <= local + 1:
        return APPLY
    return GAP


def make_book(channel: str) -> SyncedBook:
    return SyncedBook(relation, None, max_levels=1000)


def stream_name(inst: str, channel: str) -> str:
    return f"{inst.lower()}@{channel}"


def subscribe(insts: Sequence[str], channel: str) -> list[str]:
    frames = []
    for n, i in enumerate(range(0, len(insts), SUBSCRIBE_BATCH), start=1):
        params = [stream_name(s, channel) for s in insts[i : i + SUBSCRIBE_BATCH]]
        frames.append(orjson.dumps({"method": "SUBSCRIBE", "params": params, "id": n}).decode())
    return frames


def resubscribe(inst: str, channel: str) -> list[str]:
    return []  # Binance resyncs from REST only


def snapshot_request(rest_url: str, inst: str) -> SnapshotRequest:
    return SnapshotRequest(f"{rest_url}/api/v3/depth?symbol={inst}&limit={SNAPSHOT_LIMIT}",
                           weight=depth_weight(SNAPSHOT_LIMIT))


def parse_snapshot(inst: str, body: bytes, recv_ns: int) -> BookMsg:
    try:
        d = orjson.loads(body)
        return BookMsg(inst, True, d["bids"], d["asks"], int(d["lastUpdateId"]), 0, 0, 0, recv_ns)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ParseError(f"binance: malformed depth snapshot: {exc!r}") from None


def parse_instruments(body: bytes) -> list[Market]:
    """``GET /api/v3/exchangeInfo`` → markets."""
    try:
        d = orjson.loads(body)
        out = []
        for r in d["symbols"]:
            filters = {f["filterType"]: f for f in r.get("filters", [])}
            lot = filters.get("LOT_SIZE", {})
            out.append(Market(
                NAME, r["symbol"], unified(r["baseAsset"], r["quoteAsset"]), r["baseAsset"], r["quoteAsset"],
                filters.get("PRICE_FILTER", {}).get("tickSize", "0"), lot.get("stepSize", "0"),
                lot.get("minQty", "0"), r.get("status") == "TRADING",
            ))
        return out
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ParseError(f"binance: malformed exchangeInfo: {exc!r}") from None


VENUE = VenueSpec(
    name=NAME,
    channels=CHANNELS,
    ws_url=WS_URL,
    rest_url=REST_URL,
    make_parser=BinanceParser,
    make_book=make_book,
    subscribe=subscribe,
    resubscribe=resubscribe,
    snapshot_request=snapshot_request,
    parse_snapshot=parse_snapshot,
    instruments_path="/api/v3/exchangeInfo",
    parse_instruments=parse_instruments,
    rest_seed_after=1,
    snapshot_on_subscribe=True,
    text_ping=None,
    text_pong=None,
    ping_idle_s=0.0,
    watchdog_s=30.0,
    max_connection_age_s=23.5 * 3600,
    max_sends_per_s=4.0,
    max_instruments_per_conn=200,
    rest_weight_per_min=3000,
)
