"""Random frames through a venue's inlined book (BybitBook, KrakenBook, KucoinBook) and the generic
SyncedBook path side by side: the inlined hot paths must behave exactly like the one they inline."""

from __future__ import annotations

import random

from scanner.book.errors import BookError
from scanner.book.sync import SyncedBook
from scanner.model import BookMsg


def rows(rng: random.Random, mid: float, n: int, seq: int) -> list[list[str]]:
    rows = []
    for _ in range(n):
        r = rng.random()
        px = "-1" if r < 0.003 else f"{mid + rng.randint(-40, 40) * 0.1:.1f}"
        rows.append([px, "0" if r > 0.7 else f"{rng.random() * 3:.4f}", str(seq)])
    return rows


def drive(fast: SyncedBook, ref: SyncedBook, seed: int, checksums: bool) -> None:
    """Random snapshots, diffs (stale, continuing, straddling, gapped; crossing; bad levels; wrong checksums)
    through ``fast.on_message`` and the generic ``SyncedBook.on_message(ref, ...)``: same results, same errors,
    same books."""
    rng = random.Random(seed)
    cur = 0
    for step in range(4000):
        mid = 100.0 + rng.uniform(-2, 2)
        if rng.random() < 0.02 or step == 0:
            cur += 1
            msg = BookMsg("X", True, rows(rng, mid - 5, 30, cur), rows(rng, mid + 5, 30, cur), cur, cur - 1, 0, 0, 0)
        else:
            start = cur + 1 - rng.choice((0, 0, 0, 0, 1, 2)) + (3 if rng.random() < 0.01 else 0)
            end = max(start, cur + rng.choice((1, 1, 1, 2, -1)))
            crc = rng.choice((0, 0, 0, 12345)) if checksums else 0
            msg = BookMsg("X", False, rows(rng, mid - 1.5, rng.randint(0, 3), end),
                          rows(rng, mid + 1.5, rng.randint(0, 3), end), end, start, crc, step, step)
            cur = max(cur, end)
        outs: list[object] = []
        for sb, call in ((fast, fast.on_message), (ref, lambda m: SyncedBook.on_message(ref, m))):
            try:
                outs.append(("ok", call(msg)))
            except BookError as exc:
                outs.append((type(exc).__name__, str(exc)))
            b, a = sb.book.bids, sb.book.asks
            outs.append((sb.valid, sb.book.seq, sb.buffered, b.keys, b.pxs, b.szs, a.keys, a.pxs, a.szs, sb._crc_dirty))
        assert outs[:2] == outs[2:], step
