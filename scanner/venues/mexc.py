"""MEXC spot order books over the protobuf stream: pure parser, bridging rule, venue description.

Wire protocol (PROTOCOLS.md §11): connect to ``wss://wbs-api.mexc.com/ws`` and send
``{"method":"SUBSCRIPTION","params":["spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT", ...]}``
(upper-case symbols, at most 30 subscriptions per connection). Control frames are JSON text:
the ack ``{"id":0,"code":0,"msg":"<topic>[,<topic>...]"}``, a failure
``{"id":0,"code":0,"msg":"Not Subscribed successfully! [<topic>]. Reason: ..."}``, and the
keepalive answer ``{"id":0,"code":0,"msg":"PONG"}`` to ``{"method":"PING"}``. Data frames are
BINARY protobuf ``PushDataV3ApiWrapper`` messages (decoded by :mod:`scanner.venues.mexc_pb`);
the collector hands over both kinds as bytes, so a frame starting with ``{`` is JSON (a wrapper
never starts with that byte: it would be field 15 as a group) and anything else is protobuf.

``aggre.depth`` frames are absolute-size diffs aggregated over 10 or 100 ms, numbered by
``fromVersion``..``toVersion`` (decimal strings). They are bridged Binance-style to a REST
``GET /api/v3/depth?symbol=BTCUSDT&limit=5000`` snapshot: drop diffs with
``toVersion <= lastUpdateId``; the first kept must have ``fromVersion <= lastUpdateId + 1``;
after it every diff must have ``fromVersion == previous toVersion + 1``; any break means a new
REST snapshot (MEXC cannot resend a book over the websocket). There is no checksum.
``limit.depth`` frames are full top-N books (5, 10 or 20 levels) with a ``version``.
The server closes a connection with no valid subscription after 30 s, one with no traffic
for 60 s (a ``PING`` counts), and every connection after 24 h.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from scanner.book.errors import ParseError
from scanner.book.sync import APPLY, GAP, STALE, SyncedBook
from scanner.markets import Market, unified
from scanner.model import BookMsg, Control
from scanner.venues.mexc_pb import AGGRE_DEPTHS, LIMIT_DEPTHS, decode_push
from scanner.venues.spec import Parser, SnapshotRequest, VenueSpec

NAME = "mexc"
WS_URL = "wss://wbs-api.mexc.com/ws"
REST_URL = "https://api.mexc.com"
# Book channels as configured: the diff streams first, then the partial-book streams.
CHANNELS = ("aggre.depth@100ms", "aggre.depth@10ms", "limit.depth@20", "limit.depth@10", "limit.depth@5")
MAX_SUBSCRIPTIONS = 30  # per connection
SNAPSHOT_LIMIT = 5000  # the depth the official "local order book" guide asks for
DEPTH_WEIGHT = 1  # Weight(IP) of /api/v3/depth (any limit); each endpoint allows 500 per 10 s per IP
MAX_LEVELS = SNAPSHOT_LIMIT
PING = b'{"method":"PING"}'
PONG = b'"PONG"'  # inside {"id":0,"code":0,"msg":"PONG"}
NOT_SUBSCRIBED = "Not Subscribed successfully"


def topic(inst: str, channel: str) -> str:
    """The subscription topic: ``spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT`` or
    ``spot@public.limit.depth.v3.api.pb@BTCUSDT@20``."""
    kind, _, arg = channel.partition("@")
    if kind == "aggre.depth":
        return f"spot@public.aggre.depth.v3.api.pb@{arg}@{inst}"
    if kind == "limit.depth":
        return f"spot@public.limit.depth.v3.api.pb@{inst}@{arg}"
    raise ValueError(f"mexc: unknown channel {channel!r}; have {', '.join(CHANNELS)}")


def topic_symbol(t: str) -> str:
    """The instrument a topic names (``""`` when it names none)."""
    parts = t.split("@")
    if len(parts) < 3:
        return ""
    if parts[1].startswith("public.limit.depth"):
        return parts[2]
    return parts[-1]


class MexcParser(Parser):
    """Raw MEXC frame (JSON control text or protobuf push) → :class:`BookMsg` / :class:`Control`."""

    __slots__ = ("channel",)

    def __init__(self, channel: str = CHANNELS[0], markets: Sequence[Market] = ()) -> None:
        self.channel = channel

    def parse(self, raw: bytes | str, recv_ns: int) -> list[BookMsg | Control]:
        if type(raw) is bytes:
            if not raw:
                raise ParseError("mexc: empty frame")
            if raw[0] != 0x7B:  # not "{": a protobuf push
                return self._push(raw, recv_ns)
        return self._json(raw)

    @staticmethod
    def _push(raw: bytes, recv_ns: int) -> list[BookMsg | Control]:
        body, channel, symbol, ts, asks, bids, frm, to = decode_push(raw)
        if body == AGGRE_DEPTHS:
            try:
                first, last = int(frm), int(to)
            except ValueError:
                raise ParseError(f"mexc: bad versions {frm!r}..{to!r} on {channel!r}") from None
            if last < first:
                raise ParseError(f"mexc: toVersion {last} < fromVersion {first} on {channel!r}")
            return [BookMsg(symbol or topic_symbol(channel), False, bids, asks, last, first, 0, ts, recv_ns)]
        if body == LIMIT_DEPTHS:
            try:
                version = int(to)
            except ValueError:
                raise ParseError(f"mexc: bad version {to!r} on {channel!r}") from None
            return [BookMsg(symbol or topic_symbol(channel), True, bids, asks, version, 0, 0, ts, recv_ns)]
        if not channel:
            raise ParseError("mexc: protobuf frame without channel")
        return [Control("ignored", symbol or topic_symbol(channel), channel)]

    @staticmethod
    def _json(raw: bytes | str) -> list[BookMsg | Control]:
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"mexc: not JSON: {exc}") from None
        if type(d) is not dict:
            raise ParseError(f"mexc: expected an object, got {type(d).__name__}")
        msg = d.get("msg")
        if type(msg) is str:
            if msg == "PONG":
                return [Control("pong")]
            if msg.startswith(NOT_SUBSCRIBED):
                inside = msg.partition("[")[2].partition("]")[0]
                return [Control("error", topic_symbol(inside), msg)]
            code = d.get("code", 0)
            if code == 0 and "@" in msg:
                return [Control("subscribed", topic_symbol(t), t) for t in msg.split(",") if t]
            if code != 0:
                return [Control("error", "", f"{code} {msg}")]
            return [Control("info", "", msg)]
        channel = d.get("c", d.get("channel"))
        if type(channel) is str:  # a JSON (legacy) data stream: not a book we keep
            return [Control("ignored", str(d.get("s", "")), channel)]
        raise ParseError("mexc: unrecognised JSON frame")


def relation(msg: BookMsg, local: int, first: bool) -> int:
    """Drop diffs already in the book (``toVersion <= local``); the first after a snapshot must
    straddle ``local + 1``; after that ``fromVersion == local + 1`` exactly."""
    if msg.seq <= local:
        return STALE
    if msg.prev == local + 1 or (first and msg.prev <= local + 1):
        return APPLY
    return GAP


def make_book(channel: str) -> SyncedBook:
    return SyncedBook(relation, None, max_levels=MAX_LEVELS)


def subscribe(insts: Sequence[str], channel: str) -> list[str]:
    """One SUBSCRIPTION frame per 30 instruments (a connection carries at most 30)."""
    frames = []
    for i in range(0, len(insts), MAX_SUBSCRIPTIONS):
        params = [topic(s, channel) for s in insts[i : i + MAX_SUBSCRIPTIONS]]
        frames.append(orjson.dumps({"method": "SUBSCRIPTION", "params": params}).decode())
    return frames


def resubscribe(inst: str, channel: str) -> list[str]:
    return []  # MEXC sends no snapshot over the websocket: resync from REST


def snapshot_request(rest_url: str, inst: str) -> SnapshotRequest:
    return SnapshotRequest(f"{rest_url}/api/v3/depth?symbol={inst}&limit={SNAPSHOT_LIMIT}", weight=DEPTH_WEIGHT)


def parse_snapshot(inst: str, body: bytes, recv_ns: int) -> BookMsg:
    """``GET /api/v3/depth`` → a snapshot message (``lastUpdateId`` is a number or a string)."""
    try:
        d = orjson.loads(body)
        bids, asks = d["bids"], d["asks"]
        if type(bids) is not list or type(asks) is not list:
            raise ParseError("mexc: depth bids/asks are not lists")
        return BookMsg(inst, True, bids, asks, int(d["lastUpdateId"]), 0, 0, int(d.get("timestamp") or 0), recv_ns)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ParseError(f"mexc: malformed depth snapshot: {exc!r}") from None


def step(decimals: object) -> str:
    """A precision in decimals (``2``, ``"8"``) as the step it allows (``"0.01"``)."""
    n = int(str(decimals))
    return "0." + "0" * (n - 1) + "1" if n > 0 else "1" + "0" * -n


def parse_instruments(body: bytes) -> list[Market]:
    """``GET /api/v3/exchangeInfo`` → markets. The tick is ``10^-quoteAssetPrecision``, the lot
    ``10^-baseAssetPrecision``; ``baseSizePrecision`` is really the minimum quantity ("0": none,
    so one lot); status ``"1"`` is online (``"2"`` paused, ``"3"`` offline)."""
    try:
        d = orjson.loads(body)
        out = []
        for r in d["symbols"]:
            lot = step(r["baseAssetPrecision"])
            tick = step(r.get("quoteAssetPrecision", r.get("quotePrecision")))
            min_size = str(r.get("baseSizePrecision") or "0")
            out.append(Market(
                NAME, r["symbol"], unified(r["baseAsset"], r["quoteAsset"]), r["baseAsset"], r["quoteAsset"],
                tick, lot, min_size if float(min_size) > 0 else lot,
                str(r.get("status")) == "1" and r.get("isSpotTradingAllowed") is not False,
            ))
        return out
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ParseError(f"mexc: malformed exchangeInfo: {exc!r}") from None


VENUE = VenueSpec(
    name=NAME,
    channels=CHANNELS,
    ws_url=WS_URL,
    rest_url=REST_URL,
    make_parser=MexcParser,
    make_book=make_book,
    subscribe=subscribe,
    resubscribe=resubscribe,
    snapshot_request=snapshot_request,
    parse_snapshot=parse_snapshot,
    instruments_path="/api/v3/exchangeInfo",
    parse_instruments=parse_instruments,
    rest_seed_after=1,
    snapshot_on_subscribe=True,
    text_ping=PING,
    text_pong=PONG,
    ping_idle_s=20.0,  # the server drops a connection after 60 s without traffic
    watchdog_s=60.0,
    max_connection_age_s=23.5 * 3600,
    max_sends_per_s=5.0,
    max_instruments_per_conn=MAX_SUBSCRIPTIONS,
    rest_weight_per_min=1200,  # 40 % of the 500 per 10 s that /api/v3/depth allows per IP
)
