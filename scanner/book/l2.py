"""An L2 order book that keeps the venue's exact price/size strings.

Each side is three parallel lists, best level first: ``keys`` (a float sort key per level;
bids are negated so both sides sort ascending), ``pxs`` and ``szs`` (the price and size
strings exactly as received). Best price, top-N and the checksum payload are list slices;
a change is one ``bisect`` plus an in-place list insert/delete/store. A float key is exact
enough to order and identify prices: distinct decimal prices of up to 15 significant digits
map to distinct, correctly ordered doubles. The strings, not the floats, are what leaves the
book.

The per-level loop of :meth:`BookSide.apply` and :meth:`BookSide.load` runs in the optional
compiled core (:mod:`scanner.book._core`, built from ``_core.c`` by ``pip install`` when a C
compiler is present); :mod:`scanner.book.pycore` is the pure-Python twin with the same
semantics, used when the extension is missing or ``SCANNER_PURE_PYTHON=1`` is set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from types import ModuleType

from scanner.book import pycore
from scanner.compiled import compiled
from scanner.model import BookMsg, Level

Pair = tuple[str, str]
INF = float("inf")

_core: ModuleType = compiled("scanner.book._core") or pycore  # pycore: no compiler, or switched off
COMPILED: bool = _core is not pycore
# Typed views of the kernels (pycore's signatures; _core.pyi declares the same).
apply_rows: Callable[[list[float], list[str], list[str], Sequence[Sequence[str]], bool, int], bool] = _core.apply_rows
_load_rows: Callable[[Sequence[Sequence[str]], bool], tuple[list[float], list[str], list[str]]] = _core.load_rows
crc32_interleaved: Callable[[Sequence[str], Sequence[str], Sequence[str], Sequence[str], int], int] = (
    _core.interleaved_crc32)
kraken_crc32: Callable[[Sequence[str], Sequence[str], Sequence[str], Sequence[str], int], int] = _core.kraken_crc32
apply_sides: Callable[[list[float], list[str], list[str], list[float], list[str], list[str], Sequence[Sequence[str]],
                       Sequence[Sequence[str]], int, int], int] = _core.apply_sides
pick_rows: Callable[[object, str, str], list[list[str]] | None] = _core.pick_rows
split_rows: Callable[[object, str, str, str, str, str], tuple[list[list[str]], list[list[str]]] | None] = (
    _core.split_rows)
coinbase_l2: Callable[[str | bytes], tuple[str, str, int, list[tuple[str, str, list[list[str]], list[list[str]]]]]
                      | None] = _core.coinbase_l2
kraken_v1: Callable[[str | bytes, int, int, type[BookMsg]], BookMsg | None] = _core.kraken_v1
kucoin_l2: Callable[[str | bytes, int, type[BookMsg]], BookMsg | str | None] = _core.kucoin_l2
okx_books: Callable[[str | bytes], tuple[str, str, list[list[str]], list[list[str]], int, int, int, int] | None] = (
    _core.okx_books)
# BookMsg(...) for the parsers' hot paths: the compiled twin sets its slots without the Python __init__ frame
# (0.21 -> 0.09 us per message); the same object either way (tests/test_book_core.py)
book_msg: Callable[[str, bool, list[Level], list[Level], int, int, int, int, int], BookMsg] = (
    partial(_core.new_slots, BookMsg) if COMPILED else BookMsg)


class BookSide:
    """One side of the book; ``descending`` for bids."""

    __slots__ = ("keys", "neg", "pxs", "sign", "szs")

    def __init__(self, descending: bool) -> None:
        self.keys: list[float] = []  # ascending sort keys: best level first
        self.pxs: list[str] = []
        self.szs: list[str] = []
        self.neg = descending
        self.sign = -1.0 if descending else 1.0

    def __len__(self) -> int:
        return len(self.keys)

    def clear(self) -> None:
        self.keys.clear()
        self.pxs.clear()
        self.szs.clear()

    def load(self, rows: Sequence[Sequence[str]]) -> None:
        """Replace the side with ``rows`` (``[price, size, ...]``, any order); zero sizes are
        skipped, a repeated price keeps its last row. ValueError on a level that is not a
        positive finite price with a finite size >= 0."""
        self.keys, self.pxs, self.szs = _load_rows(rows, self.neg)

    def apply(self, rows: Sequence[Sequence[str]], watch: int) -> bool:
        """Apply absolute-size changes (size 0 deletes); return True if any change lies within
        the best ``watch`` levels (so a checksum over them may have changed). On ValueError the
        rows before the bad one have been applied: the caller drops the book."""
        return apply_rows(self.keys, self.pxs, self.szs, rows, self.neg, watch)

    def set_sorted(self, keys: list[float], pxs: list[str], szs: list[str]) -> None:
        """Install already sorted, validated parallel lists (the ccxt adapter's books)."""
        self.keys, self.pxs, self.szs = keys, pxs, szs

    def trim(self, max_levels: int) -> None:
        """Drop the worst levels beyond ``max_levels`` (deep levels no one reads)."""
        if len(self.keys) > max_levels:
            del self.keys[max_levels:]
            del self.pxs[max_levels:]
            del self.szs[max_levels:]

    def top(self, n: int) -> list[Pair]:
        return list(zip(self.pxs[:n], self.szs[:n], strict=True))

    def best(self) -> Pair | None:
        return (self.pxs[0], self.szs[0]) if self.keys else None

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
