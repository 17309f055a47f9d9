"""KuCoin end to end: the simulator + the real pipeline (bullet handshake, welcome, collector, REST
snapshots, Redis) in-process, and ccxt.pro's ``kucoin`` client pointed at the simulator. Waiting is
on simulator ticks or Redis reads with deadlines, never on bare sleeps."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import ccxt.pro
from redis.asyncio import Redis

from scanner.feed.collector import VenueCollector
from scanner.sim.kucoin import KucoinVenue
from scanner.sim.server import SimCluster, SimConfig
from tests.pipeline_helpers import book_lands_in_redis, ccxt_markets, metric, running, settings_for, until

SYMBOLS = ["SOL/USDT", "XRP/USDT"]


def kucoin(sims: SimCluster) -> KucoinVenue:
    v = sims.venue("kucoin")
    assert isinstance(v, KucoinVenue)
    return v


def paths(venue: KucoinVenue, prefix: str, status: int | None = None) -> list[str]:
    return [q.path for q in venue.requests if q.path.startswith(prefix) and status in (None, q.status)]


async def lands_in_redis(r: Redis, sims: SimCluster, col: VenueCollector, symbol: str) -> dict[str, Any]:
    """Redis and the collector hold the simulator's current state of ``symbol`` (its top 20)."""
    venue, inst = kucoin(sims), symbol.replace("/", "-")
    return await book_lands_in_redis(r, sims, col, "kucoin", symbol, inst, lambda: venue.seq(inst),
                                     lambda: venue.book(inst, 20), "sequence")


async def test_kucoin_books_reach_redis_and_resync(redis_url: str, market_cache: Path) -> None:
    async with SimCluster(venues=["kucoin"], symbols=SYMBOLS, tick_ms=50, seed=8) as sims:
        venue = kucoin(sims)
        # the venue closes a client silent for 0.8 s; book data flows every 50 ms, so only pings
        # sent every pingInterval regardless of traffic keep the socket open
        venue.knobs = dataclasses.replace(venue.knobs, ping_interval_ms=400, ping_timeout_ms=400)
        async with running(settings_for(sims, redis_url, market_cache)) as p:
            r = Redis.from_url(redis_url, socket_timeout=10)
            col = p.collectors["kucoin"]
            await until(lambda: all(b.valid for b in col.books.values()), sims, "the KuCoin books to sync")
            first = await lands_in_redis(r, sims, col, "SOL/USDT")
            assert first["venue"] == "kucoin" and first["exch_ms"] > 0
            await lands_in_redis(r, sims, col, "XRP/USDT")
            assert len(paths(venue, "/api/v1/bullet-public")) == 1 and len(paths(venue, "/?token=", 101)) == 1
            snaps = paths(venue, "/api/v1/market/orderbook/level2_100")
            assert sorted(snaps) == ["/api/v1/market/orderbook/level2_100?symbol=SOL-USDT",
                                     "/api/v1/market/orderbook/level2_100?symbol=XRP-USDT"]

            # keepalive: JSON pings every pingInterval while data flows, one connection throughout
            await until(lambda: [c.pings >= 3 for c in venue.meta.values()] == [True], sims, "three pings")
            assert len(paths(venue, "/?token=", 101)) == 1
            assert sum(metric(p, "scanner_reconnects_total", {"venue": "kucoin", "reason": why})
                       for why in ("closed_by_venue", "watchdog", "connect_failed")) == 0

            # a lost change: only SOL-USDT resyncs, from a fresh REST snapshot; XRP-USDT keeps its book
            xrp = col.books["XRP-USDT"]
            gaps = {"venue": "kucoin", "reason": "seq_gap"}
            venue.skip_seq("SOL/USDT")
            await until(lambda: metric(p, "scanner_resyncs_total", gaps) >= 1, sims, "the sequence gap")
            await until(lambda: col.books["SOL-USDT"].valid, sims, "SOL-USDT to resync")
            assert metric(p, "scanner_resyncs_total", gaps) == 1 and col.books["XRP-USDT"] is xrp and xrp.valid
            assert paths(venue, "/api/v1/market/orderbook/level2_100")[len(snaps):] == [
                "/api/v1/market/orderbook/level2_100?symbol=SOL-USDT"]
            await lands_in_redis(r, sims, col, "SOL/USDT")

            # a bid above the best ask: that book is dropped and resynced
            crossed = {"venue": "kucoin", "reason": "crossed"}
            venue.corrupt_level("XRP/USDT", "crossed")
            await until(lambda: metric(p, "scanner_resyncs_total", crossed) >= 1, sims, "the crossed book")
            await until(lambda: col.books["XRP-USDT"].valid, sims, "XRP-USDT to resync")
            await lands_in_redis(r, sims, col, "XRP/USDT")

            # a dropped connection: a new token, a new welcome, every book resynced
            reconnects = {"venue": "kucoin", "reason": "reconnect"}
            venue.drop()
            await until(lambda: metric(p, "scanner_resyncs_total", reconnects) >= 2, sims, "the disconnect")
            await until(lambda: all(b.valid for b in col.books.values()), sims, "the books after reconnecting")
            assert len(paths(venue, "/api/v1/bullet-public")) == 2 and len(venue.tokens) == 2
            await lands_in_redis(r, sims, col, "SOL/USDT")
            await lands_in_redis(r, sims, col, "XRP/USDT")
            assert metric(p, "scanner_parse_errors_total", {"venue": "kucoin", "reason": "malformed"}) == 0
            assert metric(p, "scanner_venue_errors_total", {"venue": "kucoin"}) == 0
            await r.aclose()


async def test_ccxt_pro_kucoin_keeps_the_simulators_book() -> None:
    # 100 levels a side: level2_100, ccxt's snapshot, then holds the whole book, so the whole book compares
    async with SimCluster(venues=["kucoin"], symbols=["SOL/USDT"], seed=3, tick_ms=25,
                          config=SimConfig(depth=100)) as cluster:
        venue = kucoin(cluster)
        rest = cluster.rest_url("kucoin")  # ccxt POSTs bullet-public there and connects where it says
        ex = ccxt.pro.kucoin({"urls": {"api": {"public": rest, "private": rest}},
                              "asyncio_loop": asyncio.get_running_loop()})
        try:
            ex.set_markets(ccxt_markets(venue.markets))
            nonces = []
            for _ in range(8):
                ob = await asyncio.wait_for(ex.watch_order_book("SOL/USDT"), 10)
                nonces.append(ob["nonce"])
            assert len(set(nonces)) > 1  # it followed live diffs, not just the snapshot
            cluster.freeze()
            target = cluster.seq("kucoin", "SOL/USDT")
            while ob["nonce"] != target:
                ob = await asyncio.wait_for(ex.watch_order_book("SOL/USDT"), 10)
            bids, asks = cluster.book("kucoin", "SOL/USDT")
            assert len(ob["bids"]) == len(bids) == 100
            assert [row[:2] for row in ob["bids"]] == [[float(px), float(sz)] for px, sz in bids]
            assert [row[:2] for row in ob["asks"]] == [[float(px), float(sz)] for px, sz in asks]
            assert [q.path.split("?")[0] for q in venue.requests] == [
                "/api/v1/bullet-public", "/", "/api/v1/market/orderbook/level2_100"]
        finally:
            await ex.close()
