"""Venue registry: every native venue module's :class:`VenueSpec`, written out by hand."""

from __future__ import annotations

from scanner.venues import binance, bitget, bybit, coinbase, gate, htx, hyperliquid, kraken, kucoin, mexc, okx
from scanner.venues.spec import VenueSpec

VENUES: dict[str, VenueSpec] = {
    okx.NAME: okx.VENUE,
    binance.NAME: binance.VENUE,
    bybit.NAME: bybit.VENUE,
    coinbase.NAME: coinbase.VENUE,
    kraken.NAME: kraken.VENUE,
    gate.NAME: gate.VENUE,
    kucoin.NAME: kucoin.VENUE,
    bitget.NAME: bitget.VENUE,
    htx.NAME: htx.VENUE,
    mexc.NAME: mexc.VENUE,
    hyperliquid.NAME: hyperliquid.VENUE,
}
