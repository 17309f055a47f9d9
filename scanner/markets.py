"""Venue instrument ids ↔ ccxt-style unified symbols (``BTC/USDT``).

Each venue module parses its own instruments endpoint into :class:`Market` rows; this
module holds the rows, answers lookups both ways, and reads/writes the cached copies in
``configs/markets/`` that let the scanner and its tests run offline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Market:
    venue: str
    venue_id: str  # the venue's spelling: "BTC-USDT", "BTCUSDT"
    symbol: str  # unified: "BTC/USDT"
    base: str
    quote: str
    tick: str  # price increment, exact decimal string
    lot: str  # size increment
    min_size: str
    active: bool = True
    # The id the venue's book stream uses for this instrument when it differs from venue_id:
    # Coinbase serves the BTC-USDC book as BTC-USD on its market-data channels.
    stream_id: str = ""


class UnknownSymbol(KeyError):
    """A symbol or instrument the venue does not list (or lists as inactive)."""

    def __str__(self) -> str:
        return str(self.args[0])


class MarketMap:
    """The markets of one venue, indexed both ways."""

    def __init__(self, venue: str, markets: Iterable[Market]) -> None:
        self.venue = venue
        self.by_symbol: dict[str, Market] = {}
        self.by_id: dict[str, Market] = {}
        for m in markets:
            self.by_symbol[m.symbol] = m
            self.by_id[m.venue_id] = m

    def __len__(self) -> int:
        return len(self.by_symbol)

    def venue_id(self, symbol: str) -> str:
        m = self.by_symbol.get(symbol)
        if m is None:
            raise UnknownSymbol(f"{self.venue} does not list {symbol}")
        if not m.active:
            raise UnknownSymbol(f"{self.venue} lists {symbol} as {m.venue_id} but it is not trading")
        return m.venue_id

    def symbol(self, venue_id: str) -> str:
        m = self.by_id.get(venue_id)
        if m is None:
            raise UnknownSymbol(f"{self.venue} instrument {venue_id} is not in the market map")
        return m.symbol

    def resolve(self, symbols: Iterable[str]) -> tuple[dict[str, str], list[str]]:
        """Split ``symbols`` into {venue_id: symbol} for those listed and the rest."""
        found: dict[str, str] = {}
        missing: list[str] = []
        for s in symbols:
            try:
                found[self.venue_id(s)] = s
            except UnknownSymbol:
                missing.append(s)
        return found, missing


def shipped_markets_dir() -> Path:
    """The market snapshots shipped in ``configs/markets``: next to the package in a source
    checkout, else under the working directory (an installed package, e.g. the container's /app)."""
    beside = Path(__file__).resolve().parents[1] / "configs" / "markets"
    return beside if beside.is_dir() else Path("configs", "markets").resolve()


def cache_path(cache_dir: Path, venue: str) -> Path:
    return cache_dir / f"{venue}.json"


def unified(base: str, quote: str) -> str:
    return f"{base.upper()}/{quote.upper()}"
