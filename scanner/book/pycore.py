"""Pure-Python book kernels: the per-level loops of :class:`scanner.book.l2.BookSide` and the
interleaved checksum payload. ``_core.c`` implements the same functions with the same
semantics (the tests run both); this module is used when the extension is not built."""

from __future__ import annotations

import json
import zlib
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import TypeVar

from scanner.model import BookMsg

_T = TypeVar("_T")

INF = float("inf")


def _bad(px: object, sz: object) -> ValueError:
    return ValueError(f"level {px!r} x {sz!r} is not a positive finite price with a finite size >= 0")


def apply_rows(keys: list[float], pxs: list[str], szs: list[str], rows: Sequence[Sequence[str]], neg: bool,
               watch: int) -> bool:
    """Apply ``[price, size, ...]`` rows to one side held as parallel sorted lists; True if any
    change landed within the best ``watch`` levels."""
    touched = False
    for row in rows:
        px, sz = row[0], row[1]
        p, q = float(px), float(sz)
        if not (0.0 < p < INF and 0.0 <= q < INF):  # also rejects NaN
            raise _bad(px, sz)
        k = -p if neg else p
        i = bisect_left(keys, k)
        if i < len(keys) and keys[i] == k:
            if q == 0.0:
                del keys[i], pxs[i], szs[i]
            else:
                pxs[i] = px
                szs[i] = sz
        elif q != 0.0:
            keys.insert(i, k)
            pxs.insert(i, px)
            szs.insert(i, sz)
        else:
            continue  # deleting a level we do not hold changes nothing
        if i < watch:
            touched = True
    return touched


def load_rows(rows: Sequence[Sequence[str]], neg: bool) -> tuple[list[float], list[str], list[str]]:
    """Rows in any order → sorted parallel lists; zero sizes skipped, the last row of a price wins."""
    levels: dict[float, tuple[str, str]] = {}
    for row in rows:
        px, sz = row[0], row[1]
        p, q = float(px), float(sz)
        if not (0.0 < p < INF and 0.0 <= q < INF):
            raise _bad(px, sz)
        k = -p if neg else p
        if q != 0.0:
            levels[k] = (px, sz)
        else:
            levels.pop(k, None)
    keys = sorted(levels)
    return keys, [levels[k][0] for k in keys], [levels[k][1] for k in keys]


def interleaved_crc32(bpx: Sequence[str], bsz: Sequence[str], apx: Sequence[str], asz: Sequence[str],
                      depth: int) -> int:
    """Signed CRC32 of ``bidPx:bidSz:askPx:askSz:...`` over the best ``depth`` levels; when one
    side runs out the other keeps going (OKX, Bitget)."""
    nb, na = min(len(bpx), depth), min(len(apx), depth)
    n = min(nb, na)
    parts: list[str] = [""] * (4 * n)
    parts[0::4] = bpx[:n]
    parts[1::4] = bsz[:n]
    parts[2::4] = apx[:n]
    parts[3::4] = asz[:n]
    if nb > n:
        for i in range(n, nb):
            parts.append(bpx[i])
            parts.append(bsz[i])
    elif na > n:
        for i in range(n, na):
            parts.append(apx[i])
            parts.append(asz[i])
    v = zlib.crc32(":".join(parts).encode())
    return v - (1 << 32) if v & 0x80000000 else v


def kraken_crc32(bpx: Sequence[str], bsz: Sequence[str], apx: Sequence[str], asz: Sequence[str],
                 depth: int) -> int:
    """Unsigned CRC32 of the best ``depth`` asks then bids, each level as price then size with
    ``.`` removed and leading zeros stripped, no separators (Kraken v1 and v2)."""
    nb, na = min(len(bpx), depth), min(len(apx), depth)
    if len(bsz) < nb or len(asz) < na:
        raise ValueError("kraken_crc32: size lists are shorter than price lists")
    parts: list[str] = []
    for pxs, szs, n in ((apx, asz, na), (bpx, bsz, nb)):
        for i in range(n):
            for s in (pxs[i], szs[i]):
                if not isinstance(s, str):
                    raise TypeError(f"checksum level {s!r} is not a str")
                parts.append(s.replace(".", "").lstrip("0"))
    return zlib.crc32("".join(parts).encode())


def apply_sides(bkeys: list[float], bpxs: list[str], bszs: list[str], akeys: list[float], apxs: list[str],
                aszs: list[str], bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]], watch: int,
                max_levels: int) -> int:
    """:func:`apply_rows` on the bids then the asks, each side cut to ``max_levels``; returns
    1 (a change within the best ``watch`` levels) | 2 (crossed: best bid >= best ask)."""
    flags = 1 if apply_rows(bkeys, bpxs, bszs, bids, True, watch) else 0
    if apply_rows(akeys, apxs, aszs, asks, False, watch):
        flags = 1
    for side in (bkeys, bpxs, bszs, akeys, apxs, aszs):
        if len(side) > max_levels:
            del side[max_levels:]
    if bkeys and akeys and -bkeys[0] >= akeys[0]:
        flags |= 2
    return flags


def pick_rows(items: object, px_key: str, sz_key: str) -> list[list[str]] | None:
    """``[[item[px_key], item[sz_key]], ...]`` when ``items`` is a list of dicts whose two fields
    are str, else None (the caller's own loop then reports what is wrong)."""
    if type(items) is not list:
        return None
    out: list[list[str]] = []
    for item in items:
        if type(item) is not dict:
            return None
        px, sz = item.get(px_key), item.get(sz_key)
        if type(px) is not str or type(sz) is not str:
            return None
        out.append([px, sz])
    return out


def split_rows(items: object, side_key: str, bid: str, ask: str, px_key: str, sz_key: str
               ) -> tuple[list[list[str]], list[list[str]]] | None:
    """Each item's ``[item[px_key], item[sz_key]]`` into bids (``item[side_key] == bid``) or asks
    (``== ask``); None when an item is not a dict, a field is missing or not a str, or a side is neither."""
    if type(items) is not list:
        return None
    bids: list[list[str]] = []
    asks: list[list[str]] = []
    for item in items:
        if type(item) is not dict or side_key not in item:
            return None
        side = item[side_key]
        if side == bid:
            dest = bids
        elif side == ask:
            dest = asks
        else:
            return None
        px, sz = item.get(px_key), item.get(sz_key)
        if type(px) is not str or type(sz) is not str:
            return None
        dest.append([px, sz])
    return bids, asks


class _NotAccepted(Exception):
    pass


class _Object(list[tuple[str, object]]):
    """A JSON object's (key, value) pairs in order (so repeated keys stay visible)."""


def _pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in pairs:
        if k in out and k in _L2_KEYS:
            raise _NotAccepted(k)  # a repeated field the parser reads: leave the frame to the full decoder
        out[k] = v
    return out


def _constant(name: str) -> object:
    raise _NotAccepted(name)  # NaN / Infinity are not JSON


_L2_KEYS = frozenset({"channel", "timestamp", "sequence_num", "events", "type", "product_id", "updates", "side",
                      "price_level", "new_quantity"})


def _strict_json(text: str | bytes, hook: Callable[[list[tuple[str, object]]], object] = _Object) -> object:
    """``text`` decoded as the compiled scanners accept it (printable ASCII without backslashes, JSON without NaN
    or Infinity, objects through ``hook``, which may refuse one), else None: every twin then returns None, as it
    does for a JSON ``null``, which no frame shape is."""
    if type(text) is bytes:
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            return None
    if type(text) is not str or not text.isascii() or not text.isprintable() or "\\" in text:
        return None
    try:
        return json.loads(text, object_pairs_hook=hook, parse_constant=_constant)
    except (ValueError, _NotAccepted, RecursionError):
        return None


L2Event = tuple[str, str, list[list[str]], list[list[str]]]  # (type, product_id, bids, asks)


def coinbase_l2(text: str | bytes) -> tuple[str, str, int, list[L2Event]] | None:
    """A Coinbase ``l2_data`` frame read for just the fields the parser uses: ``(channel, timestamp,
    sequence_num, [(type, product_id, bids, asks), ...])`` with each update as ``[price_level,
    new_quantity]`` under its side. None when the text is not printable ASCII without backslashes,
    not JSON, or not of that shape (a field missing, repeated or of another type, a side neither
    ``bid`` nor ``offer``, a top-level ``type``): the caller then decodes the frame in full and
    reports what is wrong. The compiled scanner also gives up on nesting deeper than 64."""
    d = _strict_json(text, _pairs)
    if type(d) is not dict or "type" in d:
        return None
    ch, ts, seq, events = d.get("channel"), d.get("timestamp"), d.get("sequence_num"), d.get("events")
    if type(ch) is not str or type(ts) is not str or type(seq) is not int or type(events) is not list:
        return None
    out: list[L2Event] = []
    for ev in events:
        if type(ev) is not dict:
            return None
        kind, inst, updates = ev.get("type"), ev.get("product_id"), ev.get("updates")
        if type(kind) is not str or type(inst) is not str:
            return None
        sides = split_rows(updates, "side", "bid", "offer", "price_level", "new_quantity")
        if sides is None:
            return None
        out.append((kind, inst, sides[0], sides[1]))
    return ch, ts, seq, out


def kraken_v1(text: str | bytes, seq: int, recv_ns: int, msg_cls: type[BookMsg]) -> BookMsg | None:
    """A Kraken v1 book diff ``[chanId, {"a": levels, "b": levels, "c": "crc"}, "book-N", "PAIR"]`` (each
    key optional, levels arrays of two to eight strings) as ``msg_cls(pair, False, bids, asks, seq, seq - 1,
    checksum, 0, recv_ns)``, a missing side empty and a missing ``c`` 0. None for anything else (printable ASCII
    without backslashes, JSON, that shape, a channel name starting ``book-``, ``c`` of 1-10 digits, no repeated
    key): the caller then decodes the frame in full."""
    d = _strict_json(text)
    if type(d) is not list or len(d) != 4 or type(d[1]) is not _Object:
        return None
    name, pair = d[2], d[3]
    if type(name) is not str or type(pair) is not str or not name.startswith("book-"):
        return None
    fields: dict[str, object] = {}
    for k, v in d[1]:
        if k in fields or k not in ("a", "b", "c"):
            return None
        fields[k] = v
    sides: list[list[list[str]]] = []
    for key in ("a", "b"):
        rows = fields.get(key, [])
        if type(rows) is not list or not all(
                type(r) is list and 2 <= len(r) <= 8 and all(type(x) is str for x in r) for r in rows):
            return None
        sides.append(rows)
    c = fields.get("c", "0")
    if type(c) is not str or not 1 <= len(c) <= 10 or not all("0" <= ch <= "9" for ch in c):
        return None
    return msg_cls(pair, False, sides[1], sides[0], seq, seq - 1, int(c), 0, recv_ns)


def _read(obj: object, keys: tuple[str, ...]) -> dict[str, object] | None:
    """The ``keys`` fields of a JSON object (an :class:`_Object`); None if it is not one or repeats one of them."""
    if type(obj) is not _Object:
        return None
    out: dict[str, object] = {}
    for k, v in obj:
        if k in keys:
            if k in out:
                return None
            out[k] = v
    return out


def _int18(x: object) -> int | None:
    """A JSON integer of at most 18 digits (what the compiled scanner reads), else None."""
    return x if type(x) is int and -10**18 < x < 10**18 else None


def _kucoin_rows(rows: object) -> list[list[str]] | None:
    if type(rows) is not list or not all(
            type(r) is list and len(r) == 3 and all(type(x) is str for x in r) for r in rows):
        return None
    return [r for r in rows if r[0] != "0"]  # price "0": a sequence step that changes no level


def kucoin_l2(text: str | bytes, recv_ns: int, msg_cls: type[BookMsg]) -> BookMsg | str | None:
    """A KuCoin ``trade.l2update`` frame ``{"type": "message", "subject": "trade.l2update", "data": {"changes":
    {"asks": rows, "bids": rows}, "sequenceStart": int, "sequenceEnd": int, "symbol": str, "time": int}}`` (keys
    in any order, other keys skipped, each side and ``time`` optional) as ``msg_cls(symbol, False, bids, asks,
    sequenceEnd, sequenceStart, 0, time, recv_ns)`` with rows ``[price, size, sequence]`` of three strings, those
    of price ``"0"`` dropped, a missing side empty and a missing ``time`` 0; a ``"message"`` of another subject
    (any data) gives its ``topic`` string. None for anything else (printable ASCII without backslashes, JSON, that
    shape, integers of at most 18 digits, sequenceStart <= sequenceEnd, a topic that is a string, no repeated field
    that is read): the caller then decodes the frame in full. The compiled scanner also gives up on nesting deeper
    than 64."""
    d = _strict_json(text)
    top = _read(d, ("type", "subject", "data", "topic"))
    if top is None or top.get("type") != "message" or type(top.get("subject")) is not str:
        return None
    topic = top.get("topic")
    if "topic" in top and type(topic) is not str:
        return None
    if top["subject"] != "trade.l2update":
        return topic if type(topic) is str else None
    data = _read(top.get("data"), ("changes", "sequenceStart", "sequenceEnd", "symbol", "time"))
    if data is None:
        return None
    changes = _read(data.get("changes"), ("asks", "bids"))
    sym, start, end = data.get("symbol"), _int18(data.get("sequenceStart")), _int18(data.get("sequenceEnd"))
    t = _int18(data.get("time", 0))
    if changes is None or type(sym) is not str or start is None or end is None or t is None or start > end:
        return None
    bids, asks = _kucoin_rows(changes.get("bids", [])), _kucoin_rows(changes.get("asks", []))
    if bids is None or asks is None:
        return None
    return msg_cls(sym, False, bids, asks, end, start, 0, t, recv_ns)


def _int64(x: object) -> int | None:
    """A JSON integer that fits int64 (what the compiled scanner reads), else None."""
    return x if type(x) is int and -(1 << 63) <= x < 1 << 63 else None


def _okx_levels(rows: object) -> list[list[str]] | None:
    """``[[px, sz, extra...], ...]`` (two strings, then any strings or numbers) cut to ``[px, sz]``, else None."""
    if type(rows) is not list:
        return None
    out: list[list[str]] = []
    for r in rows:
        if type(r) is not list or len(r) < 2 or type(r[0]) is not str or type(r[1]) is not str or not all(
                type(x) is str or type(x) is int or type(x) is float for x in r[2:]):
            return None
        out.append([r[0], r[1]])
    return out


OkxBooks = tuple[str, str, list[list[str]], list[list[str]], int, int, int, int]
# (instId, action or "", bids, asks, seqId, prevSeqId, checksum, ts)


def okx_books(text: str | bytes) -> OkxBooks | None:
    """An OKX ``books`` frame ``{"arg": {"channel": "books", "instId": str}, "action": "update" | "snapshot",
    "data": [{"asks": levels, "bids": levels, "ts": "<digits>", "checksum": int, "seqId": int, "prevSeqId": int}]}``
    (keys in any order, other keys skipped, ``action`` and ``checksum`` optional): ``(instId, action, bids, asks,
    seqId, prevSeqId, checksum, ts)`` with each level cut to ``[price, size]`` (the extras, strings or numbers, are
    dropped), a missing action ``""``, a missing checksum 0, ``ts`` as an int. None for anything else (printable
    ASCII without backslashes, JSON, that shape, exactly one data item, integers and ts within int64, no repeated
    field that is read): the caller then decodes the frame in full. The compiled scanner also gives up on nesting
    deeper than 64."""
    d = _strict_json(text)
    top = _read(d, ("arg", "action", "data"))
    if top is None:
        return None
    arg = _read(top.get("arg"), ("channel", "instId"))
    data, action = top.get("data"), top.get("action", "")
    if arg is None or arg.get("channel") != "books" or type(data) is not list or len(data) != 1 or (
            "action" in top and action != "update" and action != "snapshot"):
        return None
    item = _read(data[0], ("asks", "bids", "ts", "checksum", "seqId", "prevSeqId"))
    if item is None:
        return None
    inst, ts = arg.get("instId"), item.get("ts")
    seq, prev, crc = _int64(item.get("seqId")), _int64(item.get("prevSeqId")), _int64(item.get("checksum", 0))
    if type(inst) is not str or seq is None or prev is None or crc is None or type(ts) is not str or not (
            1 <= len(ts) <= 19 and all("0" <= c <= "9" for c in ts) and int(ts) < 1 << 63):
        return None
    bids, asks = _okx_levels(item.get("bids")), _okx_levels(item.get("asks"))
    if bids is None or asks is None:
        return None
    return inst, str(action), bids, asks, seq, prev, crc, int(ts)


def new_slots(cls: type[_T], *values: object) -> _T:
    """``cls(*values)``: the compiled twin sets a slots class's slots in ``__slots__`` order without running
    ``__init__``, which gives the same object for a ``@dataclass(slots=True)`` with no ``__post_init__``."""
    return cls(*values)
