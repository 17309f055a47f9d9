"""HTX (Huobi) spot order books: pure parser, sequencing rule, and venue description.

Wire protocol (PROTOCOLS.md §10):

* Every server frame is a **binary frame of gzip-compressed JSON**; client frames are plain
  JSON text. The parser takes the raw bytes and decompresses them itself.
* Book topics ``market.<sym>.mbp.<levels>`` (levels 5/10/20 tick by tick, 150/400 as the diff
  between two 100 ms snapshots) on ``wss://api.huobi.pro/feed``, symbols lower case
  (``btcusdt``). One ``{"sub": topic, "id": ..}`` per topic, acknowledged by
  ``{"id", "status": "ok", "subbed": topic, "ts"}``. An update is
  ``{"ch", "ts", "tick": {"seqNum", "prevSeqNum", "bids", "asks"}}``; a tick-by-tick update
  may leave out the side that did not change.
* The snapshot comes over the same connection: ``{"req": topic, "id": ..}`` is answered by
  ``{"id", "rep": topic, "status": "ok", "ts", "data": {"seqNum", "bids", "asks"}}``. Updates
  with ``seqNum <= snapshot seqNum`` are stale; the first one applied has
  ``prevSeqNum == snapshot seqNum``, then every ``prevSeqNum`` equals the previous
  ``seqNum`` (sequence numbers jump; never +1). A gap is healed with a new ``req``.
* ``market.<sym>.depth.step0`` (150 aggregated levels, full snapshot on every push,
  ``tick.version``) is understood too, so 2021 captures of it replay; on the live venue it
  is served on ``/ws``, not ``/feed``.
* Keepalive: the server sends ``{"ping": <ms>}`` every 5 s and closes the connection after
  two unanswered pings; the parser answers with a ``send`` control carrying
  ``{"pong": <ms>}`` (the same integer text). Errors are
  ``{"status": "error", "err-code", "err-msg", "id"}``.

Prices and sizes are JSON numbers (``9.121E-7``, ``188358.0``). They are decoded with the
standard library's decoder and ``parse_float=str``/``parse_int=str``, so each keeps the exact
text the venue sent and never passes through a float.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence

import orjson

from scanner.book.errors import ParseError
from scanner.book.sync import APPLY, GAP, STALE, SyncedBook
from scanner.markets import Market, unified
from scanner.model import BookMsg, Control
from scanner.venues.spec import Parser, VenueSpec

NAME = "htx"
WS_URL = "wss://api.huobi.pro/feed"
REST_URL = "https://api.huobi.pro"
INSTRUMENTS_PATH = "/v1/common/symbols"
CHANNELS = ("mbp.150", "mbp.400", "mbp.20", "mbp.10", "mbp.5", "depth.step0")
DEPTH_CHANNEL = "depth.step0"
LEVELS = {"mbp.150": 150, "mbp.400": 400, "mbp.20": 20, "mbp.10": 10, "mbp.5": 5, "depth.step0": 150}
GZIP_MAGIC = b"\x1f\x8b"
# Exact numbers: every JSON number stays the text the venue sent.
_decode = json.JSONDecoder(parse_float=str, parse_int=str).decode


def topic(inst: str, channel: str) -> str:
    return f"market.{inst}.{channel}"


def split_topic(name: object) -> tuple[str, str]:
    """``market.btcusdt.mbp.150`` -> (``btcusdt``, ``mbp.150``)."""
    if type(name) is not str or not name.startswith("market."):
        raise ParseError(f"htx: not a market topic: {name!r}")
    parts = name.split(".", 2)
    if len(parts) != 3 or not parts[1]:
        raise ParseError(f"htx: malformed topic {name!r}")
    return parts[1], parts[2]


def decode_frame(raw: bytes | str) -> object:
    """A raw frame as JSON with exact number text: gzip bytes (what HTX sends) or plain JSON."""
    if not isinstance(raw, str):
        data = bytes(raw)
        if data[:2] == GZIP_MAGIC:
            try:
                data = zlib.decompress(data, 31)
            except zlib.error as exc:
                raise ParseError(f"htx: bad gzip frame: {exc}") from None
        try:
            raw = data.decode()
        except UnicodeDecodeError as exc:
            raise ParseError(f"htx: frame is neither gzip nor UTF-8 JSON: {exc}") from None
    try:
        return _decode(raw)
    except ValueError as exc:  # json.JSONDecodeError
        raise ParseError(f"htx: not JSON: {exc}") from None


def _int(v: object, what: str) -> int:
    if type(v) is not str or not v.lstrip("-").isdigit():
        raise ParseError(f"htx: {what} is not an integer: {v!r}")
    return int(v)


def _levels(v: object, what: str) -> list[list[str]]:
    """The rows themselves are checked by the book (an unusable level is a ``BadLevel``)."""
    if type(v) is not list:
        raise ParseError(f"htx: {what} is not a list of levels")
    return v


def _id_inst(rid: object) -> tuple[str, str]:
    """Request ids are ``sub.<inst>`` / ``req.<inst>`` / ``unsub.<inst>`` (see :func:`subscribe`)."""
    if type(rid) is str and "." in rid:
        kind, _, inst = rid.partition(".")
        return kind, inst
    return "", ""


class HtxParser(Parser):
    """Raw HTX frame (gzip bytes) → :class:`BookMsg` / :class:`Control`."""

    __slots__ = ("channel", "depth")

    def __init__(self, channel: str = "mbp.150", markets: Sequence[Market] = ()) -> None:
        self.channel = channel
        self.depth = channel == DEPTH_CHANNEL  # full snapshots on every push

    def parse(self, raw: bytes | str, recv_ns: int) -> list[BookMsg | Control]:
        d = decode_frame(raw)
        if type(d) is not dict:
            raise ParseError(f"htx: expected an object, got {type(d).__name__}")
        ch = d.get("ch")
        if ch is not None:
            inst, channel = split_topic(ch)
            if channel != self.channel:
                return [Control("ignored", inst, channel)]
            tick = d.get("tick")
            if type(tick) is not dict:
                raise ParseError(f"htx: {ch} push without a tick object")
            return [self._book(inst, tick, d.get("ts"), recv_ns, push=True)]
        ping = d.get("ping")
        if ping is not None:
            _int(ping, "ping")
            return [Control("send", "", f'{{"pong":{ping}}}')]
        if "pong" in d:
            return [Control("pong")]
        status = d.get("status")
        if status == "error":
            return self._error(d)
        rep = d.get("rep")
        if rep is not None:
            inst, channel = split_topic(rep)
            if status != "ok":
                raise ParseError(f"htx: {rep} answer with status {status!r}")
            if channel != self.channel:
                return [Control("ignored", inst, channel)]
            data = d.get("data")
            if type(data) is not dict:
                raise ParseError(f"htx: {rep} answer without a data object")
            return [self._book(inst, data, d.get("ts"), recv_ns, push=False)]
        if "subbed" in d:
            inst, channel = split_topic(d["subbed"])
            if channel == self.channel:
                return [Control("subscribed", inst)]
            return [Control("info", inst, f"subbed {channel}")]
        if "unsubbed" in d:
            inst, _ = split_topic(d["unsubbed"])
            return [Control("unsubscribed", inst)]
        raise ParseError(f"htx: unrecognised frame with keys {sorted(d)[:6]}")

    def _book(self, inst: str, tick: dict[str, object], ts: object, recv_ns: int, push: bool) -> BookMsg:
        exch_ms = _int(ts, "ts") if ts is not None else 0
        if self.depth:  # depth.step*: every push is the whole (aggregated) book
            version = tick.get("version")
            seq = _int(version, "version") if version is not None else 0
            return BookMsg(inst, True, _levels(tick.get("bids"), "bids"), _levels(tick.get("asks"), "asks"),
                           seq, -1, 0, exch_ms, recv_ns)
        seq = _int(tick.get("seqNum"), "seqNum")
        if not push:  # the req answer: the image the updates are aligned to
            return BookMsg(inst, True, _levels(tick.get("bids"), "bids"), _levels(tick.get("asks"), "asks"),
                           seq, -1, 0, exch_ms, recv_ns)
        prev = _int(tick.get("prevSeqNum"), "prevSeqNum")
        # Tick-by-tick levels (5/10/20) leave out the side that did not change.
        bids = tick.get("bids")
        asks = tick.get("asks")
        return BookMsg(inst, False, [] if bids is None else _levels(bids, "bids"),
                       [] if asks is None else _levels(asks, "asks"), seq, prev, 0, exch_ms, recv_ns)

    def _error(self, d: dict[str, object]) -> list[BookMsg | Control]:
        kind, inst = _id_inst(d.get("id"))
        detail = f"{d.get('err-code')} {d.get('err-msg')}"
        out: list[BookMsg | Control] = [Control("error", inst, detail)]
        if kind == "req" and inst:
            # Our snapshot request was refused: the book would wait forever, so resync it
            # (the collector backs off when this repeats).
            out.append(Control("resync", inst, "snapshot_error"))
        return out


def relation(msg: BookMsg, local: int, first: bool) -> int:
    """``prevSeqNum`` must equal the last applied ``seqNum`` (the snapshot's ``seqNum`` for
    the first update after it); updates at or below the local ``seqNum`` are stale."""
    if msg.prev == local:
        return APPLY
    if msg.seq <= local:
        return STALE
    return GAP


def make_book(channel: str) -> SyncedBook:
    return SyncedBook(relation, None, max_levels=LEVELS.get(channel, 400))


def _frame(op: str, inst: str, channel: str) -> str:
    return orjson.dumps({op: topic(inst, channel), "id": f"{op}.{inst}"}).decode()


def subscribe(insts: Sequence[str], channel: str) -> list[str]:
    """One ``sub`` per topic (HTX takes a single topic per request)."""
    return [_frame("sub", inst, channel) for inst in insts]


def ws_snapshot(inst: str, channel: str) -> list[str]:
    """The ``req`` that makes HTX send the book image on this connection."""
    return [_frame("req", inst, channel)]


def resubscribe(inst: str, channel: str) -> list[str]:
    """Unsubscribe and subscribe again (the collector prefers :func:`ws_snapshot`)."""
    return [_frame("unsub", inst, channel), _frame("sub", inst, channel)]


def step(precision: str) -> str:
    """A decimal-places count (``"2"``) as the increment it allows (``"0.01"``)."""
    if not precision.isdigit():
        raise ParseError(f"htx: bad precision {precision!r}")
    n = int(precision)
    return "1" if n == 0 else "0." + "0" * (n - 1) + "1"


def parse_instruments(body: bytes) -> list[Market]:
    """``GET /v1/common/symbols`` → markets. ``price-precision``/``amount-precision`` are
    decimal places (tick ``10^-p``); ``min-order-amt`` keeps its exact text; a market is
    active when its ``state`` is ``online`` and API trading is not disabled."""
    try:
        d = _decode(body.decode())
        if d.get("status") != "ok":
            raise ParseError(f"htx: instruments error {d.get('err-code')}: {d.get('err-msg')}")
        out = []
        for r in d["data"]:
            base, quote = r["base-currency"], r["quote-currency"]
            active = r.get("state") == "online" and r.get("api-trading", "enabled") == "enabled"
            out.append(Market(NAME, r["symbol"], unified(base, quote), base.upper(), quote.upper(),
                              step(r["price-precision"]), step(r["amount-precision"]), r.get("min-order-amt", "0"),
                              active))
        return out
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ParseError(f"htx: malformed instruments response: {exc!r}") from None


VENUE = VenueSpec(
    name=NAME,
    channels=CHANNELS,
    ws_url=WS_URL,
    rest_url=REST_URL,
    make_parser=HtxParser,
    make_book=make_book,
    subscribe=subscribe,
    resubscribe=resubscribe,
    snapshot_request=None,  # REST /market/depth carries no seqNum: it cannot be bridged
    parse_snapshot=None,
    instruments_path=INSTRUMENTS_PATH,
    parse_instruments=parse_instruments,
    rest_seed_after=0,
    snapshot_on_subscribe=False,
    text_ping=None,  # the server pings ({"ping": ms}); the parser's "send" control answers
    text_pong=None,
    ping_idle_s=0.0,
    watchdog_s=30.0,
    max_connection_age_s=0.0,
    max_sends_per_s=20.0,  # sub + req per instrument; HTX's per-connection limits are not published
    max_instruments_per_conn=30,
    rest_weight_per_min=600,
    ws_snapshot=ws_snapshot,
)
