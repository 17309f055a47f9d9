"""Pure-Python book kernels: the per-level loops of :class:`scanner.book.l2.BookSide` and the
interleaved checksum payload. ``_core.c`` implements the same functions with the same
semantics (the tests run both); this module is used when the extension is not built."""

from __future__ import annotations

import zlib
from bisect import bisect_left
from collections.abc import Sequence

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
