"""Runs the detector against Redis: seed from stored books, then follow the change channel.

The channel is read by a :class:`RespSubscriber`: each socket read's books are evaluated in the read
callback itself, only the newest per (symbol, venue); opportunity events go to the sink from a separate
task (the detector never waits on a write).
Between messages it polls the detector (at most every 100 ms), so an opportunity whose book
goes silent is closed and a persisted candidate opens even when no frame arrives.
Survives Redis going away: it pauses, reconnects with backoff, re-reads every stored book
(so nothing published during the outage is missed for long) and carries on.

When this process also collects (``scanner run``), the book store hands the detector the books it
publishes, in process, as each is marked after its frame is applied (``local``: the store's listener
list; while Redis is away, once written), as the views decoding their payloads would give: one Redis
round trip and one JSON decode less per book, and no wait for the store's next pass. Those books' copies
from the channel are then skipped, by origin (venue and symbol); books that other processes publish
are read from the channel as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from scanner.aio import wait_stop
from scanner.config import RedisSettings
from scanner.detect.detector import SpreadDetector
from scanner.feed.backoff import backoff
from scanner.model import Opportunity
from scanner.sinks.metrics import Metrics
from scanner.sinks.opportunities import OpportunitySink
from scanner.store.resp import RespSubscriber
from scanner.store.schema import KEY_PREFIX, BookView, decode_book, origin, origin_of

log = logging.getLogger(__name__)
POLL_S = 0.1  # the detector's poll() (stale books, persisted candidates) runs at least this often
RETRY_S = 0.5  # events whose write failed are written again this often until Redis takes them


LocalFeed = list[Callable[[list[BookView]], None]]  # the book store's listeners: books written in this process


async def run_detector(redis: Redis, settings: RedisSettings, detector: SpreadDetector, sink: OpportunitySink,
                       metrics: Metrics, stop: asyncio.Event, local: LocalFeed | None = None) -> None:
    delays = backoff(base=0.2, cap=5.0)
    while not stop.is_set():
        try:
            await _follow(redis, settings, detector, sink, metrics, stop, local)
            delays = backoff(base=0.2, cap=5.0)
        except (RedisError, OSError) as exc:
            metrics.redis_errors.labels("detector").inc()
            log.error("redis: detector lost its connection (%s); pausing and retrying", exc)
            await wait_stop(stop, next(delays))


class _Emitter:
    """Hands opportunity events to the sink from one background task, so the detector never waits
    for Redis to acknowledge a write before reading the next book. Events keep their order; all
    events queued while a write is in flight go out together in the next one."""

    def __init__(self, sink: OpportunitySink) -> None:
        self.sink = sink
        self.pending: list[Opportunity] = []
        self.wake = asyncio.Event()

    def put(self, opps: list[Opportunity]) -> None:
        # Connected and nothing queued: write now, from this callback (order is kept: a queued batch is
        # always written before anything newer). Otherwise the task connects and writes, in order.
        if not self.pending and self.sink.submit(opps):
            return
        self.pending.extend(opps)
        self.wake.set()

    async def run(self) -> None:
        while True:
            if self.sink.unsent:  # writes failed (Redis away): retry them every RETRY_S even with nothing new
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), RETRY_S)
            else:
                await self.wake.wait()
            self.wake.clear()
            batch, self.pending = self.pending, []
            if batch or self.sink.unsent:
                try:
                    await self.sink.emit(batch)  # the unsent first; counts and logs its own Redis errors
                except Exception:  # anything else: log it, keep emitting later events
                    log.exception("detector: emitting %d opportunity events failed", len(batch))

    async def flush(self) -> None:
        if self.pending or self.sink.unsent:
            batch, self.pending = self.pending, []
            await self.sink.emit(batch)


async def _follow(redis: Redis, settings: RedisSettings, detector: SpreadDetector, sink: OpportunitySink,
                  metrics: Metrics, stop: asyncio.Event, local: LocalFeed | None) -> None:
    emitter = _Emitter(sink)
    emit_task = asyncio.create_task(emitter.run(), name="opportunity-emitter")
    mine: set[bytes] = set()  # origins of the books the local feed brings
    local_books: set[tuple[str, str]] = set()

    def on_local(views: list[BookView]) -> None:
        # a book as the store marks it (or a pass of books marked while Redis was away): each the newest
        for view in views:
            if (view.venue, view.symbol) not in local_books:
                local_books.add((view.venue, view.symbol))
                mine.add(origin_of(view.venue, view.symbol))
            _evaluate(view, detector, emitter, metrics)

    def on_channel(payloads: list[bytes]) -> None:
        if mine:
            payloads = [p for p in payloads if origin(p) not in mine]
        if payloads:
            on_books(payloads)

    def on_books(payloads: list[bytes]) -> None:
        # Every book one socket read brought; evaluate only the newest of each (symbol, venue): under load
        # the detector catches up instead of queueing. Runs in the read callback.
        latest: dict[tuple[str, str], BookView] = {}
        for payload in payloads:
            view = _decode(payload, metrics)
            if view is not None:
                latest.pop((view.symbol, view.venue), None)
                latest[view.symbol, view.venue] = view
        for view in latest.values():
            _evaluate(view, detector, emitter, metrics)

    detector.early = emitter.put  # each event written the moment it is made, not after the whole update
    sub = RespSubscriber(settings.url, settings.channel, on_channel)
    lost: asyncio.Task[None] | None = None
    try:
        await sub.start()
        if local is not None:
            local.append(on_local)
        await _seed(redis, detector, emitter)
        log.info("detector: following channel %s with %d books", settings.channel, detector.book_count())
        metrics.detector_books.set(detector.book_count())
        lost = asyncio.create_task(sub.wait_lost())
        while not stop.is_set():
            await asyncio.wait({lost}, timeout=POLL_S)
            if lost.done():
                raise RedisConnectionError("the detector's subscription connection was lost")
            polled = detector.poll(time.time_ns())  # stale books close, persisted candidates open
            if polled:
                emitter.put(polled)
            metrics.detector_books.set(detector.book_count())  # here, not per book: it counts every book held
    finally:
        detector.early = None
        if local is not None and on_local in local:
            local.remove(on_local)
        if lost is not None:
            lost.cancel()
        sub.close()
        emit_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await emit_task
        await emitter.flush()


async def _seed(redis: Redis, detector: SpreadDetector, emitter: _Emitter) -> None:
    keys = [k async for k in redis.scan_iter(match=f"{KEY_PREFIX}*", count=500)]
    if not keys:
        return
    for payload in await redis.mget(keys):
        if payload is not None:
            try:
                view = decode_book(payload)
            except ValueError:
                continue
            held = detector.books.get(view.symbol, {}).get(view.venue)
            if view.valid and held is not None and held.recv_ns >= view.recv_ns:
                continue  # the local feed already brought this book or a newer one
            opps = detector.update(view, time.time_ns())
            if opps:
                emitter.put(opps)


def _decode(payload: bytes, metrics: Metrics) -> BookView | None:
    try:
        return decode_book(payload)
    except ValueError as exc:
        metrics.refusals.labels("bad_payload", "").inc()
        log.warning("detector: skipped a payload that is not a book: %s", exc)
        return None


def _evaluate(view: BookView, detector: SpreadDetector, emitter: _Emitter, metrics: Metrics) -> None:
    try:
        opps = detector.update(view, time.time_ns())
    except Exception:  # one bad update must not stop detection for every other symbol
        metrics.refusals.labels("detector_error", view.venue).inc()
        log.exception("detector: evaluating %s %s failed; update skipped", view.venue, view.symbol)
        return
    if opps:
        emitter.put(opps)
