"""Opportunity events whose stream write fails while Redis is away are kept and written again, in order
and before anything newer, once Redis is back: the stream loses nothing (at least once)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any, cast

import orjson
import pytest
from redis.asyncio import Redis

from scanner.config import RedisSettings
from scanner.detect.runner import _Emitter
from scanner.model import Opportunity
from scanner.redis_server import PrivateRedis
from scanner.sinks import opportunities
from scanner.sinks.metrics import Metrics
from scanner.sinks.opportunities import OpportunitySink


def event(n: int) -> Opportunity:
    return Opportunity("BTC/USDT", "okx", "binance", "1", "100", "101", "100", "90", "0.9", "0.001", "0.001",
                       1.0, 1.0, 1, 1, n, n, id=f"BTC/USDT|okx|binance|{n}")


async def stream_ids(url: str) -> list[str]:
    r = Redis.from_url(url)
    try:
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await r.xrange("opportunities"))
        return [orjson.loads(f[b"data"])["id"] for _, f in entries]
    finally:
        await r.aclose()


@pytest.fixture
def own_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis().start()
    yield server
    server.close()


async def test_failed_writes_are_retried_in_order_before_newer_events(own_redis: PrivateRedis) -> None:
    sink = OpportunitySink(RedisSettings(url=own_redis.url), Metrics())
    await sink.emit([event(1)])
    assert not sink.unsent and await stream_ids(own_redis.url) == ["BTC/USDT|okx|binance|1"]
    own_redis.stop()
    await sink.emit([event(2), event(3)])  # Redis away: kept, not raised
    assert [o.recv_ns for o in sink.unsent] == [2, 3]
    assert sink.submit([event(4)]) is False  # nothing newer may overtake the unsent
    await sink.emit([event(4)])
    assert [o.recv_ns for o in sink.unsent] == [2, 3, 4]
    own_redis.start()
    await sink.emit([event(5)])
    assert not sink.unsent and sink.dropped == 0
    # event 1 went down with the old Redis (no persistence): it was written; the rest arrive in order
    assert await stream_ids(own_redis.url) == [f"BTC/USDT|okx|binance|{n}" for n in (2, 3, 4, 5)]
    sink.conn.close()


async def test_emitter_retries_the_unsent_without_new_events(own_redis: PrivateRedis,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    sink = OpportunitySink(RedisSettings(url=own_redis.url), Metrics())
    answered = asyncio.Event()  # set whenever a write completes, ok or not
    done = sink._done

    def spy(*args: Any) -> None:
        done(*args)
        answered.set()

    monkeypatch.setattr(sink, "_done", spy)

    async def until(cond: Callable[[], bool]) -> None:
        while not cond():
            await answered.wait()
            answered.clear()

    emitter = _Emitter(sink)
    task = asyncio.create_task(emitter.run())
    try:
        own_redis.stop()
        emitter.put([event(1), event(2)])
        await asyncio.wait_for(until(lambda: len(sink.unsent) == 2), 10)
        own_redis.start()  # no new event arrives: the emitter's own retry writes them
        await asyncio.wait_for(until(lambda: not sink.unsent), 10)
        assert await stream_ids(own_redis.url) == ["BTC/USDT|okx|binance|1", "BTC/USDT|okx|binance|2"]
    finally:
        task.cancel()
        sink.conn.close()


async def test_unsent_events_are_bounded(own_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(opportunities, "MAX_UNSENT", 3)
    metrics = Metrics()
    sink = OpportunitySink(RedisSettings(url=own_redis.url), metrics)
    own_redis.stop()
    await sink.emit([event(n) for n in range(1, 6)])
    assert [o.recv_ns for o in sink.unsent] == [3, 4, 5] and sink.dropped == 2  # the oldest go first
    sink.conn.close()

