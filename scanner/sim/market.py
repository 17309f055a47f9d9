"""The simulated market: one seeded mid-price walk per symbol shared by all venues, plus a
small mean-reverting per-venue deviation with occasional shocks, so that cross-venue
spreads now and then exceed ~20 bps of fees and mostly do not.

Everything is a function of the seed and the number of steps taken (never of wall time):
each (purpose, venue, symbol) draws from its own ``random.Random`` seeded with a string,
so adding a venue or symbol does not change the others' paths.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from scanner.markets import Market, shipped_markets_dir
from scanner.venues import VENUES

# Starting mid prices of the simulated symbols (unified spelling).
BASE_PRICES: dict[str, float] = {
    "BTC/USDT": 65000.0,
    "ETH/USDT": 3400.0,
    "SOL/USDT": 150.0,
    "XRP/USDT": 0.6,
    "DOGE/USDT": 0.15,
    "ADA/USDT": 0.45,
    "LTC/USDT": 80.0,
    "LINK/USDT": 15.0,
    "AVAX/USDT": 35.0,
    "DOT/USDT": 7.0,
    "TRX/USDT": 0.12,
    "BNB/USDT": 600.0,
    "HYPE/USDT": 30.0,
    "BCH/USDT": 400.0,
    "LEO/USDT": 9.0,
    "ZEC/USDT": 45.0,
    "ETH/BTC": 0.052,
}
# Quotes priced like USDT (a USDC or USD book starts where the USDT book does).
for _sym, _px in list(BASE_PRICES.items()):
    if _sym.endswith("/USDT"):
        _base = _sym[: -len("/USDT")]
        BASE_PRICES.setdefault(f"{_base}/USDC", _px)
        BASE_PRICES.setdefault(f"{_base}/USD", _px)
BASE_PRICES.setdefault("USDT/USDC", 1.0)
BASE_PRICES.setdefault("USDT/USD", 1.0)
# Hyperliquid's Unit-bridged spot tokens trade at their underlying's price.
for _wrapped, _base in (("UBTC", "BTC"), ("UETH", "ETH"), ("USOL", "SOL")):
    BASE_PRICES.setdefault(f"{_wrapped}/USDC", BASE_PRICES[f"{_base}/USDT"])
BASE_PRICES.setdefault("USDC/USDT", 1.0)

log = logging.getLogger(__name__)

MARKETS_DIR = shipped_markets_dir()


def rng_for(seed: int, *parts: str) -> random.Random:
    """An independent, reproducible random stream for one purpose (string seeds hash stably)."""
    return random.Random("/".join((str(seed), *parts)))


@dataclass(frozen=True)
class WalkParams:
    """Shape of the walk. Volatilities are in basis points."""

    vol_bps: float = 0.8  # shared mid: standard deviation per sqrt(second)
    dev_bps: float = 2.0  # per-venue deviation: stationary standard deviation
    dev_tau_s: float = 20.0  # mean-reversion time of the deviation (and of shocks)
    shock_per_s: float = 1.0 / 150.0  # rate of deviation shocks per (venue, symbol)
    shock_min_bps: float = 12.0
    shock_max_bps: float = 40.0


class MarketWalk:
    """Shared mid per symbol and per-venue deviations; ``step()`` advances one tick."""

    def __init__(
        self,
        symbols: Sequence[str],
        venues: Sequence[str],
        seed: int = 1,
        tick_ms: int = 100,
        params: WalkParams | None = None,
        prices: Mapping[str, float] | None = None,
    ) -> None:
        """``prices`` adds or overrides starting mids (default :data:`BASE_PRICES`; a symbol
        in neither starts at 1.0, with a warning)."""
        self.params = p = params or WalkParams()
        start = {**BASE_PRICES, **(prices or {})}
        missing = [s for s in symbols if s not in start]
        if missing:
            log.warning("no starting price for %s: using 1.0 (pass prices=...)", ", ".join(missing))
        self.seed = seed
        self.frozen = False
        self.steps = 0
        dt = max(tick_ms, 1) / 1000.0
        self._vol = p.vol_bps * 1e-4 * math.sqrt(dt)
        self._decay = math.exp(-dt / p.dev_tau_s)
        self._innov = p.dev_bps * 1e-4 * math.sqrt(1.0 - self._decay**2)
        self._shock_p = p.shock_per_s * dt
        self.mid: dict[str, float] = {}
        self._mid_rng: dict[str, random.Random] = {}
        for s in symbols:
            self.mid[s] = start.get(s, 1.0)
            self._mid_rng[s] = rng_for(seed, "mid", s)
        self.dev: dict[tuple[str, str], float] = {}
        self._dev_rng: dict[tuple[str, str], random.Random] = {}
        for v in venues:
            for s in symbols:
                r = rng_for(seed, "dev", v, s)
                self._dev_rng[v, s] = r
                self.dev[v, s] = r.gauss(0.0, p.dev_bps * 1e-4)

    def step(self) -> None:
        """Advance one tick (no-op while frozen)."""
        if self.frozen:
            return
        self.steps += 1
        vol, decay, innov, shock_p, p = self._vol, self._decay, self._innov, self._shock_p, self.params
        for s, r in self._mid_rng.items():
            self.mid[s] *= math.exp(vol * r.gauss(0.0, 1.0))
        for key, r in self._dev_rng.items():
            d = self.dev[key] * decay + innov * r.gauss(0.0, 1.0)
            if r.random() < shock_p:
                size = r.uniform(p.shock_min_bps, p.shock_max_bps) * 1e-4
                d += size if r.random() < 0.5 else -size
            self.dev[key] = d

    def venue_mid(self, venue: str, symbol: str) -> float:
        return self.mid[symbol] * (1.0 + self.dev.get((venue, symbol), 0.0))

    def deviation_bps(self, venue: str, symbol: str) -> float:
        return self.dev.get((venue, symbol), 0.0) * 1e4


def load_markets(venue: str, markets_dir: Path | None = None) -> tuple[list[Market], bytes]:
    """The venue's instruments from ``configs/markets/<venue>.json``: parsed rows and raw body."""
    body = ((markets_dir or MARKETS_DIR) / f"{venue}.json").read_bytes()
    return VENUES[venue].parse_instruments(body), body


def default_symbols(venues: Iterable[str], markets_dir: Path | None = None) -> list[str]:
    """Every symbol listed by at least one of ``venues``, in file order."""
    seen: dict[str, None] = {}
    for v in venues:
        for m in load_markets(v, markets_dir)[0]:
            seen.setdefault(m.symbol, None)
    return list(seen)
