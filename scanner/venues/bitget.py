"""Bitget spot (API v2 "classic") public order books: pure parser, sequencing rule, venue description.

Wire format (PROTOCOLS.md §9), ``wss://ws.bitget.com/v2/ws/public``:

* subscribe ``{"op":"subscribe","args":[{"instType":"SPOT","channel":"books","instId":"BTCUSDT"}]}``;
  each arg is acknowledged with ``{"event":"subscribe","arg":{...}}``; errors are
  ``{"event":"error","code":30001,"msg":"...","arg":{...}}``.
* ``books`` pushes ``"action":"snapshot"`` first, then ``"action":"update"`` frames with
  absolute sizes (``"0.0000"`` deletes). Each item carries ``seq`` (an update's ``seq`` is the
  previous one + 1, except across a symbol's maintenance), ``ts`` (ms, as a string) and
  ``checksum``: the OKX-style signed CRC32 of ``bidPx:bidSz:askPx:askSz:...`` over the best
  25 levels per side, on the exact strings sent (``"0.0500"`` stays ``"0.0500"``). A seq
  break or a checksum mismatch is repaired by unsubscribe + subscribe (a fresh snapshot).
* ``books1``/``books5``/``books15`` push a full top-N snapshot every time.
* keepalive: the client sends the text ``ping`` every 30 s and gets ``pong``; the server
  drops a connection with no subscription within 30 s or no ``ping`` for 2 minutes (older
  doc copies: 30 s), and every connection after 24 h. At most 10 client messages per second
  (pings included) and 240 subscription requests per hour per connection; ≤50 channels per
  connection is the documented recommendation.

The retired v1 stream (``wss://ws.bitget.com/spot/v1/stream``, ``"instType":"sp"`` for spot,
``"mc"`` for futures, no ``seq``, the same checksum rule, snapshots also checksummed) parses
through the same class: a frame without ``seq`` has no chain to check, so its integrity rests
on the checksum. Non-spot books are keyed ``"<instType>:<instId>"`` (``"mc:DASHUSDT"``) so that
they never collide with a spot instrument of the same id. Instruments: ``GET
/api/v2/spot/public/symbols`` (``pricePrecision``/``quantityPrecision`` are decimal places).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

import orjson

from scanner.book.checksum import book_crc32_interleaved
from scanner.book.errors import ParseError
from scanner.book.l2 import L2Book
from scanner.book.sync import APPLY, GAP, STALE, SyncedBook
from scanner.markets import Market, unified
from scanner.model import BookMsg, Control
from scanner.venues.spec import Parser, VenueSpec

NAME = "bitget"
WS_URL = "wss://ws.bitget.com/v2/ws/public"
REST_URL = "https://api.bitget.com"
CHANNELS = ("books", "books1", "books5", "books15")
INST_TYPE = "SPOT"
SPOT_TYPES = frozenset({"SPOT", "sp"})  # v2, and the retired v1 spelling
SUBSCRIBE_BATCH = 50  # args per request: the documented per-connection recommendation, ~3 KB of JSON
CHECKSUM_DEPTH = 25
NO_SEQ = -2  # v1 frames carry no seq: no chain to check, only the checksum
OK_CODE = "00000"


class BitgetParser(Parser):
    """Raw Bitget text frame → :class:`BookMsg` / :class:`Control`."""

    __slots__ = ("channel",)

    def __init__(self, channel: str = "books", markets: Sequence[Market] = ()) -> None:
        self.channel = channel

    def parse(self, raw: bytes | str, recv_ns: int) -> list[BookMsg | Control]:
        if raw == "pong" or raw == b"pong":
            return [Control("pong")]
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"bitget: not JSON: {exc}") from None
        if type(d) is not dict:
            raise ParseError(f"bitget: expected an object, got {type(d).__name__}")
        arg = d.get("arg")
        event = d.get("event")
        if event is not None:
            return [_control(event, arg, d)]
        if type(arg) is not dict:
            raise ParseError("bitget: frame has neither event nor arg")
        channel = arg.get("channel")
        if channel != self.channel:
            return [Control("ignored", str(arg.get("instId", "")), str(channel))]
        inst, kind, data = arg.get("instId"), arg.get("instType"), d.get("data")
        if type(inst) is not str or type(kind) is not str:
            raise ParseError("bitget: book frame without instId/instType")
        if type(data) is not list:
            raise ParseError("bitget: book frame without a data list")
        if kind not in SPOT_TYPES:
            inst = f"{kind}:{inst}"
        action = d.get("action")
        if action == "update":
            snapshot = False
        elif action == "snapshot" or action is None:
            snapshot = True
        else:
            raise ParseError(f"bitget: unknown action {action!r}")
        out: list[BookMsg | Control] = []
        try:
            for item in data:
                bids, asks = item["bids"], item["asks"]
                if type(bids) is not list or type(asks) is not list:
                    raise ParseError("bitget: bids/asks are not lists")
                seq = item.get("seq")
                out.append(BookMsg(
                    inst, snapshot, bids, asks, NO_SEQ if seq is None else int(seq), 0,
                    int(item.get("checksum") or 0), int(item["ts"]), recv_ns,
                ))
        except (KeyError, TypeError, ValueError) as exc:
            raise ParseError(f"bitget: malformed book item: {exc!r}") from None
        return out


def _control(event: object, arg: object, d: dict[str, object]) -> Control:
    inst = str(arg.get("instId", "")) if isinstance(arg, dict) else ""
    if event == "subscribe":
        return Control("subscribed", inst)
    if event == "unsubscribe":
        return Control("unsubscribed", inst)
    if event == "error":
        return Control("error", inst, f"{d.get('code')} {d.get('msg')}")
    return Control("info", inst, str(event))


def relation(msg: BookMsg, local: int, first: bool) -> int:
    """An update continues the book when ``seq == local + 1``. Right after a snapshot, updates
    the snapshot already contains (``seq <= snapshot seq``) are stale. Anything else, a jump
    or a maintenance reset, is a gap: resubscribe for a fresh snapshot. v1 frames (no ``seq``)
    always apply; the checksum guards them."""
    if msg.seq == local + 1 or msg.seq == NO_SEQ:
        return APPLY
    if first and msg.seq <= local:
        return STALE
    return GAP


def book_checksum(book: L2Book) -> int:
    return book_crc32_interleaved(book, CHECKSUM_DEPTH)


def make_book(channel: str) -> SyncedBook:
    return SyncedBook(relation, book_checksum, checksum_depth=CHECKSUM_DEPTH, max_levels=1000)


def _frame(op: str, insts: Sequence[str], channel: str) -> str:
    args = [{"instType": INST_TYPE, "channel": channel, "instId": inst} for inst in insts]
    return orjson.dumps({"op": op, "args": args}).decode()


def subscribe(insts: Sequence[str], channel: str) -> list[str]:
    return [_frame("subscribe", insts[i : i + SUBSCRIBE_BATCH], channel)
            for i in range(0, len(insts), SUBSCRIBE_BATCH)]


def resubscribe(inst: str, channel: str) -> list[str]:
    """Bitget pushes a ``books`` snapshot only in answer to a subscribe: unsubscribe, then subscribe."""
    return [_frame("unsubscribe", [inst], channel), _frame("subscribe", [inst], channel)]


def step(places: object) -> str:
    """Decimal places ("2") → the increment they allow ("0.01"); "0" → "1"."""
    try:
        n = int(str(places))
    except ValueError:
        raise ParseError(f"bitget: precision {places!r} is not an integer") from None
    if not 0 <= n <= 18:
        raise ParseError(f"bitget: precision {places!r} out of range")
    return "1" if n == 0 else "0." + "0" * (n - 1) + "1"


def parse_instruments(body: bytes) -> list[Market]:
    """``GET /api/v2/spot/public/symbols`` → markets. ``minTradeAmount`` "0" (Bitget now
    states the minimum in USDT, ``minTradeUSDT``) leaves one lot as the minimum size."""
    try:
        d = orjson.loads(body)
        if d.get("code") != OK_CODE:
            raise ParseError(f"bitget: symbols error {d.get('code')}: {d.get('msg')}")
        out = []
        for r in d["data"]:
            base, quote = r["baseCoin"], r["quoteCoin"]
            lot = step(r["quantityPrecision"])
            min_size = str(r.get("minTradeAmount") or "0")
            if Decimal(min_size) <= 0:
                min_size = lot
            out.append(Market(NAME, r["symbol"], unified(base, quote), base, quote, step(r["pricePrecision"]),
                              lot, min_size, r.get("status") == "online"))
        return out
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, InvalidOperation) as exc:
        raise ParseError(f"bitget: malformed symbols response: {exc!r}") from None


VENUE = VenueSpec(
    name=NAME,
    channels=CHANNELS,
    ws_url=WS_URL,
    rest_url=REST_URL,
    make_parser=BitgetParser,
    make_book=make_book,
    subscribe=subscribe,
    resubscribe=resubscribe,
    snapshot_request=None,  # REST /api/v2/spot/market/orderbook has no seq to bridge: resync over WS
    parse_snapshot=None,
    instruments_path="/api/v2/spot/public/symbols",
    parse_instruments=parse_instruments,
    rest_seed_after=0,
    snapshot_on_subscribe=False,
    text_ping=b"ping",
    text_pong=b"pong",
    ping_idle_s=15.0,  # with the 10 s pong wait, a ping every 25 s: inside both documented rules
    watchdog_s=30.0,
    max_connection_age_s=23.5 * 3600,  # Bitget cuts every connection after 24 h
    max_sends_per_s=5.0,  # half of the 10/s that disconnects (pings count too)
    max_instruments_per_conn=50,
    rest_weight_per_min=600,
    ping_periodically=True,
)
