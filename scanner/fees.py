"""Default regular-tier spot taker/maker fees per venue, with the page each figure comes from.

Fractions, not percent: 0.001 = 0.10 %. Config overrides these per venue (``taker_fee``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class FeeSchedule:
    taker: Decimal
    maker: Decimal
    source: str
    note: str = ""


DEFAULT_FEES: dict[str, FeeSchedule] = {
    "okx": FeeSchedule(Decimal("0.001"), Decimal("0.0008"), "https://www.okx.com/fees",
                       "spot Lv1 (regular user, OKB < 500)"),
    "binance": FeeSchedule(Decimal("0.001"), Decimal("0.001"), "https://www.binance.com/en/fee/schedule",
                           "spot regular user (VIP 0), no BNB discount"),
}
