"""Loads each venue's markets: from its instruments endpoint, else the cached copy in configs/.

With ``markets.write_cache`` a successful fetch also refreshes the cache when the
listing changed, so the next offline start sees it (off by default: configs/ is often
mounted read-only, and a venue serving fewer markets must not shrink the shipped copy).
Symbols the venue does not list are reported by name and left out.
"""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp

from scanner.book.errors import ParseError
from scanner.config import MarketSettings, VenueSettings
from scanner.markets import MarketMap, cache_path
from scanner.venues.spec import VenueSpec

log = logging.getLogger(__name__)


class MarketsUnavailable(RuntimeError):
    """Neither the venue nor the cache could provide a market list."""


async def load_markets(spec: VenueSpec, venue: VenueSettings, settings: MarketSettings) -> MarketMap:
    cache = cache_path(settings.cache_dir, spec.name)
    cached = _read_cache(spec, cache)
    if settings.refresh:
        url = venue.rest_url + spec.instruments_path
        try:
            body = await fetch_instruments(spec, url)
            markets = spec.parse_instruments(body)
        except (aiohttp.ClientError, TimeoutError, OSError, ParseError) as exc:
            if cached is None:
                raise MarketsUnavailable(f"{spec.name}: instruments from {url} failed ({exc}) and no cache at "
                                         f"{cache}") from None
            log.warning("%s: instruments from %s failed (%s); using the cached list in %s", spec.name, url, exc, cache)
        else:
            fresh = MarketMap(spec.name, markets)
            if settings.write_cache and (cached is None or fresh.by_id != cached.by_id):
                _write_cache(cache, body)
            return fresh
    if cached is None:
        raise MarketsUnavailable(f"{spec.name}: no market cache at {cache} and markets.refresh is off")
    return cached


def _read_cache(spec: VenueSpec, path: Path) -> MarketMap | None:
    try:
        return MarketMap(spec.name, spec.parse_instruments(path.read_bytes()))
    except FileNotFoundError:
        return None
    except ParseError as exc:
        log.warning("%s: market cache %s unusable: %s", spec.name, path, exc)
        return None


def _write_cache(path: Path, body: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_bytes(body)
        tmp.replace(path)
    except OSError as exc:
        log.warning("could not refresh market cache %s: %s", path, exc)


async def fetch_instruments(spec: VenueSpec, url: str) -> bytes:
    """GET the venue's instruments endpoint (or POST ``spec.instruments_body``); the raw body."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        if spec.instruments_body is not None:
            req = session.post(url, data=spec.instruments_body, headers={"Content-Type": "application/json"})
        else:
            req = session.get(url)
        async with req as resp:
            body = await resp.read()
            if resp.status != 200:
                raise ParseError(f"HTTP {resp.status}")
            return body
