"""BookStore: writes the latest top-N of every changed book to Redis, coalesced and pipelined.

Collectors call :meth:`BookStore.mark` from the receive path (no I/O, no await). A writer
task takes every book marked since its last pass, serialises each once and sends one
pipeline (``SET key payload PX ttl`` + ``PUBLISH``) on its own :class:`RespConnection`. Many
updates to one book between two passes cost one write. If Redis is away the marks are kept (newest wins), the books stay
in memory, errors are counted and the writer retries with backoff; nothing raises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from redis.exceptions import RedisError, ResponseError

from scanner.aio import wait_stop
from scanner.book.l2 import L2Book
from scanner.config import RedisSettings
from scanner.sinks.metrics import Metrics
from scanner.store.resp import RespConnection
from scanner.store.schema import INTEGRITY_NATIVE, BookView, book_key, encode_levels, levels_of, view_of

log = logging.getLogger(__name__)

# (venue, symbol, seq, recv_ns) of each valid book in a pass, and when Redis acknowledged the pass (ns)
WrittenHook = Callable[[list[tuple[str, str, int, int]], int], None]


class BookStore:
    """Implements the collector's ``BookSink``."""

    def __init__(self, settings: RedisSettings, metrics: Metrics) -> None:
        self.settings, self.metrics = settings, metrics
        self.conn = RespConnection(settings.url)  # the hot path: see scanner/store/resp.py
        self._dirty: dict[tuple[str, str], L2Book | None] = {}
        self._wake = asyncio.Event()
        self.writes = 0
        self.failures = 0
        self.healthy = True
        self.integrity: dict[str, str] = {}  # venue -> label written with its books (default native)
        # Benchmarks only (scanner/bench/throughput.py): called after every acknowledged pass. Off (None)
        # by default: then it costs one attribute test per pass, nothing per book.
        self.on_written: WrittenHook | None = None
        # in-process readers (the detector of ``scanner run``): each pass's books as the views decoding their
        # payloads would give, handed over as the pass goes out
        self.listeners: list[Callable[[list[BookView]], None]] = []

    def set_integrity(self, venue: str, integrity: str) -> None:
        """Label every book of ``venue`` (the ccxt.pro adapter sets ``"ccxt"``)."""
        self.integrity[venue] = integrity

    def mark(self, venue: str, symbol: str, book: L2Book) -> None:
        self._dirty[(venue, symbol)] = book
        self._wake.set()

    def mark_invalid(self, venue: str, symbol: str) -> None:
        self._dirty[(venue, symbol)] = None
        self._wake.set()

    @property
    def backlog(self) -> int:
        return len(self._dirty)

    async def run(self, stop: asyncio.Event) -> None:
        # ``stop`` wakes the writer too: one watcher for the whole run, not two tasks and a wait() per idle
        watcher = asyncio.ensure_future(stop.wait())
        watcher.add_done_callback(lambda _: self._wake.set())
        try:
            await self._run(stop)
        finally:
            watcher.cancel()

    async def _run(self, stop: asyncio.Event) -> None:
        delay = 0.05
        while True:
            if not self._dirty:
                if stop.is_set():
                    return
                self._wake.clear()  # nothing is dirty: any wake-up so far is spent
                await self._wake.wait()
                continue
            self._wake.clear()
            batch, self._dirty = self._dirty, {}
            try:
                await self._write(batch)
            except (RedisError, OSError) as exc:
                self.failures += 1
                self.metrics.redis_errors.labels("book_store").inc()
                if self.healthy:
                    log.error("redis: book writes failing (%s); keeping books in memory and retrying", exc)
                self.healthy = False
                for k, v in batch.items():  # keep marks made meanwhile: they are newer
                    self._dirty.setdefault(k, v)
                self.metrics.store_backlog.set(len(self._dirty))
                if stop.is_set():
                    return
                await wait_stop(stop, delay)
                delay = min(delay * 2, 2.0)
                continue
            if not self.healthy:
                log.warning("redis: book writes recovered")
            self.healthy, delay = True, 0.05

    def _notify(self, views: list[BookView]) -> None:
        for listener in self.listeners:
            try:
                listener(views)
            except Exception:  # a consumer's bug must not stop the book writes
                log.exception("book store: a local listener failed on %d books", len(views))

    async def _write(self, batch: dict[tuple[str, str], L2Book | None]) -> None:
        s = self.settings
        now = time.time_ns()
        integrity, key_ttl, channel = self.integrity, s.book_ttl_ms, s.channel
        commands: list[tuple[str | bytes | int, ...]] = []
        views: list[BookView] = []
        listening, depth = bool(self.listeners), s.book_depth
        for (venue, symbol), book in batch.items():
            label = integrity.get(venue, INTEGRITY_NATIVE)
            bids, asks = levels_of(book, depth)
            payload = encode_levels(venue, symbol, book, bids, asks, now, label)
            commands.append(("SET", book_key(symbol, venue), payload, "PX", key_ttl))
            commands.append(("PUBLISH", channel, payload))
            if listening:
                views.append(view_of(venue, symbol, book, bids, asks, label))
        hook = self.on_written
        # taken before the await: the books are live objects that keep changing meanwhile
        stamps = None if hook is None else [(v, sym, b.seq, b.recv_ns) for (v, sym), b in batch.items()
                                        if b is not None]
        sent = self.conn.send(commands) if self.listeners else None
        if sent is None:
            await self.conn.execute(commands)  # connects first if needed
            self._notify(views)
        else:
            self._notify(views)  # on its way to Redis: listeners need not wait for the round trip
            for reply in await sent:
                if isinstance(reply, ResponseError):
                    raise reply
        if hook is not None and stamps is not None:
            hook(stamps, time.time_ns())
        self.writes += len(batch)
        per_venue: dict[str, int] = {}
        for venue, _ in batch:
            per_venue[venue] = per_venue.get(venue, 0) + 1
        for venue, n in per_venue.items():
            self.metrics.book_writes.labels(venue).inc(n)
