"""Pure spread math: walk one venue's asks against another's bids, after taker fees.

Buying on A at its asks and selling on B at its bids, each unit taken costs
``ask * (1 + fee_A)`` and yields ``bid * (1 - fee_B)``. The walk takes levels while the
*marginal* unit's net edge, ``(yield - cost) / cost``, stays at or above ``min_net_bps``,
so the size it returns is the largest that stays profitable at the threshold. All money
arithmetic is Decimal on the venues' exact strings; floats only pre-screen pairs.

Fee currency (``buy_fee_in_base``): most spot venues take the buy fee from the coins received.
Then each unit bought costs ``ask`` (no quote fee) and only ``1 - fee_A`` of it reaches B, where it
yields ``bid * (1 - fee_B)``: the walk sells ``size * (1 - fee_A)`` (``sell_size``) into B's bids and
profit is ``sell proceeds * (1 - fee_B) - cost``. With the fee in quote, ``sell_size == size``.

Compiled walk (``_walk.c``): with the fee in quote, :func:`walk` first runs the same loop in exact
scaled integers. It returns the very Decimals the loop below would (a test holds the two equal on
random books), or hands over to it wherever it cannot show that: a cap that binds (the Python walk
divides), numbers beyond Decimal's 28 digits, strings that are not plain decimals, a fee taken in
the base asset. Without a C compiler the Decimal loop does all of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from types import NotImplementedType

from scanner.book.l2 import Pair
from scanner.compiled import compiled

WalkQuote = Callable[[Sequence[Sequence[str]], Sequence[Sequence[str]], str, str, str, str | None],
                     tuple[Decimal, Decimal, Decimal, int, int] | NotImplementedType | None]


_walk_c = compiled("scanner.detect._walk")
compiled_walk: WalkQuote | None = None if _walk_c is None else _walk_c.walk_quote  # tests switch it off

BPS = Decimal(10_000)
ZERO = Decimal(0)


@dataclass(slots=True)
class Fill:
    """One walk's result; a value, never changed once made (not ``frozen``: its ``__init__`` is 4x
    cheaper without, and one is made per walk)."""

    size: Decimal  # base quantity
    cost: Decimal  # sum(ask * qty), before fees
    proceeds: Decimal  # sum(bid * qty), before fees
    net_cost: Decimal  # cost * (1 + buy_fee)
    net_proceeds: Decimal  # proceeds * (1 - sell_fee)
    levels_buy: int
    levels_sell: int
    sell_size: Decimal | None = None  # base sold on B; None: equal to size (buy fee paid in quote)
    buy_fee: Decimal = ZERO  # the taker rates the walk applied
    sell_fee: Decimal = ZERO
    buy_fee_in_base: bool = False

    @property
    def net_size(self) -> Decimal:
        """Base quantity that reaches the sell venue after a buy fee taken in the base asset."""
        return self.size if self.sell_size is None else self.sell_size

    @property
    def buy_vwap(self) -> Decimal:
        return self.cost / self.size

    @property
    def sell_vwap(self) -> Decimal:
        return self.proceeds / self.net_size

    @property
    def gross_bps(self) -> Decimal:
        """Sell VWAP over buy VWAP, before fees (= (proceeds - cost) / cost when sizes match)."""
        if self.sell_size is None:
            return (self.proceeds - self.cost) / self.cost * BPS
        return (self.sell_vwap - self.buy_vwap) / self.buy_vwap * BPS

    @property
    def net_bps(self) -> Decimal:
        return (self.net_proceeds - self.net_cost) / self.net_cost * BPS

    @property
    def profit(self) -> Decimal:
        return self.net_proceeds - self.net_cost


DecLevels = list[tuple[Decimal, Decimal]]  # levels parsed to Decimal, best first (a prefix of a side)


def walk(asks: list[Pair], bids: list[Pair], buy_fee: Decimal, sell_fee: Decimal, min_net_bps: Decimal,
         max_notional: Decimal | None = None, buy_fee_in_base: bool = False, ask_cache: DecLevels | None = None,
         bid_cache: DecLevels | None = None) -> Fill | None:
    """Largest fill buying ``asks`` (best first) and selling into ``bids`` (best first) whose
    marginal net edge stays >= ``min_net_bps``; None if not even the first unit qualifies.
    ``max_notional`` caps the quote spent before fees. ``buy_fee_in_base``: the buy fee is taken
    from the coins received (see the module docstring); bid quantities then bound the net size.
    ``ask_cache``/``bid_cache``: the levels already parsed to Decimal (a prefix, e.g. ``BookView.dec_asks``),
    extended here as far as the walk reads, so a book walked again is not parsed again (Decimal of
    the exact string: the same figures either way). The compiled walk reads the strings and leaves them."""
    if buy_fee_in_base:
        return _walk_base(asks, bids, buy_fee, sell_fee, min_net_bps, max_notional, ask_cache, bid_cache)
    if compiled_walk is not None:
        up, down, up_s, down_s, thr_s, cap_s = _factors(buy_fee, sell_fee, min_net_bps, max_notional)
        got = compiled_walk(asks, bids, up_s, down_s, thr_s, cap_s)
        if got is None:
            return None
        if got is not NotImplemented:
            size, cost, proceeds, used_a, used_b = got
            return Fill(size, cost, proceeds, cost * up, proceeds * down, used_a, used_b, None, buy_fee, sell_fee)
    up, down, thr = 1 + buy_fee, 1 - sell_fee, min_net_bps / BPS
    ca = [] if ask_cache is None else ask_cache
    cb = [] if bid_cache is None else bid_cache
    size = cost = proceeds = ZERO
    i = j = 0
    qa = qb = ZERO
    a = b = ZERO
    n_ask, n_bid = len(asks), len(bids)
    used_a = used_b = 0
    while True:
        if qa == 0:
            if i >= n_ask:
                break
            if i < len(ca):
                a, qa = ca[i]
            else:
                a, qa = Decimal(asks[i][0]), Decimal(asks[i][1])
                ca.append((a, qa))
            i += 1
            continue
        if qb == 0:
            if j >= n_bid:
                break
            if j < len(cb):
                b, qb = cb[j]
            else:
                b, qb = Decimal(bids[j][0]), Decimal(bids[j][1])
                cb.append((b, qb))
            j += 1
            continue
        unit_cost = a * up
        if b * down - unit_cost < unit_cost * thr:
            break
        q = qb if qb < qa else qa  # min(qa, qb)
        if max_notional is not None:
            room = (max_notional - cost) / a
            if room <= 0:
                break
            if room < q:
                q = room
        size += q
        cost += a * q
        proceeds += b * q
        qa -= q
        qb -= q
        used_a, used_b = i, j
    if size == 0:
        return None
    return Fill(size, cost, proceeds, cost * up, proceeds * down, used_a, used_b, None, buy_fee, sell_fee)


@lru_cache(maxsize=1024)
def _factors(buy_fee: Decimal, sell_fee: Decimal, min_net_bps: Decimal,
             max_notional: Decimal | None) -> tuple[Decimal, Decimal, str, str, str, str | None]:
    """``up`` and ``down`` as :func:`walk` computes them, then the compiled walk's ``up``, ``down``, ``thr``
    and ``cap`` arguments: the str() of those Decimals (computed once per set of fees, not per walk)."""
    up, down = 1 + buy_fee, 1 - sell_fee
    return up, down, str(up), str(down), str(min_net_bps / BPS), None if max_notional is None else str(max_notional)


def _walk_base(asks: list[Pair], bids: list[Pair], buy_fee: Decimal, sell_fee: Decimal, min_net_bps: Decimal,
               max_notional: Decimal | None, ask_cache: DecLevels | None, bid_cache: DecLevels | None) -> Fill | None:
    """The walk with the buy fee charged in the base asset. ``qa`` counts base still offered at the
    current ask (bought units), ``qb`` base still wanted at the current bid (sold units); a bought
    unit delivers ``keep = 1 - buy_fee`` sold units. Exact unless a bid level binds, where
    ``qb / keep`` is Decimal division at the context's 28 digits."""
    keep, down, thr = 1 - buy_fee, 1 - sell_fee, min_net_bps / BPS
    if keep <= 0:
        return None
    ca = [] if ask_cache is None else ask_cache
    cb = [] if bid_cache is None else bid_cache
    size = sold = cost = proceeds = ZERO
    i = j = used_a = used_b = 0
    qa = qb = a = b = ZERO
    while True:
        if qa == 0:
            if i >= len(asks):
                break
            if i < len(ca):
                a, qa = ca[i]
            else:
                a, qa = Decimal(asks[i][0]), Decimal(asks[i][1])
                ca.append((a, qa))
            i += 1
            continue
        if qb == 0:
            if j >= len(bids):
                break
            if j < len(cb):
                b, qb = cb[j]
            else:
                b, qb = Decimal(bids[j][0]), Decimal(bids[j][1])
                cb.append((b, qb))
            j += 1
            continue
        if b * keep * down - a < a * thr:  # marginal bought unit: costs a, yields b*keep*down
            break
        if qa * keep <= qb:
            q, s = qa, qa * keep
        else:
            q, s = qb / keep, qb
        if max_notional is not None:
            room = (max_notional - cost) / a
            if room <= 0:
                break
            if room < q:
                q, s = room, room * keep
        size += q
        sold += s
        cost += a * q
        proceeds += b * s
        qa = max(ZERO, qa - q)
        qb = max(ZERO, qb - s)
        used_a, used_b = i, j
    if size == 0:
        return None
    return Fill(size, cost, proceeds, cost, proceeds * down, used_a, used_b, sold, buy_fee, sell_fee, True)


def top_spread_bps(best_ask: float, best_bid: float, buy_fee: float, sell_fee: float,
                   buy_fee_in_base: bool = False) -> tuple[float, float]:
    """Gross and net spread at the top of book, in bps of the buy price (for gauges)."""
    gross = (best_bid - best_ask) / best_ask * 1e4
    if buy_fee_in_base:
        return gross, (best_bid * (1 - buy_fee) * (1 - sell_fee) - best_ask) / best_ask * 1e4
    cost = best_ask * (1 + buy_fee)
    net = (best_bid * (1 - sell_fee) - cost) / cost * 1e4
    return gross, net


def fmt(d: Decimal, places: int) -> str:
    """Round half-even to ``places`` decimals and drop trailing zeros ("1.50" → "1.5"). One ``format``
    call (the context's rounding, as ``quantize`` would use) and string trims: this runs ~10 times per event."""
    s = format(d, f".{places}f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s == "-0" else s
