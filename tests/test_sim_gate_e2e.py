"""Gate end to end: the simulator + the real pipeline (collector, Redis, detector) in-process on the
``spot.obu`` channel and on the legacy REST-bridged channel, and ccxt.pro's ``gate`` client pointed
at the simulator. Waiting is on simulator ticks or frames with deadlines, never on bare sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import ccxt.pro
from redis.asyncio import Redis

from scanner.feed.collector import VenueCollector
from scanner.sim.gate import GateKnobs, GateVenue
from scanner.sim.server import SimCluster
from tests.pipeline_helpers import book_lands_in_redis, ccxt_markets, metric, running, settings_for, until

SYMBOLS = ["BTC/USDT", "ETH/USDT"]


def gate(sims: SimCluster) -> GateVenue:
    v = sims.venue("gate")
    assert isinstance(v, GateVenue)
    return v


async def lands_in_redis(r: Redis, sims: SimCluster, col: VenueCollector, symbol: str,
                         target: Callable[[], int]) -> None:
    """Redis and the collector hold the book at the simulator's ``target()`` id (its top 20)."""
    await book_lands_in_redis(r, sims, col, "gate", symbol, symbol.replace("/", "_"), target,
                              lambda: gate(sims).book(symbol, 20), "id")


async def test_gate_obu_books_reach_redis_and_resync(redis_url: str, market_cache: Path) -> None:
    async with SimCluster(venues=["gate"], symbols=SYMBOLS, tick_ms=50, seed=12) as sims, \
            running(settings_for(sims, redis_url, market_cache, venue={"ping_idle_s": 0.2})) as p:
        venue = gate(sims)
        venue.knobs = GateKnobs(idle_s=1.0, resnapshot_p=0.0)
        r = Redis.from_url(redis_url, socket_timeout=10)
        col = p.collectors["gate"]

        def obu(pair: str) -> Callable[[], int]:
            return lambda: venue.obu_u(pair, 50)

        await until(lambda: all(b.valid for b in col.books.values()), sims, "the Gate books to sync")
        await lands_in_redis(r, sims, col, "BTC/USDT", obu("BTC_USDT"))
        await lands_in_redis(r, sims, col, "ETH/USDT", obu("ETH_USDT"))
        assert not [q for q in venue.requests if "order_book" in q.path]  # obu needs no REST snapshot

        eth, gaps = col.books["ETH_USDT"], {"venue": "gate", "reason": "seq_gap"}
        venue.skip_seq("BTC/USDT")
        await until(lambda: metric(p, "scanner_resyncs_total", gaps) >= 1, sims, "the sequence gap")
        await until(lambda: col.books["BTC_USDT"].valid, sims, "BTC_USDT to resync")
        assert metric(p, "scanner_resyncs_total", gaps) == 1 and col.books["ETH_USDT"] is eth and eth.valid
        await lands_in_redis(r, sims, col, "BTC/USDT", obu("BTC_USDT"))

        # keepalive: the venue closes sockets silent for 1 s; spot.ping after 0.2 s of silence keeps it open
        venue.stall(2.5)
        stalled_at = time.monotonic()
        await until(lambda: time.monotonic() > venue.stall_until, sims, "the stall to end")
        assert [c.last_ping > stalled_at + 1.0 and not c.closed for c in venue.clients] == [True]
        assert metric(p, "scanner_connections", {"venue": "gate"}) == 1

        venue.stall(0)
        venue.drop()
        await until(lambda: metric(p, "scanner_resyncs_total", {"venue": "gate", "reason": "reconnect"}) >= 2, sims,
                    "the disconnect")
        await until(lambda: all(b.valid for b in col.books.values()), sims, "the books after reconnecting")
        await lands_in_redis(r, sims, col, "ETH/USDT", obu("ETH_USDT"))
        assert metric(p, "scanner_parse_errors_total", {"venue": "gate", "reason": "malformed"}) == 0
        await r.aclose()


async def test_gate_legacy_channel_bridges_to_rest_and_resyncs(redis_url: str, market_cache: Path) -> None:
    async with SimCluster(venues=["gate"], symbols=SYMBOLS, tick_ms=50, seed=13) as sims, \
            running(settings_for(sims, redis_url, market_cache, venue={"channel": "order_book_update"})) as p:
        venue = gate(sims)
        r = Redis.from_url(redis_url, socket_timeout=10)
        col = p.collectors["gate"]
        await until(lambda: all(b.valid for b in col.books.values()), sims, "the legacy books to bridge")

        def pairs() -> list[str]:
            return [q.path.split("currency_pair=")[1].split("&")[0] for q in venue.requests
                    if q.path.startswith("/api/v4/spot/order_book")]

        assert sorted(pairs()) == ["BTC_USDT", "ETH_USDT"]
        await lands_in_redis(r, sims, col, "ETH/USDT", lambda: venue.seq("ETH/USDT"))
        venue.skip_seq("ETH/USDT")
        await until(lambda: metric(p, "scanner_resyncs_total", {"venue": "gate", "reason": "seq_gap"}) >= 1, sims,
                    "the sequence gap")
        await until(lambda: col.books["ETH_USDT"].valid, sims, "ETH_USDT to bridge again")
        assert pairs()[2:] == ["ETH_USDT"]  # only the broken pair went back to REST
        await lands_in_redis(r, sims, col, "ETH/USDT", lambda: venue.seq("ETH/USDT"))
        assert col.books["BTC_USDT"].valid
        assert metric(p, "scanner_rest_snapshots_total", {"venue": "gate", "outcome": "ok"}) == 3
        await r.aclose()


async def test_ccxt_pro_gate_keeps_the_simulators_book() -> None:
    """ccxt.pro 4.5.90 ``gate`` uses ``spot.obu`` ``ob.PAIR.50`` for spot books: the simulator's
    default channel, so the same full + U/u diffs our collector reads."""
    async with SimCluster(venues=["gate"], symbols=SYMBOLS, seed=4, tick_ms=0) as cluster:
        venue = gate(cluster)
        venue.knobs = GateKnobs(resnapshot_p=0.0)
        ex = ccxt.pro.gate({"urls": {"api": {"spot": cluster.url("gate")}}})
        try:
            ex.set_markets(ccxt_markets(venue.markets, settle=None, linear=None, inverse=None))
            ob = await asyncio.wait_for(ex.watch_order_book("BTC/USDT"), 10)
            compared = 0
            for _ in range(20):
                u = venue.obu_u("BTC_USDT", 50)
                cluster.step()
                if venue.obu_u("BTC_USDT", 50) == u:
                    continue
                ob = await asyncio.wait_for(ex.watch_order_book("BTC/USDT"), 10)
                assert ob["nonce"] == venue.obu_u("BTC_USDT", 50)
                bids, asks = cluster.book("gate", "BTC/USDT", 50)
                assert ob["bids"] == [[float(px), float(sz)] for px, sz in bids]
                assert ob["asks"] == [[float(px), float(sz)] for px, sz in asks]
                compared += 1
            assert compared >= 10 and len(ob["bids"]) == 50
            assert [q.path for q in venue.requests] == ["/ws/v4/"]  # no REST at all
        finally:
            await ex.close()
