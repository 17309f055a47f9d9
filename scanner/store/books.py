"""BookStore: writes the latest top-N of every changed book to Redis, coalesced and pipelined.

Collectors call :meth:`BookStore.mark` from the receive path (no I/O, no await). A writer
task takes every book marked since its last pass, serialises each once and sends one
pipeline (``SET key payload PX ttl`` + ``PUBLISH``) on its own :class:`RespConnection`. Many
updates to one book between two passes cost one write. Passes do not wait for the one before to be
acknowledged: up to ``MAX_IN_FLIGHT`` are on the wire at once (replies come back in order), so a book
marked while Redis answers is written, and handed to the in-process listeners, on the next loop turn
instead of one round trip later. If Redis is away the marks are kept (newest wins), the books stay in
memory, errors are counted and the writer retries with backoff; nothing raises.

In-process listeners (the detector of ``scanner run``) are handed each book as it is marked, while
Redis is connected and writes succeed: the book is evaluated right after its frame is applied, not
after the next pass has serialised every book marked meanwhile (that wait was most of frame ->
opportunity). The pass then writes the same levels (taken once, at the mark). While Redis is away
nothing is handed over at mark time; a book marked then reaches the listeners once its pass is
written, so the detector still sees only what Redis holds or is being sent.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from scanner.aio import wait_stop
from scanner.book.l2 import L2Book, Pair
from scanner.config import RedisSettings
from scanner.sinks.metrics import Metrics
from scanner.store.resp import RespConnection
from scanner.store.schema import INTEGRITY_NATIVE, BookView, book_key, encode_levels, levels_of, view_of

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 16  # passes sent and not yet acknowledged; beyond it the writer waits for the oldest
RETRY_FIRST_S, RETRY_MAX_S = 0.05, 2.0  # backoff between attempts while Redis is away

Batch = dict[tuple[str, str], L2Book | None]
Stamps = list[tuple[str, str, int, int]]
# (venue, symbol, seq, recv_ns) of each valid book in a pass, and when Redis acknowledged the pass (ns)
WrittenHook = Callable[[Stamps, int], None]


@dataclass(slots=True)
class _Told:
    """A book handed to the listeners at its mark: what it was then, and the levels taken."""
    book: L2Book | None
    seq: int
    recv_ns: int
    bids: list[Pair]
    asks: list[Pair]


@dataclass(slots=True)
class _Pass:
    """One pass on the wire: its books (to mark again if it fails) and the future of Redis's replies."""
    batch: Batch
    stamps: Stamps | None
    fut: asyncio.Future[list[Any]]


class BookStore:
    """Implements the collector's ``BookSink``."""

    def __init__(self, settings: RedisSettings, metrics: Metrics) -> None:
        self.settings, self.metrics = settings, metrics
        self.conn = RespConnection(settings.url)  # the hot path: see scanner/store/resp.py
        self._dirty: Batch = {}
        self._wake = asyncio.Event()
        self._in_flight: deque[_Pass] = deque()  # oldest first, as Redis answers them
        self._failed: BaseException | None = None  # a pass failed since the writer last looked
        self._delay = RETRY_FIRST_S
        self.writes = 0
        self.failures = 0
        self.healthy = True
        self.integrity: dict[str, str] = {}  # venue -> label written with its books (default native)
        # Benchmarks only (scanner/bench/throughput.py): called after every acknowledged pass. Off (None)
        # by default: then it costs one attribute test per pass, nothing per book.
        self.on_written: WrittenHook | None = None
        # in-process readers (the detector of ``scanner run``): the books as the views decoding their payloads
        # would give, handed over as each is marked (or, marked while Redis was away, as its pass goes out)
        self.listeners: list[Callable[[list[BookView]], None]] = []
        # books handed over at their mark and not yet written: their levels, for the pass to reuse
        self._told: dict[tuple[str, str], _Told] = {}

    def set_integrity(self, venue: str, integrity: str) -> None:
        """Label every book of ``venue`` (the ccxt.pro adapter sets ``"ccxt"``)."""
        self.integrity[venue] = integrity

    def mark(self, venue: str, symbol: str, book: L2Book) -> None:
        self._dirty[(venue, symbol)] = book
        self._wake.set()
        if self.listeners and self.healthy and self.conn.connected:
            self._tell(venue, symbol, book)

    def mark_invalid(self, venue: str, symbol: str) -> None:
        self._dirty[(venue, symbol)] = None
        self._wake.set()
        if self.listeners and self.healthy and self.conn.connected:
            self._tell(venue, symbol, None)

    def _tell(self, venue: str, symbol: str, book: L2Book | None) -> None:
        """Hand the listeners this book now; the pass that writes it reuses the levels taken here."""
        bids, asks = levels_of(book, self.settings.book_depth)
        view = view_of(venue, symbol, book, bids, asks, self.integrity.get(venue, INTEGRITY_NATIVE))
        self._told[(venue, symbol)] = _Told(book, 0 if book is None else book.seq,
                                            0 if book is None else book.recv_ns, bids, asks)
        self._notify([view])

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
        while True:
            if self._failed is not None:  # a pass failed: its books are marked again; back off, then retry
                exc, self._failed = self._failed, None
                if self.healthy:
                    log.error("redis: book writes failing (%s); keeping books in memory and retrying", exc)
                self.healthy = False
                self.metrics.store_backlog.set(len(self._dirty))
                if stop.is_set():
                    await self._drain()
                    return
                await wait_stop(stop, self._delay)
                self._delay = min(self._delay * 2, RETRY_MAX_S)
                continue
            if not self._dirty:
                if stop.is_set():
                    await self._drain()  # every pass answered (or failed) before the writer ends
                    if self._failed is None and not self._dirty:
                        return
                    continue
                self._wake.clear()  # nothing is dirty: any wake-up so far is spent
                await self._wake.wait()
                continue
            if len(self._in_flight) >= MAX_IN_FLIGHT:  # Redis is behind: let marks coalesce meanwhile
                await asyncio.wait([self._in_flight[0].fut])
                continue
            self._wake.clear()
            batch, self._dirty = self._dirty, {}
            try:
                await self._write(batch)
            except (RedisError, OSError) as exc:  # not connected and could not connect, or an error reply
                self._failure(batch, exc, [])  # the newest pass: none on the wire is newer

    async def _drain(self) -> None:
        while self._in_flight:
            await asyncio.wait([self._in_flight[-1].fut])  # replies come in order: the newest settles last

    def _notify(self, views: list[BookView]) -> None:
        for listener in self.listeners:
            try:
                listener(views)
            except Exception:  # a consumer's bug must not stop the book writes
                log.exception("book store: a local listener failed on %d books", len(views))

    async def _write(self, batch: Batch) -> None:
        """Send one pass. Connected: written now, handed to the listeners, settled by :meth:`_settled` when
        Redis answers. Not connected: connect, write and wait for the replies (raises if that fails)."""
        s = self.settings
        now = time.time_ns()
        integrity, key_ttl, channel = self.integrity, s.book_ttl_ms, s.channel
        commands: list[tuple[str | bytes | int, ...]] = []
        views: list[BookView] = []
        listening, depth = bool(self.listeners), s.book_depth
        told, self._told = self._told, {}
        for key, book in batch.items():
            venue, symbol = key
            label = integrity.get(venue, INTEGRITY_NATIVE)
            t = told.get(key)
            if t is not None and t.book is book and (book is None or (t.seq == book.seq and t.recv_ns == book.recv_ns)):
                bids, asks = t.bids, t.asks  # handed over at its mark and unchanged since: the same levels
            else:
                bids, asks = levels_of(book, depth)
                if listening:
                    views.append(view_of(venue, symbol, book, bids, asks, label))
            payload = encode_levels(venue, symbol, book, bids, asks, now, label)
            commands.append(("SET", book_key(symbol, venue), payload, "PX", key_ttl))
            commands.append(("PUBLISH", channel, payload))
        # taken now: the books are live objects that keep changing while the pass is on the wire
        stamps = None if self.on_written is None else [(v, sym, b.seq, b.recv_ns) for (v, sym), b in batch.items()
                                                      if b is not None]
        sent = self.conn.send(commands)
        if sent is None:
            await self.conn.execute(commands)  # connects first if needed; raises on an error reply
            if views:
                self._notify(views)
            self._written(batch, stamps)
            return
        if views:
            self._notify(views)  # on its way to Redis: listeners need not wait for the round trip
        self._in_flight.append(_Pass(batch, stamps, sent))
        sent.add_done_callback(self._settled)

    def _settled(self, fut: asyncio.Future[list[Any]]) -> None:
        """Redis answered a pass (or the connection failed it). Passes settle oldest first."""
        i = next(i for i, p in enumerate(self._in_flight) if p.fut is fut)
        done = self._in_flight[i]
        del self._in_flight[i]  # i is 0 unless a pass was cancelled: the passes after it are the newer ones
        if fut.cancelled():
            exc: BaseException | None = RedisConnectionError("book write cancelled")
        else:
            exc = fut.exception()
            if exc is None:
                exc = next((r for r in fut.result() if isinstance(r, ResponseError)), None)
        if exc is None:
            self._written(done.batch, done.stamps)
        else:
            self._failure(done.batch, exc, list(itertools.islice(self._in_flight, i, None)))

    def _failure(self, batch: Batch, exc: BaseException, newer_passes: list[_Pass]) -> None:
        """Mark a failed pass's books again, unless a newer mark or a newer pass still on the wire holds them
        (that one is written, or marks its own books again if it fails too), and wake the writer."""
        self.failures += 1
        self.metrics.redis_errors.labels("book_store").inc()
        newer = {k for p in newer_passes for k in p.batch}
        for k, v in batch.items():
            if k not in newer:
                self._dirty.setdefault(k, v)
        if self._failed is None:
            self._failed = exc
        self._wake.set()

    def _written(self, batch: Batch, stamps: Stamps | None) -> None:
        if not self.healthy:
            log.warning("redis: book writes recovered")
        self.healthy, self._delay = True, RETRY_FIRST_S
        hook = self.on_written
        if hook is not None and stamps is not None:
            hook(stamps, time.time_ns())
        self.writes += len(batch)
        per_venue: dict[str, int] = {}
        for venue, _ in batch:
            per_venue[venue] = per_venue.get(venue, 0) + 1
        for venue, n in per_venue.items():
            self.metrics.book_writes.labels(venue).inc(n)
