"""Kraken spot order books over WebSocket v2 (and v1 captures): pure parser, ordering rule,
checksum, and venue description.

Wire format (PROTOCOLS.md §6), ``wss://ws.kraken.com/v2``. A client sends
``{"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD"],"depth":25,"snapshot":true},"req_id":1}``
and gets one ``{"method":"subscribe","result":{...,"symbol":"BTC/USD"},"success":true}`` ack per
symbol (``"success":false,"error":...`` on failure), then
``{"channel":"book","type":"snapshot"|"update","data":[{"symbol","bids","asks","checksum","timestamp"}]}``.
Levels are ``{"price":67010.4,"qty":0.50000000}`` with JSON *numbers* written at full precision;
qty 0 deletes. After applying a frame each side is cut to the subscribed depth (Kraken sends no
deletes for levels pushed out of range), then ``checksum`` (on snapshots and updates) is the
unsigned CRC32 of the top 10 asks then bids (:func:`scanner.book.checksum.kraken_checksum`).
There are no sequence numbers: the checksum is the integrity check, and a mismatch resyncs the
symbol with unsubscribe + subscribe (a fresh snapshot).

Exact numbers: the text of every price and qty is kept as sent. Book frames are decoded with
orjson for structure while the level text is cut from the raw frame by a regex; the count of
levels must agree with the decoded frame, otherwise (whitespace, quoted or exponent numbers,
other key order) the frame is decoded again with the stdlib ``json`` keeping every number as
its text. Exponent text (``5e-06``) is rewritten as a plain decimal at the pair's precision
(from the market's tick/lot), since the checksum hashes digits.

Keepalive: the server sends ``status`` on connect and ``{"channel":"heartbeat"}`` about once a
second while subscribed; the client may send ``{"method":"ping"}`` (answered by
``{"method":"pong"}``). Symbols are v2 ``BTC/USD``; REST ``AssetPairs`` names them v1-style
(``wsname`` ``XBT/USD``, ``XDG/USD``), mapped here to BTC and DOGE.

Channel ``book-v1`` reads v1 frames (``[chanId, {"as","bs"}|{"a"|"b","c"}, "book-1000", "XBT/USD"]``,
string levels, ``c`` on updates only, same checksum rule), for replaying v1 captures.

Per-frame cost (v1 diffs carry one to three levels): v1 diffs are read from their text by the
compiled scanner ``kraken_v1`` (objects only for what the message needs; anything it does not
accept is decoded in full as before), and :class:`KrakenBook` applies a diff, cuts the sides and
finds the crossed state in one kernel call, with the checksum computed straight from the level
lists (``kraken_crc32``) on every frame that carries one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from scanner.book.errors import ChecksumMismatch, CrossedBook, ParseError
from scanner.book.l2 import COMPILED, L2Book, apply_sides, book_msg, kraken_crc32, kraken_v1
from scanner.book.sync import APPLY, STALE, BadLevel, SyncedBook
from scanner.markets import Market, unified
from scanner.model import BookMsg, Control, Level
from scanner.venues.spec import Parser, VenueSpec

NAME = "kraken"
WS_URL = "wss://ws.kraken.com/v2"
REST_URL = "https://api.kraken.com"
DEPTHS = (10, 25, 100, 500, 1000)
V1_CHANNEL = "book-v1"  # v1 ``book-1000`` frames (captures); live collection uses v2
# ``book.<depth>``: the v2 ``book`` channel at that subscription depth. 25 (the default) covers
# the 20 levels written to Redis and the 10 the checksum needs.
CHANNELS = ("book.25", "book.10", "book.100", "book.500", "book.1000", V1_CHANNEL)
SUBSCRIBE_BATCH = 50  # symbols per subscribe request (no documented cap; kept modest)
CHECKSUM_DEPTH = 10
ASSET_ALIASES = {"XBT": "BTC", "XDG": "DOGE"}  # v1 / REST wsname codes -> v2 and unified codes

# A level as Kraken writes it; orjson has already validated the frame as JSON, so ``[0-9.]+`` is
# a plain decimal number (exponents and signs do not match, and the count check sends them slow).
_LEVEL = re.compile(r'"price":([0-9.]+),"qty":([0-9.]+)\}')
_DECODER = json.JSONDecoder(parse_float=str, parse_int=str)  # every number as its exact text
_SECONDS: dict[str, int] = {}  # "2026-07-01T12:00:00" -> unix ms
_MISSING: Any = object()


def depth_of(channel: str) -> int:
    """Subscription depth of a channel setting (``book.25`` -> 25; ``book-v1`` -> 1000)."""
    if channel == V1_CHANNEL:
        return 1000
    head, _, n = channel.partition(".")
    if head != "book" or not n.isdigit() or int(n) not in DEPTHS:
        raise ValueError(f"kraken: unknown channel {channel!r}; one of {', '.join(CHANNELS)}")
    return int(n)


def places(step: str) -> int:
    """Decimal places of a tick or lot (``"0.1"`` -> 1, ``"1"`` -> 0)."""
    exp = Decimal(step).normalize().as_tuple().exponent
    return -exp if isinstance(exp, int) and exp < 0 else 0


def plain(text: str, digits: int | None) -> str:
    """A number's text without an exponent (``5e-06`` -> ``0.00000500`` at 8 places)."""
    if "e" not in text and "E" not in text:
        return text
    try:
        d = Decimal(text)
        if digits is not None:
            d = d.quantize(Decimal(1).scaleb(-digits))
    except InvalidOperation:
        raise ParseError(f"kraken: bad number {text!r}") from None
    return format(d, "f")


def ts_ms(ts: str) -> int:
    """RFC 3339 ``2026-07-01T12:00:00.440295Z`` -> unix ms (0 when unreadable)."""
    head = ts[:19]
    base = _SECONDS.get(head)
    if base is None:
        try:
            base = int(datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp()) * 1000
        except ValueError:
            return 0
        if len(_SECONDS) > 10_000:
            _SECONDS.clear()
        _SECONDS[head] = base
    ms = ts[20:23]
    return base + int(ms) if ts[19:20] == "." and len(ms) == 3 and ms.isdigit() else base


class KrakenParser(Parser):
    """Raw Kraken v2 (or v1) frame -> :class:`BookMsg` / :class:`Control`.

    Kraken has no sequence numbers, so every book message gets the parser's arrival count as
    ``seq`` (``prev = seq - 1``): a snapshot then supersedes whatever was buffered before it."""

    __slots__ = ("channel", "count", "depth", "precision")

    def __init__(self, channel: str = CHANNELS[0], markets: Sequence[Market] = ()) -> None:
        self.channel = channel
        self.depth = depth_of(channel)
        self.count = 0  # never reset: stays monotonic across reconnects of the same connection
        self.precision = {m.venue_id: (places(m.tick), places(m.lot)) for m in markets}

    def parse(self, raw: bytes | str, recv_ns: int) -> list[BookMsg | Control]:
        if COMPILED and self.channel == V1_CHANNEL:
            # v1 book diffs read by the compiled scanner, which makes the BookMsg itself and objects only of what
            # it holds; None (snapshots, other channels, events, anything odd) means: decode in full below. Its
            # pure-Python twin is no faster than decoding, so without the compiled core the frame is decoded at once.
            n = self.count + 1
            v1 = kraken_v1(raw, n, recv_ns, BookMsg)
            if v1 is not None:
                self.count = n
                return [v1]
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"kraken: not JSON: {exc}") from None
        if type(d) is dict:
            ch = d.get("channel")
            if ch == "book":
                text = raw.decode() if isinstance(raw, bytes) else raw
                return self._book(d, text, recv_ns)
            if ch is None:
                return [_control(d)]
            if ch == "heartbeat":
                return [Control("info", "", "heartbeat")]
            if ch == "status":
                data = d.get("data")
                item = data[0] if type(data) is list and data and type(data[0]) is dict else {}
                return [Control("info", "", f"status {item.get('system')}")]
            if type(ch) is str:
                return [Control("ignored", "", ch)]
            raise ParseError(f"kraken: channel is not a string: {ch!r}")
        if type(d) is list:
            if len(d) == 4:  # the common v1 diff [chanId, {"a"|"b", "c"}, "book-N", pair], inline
                part, name, pair = d[1], d[2], d[3]
                if (type(part) is dict and type(name) is str and type(pair) is str and name.startswith("book-")
                        and "as" not in part and "bs" not in part):
                    asks, bids = part.get("a", _MISSING), part.get("b", _MISSING)
                    if asks is _MISSING:
                        asks = []
                    if bids is _MISSING:
                        bids = []
                    c = part.get("c", 0)
                    if type(asks) is list and type(bids) is list and ((type(c) is str and c.isdecimal()) or c == 0):
                        n = self.count = self.count + 1
                        return [book_msg(pair, False, bids, asks, n, n - 1, int(c), 0, recv_ns)]
            return self._v1(d, recv_ns)  # snapshots, multi-part diffs, anything odd (and its errors)
        raise ParseError(f"kraken: expected an object or array, got {type(d).__name__}")

    # ----- v2 book frames ---------------------------------------------------------------------
    def _book(self, d: dict[str, Any], text: str, recv_ns: int) -> list[BookMsg | Control]:
        kind, data = d.get("type"), d.get("data")
        if kind != "snapshot" and kind != "update":
            raise ParseError(f"kraken: book frame of type {kind!r}")
        if type(data) is not list or not data:
            raise ParseError("kraken: book frame without data")
        if len(data) == 1:
            item = data[0]
            if type(item) is not dict:
                raise ParseError("kraken: book data item is not an object")
            bids, asks = item.get("bids", []), item.get("asks", [])
            if type(bids) is not list or type(asks) is not list:
                raise ParseError("kraken: bids/asks are not lists")
            rows = _LEVEL.findall(text)
            nb = len(bids)
            if len(rows) == nb + len(asks):  # every level's exact text found: the fast path
                if text.find('"bids"') < text.find('"asks"'):
                    b, a = rows[:nb], rows[nb:]
                else:
                    b, a = rows[len(rows) - nb:], rows[: len(rows) - nb]
                return [self._msg(item, kind == "snapshot", b, a, item.get("checksum", 0), recv_ns)]
        return self._book_exact(text, kind == "snapshot", recv_ns)

    def _book_exact(self, text: str, snapshot: bool, recv_ns: int) -> list[BookMsg | Control]:
        """The slow path: the stdlib decoder keeps every number as its text."""
        try:
            data = _DECODER.decode(text)["data"]
            out: list[BookMsg | Control] = []
            for item in data:
                prec = self.precision.get(item.get("symbol"), (None, None))
                bids = [[plain(r["price"], prec[0]), plain(r["qty"], prec[1])] for r in item.get("bids", [])]
                asks = [[plain(r["price"], prec[0]), plain(r["qty"], prec[1])] for r in item.get("asks", [])]
                if not all(type(x) is str for lv in bids + asks for x in lv):
                    raise ParseError("kraken: price/qty is neither a number nor a string")
                out.append(self._msg(item, snapshot, bids, asks, int(item.get("checksum", 0)), recv_ns))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ParseError(f"kraken: malformed book frame: {exc!r}") from None
        return out

    def _msg(self, item: dict[str, Any], snapshot: bool, bids: list[Level], asks: list[Level],
             checksum: object, recv_ns: int) -> BookMsg:
        sym, ts = item.get("symbol"), item.get("timestamp")
        if type(sym) is not str:
            raise ParseError("kraken: book item without symbol")
        if type(checksum) is not int:
            raise ParseError(f"kraken: checksum is not an integer: {checksum!r}")
        self.count += 1
        return BookMsg(sym, snapshot, bids, asks, self.count, self.count - 1, checksum,
                       ts_ms(ts) if type(ts) is str else 0, recv_ns)

    # ----- v1 frames --------------------------------------------------------------------------
    def _v1(self, d: list[Any], recv_ns: int) -> list[BookMsg | Control]:
        if len(d) < 4 or type(d[-1]) is not str or type(d[-2]) is not str:
            raise ParseError("kraken: v1 frame is not [channelID, payload..., channelName, pair]")
        name, pair = d[-2], d[-1]
        if not name.startswith("book-"):
            return [Control("ignored", pair, name)]
        snapshot, checksum = False, 0
        bids: list[Level] = []
        asks: list[Level] = []
        try:
            for part in d[1:-2]:
                if "as" in part or "bs" in part:
                    snapshot, asks, bids = True, part.get("as", []), part.get("bs", [])
                else:
                    asks = asks + part.get("a", [])
                    bids = bids + part.get("b", [])
                    if "c" in part:
                        checksum = int(part["c"])
        except (TypeError, ValueError, AttributeError) as exc:
            raise ParseError(f"kraken: malformed v1 book frame: {exc!r}") from None
        if type(bids) is not list or type(asks) is not list:
            raise ParseError("kraken: v1 levels are not lists")
        self.count += 1
        return [BookMsg(pair, snapshot, bids, asks, self.count, self.count - 1, checksum, 0, recv_ns)]


def _control(d: dict[str, Any]) -> Control:
    """v2 method replies (acks, pong, errors) and v1 events."""
    method = d.get("method")
    if method == "pong":
        return Control("pong")
    if method is not None:
        res = d.get("result")
        sym = str((res if type(res) is dict else d).get("symbol", ""))
        if d.get("success") is False:
            return Control("error", sym, f"{method}: {d.get('error')}")
        if method in ("subscribe", "unsubscribe") and type(res) is dict and res.get("channel") == "book":
            return Control("subscribed" if method == "subscribe" else "unsubscribed", sym)
        return Control("info", sym, str(method))
    event = d.get("event")
    if event is not None:  # v1
        pair = str(d.get("pair", ""))
        if event == "pong":
            return Control("pong")
        if event == "subscriptionStatus":
            status = d.get("status")
            if status == "error":
                return Control("error", pair, str(d.get("errorMessage")))
            if str(d.get("channelName", "")).startswith("book-") and status in ("subscribed", "unsubscribed"):
                return Control(str(status), pair)
        return Control("info", pair, str(event))
    if "error" in d:
        return Control("error", "", str(d.get("error")))
    raise ParseError("kraken: frame has neither channel, method nor event")


def relation(msg: BookMsg, local: int, first: bool) -> int:
    """No venue sequence: frames are applied in arrival order; a frame that arrived before the
    snapshot now in the book (buffered while resyncing) is stale."""
    return STALE if msg.seq <= local else APPLY


def book_checksum(book: L2Book) -> int:
    """:func:`scanner.book.checksum.kraken_checksum` of the book, straight from its level lists."""
    b, a = book.bids, book.asks
    return kraken_crc32(b.pxs, b.szs, a.pxs, a.szs, CHECKSUM_DEPTH)


class KrakenBook(SyncedBook):
    """SyncedBook with the same rules, its diff path in one kernel call per frame: Kraken frames
    carry two or three levels, so the per-frame cost is what counts. Applies both sides, cuts
    them to the subscribed depth, verifies the checksum (when the frame has one), refuses a
    crossed book; any failure invalidates the book, as :class:`SyncedBook` does."""

    __slots__ = ()

    def __init__(self, max_levels: int) -> None:
        super().__init__(relation, book_checksum, checksum_depth=CHECKSUM_DEPTH, max_levels=max_levels)

    def on_message(self, msg: BookMsg) -> bool:
        if msg.snapshot or not self.valid:
            return SyncedBook.on_message(self, msg)  # snapshots and buffering: the generic path
        book = self.book
        seq = msg.seq
        if seq <= book.seq:
            return False  # stale (relation)
        # SyncedBook._apply inlined (the hot path); keep the two in step
        b, a = book.bids, book.asks
        try:
            flags = apply_sides(b.keys, b.pxs, b.szs, a.keys, a.pxs, a.szs, msg.bids, msg.asks, CHECKSUM_DEPTH,
                                self.max_levels)
        except (ValueError, TypeError, IndexError) as exc:
            self.invalidate()
            raise BadLevel(f"unusable level: {exc}") from exc
        book.seq, book.exch_ms, book.recv_ns = seq, msg.exch_ms, msg.recv_ns
        self._first = False
        crc = msg.checksum
        if crc:
            if flags & 1 or self._crc_dirty:
                self._crc = kraken_crc32(b.pxs, b.szs, a.pxs, a.szs, CHECKSUM_DEPTH)
                self._crc_dirty = False
            if self._crc != crc:
                self._fail(ChecksumMismatch(f"checksum {crc} != local {self._crc} at seq {seq}"))
        elif flags & 1:
            self._crc_dirty = True
        if flags & 2:
            self._fail(CrossedBook(f"best bid {b.best()} >= best ask {a.best()}"))
        return True


def make_book(channel: str) -> SyncedBook:
    """Trimmed to the subscribed depth after every frame, before the checksum is verified."""
    return KrakenBook(depth_of(channel))


def _request(method: str, symbols: Sequence[str], channel: str, req_id: int) -> str:
    if channel == V1_CHANNEL:
        return orjson.dumps({"event": method, "pair": list(symbols), "reqid": req_id,
                             "subscription": {"name": "book", "depth": 1000}}).decode()
    params: dict[str, object] = {"channel": "book", "symbol": list(symbols), "depth": depth_of(channel)}
    if method == "subscribe":
        params["snapshot"] = True
    return orjson.dumps({"method": method, "params": params, "req_id": req_id}).decode()


def subscribe(insts: Sequence[str], channel: str) -> list[str]:
    return [_request("subscribe", insts[i : i + SUBSCRIBE_BATCH], channel, n)
            for n, i in enumerate(range(0, len(insts), SUBSCRIBE_BATCH), start=1)]


def resubscribe(inst: str, channel: str) -> list[str]:
    """A fresh snapshot comes only with a new subscription: unsubscribe, then subscribe."""
    return [_request("unsubscribe", [inst], channel, 0), _request("subscribe", [inst], channel, 0)]


def _step(decimals: object) -> str:
    n = int(str(decimals))
    return "1" if n <= 0 else "0." + "0" * (n - 1) + "1"


def v2_code(code: str) -> str:
    return ASSET_ALIASES.get(code, code)


def parse_instruments(body: bytes) -> list[Market]:
    """``GET /0/public/AssetPairs`` -> markets keyed by the v2 symbol (``BTC/USD``). Pairs without
    ``wsname`` (old dark-pool ``.d`` pairs) have no websocket book and are skipped."""
    try:
        d = orjson.loads(body)
        if d.get("error"):
            raise ParseError(f"kraken: AssetPairs error {d['error']}")
        out = []
        for r in d["result"].values():
            ws = r.get("wsname")
            if not isinstance(ws, str) or ws.count("/") != 1:
                continue
            base, quote = (v2_code(c) for c in ws.split("/"))
            lot = _step(r["lot_decimals"])
            out.append(Market(NAME, f"{base}/{quote}", unified(base, quote), base, quote,
                              str(r.get("tick_size") or _step(r["pair_decimals"])), lot,
                              str(r.get("ordermin") or lot), r.get("status", "online") == "online"))
        return out
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ParseError(f"kraken: malformed AssetPairs response: {exc!r}") from None


VENUE = VenueSpec(
    name=NAME,
    channels=CHANNELS,
    ws_url=WS_URL,
    rest_url=REST_URL,
    make_parser=KrakenParser,
    make_book=make_book,
    subscribe=subscribe,
    resubscribe=resubscribe,
    snapshot_request=None,  # REST Depth carries no sequence to bridge; resync is a new subscription
    parse_snapshot=None,
    instruments_path="/0/public/AssetPairs",
    parse_instruments=parse_instruments,
    rest_seed_after=0,
    snapshot_on_subscribe=False,
    text_ping=b'{"method":"ping"}',
    text_pong=b'"method":"pong"',
    ping_idle_s=5.0,  # heartbeats arrive every second while subscribed: 5 s of silence is suspect
    watchdog_s=15.0,
    max_connection_age_s=0.0,  # no documented lifetime
    max_sends_per_s=5.0,  # the per-connection message rate limit is dynamic and undocumented
    max_instruments_per_conn=SUBSCRIBE_BATCH,
    rest_weight_per_min=60,  # no REST snapshots; only the instruments call
)
