"""``/readyz`` against the simulators and the real Pipeline: 503 before books, 200 once every venue
has a fresh valid book, 503 while a venue stalls past ``max_book_age_ms``, 200 again after; the
detect-only role (Redis answers and the detector holds books); ``/healthz`` stays liveness."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from scanner.app import DETECT, Pipeline
from scanner.sim.server import SimCluster
from scanner.sinks.readiness import detector_check, stale_venues
from tests.pipeline_helpers import running, settings_for

MAX_AGE_MS = 1000


def readyz_url(p: Pipeline) -> str:
    return f"http://{p.http.host}:{p.http.port}/readyz"


async def readyz(session: aiohttp.ClientSession, p: Pipeline) -> tuple[int, dict[str, Any]]:
    async with session.get(readyz_url(p)) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


async def until_status(session: aiohttp.ClientSession, p: Pipeline, status: int, sims: SimCluster,
                       what: str, seconds: float = 15.0) -> dict[str, Any]:
    """Poll /readyz between simulator ticks until it answers ``status``; fail after ``seconds``."""
    last: tuple[int, dict[str, Any]] = (0, {})

    async def loop() -> dict[str, Any]:
        nonlocal last
        while True:
            last = await readyz(session, p)
            if last[0] == status:
                return last[1]
            await sims.wait_ticks(1)
    try:
        return await asyncio.wait_for(loop(), seconds)
    except TimeoutError:
        pytest.fail(f"timed out after {seconds}s waiting for {what}; last /readyz answer {last}")


async def test_readyz_follows_book_freshness(redis_url: str, market_cache: Path,
                                            session: aiohttp.ClientSession) -> None:
    async with SimCluster(venues=("okx", "binance"), tick_ms=50) as sims:
        settings = settings_for(sims, redis_url, market_cache, max_book_age_ms=MAX_AGE_MS)
        # before any book: the endpoint is up (liveness 200) but not ready
        idle = Pipeline(settings, {"collect", DETECT})
        await idle.http.start()
        try:
            status, body = await readyz(session, idle)
            assert status == 503 and body["ready"] is False
            assert "binance" in body["reason"] and "okx" in body["reason"]
            async with session.get(f"http://{idle.http.host}:{idle.http.port}/healthz") as resp:
                assert resp.status == 200
        finally:
            await idle.http.stop()
            await idle.redis.aclose()

        async with running(settings) as p:
            body = await until_status(session, p, 200, sims, "every venue to have a fresh book")
            assert body == {"ready": True, "reason": "2 venues fresh"}
            sims["okx"].stall(MAX_AGE_MS * 3 / 1000)
            body = await until_status(session, p, 503, sims, "okx to go stale")
            assert "okx" in body["reason"] and "binance" not in body["reason"]
            body = await until_status(session, p, 200, sims, "okx to recover after the stall")
            assert body["ready"] is True


async def test_readyz_detect_only(redis_url: str, market_cache: Path, session: aiohttp.ClientSession) -> None:
    async with SimCluster(venues=("okx", "binance"), tick_ms=50) as sims:
        settings = settings_for(sims, redis_url, market_cache, max_book_age_ms=MAX_AGE_MS)
        detect = Pipeline(settings, {DETECT})
        stop = asyncio.Event()
        task = asyncio.create_task(detect.run(stop))
        try:
            await asyncio.wait_for(detect.started.wait(), 15)
            status, body = await readyz(session, detect)
            assert status == 503 and body["reason"] == "detector holds no book yet"
            async with running(settings):  # the collectors feed Redis; the detect-only process reads it
                body = await until_status(session, detect, 200, sims, "the detector to hold books")
                assert body["reason"].startswith("redis ok, detector holds")
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)


async def test_detector_check_without_redis() -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        ok, reason = await detector_check(dead, lambda: 5)()
    finally:
        await dead.aclose()
    assert not ok and reason.startswith("redis does not answer")


def test_stale_venues_rules() -> None:
    now = 10_000 * 1_000_000_000
    ms: Callable[[int], int] = lambda ago: now // 1_000_000 - ago  # noqa: E731
    ns: Callable[[int], int] = lambda ago: now - ago * 1_000_000  # noqa: E731
    rows = [("okx", "BTC/USDT", ms(100), ns(100), True),  # fresh
            ("binance", "BTC/USDT", ms(100), ns(100), False),  # fresh but invalid
            ("bybit", "BTC/USDT", ms(3000), ns(100), True),  # received lately, old exchange time
            ("kraken", "BTC/USDT", 0, ns(500), True),  # no exchange time: receive time decides
            ("gate", "BTC/USDT", ms(100), ns(2000), True)]  # nothing received lately
    assert stale_venues(["okx", "binance", "bybit", "kraken", "gate", "htx"], rows, 1000, now) == \
        ["binance", "bybit", "gate", "htx"]
