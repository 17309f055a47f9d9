"""Runs the detector against Redis: seed from stored books, then follow the change channel.

Between messages it polls the detector (at most every 100 ms), so an opportunity whose book
goes silent is closed and a persisted candidate opens even when no frame arrives.
Survives Redis going away: it pauses, reconnects with backoff, re-reads every stored book
(so nothing published during the outage is missed for long) and carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from scanner.aio import wait_stop
from scanner.config import RedisSettings
from scanner.detect.detector import SpreadDetector
from scanner.feed.backoff import backoff
from scanner.sinks.metrics import Metrics
from scanner.sinks.opportunities import OpportunitySink
from scanner.store.schema import KEY_PREFIX, decode_book

log = logging.getLogger(__name__)


async def run_detector(redis: Redis, settings: RedisSettings, detector: SpreadDetector, sink: OpportunitySink,
                       metrics: Metrics, stop: asyncio.Event) -> None:
    delays = backoff(base=0.2, cap=5.0)
    while not stop.is_set():
        try:
            await _follow(redis, settings, detector, sink, metrics, stop)
            delays = backoff(base=0.2, cap=5.0)
        except (RedisError, OSError) as exc:
            metrics.redis_errors.labels("detector").inc()
            log.error("redis: detector lost its connection (%s); pausing and retrying", exc)
            await wait_stop(stop, next(delays))


async def _follow(redis: Redis, settings: RedisSettings, detector: SpreadDetector, sink: OpportunitySink,
                  metrics: Metrics, stop: asyncio.Event) -> None:
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(settings.channel)
        await _seed(redis, detector, sink)
        log.info("detector: following channel %s with %d books", settings.channel, detector.book_count())
        while not stop.is_set():
            msg = await pubsub.get_message(timeout=0.1)
            if msg is not None:
                await _handle(msg["data"], detector, sink, metrics)
                metrics.detector_books.set(detector.book_count())
            polled = detector.poll(time.time_ns())  # stale books close, persisted candidates open
            if polled:
                await sink.emit(polled)
    finally:
        with contextlib.suppress(RedisError, OSError):
            await pubsub.aclose()  # type: ignore[no-untyped-call]


async def _seed(redis: Redis, detector: SpreadDetector, sink: OpportunitySink) -> None:
    keys = [k async for k in redis.scan_iter(match=f"{KEY_PREFIX}*", count=500)]
    if not keys:
        return
    for payload in await redis.mget(keys):
        if payload is not None:
            try:
                view = decode_book(payload)
            except ValueError:
                continue
            opps = detector.update(view, time.time_ns())
            if opps:
                await sink.emit(opps)


async def _handle(payload: bytes, detector: SpreadDetector, sink: OpportunitySink, metrics: Metrics) -> None:
    try:
        view = decode_book(payload)
    except ValueError as exc:
        metrics.refusals.labels("bad_payload", "").inc()
        log.warning("detector: skipped a payload that is not a book: %s", exc)
        return
    try:
        opps = detector.update(view, time.time_ns())
    except Exception:  # one bad update must not stop detection for every other symbol
        metrics.refusals.labels("detector_error", view.venue).inc()
        log.exception("detector: evaluating %s %s failed; update skipped", view.venue, view.symbol)
        return
    if opps:
        await sink.emit(opps)
