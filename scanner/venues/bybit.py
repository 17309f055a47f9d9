"""Bybit v5 spot public order books: pure parser, sequencing rule, and venue description.

Wire format (PROTOCOLS.md §4): one socket per category (``/v5/public/spot`` here). The
client sends ``{"op":"subscribe","args":["orderbook.50.BTCUSDT", ...]}`` with at most 10
args per request on spot; the spot ack is ``{"success":true,"ret_msg":"subscribe",
"conn_id":...,"op":"subscribe"}`` and names no topic. A topic ``orderbook.{depth}.{SYM}``
first pushes ``"type":"snapshot"``, then ``"delta"`` frames with absolute sizes (``"0"``
deletes) over the top-``depth`` window. ``data.u`` is the update id of that stream:
each delta must carry ``u == previous u + 1``; a later ``snapshot`` replaces the book;
``u == 1`` means the service restarted and the frame is taken as a snapshot whatever its
type. ``data.seq`` is the cross-depth sequence (not used for continuity). Depth 1 sends
only snapshots, re-sent unchanged (same ``u``) after 3 s without a change. There is no
checksum. Resync is unsubscribe + subscribe: Bybit answers a subscribe with a fresh
snapshot. Keepalive: the client sends ``{"op":"ping"}`` (recommended every 20 s); the
spot pong is ``{"success":true,"ret_msg":"pong","conn_id":...,"op":"ping"}``.

Recorded captures may hold linear (perpetual) frames next to spot ones, with the same
topic and symbol spelling (``orderbook.200.BTCUSDT``) and nothing in the frame telling
them apart: :data:`VENUE` sets ``capture_url_part`` so a replay only reads the frames of
connections to the spot endpoint.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from scanner.book.errors import CrossedBook, ParseError, SequenceGap
from scanner.book.l2 import apply_sides
from scanner.book.sync import APPLY, GAP, STALE, BadLevel, SyncedBook
from scanner.markets import Market, unified
from scanner.model import BookMsg, Control
from scanner.venues.spec import Parser, VenueSpec

NAME = "bybit"
WS_URL = "wss://stream.bybit.com/v5/public/spot"
REST_URL = "https://api.bybit.com"
CHANNELS = ("orderbook.50", "orderbook.1", "orderbook.200", "orderbook.1000")
SUBSCRIBE_BATCH = 10  # spot: at most 10 args per subscribe request
PING = b'{"op":"ping"}'
PONG_MARK = b'"pong"'  # occurs in every pong variant, never in a short data frame


class BybitParser(Parser):
    """Raw Bybit v5 public frame → :class:`BookMsg` / :class:`Control`."""

    __slots__ = ("_topics", "channel")

    def __init__(self, channel: str = "orderbook.50", markets: Sequence[Market] = ()) -> None:
        self.channel = channel
        self._topics: dict[str, tuple[str, str]] = {}  # topic -> (channel, inst): topics recur

    def parse(self, raw: bytes | str, recv_ns: int) -> list[BookMsg | Control]:
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"bybit: not JSON: {exc}") from None
        if type(d) is not dict:
            raise ParseError(f"bybit: expected an object, got {type(d).__name__}")
        topic = d.get("topic")
        if topic is None:
            return [_op_control(d)]
        if type(topic) is not str:
            raise ParseError("bybit: topic is not a string")
        split = self._topics.get(topic)
        if split is None:
            channel, _, inst = topic.rpartition(".")
            if len(self._topics) >= 10_000:
                self._topics.clear()
            split = self._topics[topic] = (channel, inst)
        channel, inst = split
        if channel != self.channel:
            return [Control("ignored", inst if topic.startswith("orderbook.") else "", topic)]
        data = d.get("data")
        kind = d.get("type")
        try:
            bids, asks, u = data["b"], data["a"], data["u"]  # type: ignore[index]
            if type(bids) is not list or type(asks) is not list:
                raise ParseError("bybit: b/a are not lists")
            if type(u) is not int or data.get("s", inst) != inst:  # type: ignore[union-attr]
                raise ParseError(f"bybit: bad update id or symbol in {topic}")
            ts = d["ts"]
            if type(ts) is not int:  # orjson already gives an int; int() only for what is not
                ts = int(ts)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ParseError(f"bybit: malformed book frame: {exc!r}") from None
        if kind == "delta" and u != 1:
            snapshot = False
        elif kind == "snapshot" or u == 1:  # u == 1: the service restarted, the frame resets the book
            snapshot = True
        else:
            raise ParseError(f"bybit: unknown book frame type {kind!r}")
        return [BookMsg(inst, snapshot, bids, asks, u, u - 1, 0, ts, recv_ns)]


def _op_control(d: dict[str, object]) -> Control:
    """Acks, pongs and errors: frames with ``op`` and ``success`` (or an option-style ``pong``)."""
    op = d.get("op")
    if op is None:
        raise ParseError("bybit: frame has neither topic nor op")
    ok = d.get("success")
    msg = str(d.get("ret_msg", ""))
    if op == "pong" or (op == "ping" and ok is not False):
        return Control("pong")
    if ok is False:
        return Control("error", _topic_inst(msg), f"{op} failed: {msg}")
    if op == "subscribe":
        return Control("subscribed", "", str(d.get("req_id", "")))
    if op == "unsubscribe":
        return Control("unsubscribed", "", str(d.get("req_id", "")))
    return Control("info", "", f"{op} {msg}".strip())


def _topic_inst(msg: str) -> str:
    """The instrument named in an error message such as ``... topic:orderbook.50.NOPEUSDT``."""
    at = msg.find("orderbook.")
    if at < 0:
        return ""
    topic = msg[at:].split(",")[0].split("]")[0].split()[0]
    return topic.rpartition(".")[2]


def relation(msg: BookMsg, local: int, first: bool) -> int:
    """A delta continues the book when ``u == local + 1``; older ids are duplicates."""
    if msg.seq == local + 1:
        return APPLY
    if msg.seq <= local:
        return STALE
    return GAP


def channel_depth(channel: str) -> int:
    """Levels per side a channel carries (``orderbook.50`` → 50)."""
    try:
        return int(channel.rpartition(".")[2])
    except ValueError:
        raise ValueError(f"bybit: not an orderbook channel: {channel!r}") from None


class BybitBook(SyncedBook):
    """SyncedBook with the same rules (:func:`relation`, no checksum, crossed books refused), its
    diff path inlined with one kernel call per frame: deltas carry a handful of levels, so the
    per-frame cost is what counts. Any failure invalidates the book, as :class:`SyncedBook` does."""

    __slots__ = ()

    def __init__(self, max_levels: int) -> None:
        super().__init__(relation, None, max_levels=max_levels)

    def on_message(self, msg: BookMsg) -> bool:
        if msg.snapshot or not self.valid:
            return SyncedBook.on_message(self, msg)  # snapshots and buffering: the generic path
        book = self.book
        seq = msg.seq
        if seq != book.seq + 1:
            if seq <= book.seq:
                return False  # STALE
            self._fail(SequenceGap(f"expected continuation of {book.seq}, got prev={msg.prev} seq={seq}"))
        b, a = book.bids, book.asks
        try:
            flags = apply_sides(b.keys, b.pxs, b.szs, a.keys, a.pxs, a.szs, msg.bids, msg.asks,
                                self.checksum_depth, self.max_levels)
        except (ValueError, TypeError, IndexError) as exc:
            self.invalidate()
            raise BadLevel(f"unusable level: {exc}") from exc
        book.seq, book.exch_ms, book.recv_ns = seq, msg.exch_ms, msg.recv_ns
        self._first = False
        if flags & 1:
            self._crc_dirty = True
        if flags & 2:
            self._fail(CrossedBook(f"best bid {b.best()} >= best ask {a.best()}"))
        return True


def make_book(channel: str) -> SyncedBook:
    return BybitBook(channel_depth(channel))


def subscribe(insts: Sequence[str], channel: str) -> list[str]:
    topics = [f"{channel}.{inst}" for inst in insts]
    return [orjson.dumps({"op": "subscribe", "args": topics[i : i + SUBSCRIBE_BATCH]}).decode()
            for i in range(0, len(topics), SUBSCRIBE_BATCH)]


def resubscribe(inst: str, channel: str) -> list[str]:
    """Bybit pushes a snapshot only in answer to a subscribe: unsubscribe, then subscribe."""
    args = [f"{channel}.{inst}"]
    return [orjson.dumps({"op": "unsubscribe", "args": args}).decode(),
            orjson.dumps({"op": "subscribe", "args": args}).decode()]


def parse_instruments(body: bytes) -> list[Market]:
    """``GET /v5/market/instruments-info?category=spot`` → markets (lot = ``basePrecision``)."""
    try:
        d = orjson.loads(body)
        if d.get("retCode") != 0:
            raise ParseError(f"bybit: instruments error {d.get('retCode')}: {d.get('retMsg')}")
        result = d["result"]
        if result.get("category", "spot") != "spot":
            raise ParseError(f"bybit: instruments of category {result.get('category')!r}, expected spot")
        out = []
        for r in result["list"]:
            lot = r["lotSizeFilter"]
            out.append(Market(
                NAME, r["symbol"], unified(r["baseCoin"], r["quoteCoin"]), r["baseCoin"], r["quoteCoin"],
                r["priceFilter"]["tickSize"], lot["basePrecision"], lot.get("minOrderQty", lot["basePrecision"]),
                r.get("status") == "Trading",
            ))
        return out
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ParseError(f"bybit: malformed instruments response: {exc!r}") from None


VENUE = VenueSpec(
    name=NAME,
    channels=CHANNELS,
    ws_url=WS_URL,
    rest_url=REST_URL,
    make_parser=BybitParser,
    make_book=make_book,
    subscribe=subscribe,
    resubscribe=resubscribe,
    snapshot_request=None,  # the WS snapshot after each subscribe; no REST bridging for orderbook.N
    parse_snapshot=None,
    instruments_path="/v5/market/instruments-info?category=spot",
    parse_instruments=parse_instruments,
    rest_seed_after=0,
    snapshot_on_subscribe=False,
    text_ping=PING,
    text_pong=PONG_MARK,
    ping_idle_s=20.0,
    watchdog_s=30.0,
    max_connection_age_s=0.0,
    max_sends_per_s=10.0,
    max_instruments_per_conn=50,  # args of one connection must stay under 21,000 characters
    rest_weight_per_min=600,
    capture_url_part="/v5/public/spot",
)
