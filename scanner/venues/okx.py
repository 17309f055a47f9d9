"""OKX v5 public order books: pure parser, sequencing rule, and venue description.

Wire format (see PROTOCOLS.md §2): ``books`` sends a snapshot (``prevSeqId`` -1) then
updates chained by ``prevSeqId == previous seqId`` (``seqId`` is not consecutive; an
idle keep-alive has ``prevSeqId == seqId``; a maintenance reset may have
``seqId < prevSeqId``). ``checksum`` is a signed CRC32 of the top 25 levels, and 0
(absent) since 2026-06-23. ``books5``/``bbo-tbt`` push full books with no ``action``.
Keepalive is the text frame ``ping`` answered by ``pong``.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from scanner.book.checksum import book_crc32_interleaved
from scanner.book.errors import ParseError
from scanner.book.l2 import COMPILED, book_msg, okx_books
from scanner.book.sync import APPLY, GAP, STALE, SyncedBook
from scanner.markets import Market, unified
from scanner.model import BookMsg, Control
from scanner.venues.spec import Parser, SnapshotRequest, VenueSpec

NAME = "okx"
WS_URL = "wss://ws.okx.com:8443/ws/v5/public"
REST_URL = "https://www.okx.com"
CHANNELS = ("books", "books5", "bbo-tbt")
# Channels that exist on the public socket but carry no book for us.
OTHER_CHANNELS = frozenset({"tickers", "trades", "candle1m", "funding-rate", "mark-price", "index-tickers"})
SUBSCRIBE_BATCH = 100  # args per request; OKX caps a request at 64 KB
NO_SEQ = -2  # frames from before OKX added seqId (2022 captures): no chain to check, only the checksum


class OkxParser(Parser):
    """Raw OKX text frame → :class:`BookMsg` / :class:`Control`."""

    __slots__ = ("channel",)

    def __init__(self, channel: str = "books", markets: Sequence[Market] = ()) -> None:
        self.channel = channel

    def parse(self, raw: bytes | str, recv_ns: int) -> list[BookMsg | Control]:
        if raw == "pong" or raw == b"pong":
            return [Control("pong")]
        if COMPILED and self.channel == "books":
            # A `books` frame read by the compiled scanner, each level cut to [price, size] (the book never reads
            # the deprecated "0" and the order count: a third of orjson's work on a deep frame). None (acks,
            # errors, other channels, several items, no seqId, anything odd) means: decode in full below.
            b = okx_books(raw)
            if b is not None:
                inst, action, bids, asks, seq, prev, crc, ts = b
                return [book_msg(inst, action == "" or action == "snapshot", bids, asks, seq, prev, crc, ts,
                                 recv_ns)]
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"okx: not JSON: {exc}") from None
        # The hot path: one book item with every field typed as `books` sends it (subscripts, no .get
        # calls). Anything else, including every malformed frame, takes the general path below,
        # which checks everything and names the problem.
        try:
            arg, data = d["arg"], d["data"]
            if arg["channel"] == self.channel and len(data) == 1:
                item = data[0]
                inst, bids, asks = arg["instId"], item["bids"], item["asks"]
                seq, prev = item["seqId"], item["prevSeqId"]
                crc = item.get("checksum", 0)
                if type(inst) is str and type(bids) is list and type(asks) is list and type(seq) is int \
                        and type(prev) is int and type(crc) is int:
                    action = d.get("action")
                    return [book_msg(inst, action is None or action == "snapshot", bids, asks, seq, prev, crc,
                                     int(item["ts"]), recv_ns)]
        except (KeyError, TypeError, IndexError, ValueError):
            pass
        return self.parse_object(d, recv_ns)

    def parse_object(self, d: object, recv_ns: int) -> list[BookMsg | Control]:
        """A decoded frame, every shape: acks, errors, other channels, several items, old frames without
        ``seqId``; malformed frames raise :class:`ParseError`."""
        if type(d) is not dict:
            raise ParseError(f"okx: expected an object, got {type(d).__name__}")
        arg = d.get("arg")
        data = d.get("data")
        if data is None:
            event = d.get("event")
            if event is not None:
                return [_control(event, arg, d)]
        if type(arg) is not dict or type(data) is not list:
            raise ParseError("okx: frame has no arg/data")
        channel = arg.get("channel")
        if channel != self.channel:
            if channel in OTHER_CHANNELS or channel in CHANNELS:
                return [Control("ignored", str(arg.get("instId", "")), str(channel))]
            raise ParseError(f"okx: unexpected channel {channel!r}")
        inst = arg.get("instId")
        if type(inst) is not str:
            raise ParseError("okx: book frame without instId")
        action = d.get("action")
        snapshot = action is None or action == "snapshot"
        out: list[BookMsg | Control] = []
        try:
            for item in data:
                bids, asks = item["bids"], item["asks"]
                if type(bids) is not list or type(asks) is not list:
                    raise ParseError("okx: bids/asks are not lists")
                # orjson already gives ints for the ids and the checksum; int() only for what is not
                seq, prev, crc = item.get("seqId", NO_SEQ), item.get("prevSeqId", NO_SEQ), item.get("checksum") or 0
                if type(seq) is not int or type(prev) is not int or type(crc) is not int:
                    seq, prev, crc = int(seq), int(prev), int(crc)
                out.append(BookMsg(inst, snapshot, bids, asks, seq, prev, crc, int(item["ts"]), recv_ns))
        except (KeyError, TypeError, ValueError) as exc:
            raise ParseError(f"okx: malformed book item: {exc!r}") from None
        return out


def _control(event: object, arg: object, d: dict[str, object]) -> Control:
    inst = str(arg.get("instId", "")) if isinstance(arg, dict) else ""
    if event == "subscribe":
        return Control("subscribed", inst)
    if event == "unsubscribe":
        return Control("unsubscribed", inst)
    if event == "error":
        return Control("error", inst, f"{d.get('code')} {d.get('msg')}")
    if event == "notice" and d.get("code") == "64008":
        return Control("reconnect", "", str(d.get("msg")))
    return Control("info", inst, str(event))


def relation(msg: BookMsg, local: int, first: bool) -> int:
    """``prevSeqId`` must equal the last ``seqId``. Bridging a REST snapshot, the first
    kept update may instead straddle it (``prevSeqId <= snapshot < seqId``). Frames without
    ``seqId`` (the pre-2023 protocol) carry no chain; their integrity rests on the checksum."""
    if msg.prev == local or msg.seq == NO_SEQ:
        return APPLY
    if first and msg.prev <= local < msg.seq:
        return APPLY
    if msg.seq <= local:
        return STALE
    return GAP


def make_book(channel: str) -> SyncedBook:
    return SyncedBook(relation, book_crc32_interleaved, checksum_depth=25, max_levels=400, chained=True)


def subscribe(insts: Sequence[str], channel: str) -> list[str]:
    frames = []
    for i in range(0, len(insts), SUBSCRIBE_BATCH):
        args = [{"channel": channel, "instId": inst} for inst in insts[i : i + SUBSCRIBE_BATCH]]
        frames.append(orjson.dumps({"op": "subscribe", "args": args}).decode())
    return frames


def resubscribe(inst: str, channel: str) -> list[str]:
    """OKX only pushes a snapshot in answer to a subscribe: unsubscribe, then subscribe."""
    arg = [{"channel": channel, "instId": inst}]
    return [
        orjson.dumps({"op": "unsubscribe", "args": arg}).decode(),
        orjson.dumps({"op": "subscribe", "args": arg}).decode(),
    ]


def snapshot_request(rest_url: str, inst: str) -> SnapshotRequest:
    return SnapshotRequest(f"{rest_url}/api/v5/market/books?instId={inst}&sz=400", weight=1)


def parse_snapshot(inst: str, body: bytes, recv_ns: int) -> BookMsg:
    """``GET /api/v5/market/books`` → a snapshot message carrying the book's ``seqId``."""
    try:
        d = orjson.loads(body)
        if d.get("code") != "0":
            raise ParseError(f"okx: REST books error {d.get('code')}: {d.get('msg')}")
        item = d["data"][0]
        if "seqId" not in item:
            raise ParseError("okx: REST snapshot has no seqId; cannot bridge it to the stream")
        return BookMsg(inst, True, item["bids"], item["asks"], int(item["seqId"]), -1, 0, int(item["ts"]), recv_ns)
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise ParseError(f"okx: malformed REST snapshot: {exc!r}") from None


def parse_instruments(body: bytes) -> list[Market]:
    """``GET /api/v5/public/instruments?instType=SPOT`` → markets."""
    try:
        d = orjson.loads(body)
        if d.get("code") != "0":
            raise ParseError(f"okx: instruments error {d.get('code')}: {d.get('msg')}")
        return [
            Market(NAME, r["instId"], unified(r["baseCcy"], r["quoteCcy"]), r["baseCcy"], r["quoteCcy"],
                   r["tickSz"], r["lotSz"], r["minSz"], r.get("state", "live") == "live")
            for r in d["data"]
            if r.get("instType", "SPOT") == "SPOT"
        ]
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ParseError(f"okx: malformed instruments response: {exc!r}") from None


VENUE = VenueSpec(
    name=NAME,
    channels=CHANNELS,
    ws_url=WS_URL,
    rest_url=REST_URL,
    make_parser=OkxParser,
    make_book=make_book,
    subscribe=subscribe,
    resubscribe=resubscribe,
    snapshot_request=snapshot_request,
    parse_snapshot=parse_snapshot,
    instruments_path="/api/v5/public/instruments?instType=SPOT",
    parse_instruments=parse_instruments,
    rest_seed_after=3,
    snapshot_on_subscribe=False,
    text_ping=b"ping",
    text_pong=b"pong",
    ping_idle_s=25.0,
    watchdog_s=30.0,
    max_connection_age_s=0.0,
    max_sends_per_s=10.0,
    max_instruments_per_conn=30,
    rest_weight_per_min=600,
)
