"""Market loading: the venue's instruments endpoint first, the cache as fallback, the cache untouched by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner.config import MarketSettings, from_dict
from scanner.feed.instruments import MarketsUnavailable, load_markets
from scanner.sim.server import SimCluster
from scanner.venues import VENUES


async def test_fetch_then_fallback_and_cache_left_alone(tmp_path: Path, market_cache: Path) -> None:
    cache = market_cache
    before = (cache / "okx.json").read_bytes()
    async with SimCluster(venues=["okx"], symbols=["BTC/USDT", "ETH/USDT"], tick_ms=0) as sims:
        vs = from_dict({"symbols": ["BTC/USDT"], "venues": {"okx": {"ws_url": sims.url("okx"),
                                                                    "rest_url": sims.rest_url("okx")}}}, {})
        live = await load_markets(VENUES["okx"], vs.venues["okx"], MarketSettings(cache_dir=cache))
        assert live.venue_id("BTC/USDT") == "BTC-USDT"
        assert any(q.path.startswith("/api/v5/public/instruments") for q in sims.okx.requests)
        assert (cache / "okx.json").read_bytes() == before  # write_cache is off by default
    # the venue is gone now: the cache answers, with every market it holds
    offline = await load_markets(VENUES["okx"], vs.venues["okx"], MarketSettings(cache_dir=cache))
    cached = VENUES["okx"].parse_instruments((cache / "okx.json").read_bytes())
    assert offline.venue_id("XRP/USDT") == "XRP-USDT" and len(offline) == len(cached) > 2
    with pytest.raises(MarketsUnavailable, match="no cache"):
        await load_markets(VENUES["okx"], vs.venues["okx"], MarketSettings(cache_dir=tmp_path / "empty"))
