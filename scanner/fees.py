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
    "bybit": FeeSchedule(Decimal("0.001"), Decimal("0.001"),
                         "https://www.bybit.com/en/help-center/article/Trading-Fee-Structure", "spot non-VIP"),
    "coinbase": FeeSchedule(Decimal("0.012"), Decimal("0.006"),
                            "https://help.coinbase.com/en/coinbase/trading-and-funding/advanced-trade/advanced-trade-fees",
                            "Advanced 1 ($0-1K 30-day volume); figures via ccxt metadata, page not readable here"),
    "kraken": FeeSchedule(Decimal("0.004"), Decimal("0.0025"), "https://www.kraken.com/features/fee-schedule",
                          "Kraken Pro spot $0-10K (2026); older pages show 0.26 %/0.16 %"),
    "gate": FeeSchedule(Decimal("0.0009"), Decimal("0.0009"), "https://www.gate.com/fee",
                        "VIP0 from the 2026-03-25 fee announcement (regional copies show 0.1 %)"),
    "kucoin": FeeSchedule(Decimal("0.001"), Decimal("0.001"), "https://www.kucoin.com/vip/privilege/fee",
                          "LV0, class A coins; class B 0.2 %, class C 0.3 % (override per symbol)"),
    "bitget": FeeSchedule(Decimal("0.001"), Decimal("0.001"), "https://www.bitget.com/fee",
                          "non-VIP spot, no BGB discount"),
    "htx": FeeSchedule(Decimal("0.002"), Decimal("0.002"), "https://www.htx.com/fee",
                       "VIP0 (secondary sources; official page not read here)"),
    "mexc": FeeSchedule(Decimal("0.0005"), Decimal("0"), "https://www.mexc.com/fee",
                        "standard spot (some pairs are zero-fee)"),
    "hyperliquid": FeeSchedule(Decimal("0.0007"), Decimal("0.0004"),
                               "https://hyperliquid.gitbook.io/hyperliquid-docs/trading/fees", "spot base tier"),
}

# Taker fee assumed for ccxt.pro long-tail venues (``ccxtpro:<id>``) unless config sets one:
# the most common regular-tier spot taker rate. ccxt's own market metadata is often stale.
CCXT_DEFAULT_TAKER = Decimal("0.002")
