"""Coinbase Advanced Trade public order books: pure parser, sequencing rule, and venue description.

Wire format (PROTOCOLS.md §5), all JSON text on ``wss://advanced-trade-ws.coinbase.com``:

* Subscribe once per channel: ``{"type":"subscribe","channel":"level2","product_ids":[...]}`` and
  ``{"type":"subscribe","channel":"heartbeats"}`` (without heartbeats, quiet channels are closed
  after 60-90 s). The venue disconnects a socket that has not subscribed within 5 s. Unsubscribe
  is the same frame with ``"type":"unsubscribe"``. Every (un)subscribe is answered on channel
  ``subscriptions`` with the connection's whole subscription state; failures are
  ``{"type":"error","message":...}`` frames without a sequence number.
* ``level2`` data arrives on channel ``l2_data``: one ``snapshot`` event per product (the whole
  book) and then ``update`` events; each update is ``{"side":"bid"|"offer","price_level",
  "new_quantity","event_time"}`` with the absolute new size (``"0"`` deletes the level).
* Every frame of every channel carries ``sequence_num``, one counter per connection starting at 0
  (frames of channels we do not read, ``ticker`` or ``market_trades``, are ``ignored`` but count).
  A skipped number means frames were lost on this socket, for any product: the parser then returns
  ``Control("resync", "", "seq_gap")`` and the collector resyncs every book of the connection
  (unsubscribe + subscribe: a fresh snapshot follows). There is no per-product sequence and no
  checksum: a book applies its updates in order, and updates buffered before a fresh snapshot
  (lower ``sequence_num``) are stale.
* ``-USDC`` products are aliases of the ``-USD`` book on market-data channels: subscribing
  ``BTC-USDC`` streams frames with ``product_id`` ``BTC-USD``. The instruments endpoint says so
  (``alias``), and :func:`parse_instruments` sets ``Market.stream_id``; the collector feeds the
  ``BTC-USD`` frames to the ``BTC-USDC`` book. ``USDT-USDC`` and ``EURC-USDC`` are real products.
* No client ping protocol is documented; heartbeats arrive once a second, and a silent socket gets
  a websocket protocol ping.

``l2_data`` frames (a snapshot is megabytes) are read from their text by the compiled scanner
``coinbase_l2``, which makes objects only of the fields used (``[price_level, new_quantity]`` rows
by side); a frame it does not accept is decoded in full with the same checks and errors as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import orjson

from scanner.book.errors import ParseError
from scanner.book.l2 import COMPILED, coinbase_l2, split_rows
from scanner.book.sync import APPLY, STALE, SyncedBook
from scanner.markets import Market, unified
from scanner.model import BookMsg, Control
from scanner.venues.spec import Parser, VenueSpec

NAME = "coinbase"
WS_URL = "wss://advanced-trade-ws.coinbase.com"
REST_URL = "https://api.coinbase.com"
INSTRUMENTS_PATH = "/api/v3/brokerage/market/products?product_type=SPOT"
CHANNELS = ("level2",)
BOOK_CHANNEL = "l2_data"  # what ``level2`` frames are called on the wire
HEARTBEATS = "heartbeats"
SUBSCRIBE_BATCH = 100  # product ids per subscribe frame (no documented cap; keeps frames small)
MAX_LEVELS = 10_000  # per side; a level2 snapshot is the whole book (tens of thousands of levels)
_L2_TEXT = '{"channel":"l2_data",'  # how l2_data frames begin: these go to the compiled scanner
_L2_BYTES = _L2_TEXT.encode()
_EPOCH = date(1970, 1, 1).toordinal()
_SECOND_MS: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" -> unix ms (memo: frames of one second share it)


def timestamp_ms(ts: object) -> int:
    """``"2026-08-09T21:05:48.483587501Z"`` (RFC 3339, UTC, any fraction) → unix ms."""
    if type(ts) is not str or len(ts) < 20 or ts[10] != "T" or ts[-1] != "Z":
        raise ParseError(f"coinbase: bad timestamp {ts!r}")
    try:
        ms = _SECOND_MS.get(ts[:19])
        if ms is None:
            if len(_SECOND_MS) >= 4096:
                _SECOND_MS.clear()
            if ts[13] != ":" or ts[16] != ":" or not (ts[11:13] + ts[14:16] + ts[17:19]).isdigit():
                raise ValueError(ts)
            ms = ((date.fromisoformat(ts[:10]).toordinal() - _EPOCH) * 86_400_000 + int(ts[11:13]) * 3_600_000
                  + int(ts[14:16]) * 60_000 + int(ts[17:19]) * 1000)
            _SECOND_MS[ts[:19]] = ms
        if ts[19] == ".":
            ms += int((ts[20:-1] + "00")[:3])
        elif len(ts) != 20:
            raise ValueError(ts)
    except ValueError:
        raise ParseError(f"coinbase: bad timestamp {ts!r}") from None
    return ms


def _is_snapshot(kind: object) -> bool:
    """An l2_data event's ``type``: "snapshot" replaces the book, "update" changes it; nothing else exists."""
    if kind == "snapshot":
        return True
    if kind == "update":
        return False
    raise ParseError(f"coinbase: l2_data event type {kind!r}")


class CoinbaseParser(Parser):
    """Raw Coinbase Advanced Trade frame → :class:`BookMsg` / :class:`Control`.

    One parser per connection: it checks that ``sequence_num`` grows by exactly 1 across all
    channels and reports a gap as ``Control("resync", "", "seq_gap")`` before the frame's own
    items. ``checked`` counts frames whose sequence was checked, ``gaps`` the gaps found."""

    __slots__ = ("_pending_gap", "channel", "checked", "gaps", "last_seq")

    def __init__(self, channel: str = "level2", markets: Sequence[Market] = ()) -> None:
        self.channel = channel
        self.last_seq = -1  # no frame yet on this connection
        self.checked = 0
        self.gaps = 0
        self._pending_gap = False  # a gap seen on a frame whose body was malformed

    def on_connect(self) -> None:
        self.last_seq = -1
        self._pending_gap = False

    def parse(self, raw: bytes | str, recv_ns: int) -> list[BookMsg | Control]:
        # l2_data frames (snapshots run to megabytes) are read by the compiled scanner, which makes
        # objects only of the fields used here; None (any other shape) means: decode in full. Its
        # pure-Python twin is no faster than decoding: without the compiled core, decode at once.
        l2 = None
        if COMPILED and raw.startswith(_L2_TEXT if type(raw) is str else _L2_BYTES):  # type: ignore[arg-type]
            l2 = coinbase_l2(raw)
        d: dict[str, object] = {}
        if l2 is not None:
            channel, stamp, seq, events = l2
        else:
            try:
                d = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise ParseError(f"coinbase: not JSON: {exc}") from None
            if type(d) is not dict:
                raise ParseError(f"coinbase: expected an object, got {type(d).__name__}")
            if d.get("type") == "error":
                return [Control("error", "", f"{d.get('message')}: {d.get('reason', '')}".rstrip(": "))]
            channel = d.get("channel")  # type: ignore[assignment]
            seq = d.get("sequence_num")  # type: ignore[assignment]
            if type(channel) is not str or type(seq) is not int:
                raise ParseError("coinbase: frame without channel/sequence_num")
        out: list[BookMsg | Control] = []
        last, self.last_seq = self.last_seq, seq
        if last >= 0:
            self.checked += 1
            if seq != last + 1:
                self.gaps += 1
                self._pending_gap = True
        if self._pending_gap:
            out.append(Control("resync", "", "seq_gap"))
        try:
            if l2 is not None:
                self._events(events, stamp, seq, recv_ns, out)
            elif channel == BOOK_CHANNEL:
                self._book(d, seq, recv_ns, out)
            elif channel == HEARTBEATS:
                out.append(Control("info", "", HEARTBEATS))
            elif channel == "subscriptions":
                out.append(_subscriptions(d))
            else:
                out.append(Control("ignored", "", channel))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ParseError(f"coinbase: malformed {channel} frame: {exc!r}") from None
        self._pending_gap = False
        return out

    def _events(self, events: list[tuple[str, str, list[list[str]], list[list[str]]]], stamp: str, seq: int,
                recv_ns: int, out: list[BookMsg | Control]) -> None:
        """:meth:`_book` for a frame :func:`coinbase_l2` has read (its shape already checked)."""
        exch_ms = timestamp_ms(stamp)
        for kind, inst, bids, asks in events:
            out.append(BookMsg(inst, _is_snapshot(kind), bids, asks, seq, seq - 1, 0, exch_ms, recv_ns))

    def _book(self, d: dict[str, object], seq: int, recv_ns: int, out: list[BookMsg | Control]) -> None:
        events = d["events"]
        if type(events) is not list:
            raise ParseError("coinbase: l2_data events is not a list")
        exch_ms = timestamp_ms(d["timestamp"])
        for ev in events:
            kind, inst, updates = ev["type"], ev["product_id"], ev["updates"]
            snapshot = _is_snapshot(kind)
            if type(inst) is not str or type(updates) is not list:
                raise ParseError("coinbase: l2_data event without product_id/updates")
            sides = split_rows(updates, "side", "bid", "offer", "price_level", "new_quantity")
            if sides is not None:  # every update well-formed: split by the compiled kernel
                out.append(BookMsg(inst, snapshot, sides[0], sides[1], seq, seq - 1, 0, exch_ms, recv_ns))
                continue
            bids: list[list[str]] = []
            asks: list[list[str]] = []
            for u in updates:  # the same split, reporting what is wrong
                px, qty, side = u["price_level"], u["new_quantity"], u["side"]
                if type(px) is not str or type(qty) is not str:
                    raise ParseError(f"coinbase: price/size not strings: {px!r} x {qty!r}")
                if side == "bid":
                    bids.append([px, qty])
                elif side == "offer":
                    asks.append([px, qty])
                else:
                    raise ParseError(f"coinbase: unknown side {side!r}")
            out.append(BookMsg(inst, snapshot, bids, asks, seq, seq - 1, 0, exch_ms, recv_ns))


def _subscriptions(d: dict[str, object]) -> Control:
    events = d["events"]
    if type(events) is not list:
        raise ParseError("coinbase: subscriptions events is not a list")
    subs: dict[str, object] = {}
    for ev in events:
        s = ev["subscriptions"]
        if type(s) is not dict:
            raise ParseError("coinbase: subscriptions is not an object")
        subs.update(s)
    return Control("subscribed", "", ",".join(sorted(subs)))


def relation(msg: BookMsg, local: int, first: bool) -> int:
    """Updates apply in arrival order: the connection's ``sequence_num`` (checked by the parser)
    is the integrity check. Updates older than the book's snapshot (buffered while a resync
    was under way) are stale."""
    return STALE if msg.seq <= local else APPLY


def make_book(channel: str) -> SyncedBook:
    return SyncedBook(relation, None, max_levels=MAX_LEVELS)


def _frame(kind: str, channel: str, insts: Sequence[str] = ()) -> str:
    body: dict[str, object] = {"type": kind}
    if insts:
        body["product_ids"] = list(insts)
    body["channel"] = channel
    return orjson.dumps(body).decode()


def subscribe(insts: Sequence[str], channel: str) -> list[str]:
    """``level2`` in batches, then ``heartbeats`` (keeps quiet books' connections open)."""
    frames = [_frame("subscribe", channel, insts[i : i + SUBSCRIBE_BATCH])
              for i in range(0, len(insts), SUBSCRIBE_BATCH)]
    frames.append(_frame("subscribe", HEARTBEATS))
    return frames


def resubscribe(inst: str, channel: str) -> list[str]:
    """A snapshot only comes with a subscription: unsubscribe, then subscribe again."""
    return [_frame("unsubscribe", channel, [inst]), _frame("subscribe", channel, [inst])]


def parse_instruments(body: bytes) -> list[Market]:
    """``GET /api/v3/brokerage/market/products`` → spot markets. A product with an ``alias``
    (``BTC-USDC`` → ``BTC-USD``) streams its book under the alias: ``stream_id``."""
    try:
        d = orjson.loads(body)
        out = []
        for r in d["products"]:
            if r.get("product_type", "SPOT") != "SPOT":
                continue
            base, quote = r["base_currency_id"], r["quote_currency_id"]
            active = (r.get("status") == "online" and not r.get("trading_disabled") and not r.get("is_disabled")
                      and not r.get("cancel_only"))
            out.append(Market(NAME, r["product_id"], unified(base, quote), base, quote, r["price_increment"],
                              r["base_increment"], r["base_min_size"], active, r.get("alias") or ""))
        return out
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ParseError(f"coinbase: malformed products response: {exc!r}") from None


VENUE = VenueSpec(
    name=NAME,
    channels=CHANNELS,
    ws_url=WS_URL,
    rest_url=REST_URL,
    make_parser=CoinbaseParser,
    make_book=make_book,
    subscribe=subscribe,
    resubscribe=resubscribe,
    snapshot_request=None,  # REST product_book has no sequence to bridge to the stream
    parse_snapshot=None,
    instruments_path=INSTRUMENTS_PATH,
    parse_instruments=parse_instruments,
    rest_seed_after=0,
    snapshot_on_subscribe=False,
    text_ping=None,  # websocket protocol pings after ping_idle_s of silence (heartbeats come 1/s)
    text_pong=None,
    ping_idle_s=5.0,
    watchdog_s=15.0,
    max_connection_age_s=0.0,
    max_sends_per_s=4.0,  # Coinbase allows 8 unauthenticated messages/s per IP
    max_instruments_per_conn=20,
    rest_weight_per_min=60,
)
