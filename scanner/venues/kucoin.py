"""KuCoin spot (classic API) incremental books: pure parser, bridging rule, and venue description.

Wire protocol (PROTOCOLS.md §8). Every connection starts with ``POST /api/v1/bullet-public``
(no key), which returns a token and ``instanceServers[0]`` (``endpoint``, ``pingInterval`` ms,
``pingTimeout`` ms); the socket goes to ``<endpoint>?token=<token>&connectId=<id>`` and the
server greets with ``{"id":<connectId>,"type":"welcome"}``: only then may the client subscribe
(``VenueSpec.wait_ready``; the parser turns the welcome into ``Control("ready")``). A token is
good for 24 h, so connections are renewed (with a fresh token) before that.

Subscribe: ``{"id","type":"subscribe","topic":"/market/level2:BTC-USDT,ETH-USDT",
"privateChannel":false,"response":true}`` with at most 100 symbols per topic, answered by
``{"id","type":"ack"}``; errors are ``{"id","type":"error","code","data"}``. Keepalive: the
client sends ``{"id","type":"ping"}`` every ``pingInterval`` (even while data flows) and the
server answers ``{"id","type":"pong"}``.

Book data: ``trade.l2update`` messages carry ``changes.asks``/``changes.bids`` rows
``[price, size, sequence]`` (absolute sizes, ``"0"`` deletes; price ``"0"`` is a sequence
step with no book change and is dropped here) and ``sequenceStart``/``sequenceEnd``. There is
no snapshot on the socket and no checksum. Sync: buffer, fetch REST
``GET /api/v1/market/orderbook/level2_100`` (its ``sequence``), drop messages with
``sequenceEnd <= local``; a message that straddles ``local`` is applied with only its changes
whose own sequence is ``> local`` (:class:`KucoinBook`); afterwards ``sequenceStart`` must be
``<= local + 1`` or it is a gap, which resyncs that symbol from REST.

Depth limit: the public snapshot holds the best 100 levels per side (the full book,
``/api/v3/market/orderbook/level2``, needs an API key). Diffs cover the whole book, so levels
beyond the snapshot's worst price (its *horizon*) are unknown until a diff touches them: the
book is exact only from the best price to the horizon. :class:`KucoinBook` remembers the
horizon of every side that came truncated (100 levels) and resyncs once fewer than
:data:`HORIZON_MIN_LEVELS` known levels remain inside it, so the published top levels are always
exact. Symbols are spelled ``BTC-USDT``; instruments come from ``GET /api/v2/symbols``.
"""

from __future__ import annotations

import uuid
from bisect import bisect_right
from collections.abc import Sequence
from operator import itemgetter
from urllib.parse import urlencode

import orjson

from scanner.book.errors import BookError, CrossedBook, ParseError, SequenceGap
from scanner.book.l2 import COMPILED, apply_sides, kucoin_l2
from scanner.book.sync import APPLY, GAP, STALE, BadLevel, SyncedBook
from scanner.markets import Market, unified
from scanner.model import BookMsg, Control, Level
from scanner.venues.spec import ConnectInfo, Parser, SnapshotRequest, VenueSpec

NAME = "kucoin"
WS_URL = "wss://ws-api-spot.kucoin.com/"  # informative: the URL comes from bullet-public
REST_URL = "https://api.kucoin.com"
CHANNELS = ("level2",)  # topic /market/level2
CONNECT_PATH = "/api/v1/bullet-public"
SNAPSHOT_PATH = "/api/v1/market/orderbook/level2_100"
FULL_SNAPSHOT_PATH = "/api/v3/market/orderbook/level2"  # keyed; what the 2021 capture recorded
SNAPSHOT_DEPTH = 100
SNAPSHOT_WEIGHT = 4  # level2_100 in the public pool (level2_20: 2)
SUBSCRIBE_BATCH = 100  # symbols per subscribe topic
HORIZON_MIN_LEVELS = 20  # = the default redis.book_depth
MAX_LEVELS = 1000
OK = "200000"
PING = b'{"id":"scanner","type":"ping"}'
PONG_MARK = b'"pong"'  # inside {"id":"scanner","type":"pong"}
INF = float("inf")
_PX = itemgetter(0)


class KucoinParser(Parser):
    """Raw KuCoin text frame → :class:`BookMsg` / :class:`Control`.

    A ``trade.l2update`` becomes one diff with ``seq = sequenceEnd`` and ``prev =
    sequenceStart``; its rows keep their third element, the change's own sequence."""

    __slots__ = ("channel",)

    def __init__(self, channel: str = "level2", markets: Sequence[Market] = ()) -> None:
        self.channel = channel

    def parse(self, raw: bytes | str, recv_ns: int) -> list[BookMsg | Control]:
        if COMPILED:
            # l2update diffs read by the compiled scanner, which makes the BookMsg itself and objects only of what
            # it holds; for a message of another subject it reads just the topic. None (controls, anything odd)
            # means: decode in full below. Its pure-Python twin is no faster than decoding, so without the
            # compiled core the frame is decoded at once.
            l2 = kucoin_l2(raw, recv_ns, BookMsg)
            if l2 is not None:
                if isinstance(l2, str):
                    head, _, inst = l2.partition(":")
                    return [Control("ignored", inst, head)]
                return [l2]
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"kucoin: not JSON: {exc}") from None
        if type(d) is not dict:
            raise ParseError(f"kucoin: expected an object, got {type(d).__name__}")
        kind = d.get("type")
        if kind == "message":
            if d.get("subject") == "trade.l2update":
                return [_l2update(d, recv_ns)]
            topic = d.get("topic")
            if type(topic) is not str:
                raise ParseError("kucoin: message without topic")
            head, _, inst = topic.partition(":")
            return [Control("ignored", inst, head)]
        if kind == "pong":
            return [Control("pong", "", str(d.get("id", "")))]
        if kind == "ack":
            return [Control("subscribed", "", str(d.get("id", "")))]
        if kind == "welcome":
            return [Control("ready", "", str(d.get("id", "")))]
        if kind == "error":
            return [Control("error", "", f"{d.get('code')} {d.get('data')}")]
        if type(kind) is str:
            return [Control("info", "", kind)]
        raise ParseError("kucoin: frame without type")


def _l2update(d: dict[str, object], recv_ns: int) -> BookMsg:
    try:
        data = d["data"]
        if type(data) is not dict:
            raise ParseError("kucoin: l2update without a data object")
        changes = data["changes"]
        bids, asks = changes.get("bids", []), changes.get("asks", [])
        if type(bids) is not list or type(asks) is not list:
            raise ParseError("kucoin: changes.bids/asks are not lists")
        # price "0": a sequence step that changes no level
        if bids:
            bids = [r for r in bids if r[0] != "0"]
        if asks:
            asks = [r for r in asks if r[0] != "0"]
        start, end = data["sequenceStart"], data["sequenceEnd"]
        if type(start) is not int or type(end) is not int:  # orjson already gives ints; int() for what is not
            start, end = int(start), int(end)
        if start > end:
            raise ParseError(f"kucoin: sequenceStart {start} > sequenceEnd {end}")
        t = data.get("time") or 0
        return BookMsg(data["symbol"], False, bids, asks, end, start, 0, t if type(t) is int else int(t), recv_ns)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ParseError(f"kucoin: malformed l2update: {exc!r}") from None


def relation(msg: BookMsg, local: int, first: bool) -> int:
    """Drop messages already in the book (``sequenceEnd <= local``); apply when
    ``sequenceStart <= local + 1`` (a straddling one is filtered per change by
    :class:`KucoinBook`); anything later is a gap."""
    if msg.seq <= local:
        return STALE
    if msg.prev <= local + 1:
        return APPLY
    return GAP


class DepthHorizon(BookError):
    """The market walked past the depth-limited snapshot: too few levels are known to be exact."""

    reason = "depth_horizon"
    routine = True  # the market moved: refetch at once, without the failing-stream backoff


def _horizon(rows: list[Level], sign: float, keys: list[float] | None = None) -> float:
    """Sort key of a truncated side's worst level (INF when the side came complete). ``keys``: the side as
    just loaded from ``rows``; when it kept every row (no zero size, no repeated price) its last key is that
    worst level's, read without parsing the prices again."""
    if len(rows) < SNAPSHOT_DEPTH:
        return INF
    if keys is not None and len(keys) == len(rows):
        return keys[-1]
    try:  # max(float(r[0]) * sign for r in rows), in C: negation is exact, so the bids' max is -min
        pxs = map(float, map(_PX, rows))
        return max(pxs) if sign > 0 else -min(pxs)
    except (ValueError, TypeError, IndexError):
        return INF  # loading the snapshot reports the bad level


def _after(rows: list[Level], local: int) -> list[Level]:
    try:
        return [r for r in rows if int(r[2]) > local]
    except (ValueError, TypeError, IndexError) as exc:
        raise BadLevel(f"change without a usable sequence: {exc}") from None


class KucoinBook(SyncedBook):
    """SyncedBook with KuCoin's per-change sequences and the snapshot's depth horizon."""

    __slots__ = ("horizon",)

    def __init__(self) -> None:
        super().__init__(relation, None, max_levels=MAX_LEVELS)
        self.horizon = (INF, INF)  # (bid, ask) sort keys of the last snapshot's worst levels

    def on_snapshot(self, snap: BookMsg) -> bool:
        self.horizon = (INF, INF)  # set by _verify from the loaded sides, before any buffered diff applies
        return super().on_snapshot(snap)

    def _verify(self, msg: BookMsg) -> None:
        book = self.book
        self.horizon = (_horizon(msg.bids, -1.0, book.bids.keys), _horizon(msg.asks, 1.0, book.asks.keys))
        super()._verify(msg)

    def on_message(self, msg: BookMsg) -> bool:
        """:meth:`SyncedBook.on_message` with the common diff (no straddle) inlined: one kernel
        call per frame. Straddling diffs take :meth:`_apply`; any failure invalidates the book."""
        if msg.snapshot or not self.valid:
            return SyncedBook.on_message(self, msg)  # snapshots and buffering: the generic path
        book = self.book
        local, seq, prev = book.seq, msg.seq, msg.prev
        if seq <= local:
            return False  # STALE
        if prev != local + 1:
            if prev > local + 1:
                self._fail(SequenceGap(f"expected continuation of {local}, got prev={prev} seq={seq}"))
            try:
                self._apply(msg)  # straddles the local sequence
            except BookError:
                self.invalidate()
                raise
            return True
        b, a = book.bids, book.asks
        bk, ak = b.keys, a.keys  # changed in place
        try:
            flags = apply_sides(bk, b.pxs, b.szs, ak, a.pxs, a.szs, msg.bids, msg.asks, self.checksum_depth,
                                MAX_LEVELS)
        except (ValueError, TypeError, IndexError) as exc:
            self.invalidate()
            raise BadLevel(f"unusable level: {exc}") from exc
        book.seq, book.exch_ms, book.recv_ns = seq, msg.exch_ms, msg.recv_ns
        self._first = False
        if flags & 1:
            self._crc_dirty = True
        if flags & 2:
            self._fail(CrossedBook(f"best bid {b.best()} >= best ask {a.best()}"))
        # bisect_right(keys, h) < HORIZON_MIN_LEVELS (fewer levels than that at or inside the horizon), read
        # off the sorted keys at one index instead of a bisection
        hb, ha = self.horizon
        if hb != INF and (len(bk) < HORIZON_MIN_LEVELS or bk[HORIZON_MIN_LEVELS - 1] > hb):
            self._fail(DepthHorizon(f"fewer than {HORIZON_MIN_LEVELS} bids left above the snapshot's depth horizon"))
        if ha != INF and (len(ak) < HORIZON_MIN_LEVELS or ak[HORIZON_MIN_LEVELS - 1] > ha):
            self._fail(DepthHorizon(f"fewer than {HORIZON_MIN_LEVELS} asks left below the snapshot's depth horizon"))
        return True

    def _apply(self, msg: BookMsg) -> None:
        local = self.book.seq
        if msg.prev <= local:  # straddles the local sequence: keep only the newer changes
            msg = BookMsg(msg.inst, False, _after(msg.bids, local), _after(msg.asks, local), msg.seq, local + 1,
                          0, msg.exch_ms, msg.recv_ns)
        super()._apply(msg)
        hb, ha = self.horizon
        if hb != INF and bisect_right(self.book.bids.keys, hb) < HORIZON_MIN_LEVELS:
            raise DepthHorizon(f"fewer than {HORIZON_MIN_LEVELS} bids left above the snapshot's depth horizon")
        if ha != INF and bisect_right(self.book.asks.keys, ha) < HORIZON_MIN_LEVELS:
            raise DepthHorizon(f"fewer than {HORIZON_MIN_LEVELS} asks left below the snapshot's depth horizon")


def make_book(channel: str) -> SyncedBook:
    return KucoinBook()


def subscribe(insts: Sequence[str], channel: str) -> list[str]:
    frames = []
    for n, i in enumerate(range(0, len(insts), SUBSCRIBE_BATCH), start=1):
        topic = f"/market/{channel}:{','.join(insts[i : i + SUBSCRIBE_BATCH])}"
        frames.append(orjson.dumps({"id": str(n), "type": "subscribe", "topic": topic, "privateChannel": False,
                                    "response": True}).decode())
    return frames


def resubscribe(inst: str, channel: str) -> list[str]:
    return []  # the socket never sends a snapshot: resync from REST


def snapshot_request(rest_url: str, inst: str) -> SnapshotRequest:
    return SnapshotRequest(f"{rest_url}{SNAPSHOT_PATH}?symbol={inst}", weight=SNAPSHOT_WEIGHT)


def parse_snapshot(inst: str, body: bytes, recv_ns: int) -> BookMsg:
    """``level2_100`` (or the keyed full ``/api/v3`` book) → a snapshot carrying its ``sequence``."""
    try:
        d = orjson.loads(body)
        if d.get("code") != OK:
            raise ParseError(f"kucoin: REST orderbook error {d.get('code')}: {d.get('msg')}")
        data = d["data"]
        bids, asks = data["bids"], data["asks"]
        if type(bids) is not list or type(asks) is not list:
            raise ParseError("kucoin: REST orderbook without bids/asks")
        return BookMsg(inst, True, bids, asks, int(data["sequence"]), 0, 0, int(data.get("time") or 0), recv_ns)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ParseError(f"kucoin: malformed REST orderbook: {exc!r}") from None


def parse_connect(body: bytes, ws_url: str) -> ConnectInfo:
    """``POST /api/v1/bullet-public`` → the tokened URL of the first instance server and its
    ping period. The configured ``ws_url`` is not used: a token belongs to the servers it lists."""
    try:
        d = orjson.loads(body)
        if d.get("code") != OK:
            raise ParseError(f"kucoin: bullet-public error {d.get('code')}: {d.get('msg')}")
        data = d["data"]
        token, server = data["token"], data["instanceServers"][0]
        endpoint = server["endpoint"]
        ping_s = float(server.get("pingInterval") or 18000) / 1000.0
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise ParseError(f"kucoin: malformed bullet-public response: {exc!r}") from None
    if type(token) is not str or not token:
        raise ParseError("kucoin: bullet-public response without a token")
    if type(endpoint) is not str or not endpoint.startswith(("ws://", "wss://")):
        raise ParseError(f"kucoin: bullet-public endpoint {endpoint!r} is not a websocket URL")
    query = urlencode({"token": token, "connectId": uuid.uuid4().hex})
    return ConnectInfo(f"{endpoint}{'&' if '?' in endpoint else '?'}{query}", ping_s)


def parse_instruments(body: bytes) -> list[Market]:
    """``GET /api/v2/symbols`` (``/api/v1/symbols`` has the same rows) → markets."""
    try:
        d = orjson.loads(body)
        if d.get("code") != OK:
            raise ParseError(f"kucoin: symbols error {d.get('code')}: {d.get('msg')}")
        return [
            Market(NAME, r["symbol"], unified(r["baseCurrency"], r["quoteCurrency"]), r["baseCurrency"],
                   r["quoteCurrency"], r["priceIncrement"], r["baseIncrement"], r["baseMinSize"],
                   bool(r.get("enableTrading", False)))
            for r in d["data"]
        ]
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ParseError(f"kucoin: malformed symbols response: {exc!r}") from None


VENUE = VenueSpec(
    name=NAME,
    channels=CHANNELS,
    ws_url=WS_URL,
    rest_url=REST_URL,
    make_parser=KucoinParser,
    make_book=make_book,
    subscribe=subscribe,
    resubscribe=resubscribe,
    snapshot_request=snapshot_request,
    parse_snapshot=parse_snapshot,
    instruments_path="/api/v2/symbols",
    parse_instruments=parse_instruments,
    rest_seed_after=1,
    snapshot_on_subscribe=True,
    text_ping=PING,
    text_pong=PONG_MARK,
    ping_idle_s=18.0,  # replaced by the bullet's pingInterval
    watchdog_s=60.0,  # thin books can be quiet; pongs do not count as data
    max_connection_age_s=23.5 * 3600,  # the token lives 24 h
    max_sends_per_s=5.0,  # KuCoin allows 100 client messages per 10 s
    max_instruments_per_conn=SUBSCRIBE_BATCH,  # one subscribe per connection (300 topics allowed)
    rest_weight_per_min=2000,  # public pool: 2000 per 30 s per IP, i.e. half of it
    connect_path=CONNECT_PATH,
    parse_connect=parse_connect,
    wait_ready=True,
    ping_periodically=True,  # KuCoin drops a client that does not ping, however busy the stream
    snapshot_alt_paths=(FULL_SNAPSHOT_PATH,),
)
