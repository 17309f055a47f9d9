"""Default regular-tier spot taker/maker fees per venue, with the page each figure comes from.

Fractions, not percent: 0.001 = 0.10 %. Config overrides these per venue (``taker_fee``,
``fees.maker``) and per symbol (``fees.symbols``); ``fees: auto`` replaces them with the account's
own rates (scanner/fee_auto.py). :class:`FeeModel` answers (venue, symbol) → taker/maker and says
whether the buy leg's fee is charged in the base asset (scanner/detect/spread.py models both).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from scanner.credentials import ApiCredentials


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

FEE_CURRENCIES = ("quote", "base")


@dataclass(frozen=True)
class VenueFees:
    """One venue's configured fee schedule: taker/maker for every symbol, per-symbol overrides
    (``{"ZEC/USDT": (taker, maker)}``), and the asset the buy leg's fee is charged in: ``quote``
    (fee added to the cost) or ``base`` (fee taken from the coins received, so less is sold)."""

    taker: Decimal
    maker: Decimal
    fee_currency: str = "quote"
    symbols: Mapping[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    source: str = "default"  # "default" or "config": where the venue-wide figures come from


@dataclass(frozen=True)
class Rates:
    taker: Decimal
    maker: Decimal
    source: str  # "default" | "config" | "config symbol" | "account" (fees: auto)


@dataclass(frozen=True)
class PairFees:
    """What the detector needs for one (symbol, buy venue, sell venue): exact and float rates."""

    buy: Decimal
    sell: Decimal
    buy_f: float
    sell_f: float
    buy_fee_in_base: bool


class FeeModel:
    """(venue, symbol) → taker/maker rates. Precedence, lowest first: :data:`DEFAULT_FEES`, the
    venue's config (``venues.<v>.taker_fee`` / ``fees.maker``), the config's per-symbol overrides,
    then the account's real rates when ``fees: auto`` fetched them (:meth:`set_account`)."""

    def __init__(self, venues: Mapping[str, VenueFees]) -> None:
        self._venues = dict(venues)
        self._account: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
        self._pairs: dict[tuple[str, str, str], PairFees] = {}
        self.version = 0  # +1 whenever rates change: callers caching PairFees rebuild

    @classmethod
    def flat(cls, takers: Mapping[str, Decimal]) -> FeeModel:
        """One taker rate per venue (maker = taker), fee in quote: the detector's plain form."""
        return cls({v: VenueFees(t, t) for v, t in takers.items()})

    def __contains__(self, venue: object) -> bool:
        return venue in self._venues

    def venues(self) -> list[str]:
        return list(self._venues)

    def venue(self, venue: str) -> VenueFees:
        return self._venues[venue]

    def rates(self, venue: str, symbol: str) -> Rates:
        acct = self._account.get((venue, symbol))
        if acct is not None:
            return Rates(acct[0], acct[1], "account")
        vf = self._venues[venue]
        sym = vf.symbols.get(symbol)
        if sym is not None:
            return Rates(sym[0], sym[1], "config symbol")
        return Rates(vf.taker, vf.maker, vf.source)

    def taker(self, venue: str, symbol: str) -> Decimal:
        return self.rates(venue, symbol).taker

    def maker(self, venue: str, symbol: str) -> Decimal:
        return self.rates(venue, symbol).maker

    def buy_fee_in_base(self, venue: str) -> bool:
        return self._venues[venue].fee_currency == "base"

    def pair(self, symbol: str, buy: str, sell: str) -> PairFees:
        """Cached rates for buying on ``buy`` and selling on ``sell`` (the detector's hot path)."""
        key = (symbol, buy, sell)
        p = self._pairs.get(key)
        if p is None:
            b, s = self.taker(buy, symbol), self.taker(sell, symbol)
            p = self._pairs[key] = PairFees(b, s, float(b), float(s), self.buy_fee_in_base(buy))
        return p

    def set_account(self, venue: str, rates: Mapping[str, tuple[Decimal, Decimal]]) -> None:
        """Install the account's fetched (taker, maker) per symbol for ``venue``."""
        if venue not in self._venues:
            raise KeyError(venue)
        for symbol, tm in rates.items():
            self._account[(venue, symbol)] = tm
        self._pairs.clear()
        self.version += 1


FEE_MODES = ("static", "auto")


@dataclass(frozen=True)
class FeeSettings:
    """The ``fees`` section plus each venue's ``fees`` block (scanner/config_fees.py parses them).
    ``credentials`` holds the optional read-only API keys per venue (values hidden in repr)."""

    mode: str = "static"  # "auto": fetch the account's rates through ccxt at start-up
    timeout_s: float = 10.0  # per venue, for the fee and permission requests
    allow_withdraw_keys: bool = False  # start even though a key may withdraw (refused otherwise)
    venues: Mapping[str, VenueFees] = field(default_factory=dict)
    credentials: Mapping[str, ApiCredentials] = field(default_factory=dict)

    def model(self) -> FeeModel:
        return FeeModel(self.venues)
