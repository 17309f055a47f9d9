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
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from math import log as _log

Level = tuple[int, int]  # (price in ticks, size in lots)
_ROUND = [0, 0, 0, 0, *(10 ** (k - 3) for k in range(4, 16))]  # digits -> step keeping 3 significant digits
_NO_RANK = -(1 << 80)  # below every rank: the bound of an empty view
_ROUND_MAX = 10**12  # below this int(log10(units)) == digits - 1 exactly


class Grid:
    """Exact conversion between integer multiples of a step ("0.1", "0.00001000") and text."""

    __slots__ = ("_canon", "_dec", "_fixed", "_mant", "_pow", "step", "text")
    CACHE = 50_000  # formatted values kept per grid (prices near the mid recur constantly)
    _shared: dict[str, Grid] = {}

    @classmethod
    def shared(cls, step: str) -> Grid:
        """One Grid per step text, so that books on the same grid share its text caches."""
        g = cls._shared.get(step)
        if g is None:
            g = cls._shared[step] = cls(step)
        return g

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
        self._fixed: dict[int, dict[int, str]] = {}  # places -> {n: text}

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
        cache = self._fixed.get(places)
        if cache is None:
            cache = self._fixed[places] = {}
        text = cache.get(n)
        if text is None:
            if len(cache) >= self.CACHE:
                cache.clear()
            text = cache[n] = self._fixed_text(n, places)
        return text

    def fixed_cache(self, places: int) -> dict[int, str]:
        """The {n: text} cache :meth:`fixed` keeps for ``places`` (cleared in place when full)."""
        cache = self._fixed.get(places)
        if cache is None:
            cache = self._fixed[places] = {}
        return cache

    def _fixed_text(self, n: int, places: int) -> str:
        if self._dec > places:
            raise ValueError(f"step {self.text} needs more than {places} decimals")
        v = n * self._mant * 10 ** (places - self._dec)
        q, r = divmod(v, 10**places)
        return f"{q}.{r:0{places}d}"

    def value(self, n: int) -> float:
        return n * self._mant / self._pow


def canonical_rows(price: Grid, lot: Grid, levels: Iterable[Level]) -> list[list[str]]:
    """``[[price.canonical(p), lot.canonical(q)], ...]``, reading the grids' caches inline."""
    pc, qc, pt, qt = price._canon.get, lot._canon.get, price.canonical, lot.canonical
    return [[pc(p) or pt(p), qc(q) or qt(q)] for p, q in levels]


def fixed_rows(price: Grid, lot: Grid, levels: Iterable[Level], pp: int = 8, qp: int = 8) -> list[list[str]]:
    """``[[price.fixed(p, pp), lot.fixed(q, qp)], ...]``, reading the grids' caches inline."""
    pc, qc = price.fixed_cache(pp).get, lot.fixed_cache(qp).get
    pt, qt = price.fixed, lot.fixed
    return [[pc(p) or pt(p, pp), qc(q) or qt(q, qp)] for p, q in levels]


def view_update(side: Side, view: dict[int, int], n: int, changed: list[Level]) -> list[Level]:
    """Bring ``view`` ({price ticks: size}: the side's best ``n`` levels as of the previous
    ``collect``) to the side's best ``n`` levels now, in place, and return the changes (price
    ticks, size; 0 = no longer in the view), unordered. ``changed`` is what ``collect`` returned
    for this side since then. Work is proportional to the changes, not to ``n``; the view's
    dict order is not kept (sort its items to render it)."""
    keys, lv, s = side.keys, side.levels, side.sign
    new_bound = keys[n - 1] if len(keys) >= n else keys[-1] if keys else _NO_RANK
    old_bound = (max(view) if s > 0 else -min(view)) if view else _NO_RANK
    lo = min(old_bound, new_bound)
    out: list[Level] = []
    for p, q in changed:  # inside both views: sizes changed, levels added or deleted
        if p * s <= lo:
            if q:
                out.append((p, q))
                view[p] = q
            elif p in view:
                out.append((p, 0))
                del view[p]
    if new_bound > old_bound:  # levels that moved up into the view
        for r in keys[bisect_right(keys, old_bound):bisect_right(keys, new_bound)]:
            p, q = r * s, lv[r]
            out.append((p, q))
            view[p] = q
    elif new_bound < old_bound:  # levels pushed out of the view (or deleted beyond the new bound)
        for p in [p for p in view if p * s > new_bound]:
            out.append((p, 0))
            del view[p]
    return out


class Side:
    """Levels keyed by rank (best = smallest): rank = price ticks for asks, -ticks for bids.

    ``keys`` holds the ranks in order (kept sorted on insert/delete with bisect), so the best
    ``n`` levels are a slice rather than a walk over the grid."""

    __slots__ = ("keys", "levels", "orig", "sign")

    def __init__(self, sign: int) -> None:
        self.sign = sign  # -1 bids, +1 asks; price ticks = rank * sign
        self.levels: dict[int, int] = {}
        self.keys: list[int] = []  # the ranks of ``levels``, ascending
        self.orig: dict[int, int] = {}  # rank -> size before this round of changes (0 = absent)

    @property
    def best(self) -> int:
        return self.keys[0] if self.keys else 0

    @property
    def worst(self) -> int:
        return self.keys[-1] if self.keys else 0

    def put(self, r: int, units: int) -> None:
        lv = self.levels
        old = lv.get(r)
        orig = self.orig
        if r not in orig:
            orig[r] = old or 0
        if old is None:
            keys = self.keys
            if not keys or r > keys[-1]:
                keys.append(r)
            else:
                insort(keys, r)
        lv[r] = units

    def remove(self, r: int) -> None:
        units = self.levels.pop(r, None)
        if units is None:
            return
        if r not in self.orig:
            self.orig[r] = units
        keys = self.keys
        if keys[-1] == r:
            keys.pop()
        else:
            del keys[bisect_left(keys, r)]

    def clear(self) -> None:
        for r, units in self.levels.items():
            self.orig.setdefault(r, units)
        self.levels.clear()
        self.keys.clear()

    def collect(self) -> tuple[list[Level], dict[int, int]]:
        """Changed levels since the last collect as (price ticks, new size; 0 = deleted),
        best first, and the undo map {rank: previous size}."""
        orig = self.orig
        if not orig:
            return [], {}
        get = self.levels.get
        self.orig = {}
        changed = [r for r, old in orig.items() if get(r, 0) != old]
        changed.sort()
        undo = {r: orig[r] for r in changed}
        if self.sign > 0:
            return [(r, get(r, 0)) for r in changed], undo
        return [(-r, get(r, 0)) for r in changed], undo

    def ranks(self, n: int) -> list[int]:
        """The best ``n`` ranks in order."""
        return self.keys[:n]

    def top(self, n: int) -> list[Level]:
        lv, s = self.levels, self.sign
        return [(r * s, lv[r]) for r in self.keys[:n]]

    def top_map(self, n: int) -> dict[int, int]:
        """The best ``n`` levels as {price ticks: size lots}, best first."""
        lv = self.levels
        if self.sign > 0:
            return {r: lv[r] for r in self.keys[:n]}
        return {-r: lv[r] for r in self.keys[:n]}


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
            q: int = _ROUND[len(str(units))] if units < _ROUND_MAX else 10 ** (int(math.log10(units)) - 2)
            return units // q * q
        return units if units > 1 else 1

    def _shift(self, side: Side, rb: int, px: float) -> None:
        """Move the side's best level to rank ``rb``, dropping levels that would cross."""
        lv = side.levels
        if not self.regular or not lv or abs(rb - side.best) > 2 * self.shape.depth:
            side.clear()
            side.put(rb, self._size(px))
            return
        keys, orig = side.keys, side.orig
        if keys[0] < rb:  # drop the levels that would cross (inline Side.remove, from the front)
            i = bisect_left(keys, rb)
            for r in keys[:i]:
                units = lv.pop(r)
                if r not in orig:
                    orig[r] = units
            del keys[:i]
        if not lv:
            side.put(rb, self._size(px))
        elif keys[0] > rb:  # new levels in front of the best one (inline Side.put)
            rnd, fill, size = self.rng.random, self.shape.fill, self._size
            new = [rb]
            for r in range(rb + 1, keys[0]):
                if rnd() < fill:
                    new.append(r)
                    if r not in orig:
                        orig[r] = 0
                    lv[r] = size(px)
            if rb not in orig:
                orig[rb] = 0
            lv[rb] = size(px)
            keys[0:0] = new

    def _edit(self, side: Side, px: float) -> None:
        # rng.randint(0, edits_max) and rng.expovariate(lam) drawn as CPython's random module draws
        # them (getrandbits rejection sampling; -log(1 - random()) / lam), without their call layers.
        rng, shape, lv, keys = self.rng, self.shape, side.levels, side.keys
        rnd, bits = rng.random, rng.getrandbits
        width = shape.edits_max + 1
        k = width.bit_length()
        count = bits(k)
        while count >= width:
            count = bits(k)
        lam = 1.0 / shape.edit_offset
        for _ in range(count):
            best = keys[0]
            r = best + int(-_log(1.0 - rnd()) / lam)
            if r > keys[-1]:
                continue
            if r in lv and r != best and rnd() < shape.delete_p:
                side.remove(r)
            else:
                side.put(r, self._size(px))

    def _fit(self, side: Side, px: float) -> None:
        """Trim or extend the far end to exactly ``depth`` levels (bids stop above price 0).
        (Side.put/remove and _size inlined: this runs for every side of every book each tick.)"""
        lv, keys, orig, depth = side.levels, side.keys, side.orig, self.shape.depth
        while len(lv) > depth:
            r = keys.pop()
            units = lv.pop(r)
            if r not in orig:
                orig[r] = units
        if len(lv) >= depth:
            return
        rnd, fill, mult = self.rng.random, self.shape.fill, self._mult
        den = px * self._base
        limit = -1 if side.sign < 0 else 1 << 62
        r = keys[-1]
        while len(lv) < depth:
            r += 1
            while r <= limit and rnd() > fill:
                r += 1
            if r > limit:
                break
            units = int(mult[int(rnd() * 256)] / den)
            if units >= 1000:
                q = _ROUND[len(str(units))] if units < _ROUND_MAX else 10 ** (int(math.log10(units)) - 2)
                units = units // q * q
            elif units < 1:
                units = 1
            if r not in orig:
                orig[r] = 0
            keys.append(r)
            lv[r] = units
