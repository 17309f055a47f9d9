"""An L2 order book that keeps the venue's exact price/size strings.

Each side is a dict from a numeric sort key to the ``(price, size)`` strings as received,
plus a sorted list of keys (best first), so best price and top-N are list slices. Bids use
negated keys so both sides sort ascending. A float key is exact enough to order and
identify prices: distinct decimal prices of up to 15 significant digits map to distinct,
correctly ordered doubles. The strings, not the floats, are what leaves the book.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence

Pair = tuple[str, str]
INF = float("inf")


def _bad(px: str, sz: str) -> ValueError:
    return ValueError(f"level {px!r} x {sz!r} is not a positive finite price with a finite size >= 0")


class BookSide:
    """One side of the book; ``descending`` for bids."""

    __slots__ = ("keys", "levels", "sign")

    def __init__(self, descending: bool) -> None:
        self.levels: dict[float, Pair] = {}
        self.keys: list[float] = []  # ascending sort keys: best level first
        self.sign = -1.0 if descending else 1.0

    def __len__(self) -> int:
        return len(self.keys)

    def clear(self) -> None:
        self.levels.clear()
        self.keys.clear()

    def load(self, rows: Iterable[Sequence[str]]) -> None:
        """Replace the side with ``rows`` (``[price, size, ...]``); zero sizes are skipped."""
        sign = self.sign
        levels: dict[float, Pair] = {}
        for row in rows:
            px, sz = row[0], row[1]
            p, q = float(px), float(sz)
            if not (0.0 < p < INF and 0.0 <= q < INF):  # also rejects NaN
                raise _bad(px, sz)
            if q != 0.0:
                levels[p * sign] = (px, sz)
        self.levels = levels
        self.keys = sorted(levels)

    def apply(self, rows: Iterable[Sequence[str]], watch: int) -> bool:
        """Apply absolute-size changes; return True if any change lies within the best
        ``watch`` levels (so a checksum over them may have changed)."""
        sign, levels, keys = self.sign, self.levels, self.keys
        touched = False
        for row in rows:
            px, sz = row[0], row[1]
            p, q = float(px), float(sz)
            if not (0.0 < p < INF and 0.0 <= q < INF):  # also rejects NaN
                raise _bad(px, sz)
            k = p * sign
            if not touched and (len(keys) < watch or k <= keys[watch - 1]):
                touched = True
            if q == 0.0:
                if levels.pop(k, None) is not None:
                    del keys[bisect_left(keys, k)]
            else:
                if k not in levels:
                    insort(keys, k)
                levels[k] = (px, sz)
        return touched

    def trim(self, max_levels: int) -> None:
        """Drop the worst levels beyond ``max_levels`` (deep levels no one reads)."""
        keys, levels = self.keys, self.levels
        while len(keys) > max_levels:
            del levels[keys.pop()]

    def top(self, n: int) -> list[Pair]:
        levels = self.levels
        return [levels[k] for k in self.keys[:n]]

    def best(self) -> Pair | None:
        return self.levels[self.keys[0]] if self.keys else None

    def best_price(self) -> float | None:
        return self.keys[0] * self.sign if self.keys else None


class L2Book:
    """Both sides plus the sequencing and timing state of the last applied frame."""

    __slots__ = ("asks", "bids", "exch_ms", "recv_ns", "seq")

    def __init__(self) -> None:
        self.bids = BookSide(descending=True)
        self.asks = BookSide(descending=False)
        self.seq = 0
        self.exch_ms = 0
        self.recv_ns = 0

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self.seq = 0

    def crossed(self) -> bool:
        """True when best bid >= best ask (a book no honest venue shows)."""
        b, a = self.bids.keys, self.asks.keys
        return bool(b) and bool(a) and -b[0] >= a[0]

    def top(self, n: int) -> tuple[list[Pair], list[Pair]]:
        return self.bids.top(n), self.asks.top(n)
