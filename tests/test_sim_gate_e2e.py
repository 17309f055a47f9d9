"""Gate end to end: the simulator + the real pipeline (collector, Redis, detector) in-process on the
``spot.obu`` channel and on the legacy REST-bridged channel, and ccxt.pro's ``gate`` client pointed
at the simulator. Waiting is on simulator ticks or frames with deadlines, never on bare sleeps."""

from __future__ import annotations

import asyncio
import shutil
import time
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
from scanner.sim.gate import GateKnobs, GateVenue
from scanner.sim.server import SimCluster
from scanner.store.schema import book_key

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = ["BTC/USDT", "ETH/USDT"]


@pytest.fixture
def market_cache(tmp_path: Path) -> Path:
    cache = tmp_path / "markets"
    shutil.copytree(ROOT / "configs" / "markets", cache)
    return cache


def settings_for(sims: SimCluster, redis_url: str, cache: Path, **venue: Any) -> Settings:
    return from_dict({
        "symbols": sims.symbols,
        "venues": {name: {"ws_url": sims.url(name), "rest_url": sims.rest_url(name), "watchdog_s": 60, **venue}
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


def gate(sims: SimCluster) -> GateVenue:
    v = sims.venue("gate")
    assert isinstance(v, GateVenue)
    return v


async def lands_in_redis(r: Redis, sims: SimCluster, col: VenueCollector, symbol: str,
                         target: Callable[[], int]) -> None:
    """Freeze the market, wait until Redis holds the book at the simulator's ``target()`` id, and
    check its levels equal the simulator's top 20."""
    sims.freeze()
    inst = symbol.replace("/", "_")
    want = target()
    stored: dict[str, Any] = {}

    async def loop() -> None:
        nonlocal stored
        while True:
            raw = await r.get(book_key(symbol, "gate"))
            stored = orjson.loads(raw) if raw else {}
            if stored.get("valid") and stored.get("seq") == want and col.books[inst].book.seq == want:
                return
            await sims.wait_ticks(1)

    try:
        await asyncio.wait_for(loop(), 15)
    except TimeoutError:
        pytest.fail(f"{symbol} never reached Redis at id {want}: {stored}")
    bids, asks = gate(sims).book(symbol, 20)
    assert stored["bids"] == [list(x) for x in bids] and stored["asks"] == [list(x) for x in asks]
    sims.freeze(False)


async def test_gate_obu_books_reach_redis_and_resync(redis_url: str, market_cache: Path) -> None:
    async with SimCluster(venues=["gate"], symbols=SYMBOLS, tick_ms=50, seed=12) as sims, \
            running(settings_for(sims, redis_url, market_cache, ping_idle_s=0.2)) as p:
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
            running(settings_for(sims, redis_url, market_cache, channel="order_book_update")) as p:
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


def ccxt_markets(markets: list[Market]) -> list[dict[str, Any]]:
    return [{
        "id": m.venue_id, "symbol": m.symbol, "base": m.base, "quote": m.quote, "baseId": m.base, "quoteId": m.quote,
        "settle": None, "type": "spot", "spot": True, "margin": False, "swap": False, "future": False,
        "option": False, "contract": False, "linear": None, "inverse": None, "active": m.active,
        "precision": {"amount": float(m.lot), "price": float(m.tick)},
        "limits": {"amount": {"min": float(m.min_size), "max": None}, "price": {"min": None, "max": None},
                   "cost": {"min": None, "max": None}},
    } for m in markets]


async def test_ccxt_pro_gate_keeps_the_simulators_book() -> None:
    """ccxt.pro 4.5.90 ``gate`` uses ``spot.obu`` ``ob.PAIR.50`` for spot books: the simulator's
    default channel, so the same full + U/u diffs our collector reads."""
    async with SimCluster(venues=["gate"], symbols=SYMBOLS, seed=4, tick_ms=0) as cluster:
        venue = gate(cluster)
        venue.knobs = GateKnobs(resnapshot_p=0.0)
        ex = ccxt.pro.gate({"urls": {"api": {"spot": cluster.url("gate")}}})
        try:
            ex.set_markets(ccxt_markets(venue.markets))
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
