"""KuCoin end to end: the simulator + the real pipeline (bullet handshake, welcome, collector, REST
snapshots, Redis) in-process, and ccxt.pro's ``kucoin`` client pointed at the simulator. Waiting is
on simulator ticks or Redis reads with deadlines, never on bare sleeps."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import ccxt.pro
import orjson
import pytest
from redis.asyncio import Redis

from scanner.app import COLLECT, DETECT, Pipeline
from scanner.config import Settings, from_dict
from scanner.feed.collector import VenueCollector
from scanner.markets import Market
from scanner.sim.kucoin import KucoinVenue
from scanner.sim.server import SimCluster, SimConfig
from scanner.store.schema import book_key

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = ["SOL/USDT", "XRP/USDT"]


@pytest.fixture
def market_cache(tmp_path: Path) -> Path:
    cache = tmp_path / "markets"
    shutil.copytree(ROOT / "configs" / "markets", cache)
    return cache


def settings_for(sims: SimCluster, redis_url: str, cache: Path) -> Settings:
    return from_dict({
        "symbols": sims.symbols,
        "venues": {name: {"ws_url": sims.url(name), "rest_url": sims.rest_url(name), "watchdog_s": 60}
                   for name in sims.venues},
        "redis": {"url": redis_url},
        "detector": {"min_net_bps": 2, "min_profit_quote": "0.1", "max_book_age_ms": 5000},
        "metrics": {"port": 0},
        "markets": {"cache_dir": str(cache), "refresh": True},
    }, {})


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Pipeline]:
    pipeline = Pipeline(settings, {COLLECT, DETECT})
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    try:
        await asyncio.wait_for(pipeline.started.wait(), 15)
        yield pipeline
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def until(cond: Callable[[], bool], sims: SimCluster, what: str, seconds: float = 15.0) -> None:
    async def loop() -> None:
        while not cond():
            await sims.wait_ticks(1)
    try:
        await asyncio.wait_for(loop(), seconds)
    except TimeoutError:
        pytest.fail(f"timed out after {seconds}s waiting for {what}")


def metric(p: Pipeline, name: str, labels: dict[str, str]) -> float:
    return p.metrics.registry.get_sample_value(name, labels) or 0.0


def kucoin(sims: SimCluster) -> KucoinVenue:
    v = sims.venue("kucoin")
    assert isinstance(v, KucoinVenue)
    return v


def paths(venue: KucoinVenue, prefix: str, status: int | None = None) -> list[str]:
    return [q.path for q in venue.requests if q.path.startswith(prefix) and status in (None, q.status)]


async def lands_in_redis(r: Redis, sims: SimCluster, col: VenueCollector, symbol: str) -> dict[str, Any]:
    """Freeze the market, wait until Redis holds the simulator's current state of ``symbol`` and
    check that the stored levels equal the simulator's top 20."""
    sims.freeze()
    venue, inst = kucoin(sims), symbol.replace("/", "-")
    target = venue.seq(inst)
    stored: dict[str, Any] = {}

    async def loop() -> None:
        nonlocal stored
        while True:
            raw = await r.get(book_key(symbol, "kucoin"))
            stored = orjson.loads(raw) if raw else {}
            if stored.get("valid") and stored.get("seq") == target and col.books[inst].book.seq == target:
                return
            await sims.wait_ticks(1)

    try:
        await asyncio.wait_for(loop(), 15)
    except TimeoutError:
        pytest.fail(f"{symbol} never reached Redis at sequence {target}: {stored}")
    bids, asks = venue.book(inst, 20)
    assert stored["bids"] == [list(x) for x in bids] and stored["asks"] == [list(x) for x in asks]
    sims.freeze(False)
    return stored


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


def ccxt_markets(markets: list[Market]) -> list[dict[str, Any]]:
    """ccxt market dicts for the simulator's instruments (read from configs/markets/kucoin.json)."""
    return [{
        "id": m.venue_id, "symbol": m.symbol, "base": m.base, "quote": m.quote, "baseId": m.base, "quoteId": m.quote,
        "type": "spot", "spot": True, "margin": False, "swap": False, "future": False, "option": False,
        "contract": False, "active": m.active, "precision": {"amount": float(m.lot), "price": float(m.tick)},
        "limits": {"amount": {"min": float(m.min_size), "max": None}, "price": {"min": None, "max": None},
                   "cost": {"min": None, "max": None}},
    } for m in markets]


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
