"""One venue's collector: frames → parser → synced books → book store, resyncing per instrument.

The collector owns the books of one venue. A broken book (gap, checksum, crossed, bad
level, lost connection) is published as invalid at once and resynced on its own: the
venue's resubscribe frames when it has them (OKX), a rate-limited REST snapshot bridged
to the buffered diffs otherwise (Binance, or OKX when no WS snapshot comes). Other
instruments keep flowing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import Protocol

from scanner.aio import wait_stop
from scanner.book.errors import BookError, ParseError, SequenceGap
from scanner.book.l2 import L2Book
from scanner.book.sync import SnapshotTooOld, SyncedBook
from scanner.config import VenueSettings
from scanner.feed.connection import Connection, run_connection
from scanner.feed.handshake import connect_resolver
from scanner.feed.snapshots import SnapshotFetcher
from scanner.feed.tap import FrameTap
from scanner.markets import Market
from scanner.model import BookMsg, Control
from scanner.sinks.metrics import BookAgeRow, Metrics
from scanner.venues.spec import Parser, SnapshotRequest, VenueSpec

log = logging.getLogger(__name__)

RESYNC_MEMORY_S = 60.0  # resyncs of one instrument closer than this count as a streak
RESYNC_MAX_DELAY_S = 30.0


class StreamGap(SequenceGap):
    """The connection's own sequence broke, so every book it carries may have missed data."""


class BookSink(Protocol):
    """Where books go (the Redis book store implements this). Called on the receive path:
    must not block or await."""

    def mark(self, venue: str, symbol: str, book: L2Book) -> None: ...

    def mark_invalid(self, venue: str, symbol: str) -> None: ...


class VenueCollector:
    def __init__(self, spec: VenueSpec, settings: VenueSettings, insts: dict[str, str], sink: BookSink,
                 metrics: Metrics, markets: dict[str, Market] | None = None) -> None:
        """``insts`` maps the venue's instrument ids to unified symbols (already resolved);
        ``markets`` holds their market rows (venue id -> Market), when known."""
        self.spec, self.settings, self.venue = spec, settings, spec.name
        self.symbols = insts
        self.sink, self.metrics = sink, metrics
        self.markets = markets or {}
        self.books: dict[str, SyncedBook] = {i: spec.make_book(settings.channel) for i in insts}
        # A venue that streams an instrument under another id (Coinbase BTC-USDC as BTC-USD):
        # stream id -> the subscribed ids that must receive its frames too.
        self.aliases: dict[str, list[str]] = {}
        for inst in insts:
            m = self.markets.get(inst)
            if m is not None and m.stream_id and m.stream_id != inst:
                self.aliases.setdefault(m.stream_id, []).append(inst)
        self.conn_of: dict[str, Connection] = {}
        self.connections: list[Connection] = []
        self.parsers: dict[int, Parser] = {}  # one per connection (shard)
        resolve = connect_resolver(spec, settings) if spec.connect_path else None
        ids = list(insts)
        step = settings.max_instruments_per_conn
        for shard, start in enumerate(range(0, len(ids), step)):
            conn = Connection(
                self.venue, settings.ws_url, ids[start : start + step], text_ping=spec.text_ping,
                text_pong=spec.text_pong, ping_idle_s=settings.ping_idle_s, watchdog_s=settings.watchdog_s,
                max_age_s=spec.max_connection_age_s, max_sends_per_s=spec.max_sends_per_s, shard=shard,
                resolve=resolve, ping_periodically=spec.ping_periodically)
            self.connections.append(conn)
            self.parsers[shard] = spec.make_parser(
                settings.channel, [self.markets[i] for i in conn.insts if i in self.markets])
            for inst in conn.insts:
                self.conn_of[inst] = conn
        self._resync_hist: dict[str, tuple[float, int]] = {}  # inst -> (last resync, streak)
        self.fetcher: SnapshotFetcher | None = None
        if spec.snapshot_request is not None and spec.parse_snapshot is not None:
            self.fetcher = SnapshotFetcher(self.venue, self._snapshot_request, spec.parse_snapshot,
                                           self.on_snapshot, settings.rest_weight_per_min, self._snapshot_outcome)
        self.tap: FrameTap | None = None  # scanner record (set_tap)
        # hot-path counters, flushed to Prometheus by flush_counters()
        self._frames = 0
        self._applied = 0
        self._m_frames = metrics.messages.labels(self.venue)
        self._m_applied = metrics.book_updates.labels(self.venue)
        self._m_latency = metrics.feed_latency.labels(self.venue)
        # Feed latency is bucketed here and flushed with the counters: Histogram.observe per frame takes
        # two locks and walks the buckets in Python (~5% of the receive path at 30k updates/s).
        self._lat_bounds: list[float] = list(self._m_latency._upper_bounds)
        self._lat_counts = [0] * len(self._lat_bounds)
        self._lat_sum = 0.0
        metrics.add_book_source(self.book_rows)

    def set_tap(self, tap: FrameTap | None) -> None:
        """Report every connect, sent frame, received frame and REST snapshot to ``tap`` (None: stop)."""
        self.tap = tap
        for conn in self.connections:
            conn.tap = tap
        if self.fetcher is not None:
            self.fetcher.tap = tap

    # -- running -----------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            for conn in self.connections:
                tg.create_task(run_connection(conn, self, stop), name=f"{self.venue}-conn{conn.shard}")
            fetch = None
            if self.fetcher is not None:
                fetch = tg.create_task(self.fetcher.run(stop), name=f"{self.venue}-snapshots")
            tg.create_task(self._flush_counters_loop(stop), name=f"{self.venue}-counters")
            await stop.wait()
            if fetch is not None:
                fetch.cancel()  # it may be parked on an empty queue

    async def _flush_counters_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.flush_counters()
            await wait_stop(stop, 1.0)
        self.flush_counters()

    def flush_counters(self) -> None:
        if self._frames:
            self._m_frames.inc(self._frames)
            self._frames = 0
        if self._applied:
            self._m_applied.inc(self._applied)
            self._applied = 0
        counts = self._lat_counts
        if any(counts):
            # the same buckets and sum Histogram.observe would have produced, one locked add each
            buckets = self._m_latency._buckets
            for i, n in enumerate(counts):
                if n:
                    buckets[i].inc(n)
                    counts[i] = 0
            self._m_latency._sum.inc(self._lat_sum)
            self._lat_sum = 0.0

    def book_rows(self) -> Iterator[BookAgeRow]:
        for inst, sb in list(self.books.items()):  # a snapshot: /metrics is rendered on a thread
            yield self.venue, self.symbols[inst], sb.book.exch_ms, sb.book.recv_ns, sb.valid

    # -- FrameSink ---------------------------------------------------------------------------------
    def on_open(self, conn: Connection) -> None:
        self.metrics.connections.labels(self.venue).inc()
        self.parsers[conn.shard].on_connect()
        if self.tap is not None:
            self.tap.on_connect(conn, conn.addr)
        if self.spec.wait_ready:
            log.info("%s[%d]: connected to %s; waiting for the welcome", self.venue, conn.shard, conn.url)
            return
        self._subscribe(conn)

    def _subscribe(self, conn: Connection) -> None:
        log.info("%s[%d]: connected to %s; subscribing %d instruments", self.venue, conn.shard, conn.url,
                 len(conn.insts))
        for frame in self.spec.subscribe(conn.insts, self.settings.channel):
            conn.send(frame)

    def on_close(self, conn: Connection, reason: str) -> None:
        self.metrics.connections.labels(self.venue).dec()
        log.warning("%s[%d]: connection closed (%s); books invalid until resynced", self.venue, conn.shard, reason)
        for inst in conn.insts:
            sb = self.books[inst]
            if sb.valid:
                self.metrics.resyncs.labels(self.venue, "reconnect").inc()
            sb.invalidate()
            self.sink.mark_invalid(self.venue, self.symbols[inst])

    def on_reconnect_wait(self, conn: Connection, reason: str, delay: float) -> None:
        self.metrics.reconnects.labels(self.venue, reason).inc()
        log.info("%s[%d]: reconnecting in %.2fs after %s", self.venue, conn.shard, delay, reason)

    def on_frame(self, conn: Connection, payload: bytes, recv_ns: int) -> None:
        self._frames += 1
        if self.tap is not None:
            self.tap.on_recv(conn, payload, recv_ns)
        try:
            events = self.parsers[conn.shard].parse(payload, recv_ns)
        except ParseError as exc:
            self.metrics.parse_errors.labels(self.venue, "malformed").inc()
            log.debug("%s: skipped frame: %s", self.venue, exc)
            return
        for ev in events:
            if type(ev) is BookMsg:
                self._on_book(conn, ev)
            else:
                self._on_control(conn, ev)  # type: ignore[arg-type]

    # -- books -------------------------------------------------------------------------------------
    def _on_book(self, conn: Connection, msg: BookMsg) -> None:
        sb = self.books.get(msg.inst)
        if self.aliases:
            also = self.aliases.get(msg.inst)
            if also is not None:
                for inst in also:
                    self._on_book_of(inst, self.books[inst], BookMsg(
                        inst, msg.snapshot, msg.bids, msg.asks, msg.seq, msg.prev, msg.checksum, msg.exch_ms,
                        msg.recv_ns))
                if sb is None:
                    return
        if sb is None:
            self.metrics.parse_errors.labels(self.venue, "unknown_instrument").inc()
            return
        self._on_book_of(msg.inst, sb, msg)

    def _on_book_of(self, inst: str, sb: SyncedBook, msg: BookMsg) -> None:
        try:
            changed = sb.on_message(msg)
        except BookError as exc:
            self._resync(inst, exc)
            return
        if changed:
            self._applied += 1
            if msg.exch_ms:
                lat = msg.recv_ns / 1e9 - msg.exch_ms / 1e3
                if lat < 0.0:
                    lat = 0.0
                self._lat_counts[bisect_left(self._lat_bounds, lat)] += 1  # first bound >= lat, as observe()
                self._lat_sum += lat
            self.sink.mark(self.venue, self.symbols[inst], sb.book)
        elif not sb.valid and self.fetcher is not None and 0 < self.spec.rest_seed_after <= sb.buffered:
            self.fetcher.request(inst)

    def on_snapshot(self, inst: str, msg: BookMsg) -> None:
        """A REST snapshot arrived; bridge it unless the book got back in sync meanwhile."""
        sb = self.books.get(inst)
        if sb is None or sb.valid:
            return
        try:
            sb.on_snapshot(msg)
        except SnapshotTooOld as exc:
            log.info("%s: %s snapshot too old (%s); fetching another", self.venue, inst, exc)
            if self.fetcher is not None:
                self.fetcher.request(inst)
            return
        except BookError as exc:
            self._resync(inst, exc)
            return
        log.info("%s: %s in sync from REST snapshot at seq %d", self.venue, inst, sb.book.seq)
        self.sink.mark(self.venue, self.symbols[inst], sb.book)

    def _resync(self, inst: str, exc: BookError) -> None:
        """Publish the book as invalid now; ask the venue for a fresh one, at once the first
        time and with growing delays (0.5 s … 30 s) if it keeps breaking within a minute,
        so a misbehaving stream cannot burn the venue's subscription or REST budget."""
        self.metrics.resyncs.labels(self.venue, exc.reason).inc()
        self.sink.mark_invalid(self.venue, self.symbols[inst])
        now = time.monotonic()
        last, n = self._resync_hist.get(inst, (0.0, 0))
        n = n + 1 if now - last < RESYNC_MEMORY_S and not exc.routine else 1
        self._resync_hist[inst] = (now, n)
        delay = 0.0 if n == 1 else min(RESYNC_MAX_DELAY_S, 0.5 * 2 ** (n - 2))
        log.warning("%s: %s book broken (%s: %s); resyncing this instrument only%s", self.venue, inst, exc.reason,
                    exc, f" in {delay:.1f}s" if delay else "")
        if delay:
            asyncio.get_running_loop().call_later(delay, self._request_fresh_book, inst)
        else:
            self._request_fresh_book(inst)

    def _request_fresh_book(self, inst: str) -> None:
        if self.books[inst].valid:
            return
        conn = self.conn_of[inst]
        ws_snapshot = self.spec.ws_snapshot
        frames = (ws_snapshot or self.spec.resubscribe)(inst, self.settings.channel)
        if frames and conn.is_open:
            for frame in frames:
                conn.send(frame)
        elif self.fetcher is not None:
            self.fetcher.request(inst)

    def _on_control(self, conn: Connection, ev: Control) -> None:
        if ev.kind == "subscribed":
            ws_snapshot = self.spec.ws_snapshot
            if ws_snapshot is not None and ev.inst in self.books:
                if not self.books[ev.inst].valid:
                    for frame in ws_snapshot(ev.inst, self.settings.channel):
                        conn.send(frame)
            elif self.spec.snapshot_on_subscribe and self.fetcher is not None:
                # an ack naming one instrument (Gate: one stream per request) seeds only that one:
                # the others may not be subscribed yet, and a snapshot taken before would miss diffs
                for inst in [ev.inst] if ev.inst in self.books else conn.insts:
                    if not self.books[inst].valid:
                        self.fetcher.request(inst)
        elif ev.kind == "send":
            conn.send(ev.detail)
        elif ev.kind == "ready":
            self._subscribe(conn)
        elif ev.kind == "resync":
            self._resync_stream(conn, ev.inst, ev.detail or "stream_gap")
        elif ev.kind == "error":
            self.metrics.venue_errors.labels(self.venue).inc()
            log.error("%s: venue error: %s", self.venue, ev.detail)
        elif ev.kind == "reconnect":
            log.warning("%s[%d]: venue asks to reconnect (%s)", self.venue, conn.shard, ev.detail)
            conn.request_close("venue_notice")
        elif ev.kind == "ignored":
            self.metrics.parse_errors.labels(self.venue, "unexpected_channel").inc()

    def _resync_stream(self, conn: Connection, inst: str, reason: str) -> None:
        """The venue's stream (not one book) lost data: resync ``inst``, or every instrument
        on the connection when ``inst`` is empty (Coinbase's per-connection sequence)."""
        insts = [inst] if inst else conn.insts
        for i in insts:
            sb = self.books.get(i)
            if sb is None:
                continue
            sb.invalidate()
            self._resync(i, StreamGap(f"{reason} on {conn.venue}[{conn.shard}]"))

    def _snapshot_request(self, inst: str) -> SnapshotRequest:
        assert self.spec.snapshot_request is not None
        return self.spec.snapshot_request(self.settings.rest_url, inst)

    def _snapshot_outcome(self, outcome: str) -> None:
        self.metrics.snapshots.labels(self.venue, outcome).inc()
