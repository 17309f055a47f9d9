"""One simulated order book on a venue's exact tick/lot grid, evolved around a mid price.

Prices and sizes are integers (ticks and lots); :class:`Grid` renders them as the venue's
exact decimal strings. Each side remembers the original size of every level touched since
the last ``collect()``, so an update is the exact diff between consecutive books (changed
sizes, inserts, and deletions as size 0) found without comparing whole books. Work per
tick is proportional to what changed, not to the depth.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

Level = tuple[int, int]  # (price in ticks, size in lots)


class Grid:
    """Exact conversion between integer multiples of a step ("0.1", "0.00001000") and text."""

    __slots__ = ("_canon", "_dec", "_fixed", "_mant", "_pow", "step", "text")
    CACHE = 50_000  # formatted values kept per grid (prices near the mid recur constantly)

    def __init__(self, step: str) -> None:
        d = Decimal(step)
        if not d.is_finite() or d <= 0:
            raise ValueError(f"bad grid step {step!r}")
        exp = d.normalize().as_tuple().exponent
        assert isinstance(exp, int)
        self._dec = max(0, -exp)
        self._pow: int = 10**self._dec
        self._mant = int(d * self._pow)  # step * 10^dec, an integer
        self.step = d
        self.text = step
        self._canon: dict[int, str] = {}
        self._fixed: dict[int, str] = {}

    def units(self, text: str) -> int:
        """``text`` as a whole number of steps; ValueError when it is off the grid."""
        try:
            q = Decimal(text) / self.step
        except (InvalidOperation, TypeError):
            raise ValueError(f"{text!r} is not a number") from None
        if not q.is_finite() or q != q.to_integral_value():
            raise ValueError(f"{text!r} is not a multiple of {self.text}")
        return int(q)

    def canonical(self, n: int) -> str:
        """Shortest exact text, no trailing zeros ("65000.1", "65000", "0.052")."""
        text = self._canon.get(n)
        if text is None:
            if len(self._canon) >= self.CACHE:
                self._canon.clear()
            text = self._canon[n] = self._canonical(n)
        return text

    def _canonical(self, n: int) -> str:
        v = n * self._mant
        if not self._dec:
            return str(v)
        q, r = divmod(v, self._pow)
        if not r:
            return str(q)
        return f"{q}.{r:0{self._dec}d}".rstrip("0")

    def fixed(self, n: int, places: int = 8) -> str:
        """Fixed-point text with ``places`` decimals ("65000.10000000")."""
        if places == 8:
            text = self._fixed.get(n)
            if text is None:
                if len(self._fixed) >= self.CACHE:
                    self._fixed.clear()
                text = self._fixed[n] = self._fixed_text(n, 8)
            return text
        return self._fixed_text(n, places)

    def _fixed_text(self, n: int, places: int) -> str:
        if self._dec > places:
            raise ValueError(f"step {self.text} needs more than {places} decimals")
        v = n * self._mant * 10 ** (places - self._dec)
        q, r = divmod(v, 10**places)
        return f"{q}.{r:0{places}d}"

    def value(self, n: int) -> float:
        return n * self._mant / self._pow


class Side:
    """Levels keyed by rank (best = smallest): rank = price ticks for asks, -ticks for bids."""

    __slots__ = ("best", "levels", "orig", "sign", "worst")

    def __init__(self, sign: int) -> None:
        self.sign = sign  # -1 bids, +1 asks; price ticks = rank * sign
        self.levels: dict[int, int] = {}
        self.best = 0
        self.worst = 0
        self.orig: dict[int, int] = {}  # rank -> size before this round of changes (0 = absent)

    def put(self, r: int, units: int) -> None:
        lv = self.levels
        if r not in self.orig:
            self.orig[r] = lv.get(r, 0)
        if not lv:
            self.best = self.worst = r
        elif r < self.best:
            self.best = r
        elif r > self.worst:
            self.worst = r
        lv[r] = units

    def remove(self, r: int) -> None:
        lv = self.levels
        units = lv.pop(r, None)
        if units is None:
            return
        if r not in self.orig:
            self.orig[r] = units
        if not lv:
            return
        if r == self.best:
            r += 1
            while r not in lv:
                r += 1
            self.best = r
        elif r == self.worst:
            r -= 1
            while r not in lv:
                r -= 1
            self.worst = r

    def clear(self) -> None:
        for r, units in self.levels.items():
            self.orig.setdefault(r, units)
        self.levels.clear()

    def collect(self) -> tuple[list[Level], dict[int, int]]:
        """Changed levels since the last collect as (price ticks, new size; 0 = deleted),
        best first, and the undo map {rank: previous size}."""
        lv, s = self.levels, self.sign
        changed = sorted((r, lv.get(r, 0)) for r, old in self.orig.items() if lv.get(r, 0) != old)
        undo = {r: self.orig[r] for r, _ in changed}
        self.orig = {}
        return [(r * s, u) for r, u in changed], undo

    def ranks(self, n: int) -> list[int]:
        """The best ``n`` ranks in order."""
        lv = self.levels
        if not lv:
            return []
        if self.worst - self.best > 4 * len(lv) + 64:  # sparse (hand-set) book
            return sorted(lv)[:n]
        out: list[int] = []
        r, worst = self.best, self.worst
        while r <= worst and len(out) < n:
            if r in lv:
                out.append(r)
            r += 1
        return out

    def top(self, n: int) -> list[Level]:
        lv, s = self.levels, self.sign
        return [(r * s, lv[r]) for r in self.ranks(n)]


@dataclass(frozen=True)
class BookShape:
    """How a generated book looks and how busy it is."""

    depth: int = 400  # levels per side
    fill: float = 0.9  # probability that a grid price inside the book has a level
    wide_p: float = 0.15  # chance per tick and side that the spread widens by one tick
    edits_max: int = 4  # random size changes/inserts/deletes per side per tick: 0..edits_max
    edit_offset: float = 8.0  # mean distance (in ticks) of an edit from the best price
    delete_p: float = 0.25  # share of edits on an existing level that delete it
    notional_median: float = 1500.0  # level size, in USD
    notional_sigma: float = 1.2


class SimBook:
    """Both sides of one (venue, symbol) book. ``step(mid)`` regenerates it around the mid
    (top of book pinned to the mid, random size edits, far end kept at ``depth`` levels);
    ``set_levels`` replaces it; ``collect()`` returns the diff since the last collect."""

    __slots__ = ("_base", "_mult", "asks", "bids", "lot", "price", "quote_usd", "regular", "rng", "shape")

    def __init__(self, price: Grid, lot: Grid, rng: random.Random, shape: BookShape | None = None,
                 quote_usd: float = 1.0) -> None:
        self.price = price
        self.quote_usd = quote_usd  # value of one unit of the quote currency, to size levels
        self.lot = lot
        self.rng = rng
        self.shape = shape or BookShape()
        self.bids = Side(-1)
        self.asks = Side(1)
        self.regular = False  # False after set_levels: the next step rebuilds around the mid
        # Level sizes: a lognormal notional, drawn from a fixed table of quantiles for speed.
        sh = self.shape
        self._mult = sorted(sh.notional_median / quote_usd * math.exp(rng.gauss(0.0, sh.notional_sigma))
                            for _ in range(256))
        self._base = lot.value(1)

    def step(self, mid: float) -> None:
        rng, shape = self.rng, self.shape
        m = mid / self.price.value(1)
        base = max(1, math.floor(m - 0.5))
        bb = max(1, base - (1 if rng.random() < shape.wide_p else 0))
        ba = base + 1 + (1 if rng.random() < shape.wide_p else 0)
        self._shift(self.bids, -bb, mid)
        self._shift(self.asks, ba, mid)
        for side in (self.bids, self.asks):
            self._edit(side, mid)
            self._fit(side, mid)
        self.regular = True

    def set_levels(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Replace the book with exact levels (price ticks, size lots); zero sizes are skipped."""
        for side, rows in ((self.bids, bids), (self.asks, asks)):
            side.clear()
            for ticks, units in rows:
                if ticks <= 0 or units < 0:
                    raise ValueError("prices must be positive and sizes non-negative")
                if units:
                    side.put(ticks * side.sign, units)
        self.regular = False

    def collect(self) -> tuple[list[Level], list[Level], dict[int, int], dict[int, int]]:
        """(bid changes, ask changes, bid undo, ask undo) since the last collect."""
        bch, bundo = self.bids.collect()
        ach, aundo = self.asks.collect()
        return bch, ach, bundo, aundo

    def _size(self, px: float) -> int:
        """A level size in lots: a random notional at price ``px``, rounded to 3 significant digits."""
        units = int(self._mult[int(self.rng.random() * 256)] / (px * self._base))
        if units >= 1000:
            q: int = 10 ** (int(math.log10(units)) - 2)
            return units // q * q
        return max(1, units)

    def _shift(self, side: Side, rb: int, px: float) -> None:
        """Move the side's best level to rank ``rb``, dropping levels that would cross."""
        lv = side.levels
        if not self.regular or not lv or abs(rb - side.best) > 2 * self.shape.depth:
            side.clear()
            side.put(rb, self._size(px))
            return
        while lv and side.best < rb:
            side.remove(side.best)
        if not lv:
            side.put(rb, self._size(px))
        elif side.best > rb:
            rng, fill = self.rng, self.shape.fill
            for r in range(rb + 1, side.best):
                if rng.random() < fill:
                    side.put(r, self._size(px))
            side.put(rb, self._size(px))

    def _edit(self, side: Side, px: float) -> None:
        rng, shape, lv = self.rng, self.shape, side.levels
        for _ in range(rng.randint(0, shape.edits_max)):
            r = side.best + int(rng.expovariate(1.0 / shape.edit_offset))
            if r > side.worst:
                continue
            if r in lv and r != side.best and rng.random() < shape.delete_p:
                side.remove(r)
            else:
                side.put(r, self._size(px))

    def _fit(self, side: Side, px: float) -> None:
        """Trim or extend the far end to exactly ``depth`` levels (bids stop above price 0)."""
        lv, depth, rng, fill = side.levels, self.shape.depth, self.rng, self.shape.fill
        while len(lv) > depth:
            side.remove(side.worst)
        limit = -1 if side.sign < 0 else 1 << 62
        while len(lv) < depth:
            r = side.worst + 1
            while r <= limit and rng.random() > fill:
                r += 1
            if r > limit:
                break
            side.put(r, self._size(px))
