"""Cross-quote pairs (``detector.quote_groups``): buy ``BASE/QA`` on one venue, sell ``BASE/QB`` on
another, and bring the sale proceeds back to ``QA`` through a live stable-pair book.

The rule: the proceeds (``QB``, after the sell fee) are converted on the **sell venue**, at market
(taker), on its own stable-pair book, so the trade sequence is buy BASE with QA on A → move BASE to B
→ sell BASE for QB on B → convert QB to QA on B. Profit is then in ``QA``, the buy symbol's quote.
The stable book is ``QB/QA`` (sell QB into its bids) or else ``QA/QB`` (buy QA at its asks with QB);
:func:`convert` walks its levels for the exact amount and charges that venue's taker fee on what it
receives. Not enough depth for the whole amount is no conversion (None).

The size of the base leg comes from :func:`scanner.detect.spread.walk` on the sell bids scaled by the
conversion's best-level rate (:func:`top_rate`, fee included); the whole proceeds of that size are
then converted exactly through the levels, so the reported figures are exact for that size (deeper
conversion levels can only lower them; the detector re-checks the thresholds on the exact result).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from scanner.book.l2 import Pair

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Conversion:
    """``amount_in`` of ``from_code`` converted to ``amount_out`` of ``to_code`` (after the fee)."""

    symbol: str  # the stable-pair book used, e.g. "USDC/USDT"
    side: str  # "sell": from_code is the book's base, sold into bids; "buy": to_code is the base, bought at asks
    amount_in: Decimal
    gross_out: Decimal  # before the fee
    amount_out: Decimal  # gross_out * (1 - fee)
    fee: Decimal  # the taker rate applied
    levels: int

    @property
    def rate(self) -> Decimal:
        """``to_code`` received per ``from_code`` spent, fee included."""
        return self.amount_out / self.amount_in

    @property
    def vwap(self) -> Decimal:
        """The book's average price (quote per base) of the conversion, before the fee."""
        return self.gross_out / self.amount_in if self.side == "sell" else self.amount_in / self.gross_out


def book_symbols(from_code: str, to_code: str) -> tuple[str, str]:
    """The stable-pair symbols that can convert ``from_code`` into ``to_code``, in order of preference."""
    return f"{from_code}/{to_code}", f"{to_code}/{from_code}"


def side_of(symbol: str, from_code: str) -> str:
    """``sell`` when ``from_code`` is the book's base (sold into bids), else ``buy`` (base bought at asks)."""
    return "sell" if symbol.partition("/")[0] == from_code else "buy"


def top_rate(symbol: str, from_code: str, bids: list[Pair], asks: list[Pair], fee: Decimal) -> Decimal | None:
    """``to_code`` per ``from_code`` at the best level, after the fee; None on an empty side."""
    if side_of(symbol, from_code) == "sell":
        return Decimal(bids[0][0]) * (1 - fee) if bids else None
    return (1 - fee) / Decimal(asks[0][0]) if asks else None


def convert(amount: Decimal, symbol: str, from_code: str, bids: list[Pair], asks: list[Pair],
            fee: Decimal) -> Conversion | None:
    """Convert ``amount`` of ``from_code`` through ``symbol``'s book, best level first; None when the
    book cannot take the whole amount (or ``amount`` is not positive)."""
    if amount <= 0:
        return None
    side = side_of(symbol, from_code)
    left, out, used = amount, ZERO, 0
    if side == "sell":  # from_code is the base: sell it into the bids, receive price * qty
        for px, qty in bids:
            if left <= 0:
                break
            p, q = Decimal(px), Decimal(qty)
            take = min(left, q)
            out += p * take
            left -= take
            used += 1
    else:  # to_code is the base: spend from_code at the asks, receive spent / price
        for px, qty in asks:
            if left <= 0:
                break
            p, q = Decimal(px), Decimal(qty)
            spend = min(left, p * q)
            out += spend / p
            left -= spend
            used += 1
    if left > 0:
        return None
    return Conversion(symbol, side, amount, out, out * (1 - fee), fee, used)


def sell_proceeds(bids: list[Pair], size: Decimal) -> Decimal:
    """Quote received selling ``size`` into ``bids`` best first, before fees (the walk checked the depth)."""
    left, out = size, ZERO
    for px, qty in bids:
        if left <= 0:
            break
        take = min(left, Decimal(qty))
        out += Decimal(px) * take
        left -= take
    return out
