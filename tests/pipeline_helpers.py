"""Helpers shared by the end-to-end tests: settings for a SimCluster, the running pipeline, waits on
simulator ticks with deadlines (never bare sleeps), metric reads and ccxt.pro market dicts.

The ``market_cache`` fixture (configs/markets copied into tmp) lives in conftest.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from redis.asyncio import Redis

from scanner.app import COLLECT, DETECT, Pipeline
from scanner.config import Settings, from_dict
from scanner.feed.collector import VenueCollector
from scanner.markets import Market
from scanner.sim.server import SimCluster
from scanner.store.schema import book_key

Levels = tuple[list[tuple[str, str]], list[tuple[str, str]]]
DETECTOR = {"min_net_bps": 2, "min_profit_quote": "0.1", "max_book_age_ms": 5000}


def native(sims: SimCluster, venue: str, **extra: Any) -> dict[str, Any]:
    """Settings of our own collector for ``venue`` pointed at the simulator, plus ``extra`` keys."""
    return {"ws_url": sims.url(venue), "rest_url": sims.rest_url(venue), "watchdog_s": 60, **extra}


def settings_for(sims: SimCluster, redis_url: str, cache: Path, *, venue: dict[str, Any] | None = None,
                 venues: dict[str, Any] | None = None, symbols: list[str] | None = None,
                 **detector: Any) -> Settings:
    """Settings for the pipeline against ``sims``: by default every simulated venue with our own
    collector (``native``), each with the extra ``venue`` keys; ``venues`` replaces that whole
    section, ``symbols`` the cluster's symbols. ``detector`` overrides the test thresholds."""
    return from_dict({
        "symbols": sims.symbols if symbols is None else symbols,
        "venues": venues if venues is not None else {name: native(sims, name, **(venue or {}))
                                                      for name in sims.venues},
        "redis": {"url": redis_url},
        "detector": {**DETECTOR, **detector},
        "metrics": {"port": 0},
        "markets": {"cache_dir": str(cache), "refresh": True},
    }, {})


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Pipeline]:
    """The collect + detect pipeline, started (or failed) within 15 s and stopped within 10 s."""
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
    """Check ``cond`` between simulator ticks; fail the test after ``seconds``."""
    async def loop() -> None:
        while not cond():
            await sims.wait_ticks(1)
    try:
        await asyncio.wait_for(loop(), seconds)
    except TimeoutError:
        pytest.fail(f"timed out after {seconds}s waiting for {what}")


async def next_opportunities(r: Redis, last: bytes | str, wait_s: float) -> list[tuple[bytes, dict[str, Any]]]:
    got = cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]],
               await r.xread({"opportunities": last}, block=int(wait_s * 1000), count=100))
    return [(eid, orjson.loads(f[b"data"])) for _, entries in got for eid, f in entries]


async def until_event(r: Redis, last: bytes | str, event: str,
                      wait_s: float = 20.0) -> list[tuple[bytes, dict[str, Any]]]:
    """Every stream entry after ``last`` up to and including the first ``event`` one (open, update,
    close); fail after ``wait_s``."""
    got: list[tuple[bytes, dict[str, Any]]] = []

    async def loop() -> None:
        nonlocal last
        while True:
            for eid, o in await next_opportunities(r, last, wait_s=1):
                got.append((eid, o))
                last = eid
                if o["event"] == event:
                    return
    try:
        await asyncio.wait_for(loop(), wait_s)
    except TimeoutError:
        pytest.fail(f"no {event} event within {wait_s}s; read {[o['event'] for _, o in got]}")
    return got


def metric(p: Pipeline, name: str, labels: dict[str, str] | None = None) -> float:
    return p.metrics.registry.get_sample_value(name, labels or {}) or 0.0


async def redis_equals_sim(r: Redis, sims: SimCluster, venue: str, symbol: str, seconds: float = 15.0) -> None:
    """Freeze the market and wait until Redis holds exactly the simulator's top 20 levels."""
    sims.freeze()
    want = [[list(lv) for lv in side] for side in sims.book(venue, symbol, 20)]
    got: dict[str, Any] = {}

    async def loop() -> None:
        nonlocal got
        while True:
            raw = await r.get(book_key(symbol, venue))
            got = orjson.loads(raw) if raw else {}
            if got.get("valid") and [got["bids"], got["asks"]] == want:
                return
            await sims.wait_ticks(1)
    try:
        await asyncio.wait_for(loop(), seconds)
    except TimeoutError:
        pytest.fail(f"Redis never matched the simulator's {venue} {symbol} book; last: {got}")
    sims.freeze(False)


def ccxt_market(m: Market, **extra: Any) -> dict[str, Any]:
    """A ccxt unified spot market dict (what ``set_markets`` needs) for one simulator instrument;
    ``extra`` adds or replaces keys."""
    return {
        "id": m.venue_id, "symbol": m.symbol, "base": m.base, "quote": m.quote, "baseId": m.base, "quoteId": m.quote,
        "type": "spot", "spot": True, "margin": False, "swap": False, "future": False, "option": False,
        "contract": False, "active": m.active, "precision": {"amount": float(m.lot), "price": float(m.tick)},
        "limits": {"amount": {"min": float(m.min_size), "max": None}, "price": {"min": None, "max": None},
                   "cost": {"min": None, "max": None}},
        **extra,
    }


def ccxt_markets(markets: Iterable[Market], **extra: Any) -> list[dict[str, Any]]:
    return [ccxt_market(m, **extra) for m in markets]


def as_floats(levels: Iterable[tuple[str, str]]) -> list[list[float]]:
    return [[float(p), float(q)] for p, q in levels]


async def book_lands_in_redis(r: Redis, sims: SimCluster, col: VenueCollector, venue: str, symbol: str, inst: str,
                              target: Callable[[], int], levels: Callable[[], Levels],
                              label: str = "seq") -> dict[str, Any]:
    """Freeze the market, wait until Redis and the collector's ``inst`` book both hold ``target()``
    (read once frozen), check the stored levels equal ``levels()`` (the simulator's top 20, string
    for string) and return the stored payload."""
    sims.freeze()
    want = target()
    stored: dict[str, Any] = {}

    async def loop() -> None:
        nonlocal stored
        while True:
            raw = await r.get(book_key(symbol, venue))
            stored = orjson.loads(raw) if raw else {}
            if stored.get("valid") and stored.get("seq") == want and col.books[inst].book.seq == want:
                return
            await sims.wait_ticks(1)

    try:
        await asyncio.wait_for(loop(), 15)
    except TimeoutError:
        pytest.fail(f"{symbol} never reached Redis at {label} {want}: {stored}")
    bids, asks = levels()
    assert stored["bids"] == [list(x) for x in bids] and stored["asks"] == [list(x) for x in asks]
    sims.freeze(False)
    return stored
