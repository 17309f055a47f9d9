"""Bybit end to end: the simulator + the real pipeline (collector, Redis, detector) in-process, and
ccxt.pro's ``bybit`` client pointed at the simulator. Waiting is on simulator ticks or frames
with deadlines, never on bare sleeps."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import ccxt.pro
from redis.asyncio import Redis

from scanner.feed.collector import VenueCollector
from scanner.sim.bybit import BybitKnobs, BybitVenue
from scanner.sim.server import SimCluster
from tests.pipeline_helpers import book_lands_in_redis, ccxt_markets, metric, running, settings_for, until

SYMBOLS = ["BTC/USDT", "ETH/USDT"]


def bybit(sims: SimCluster) -> BybitVenue:
    v = sims.venue("bybit")
    assert isinstance(v, BybitVenue)
    return v


async def lands_in_redis(r: Redis, sims: SimCluster, col: VenueCollector, symbol: str) -> dict[str, Any]:
    """Redis and the collector hold the simulator's current window of ``symbol`` (its top 20)."""
    venue, inst = bybit(sims), symbol.replace("/", "")
    return await book_lands_in_redis(r, sims, col, "bybit", symbol, inst, lambda: venue.topic_u(inst, 50),
                                     lambda: venue.book(symbol, 20), "u")


async def test_bybit_books_reach_redis_and_resync_after_gap_and_disconnect(redis_url: str,
                                                                           market_cache: Path) -> None:
    async with SimCluster(venues=["bybit"], symbols=SYMBOLS, tick_ms=50, seed=8) as sims, \
            running(settings_for(sims, redis_url, market_cache, venue={"ping_idle_s": 0.2})) as p:
        venue = bybit(sims)
        venue.knobs = BybitKnobs(idle_s=1.0, resnapshot_p=0.0)
        r = Redis.from_url(redis_url, socket_timeout=10)
        col = p.collectors["bybit"]
        await until(lambda: all(b.valid for b in col.books.values()), sims, "the Bybit books to sync")
        first = await lands_in_redis(r, sims, col, "BTC/USDT")
        assert first["venue"] == "bybit" and first["exch_ms"] > 0
        await lands_in_redis(r, sims, col, "ETH/USDT")

        # a lost delta: only BTCUSDT resyncs (unsubscribe + subscribe), ETHUSDT keeps its book
        eth = col.books["ETHUSDT"]
        gaps = {"venue": "bybit", "reason": "seq_gap"}
        venue.skip_seq("BTC/USDT")
        await until(lambda: metric(p, "scanner_resyncs_total", gaps) >= 1, sims, "the sequence gap")
        await until(lambda: col.books["BTCUSDT"].valid, sims, "BTCUSDT to resync")
        assert metric(p, "scanner_resyncs_total", gaps) == 1 and col.books["ETHUSDT"] is eth and eth.valid
        await lands_in_redis(r, sims, col, "BTC/USDT")

        # keepalive: the venue closes sockets silent for 1 s; with no book data for 2.5 s our
        # {"op":"ping"} after 0.2 s of silence keeps the one connection open
        venue.stall(2.5)
        stalled_at = time.monotonic()
        await until(lambda: time.monotonic() > venue.stall_until, sims, "the stall to end")
        assert [c.last_ping > stalled_at + 1.0 and not c.closed for c in venue.clients] == [True]
        assert metric(p, "scanner_connections", {"venue": "bybit"}) == 1
        assert sum(metric(p, "scanner_reconnects_total", {"venue": "bybit", "reason": why})
                   for why in ("closed_by_venue", "watchdog", "connect_failed")) == 0

        # a dropped connection: every book resyncs after the reconnect
        venue.stall(0)
        reconnects = {"venue": "bybit", "reason": "reconnect"}
        venue.drop()
        await until(lambda: metric(p, "scanner_resyncs_total", reconnects) >= 2, sims, "the disconnect")
        await until(lambda: all(b.valid for b in col.books.values()), sims, "the books after reconnecting")
        assert sum(metric(p, "scanner_reconnects_total", {"venue": "bybit", "reason": why})
                   for why in ("closed_by_venue", "connect_failed")) >= 1
        await lands_in_redis(r, sims, col, "BTC/USDT")
        await lands_in_redis(r, sims, col, "ETH/USDT")
        assert metric(p, "scanner_parse_errors_total", {"venue": "bybit", "reason": "malformed"}) == 0
        await r.aclose()


async def test_ccxt_pro_bybit_keeps_the_simulators_book() -> None:
    async with SimCluster(venues=["bybit"], symbols=SYMBOLS, seed=3, tick_ms=0) as cluster:
        venue = bybit(cluster)
        venue.knobs = BybitKnobs(resnapshot_p=0.0)
        ex = ccxt.pro.bybit({"urls": {"api": {"ws": {"public": {"spot": cluster.url("bybit")}}}}})
        try:
            ex.set_markets(ccxt_markets(venue.markets, settle=None, settleId=None, linear=None, inverse=None))
            ob = await asyncio.wait_for(ex.watch_order_book("BTC/USDT"), 10)  # orderbook.50: the snapshot
            compared = 0
            for _ in range(20):
                u = venue.topic_u("BTCUSDT", 50)
                cluster.step()
                if venue.topic_u("BTCUSDT", 50) == u:
                    continue  # the window did not change: no delta
                ob = await asyncio.wait_for(ex.watch_order_book("BTC/USDT"), 10)
                bids, asks = cluster.book("bybit", "BTC/USDT", 50)
                assert ob["bids"] == [[float(px), float(sz)] for px, sz in bids]
                assert ob["asks"] == [[float(px), float(sz)] for px, sz in asks]
                compared += 1
            assert compared >= 10 and len(ob["bids"]) == 50
            assert [q.path for q in venue.requests] == ["/v5/public/spot"]  # no REST at all
        finally:
            await ex.close()
