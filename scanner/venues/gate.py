"""Gate spot v4 public order books: pure parser, sequencing rule, and venue description.

Wire format (PROTOCOLS.md §7): requests are ``{"time":s,"channel":...,"event":"subscribe",
"payload":[...]}``, acknowledged with ``"result":{"status":"success"}`` or refused with
``"error":{"code":2,"message":...}`` (also for a stream subscribed twice on one connection).

* ``spot.obu`` (Order Book V2, channels ``obu.50`` / ``obu.400`` here): payload
  ``["ob.BTC_USDT.50"]``, one stream per request. The first push is ``"full":true`` and
  replaces the book (local id = ``u``); Gate may push a full book again at any time. A
  diff carries ``U`` (first id) and ``u`` (last id) and continues the book only when
  ``U == local + 1``; otherwise the stream is unsubscribed and subscribed again.
* ``spot.order_book_update`` (legacy diffs, channel ``order_book_update``): payload
  ``["BTC_USDT","100ms"]``, bridged to REST ``/api/v4/spot/order_book?with_id=true``:
  drop diffs with ``u <= id``, the first kept one straddles ``id + 1``, then
  ``U == local + 1``. The collector fetches the snapshot when the subscription is
  acknowledged, so the parser reports only legacy acks as ``subscribed``; an obu ack is
  ``info`` (its full push needs no REST snapshot, and obu ids need not match REST ids).

No checksum. Keepalive: ``{"channel":"spot.ping"}`` (sent without ``time``: the ping is a
constant frame) answered by ``{"channel":"spot.pong",...}``. Pairs are spelled ``BTC_USDT``.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from scanner.book.errors import ParseError
from scanner.book.sync import APPLY, GAP, STALE, SyncedBook
from scanner.markets import Market, unified
from scanner.model import BookMsg, Control
from scanner.venues.spec import Parser, SnapshotRequest, VenueSpec

NAME = "gate"
WS_URL = "wss://api.gateio.ws/ws/v4/"
REST_URL = "https://api.gateio.ws"
CHANNELS = ("obu.50", "obu.400", "order_book_update")
LEGACY = "order_book_update"
LEGACY_INTERVAL = "100ms"  # 100 levels every 100 ms
LEGACY_LEVELS = 100
SNAPSHOT_LIMIT = 100  # REST order_book levels per side (the legacy diffs cover the same window)
OTHER_CHANNELS = frozenset({"spot.tickers", "spot.trades", "spot.trades_v2", "spot.candlesticks", "spot.book_ticker",
                            "spot.order_book", "spot.obu", "spot.order_book_update"})


class GateParser(Parser):
    """Raw Gate spot v4 frame → :class:`BookMsg` / :class:`Control`."""

    __slots__ = ("channel", "wire")

    def __init__(self, channel: str = "obu.50", markets: Sequence[Market] = ()) -> None:
        self.channel = channel
        self.wire = "spot.order_book_update" if channel == LEGACY else "spot.obu"

    def parse(self, raw: bytes | str, recv_ns: int) -> list[BookMsg | Control]:
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"gate: not JSON: {exc}") from None
        if type(d) is not dict:
            raise ParseError(f"gate: expected an object, got {type(d).__name__}")
        channel, event = d.get("channel"), d.get("event")
        if channel == "spot.pong":
            return [Control("pong")]
        if event == "update" and channel == self.wire:
            return [self._book(d.get("result"), recv_ns)]
        if event in ("subscribe", "unsubscribe"):
            return [self._ack(d, event)]
        if type(channel) is str and (channel in OTHER_CHANNELS or event == "update"):
            return [Control("ignored", "", channel)]
        if d.get("error"):
            return [Control("error", "", _error_text(d.get("error")))]
        raise ParseError("gate: unrecognised frame")

    def _book(self, r: object, recv_ns: int) -> BookMsg | Control:
        if type(r) is not dict:
            raise ParseError("gate: book update without a result object")
        try:
            bids, asks, s, u = r["b"], r["a"], r["s"], r["u"]
            if type(bids) is not list or type(asks) is not list or type(s) is not str or type(u) is not int:
                raise ParseError("gate: b/a/s/u of the wrong type")
            t = int(r["t"])
            full = r.get("full") is True
            first = u if full else r["U"]
            if type(first) is not int:
                raise ParseError("gate: U is not an integer")
        except (KeyError, TypeError, ValueError) as exc:
            raise ParseError(f"gate: malformed book update: {exc!r}") from None
        inst = s
        if self.wire == "spot.obu":  # "ob.BTC_USDT.50"
            prefix, _, rest = s.partition(".")
            inst, _, level = rest.rpartition(".")
            if prefix != "ob" or not inst:
                raise ParseError(f"gate: bad obu stream name {s!r}")
            if f"obu.{level}" != self.channel:
                return Control("ignored", inst, f"spot.obu {s}")
        return BookMsg(inst, full, bids, asks, u, first, 0, t, recv_ns)

    def _ack(self, d: dict[str, object], event: str) -> Control:
        payload = d.get("payload")
        inst = ""
        if type(payload) is list and payload and type(payload[0]) is str:
            inst = payload[0].split(".")[1] if payload[0].startswith("ob.") else payload[0]
        if d.get("error"):
            return Control("error", inst, f"{event} {d.get('channel')}: {_error_text(d.get('error'))}")
        if event == "unsubscribe":
            return Control("unsubscribed", inst)
        if d.get("channel") == "spot.order_book_update" and self.wire == "spot.order_book_update":
            return Control("subscribed", inst)  # the collector fetches the REST snapshot now
        return Control("info", inst, f"subscribed {d.get('channel')}")


def _error_text(err: object) -> str:
    if isinstance(err, dict):
        return f"{err.get('code')} {err.get('message')}"
    return str(err)


def relation(msg: BookMsg, local: int, first: bool) -> int:
    """``U == local + 1`` continues the book; right after a REST snapshot the first diff may
    instead straddle it (``U <= id + 1 <= u``); diffs ending at or before ``local`` are old."""
    if msg.seq <= local:
        return STALE
    if msg.prev == local + 1 or (first and msg.prev <= local + 1):
        return APPLY
    return GAP


def channel_levels(channel: str) -> int:
    if channel == LEGACY:
        return LEGACY_LEVELS
    try:
        return int(channel.removeprefix("obu."))
    except ValueError:
        raise ValueError(f"gate: unknown channel {channel!r}") from None


def make_book(channel: str) -> SyncedBook:
    return SyncedBook(relation, None, max_levels=channel_levels(channel))


def _request(event: str, inst: str, channel: str, req_id: int = 0) -> str:
    if channel == LEGACY:
        body: dict[str, object] = {"channel": "spot.order_book_update", "payload": [inst, LEGACY_INTERVAL]}
    else:
        body = {"channel": "spot.obu", "payload": [f"ob.{inst}.{channel_levels(channel)}"]}
    if req_id:
        body = {"id": req_id, **body}
    return orjson.dumps({**body, "event": event}).decode()


def subscribe(insts: Sequence[str], channel: str) -> list[str]:
    """One stream per request (Gate reliably honours one ``spot.obu`` payload entry per request)."""
    return [_request("subscribe", inst, channel, n) for n, inst in enumerate(insts, start=1)]


def resubscribe(inst: str, channel: str) -> list[str]:
    """A fresh full push (obu) or a fresh REST bridge (legacy): unsubscribe, then subscribe."""
    return [_request("unsubscribe", inst, channel), _request("subscribe", inst, channel)]


def snapshot_request(rest_url: str, inst: str) -> SnapshotRequest:
    return SnapshotRequest(f"{rest_url}/api/v4/spot/order_book?currency_pair={inst}&limit={SNAPSHOT_LIMIT}"
                           "&with_id=true", weight=1)


def parse_snapshot(inst: str, body: bytes, recv_ns: int) -> BookMsg:
    """``GET /api/v4/spot/order_book?with_id=true`` → a snapshot message carrying the book's ``id``."""
    try:
        d = orjson.loads(body)
        if "label" in d:
            raise ParseError(f"gate: REST order_book error {d.get('label')}: {d.get('message')}")
        if "id" not in d:
            raise ParseError("gate: REST snapshot has no id (with_id=true missing); cannot bridge it")
        ident = int(d["id"])
        return BookMsg(inst, True, d["bids"], d["asks"], ident, ident, 0, int(d.get("current", 0)), recv_ns)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ParseError(f"gate: malformed REST snapshot: {exc!r}") from None


def step_text(places: int) -> str:
    """A step of ``10**-places`` as exact text: 2 → "0.01", 0 → "1"."""
    if places < 0:
        raise ValueError(f"negative precision {places}")
    return "1" if places == 0 else "0." + "0" * (places - 1) + "1"


def parse_instruments(body: bytes) -> list[Market]:
    """``GET /api/v4/spot/currency_pairs`` → markets: tick ``10**-precision``, lot
    ``10**-amount_precision``, minimum ``min_base_amount`` (the lot when absent)."""
    try:
        rows = orjson.loads(body)
        if isinstance(rows, dict):
            raise ParseError(f"gate: currency_pairs error {rows.get('label')}: {rows.get('message')}")
        out = []
        for r in rows:
            lot = step_text(int(r["amount_precision"]))
            out.append(Market(NAME, r["id"], unified(r["base"], r["quote"]), r["base"], r["quote"],
                              step_text(int(r["precision"])), lot, r.get("min_base_amount") or lot,
                              r.get("trade_status") == "tradable"))
        return out
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ParseError(f"gate: malformed currency_pairs response: {exc!r}") from None


VENUE = VenueSpec(
    name=NAME,
    channels=CHANNELS,
    ws_url=WS_URL,
    rest_url=REST_URL,
    make_parser=GateParser,
    make_book=make_book,
    subscribe=subscribe,
    resubscribe=resubscribe,
    snapshot_request=snapshot_request,
    parse_snapshot=parse_snapshot,
    instruments_path="/api/v4/spot/currency_pairs",
    parse_instruments=parse_instruments,
    rest_seed_after=0,  # legacy: the snapshot is fetched on the subscribe ack; obu never needs one
    snapshot_on_subscribe=True,
    text_ping=b'{"channel":"spot.ping"}',
    text_pong=b'"spot.pong"',
    ping_idle_s=15.0,
    watchdog_s=30.0,
    max_connection_age_s=0.0,
    max_sends_per_s=20.0,
    max_instruments_per_conn=30,
    rest_weight_per_min=600,  # public REST allows 200 requests / 10 s per endpoint; use a twentieth
)
