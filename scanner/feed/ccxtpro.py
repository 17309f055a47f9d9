"""The generic ccxt.pro adapter: the long tail of venues, enabled in config as ``ccxtpro:<id>``.

One ccxt.pro exchange instance per venue. Markets come from ccxt's own REST ``load_markets``
(or are pre-seeded with ``set_markets`` from ``venues.ccxtpro:<id>.markets``, for simulators).
Symbols are watched in batches with ``watch_order_book_for_symbols`` (one task per symbol with
``watch_order_book`` when the exchange lacks ``watchOrderBookForSymbols``). Every book ccxt
returns is converted to our :class:`~scanner.book.l2.L2Book` (top ``depth`` levels; ccxt's
floats become the exact decimal string of their shortest repr, never scientific notation)
and handed to the same book sink (Redis book store) the native collectors use, labelled with
integrity ``"ccxt"``: ccxt's own sequence/checksum handling, which varies by venue, is all
that stands behind it. ``exch_ms`` is the book's ccxt timestamp, ``recv_ns`` the local time
the watch returned.

Any ccxt error marks the affected books invalid at once (the symbols the error names, else
every symbol of the failing watch), is counted (``scanner_resyncs_total{reason}`` per book,
plus ``scanner_reconnects_total`` for network errors and ``scanner_venue_errors_total`` for
venue errors), and the watch is retried after a jittered, growing delay, forever, until
stopped. ccxt itself reconnects and resubscribes on the next watch call.

This is the long tail, not a replacement for native collectors: ccxt floats and its
per-venue checks are weaker than the exact strings, sequence chains and checksums of
``scanner/venues``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

import ccxt.pro

from scanner.book.l2 import INF, BookSide, L2Book
from scanner.config import CcxtVenueSettings
from scanner.feed.backoff import backoff
from scanner.feed.collector import BookSink
from scanner.sinks.metrics import BookAgeRow, Metrics
from scanner.store.schema import INTEGRITY_CCXT

log = logging.getLogger(__name__)

WATCH_BATCH = 100  # symbols per watch_order_book_for_symbols call (Binance allows 200)


class LabelledBookSink(BookSink, Protocol):
    """A book sink that can label a venue's books (the Redis book store)."""

    def set_integrity(self, venue: str, integrity: str) -> None: ...


def fmt_float(x: float) -> str:
    """The shortest decimal string that reads back as ``x``, never in scientific notation
    (``65000.0`` → ``"65000"``, ``1e-05`` → ``"0.00001"``)."""
    r = repr(x)
    if "e" in r:
        return format(Decimal(r), "f")
    return r[:-2] if r.endswith(".0") else r


FMT_CACHE_MAX = 200_000  # formatted floats kept per collector before the cache is cleared


def _fmt_checked(x: Any, cache: dict[float, str]) -> str:
    """Format a value not in the cache yet, after checking it is a finite number >= 0."""
    f = float(x)
    if not 0.0 <= f < INF:  # also rejects NaN
        raise ValueError(f"{x!r} is not a finite number >= 0")
    s = cache[f] = fmt_float(f)
    return s


def load_side(side: BookSide, rows: Sequence[Sequence[Any]], depth: int, cache: dict[float, str]) -> None:
    """Replace ``side`` with ccxt's ``[[price, amount], ...]`` (best first), top ``depth`` levels.
    ``cache`` memoises the checked :func:`fmt_float` of every number seen (most levels repeat from
    one update to the next, and repr is the costly part). Raises ValueError on a negative,
    zero-price or non-finite level."""
    sign = side.sign
    levels: dict[float, tuple[str, str]] = {}
    get = cache.get
    for row in rows[:depth]:
        p, q = row[0], row[1]
        if not q:
            continue  # ccxt drops empty levels itself; never keep one
        ps, qs = get(p), get(q)
        if ps is None:
            ps = _fmt_checked(p, cache)
        if qs is None:
            qs = _fmt_checked(q, cache)
        if not p:
            raise ValueError(f"level {p!r} x {q!r} has a zero price")
        levels[p * sign] = (ps, qs)
    keys = sorted(levels)  # ccxt's sides are sorted already: a linear pass
    side.set_sorted(keys, [levels[k][0] for k in keys], [levels[k][1] for k in keys])


def load_book(book: L2Book, ob: Mapping[str, Any], depth: int, recv_ns: int,
              cache: dict[float, str] | None = None) -> None:
    """Fill ``book`` from a ccxt order book; ValueError/TypeError/KeyError if it is malformed."""
    if cache is None:
        cache = {}
    elif len(cache) > FMT_CACHE_MAX:
        cache.clear()
    load_side(book.bids, ob["bids"], depth, cache)
    load_side(book.asks, ob["asks"], depth, cache)
    nonce, ts = ob.get("nonce"), ob.get("timestamp")
    book.seq = nonce if type(nonce) is int else 0
    book.exch_ms = int(ts) if ts else 0
    book.recv_ns = recv_ns


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ccxt.ChecksumError):
        return "checksum"
    if isinstance(exc, ccxt.InvalidNonce):
        return "seq_gap"
    if isinstance(exc, ccxt.NetworkError):
        return "reconnect"
    return "venue_error"


class CcxtProCollector:
    """Collects one ``ccxtpro:<id>`` venue into a book sink; ``run(stop)`` until stopped."""

    def __init__(self, settings: CcxtVenueSettings, sink: LabelledBookSink, metrics: Metrics,
                 markets: Sequence[Mapping[str, Any]] | None = None) -> None:
        """``markets`` (ccxt unified market dicts) pre-seed the exchange instead of
        ``load_markets``; by default ``settings.markets``."""
        self.settings, self.venue = settings, settings.name
        self.sink, self.metrics = sink, metrics
        self.depth = settings.depth
        self._fmt_cache: dict[float, str] = {}
        self.seed_markets = markets if markets is not None else settings.markets
        # ccxt deep-merges the constructor config into its own description
        self.exchange: Any = getattr(ccxt.pro, settings.exchange_id)(dict(settings.options))
        self.symbols: list[str] = []  # the configured symbols the venue lists; set by run()
        self.books: dict[str, L2Book] = {}
        self.valid: dict[str, bool] = {}
        self.updates = 0  # books converted and handed to the sink
        self.errors = 0
        self.watch_loops = 0
        self.ready = asyncio.Event()  # markets resolved, watches started
        sink.set_integrity(self.venue, INTEGRITY_CCXT)
        self._m_updates = metrics.book_updates.labels(self.venue)
        self._m_messages = metrics.messages.labels(self.venue)
        self._m_latency = metrics.feed_latency.labels(self.venue)
        metrics.add_book_source(self.book_rows)

    def book_rows(self) -> Iterator[BookAgeRow]:
        for sym, book in list(self.books.items()):  # a snapshot: /metrics is rendered on a thread
            yield self.venue, sym, book.exch_ms, book.recv_ns, self.valid[sym]

    # -- running -----------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        main = asyncio.create_task(self._main(), name=f"{self.venue}-main")
        try:
            await stop.wait()
        finally:
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await main
            await self.exchange.close()

    async def _main(self) -> None:
        try:
            await self._collect()
        except Exception:  # a bug, not a venue problem (those are retried): say so, keep the pipeline up
            log.exception("%s: the ccxt.pro adapter stopped", self.venue)
            for sym in self.symbols:
                self.invalidate(sym, "adapter_error", "stopped")

    async def _collect(self) -> None:
        await self._load_markets()
        if not self.symbols:
            log.error("%s: none of the configured symbols is listed; venue left out", self.venue)
            return
        ex = self.exchange
        if ex.has.get("watchOrderBookForSymbols"):
            groups = [self.symbols[i : i + WATCH_BATCH] for i in range(0, len(self.symbols), WATCH_BATCH)]
        else:
            groups = [[s] for s in self.symbols]
        self.watch_loops = len(groups)
        log.info("%s: watching %d symbols in %d watch loop(s)", self.venue, len(self.symbols), len(groups))
        tasks = [asyncio.create_task(self._watch(g), name=f"{self.venue}-watch{i}") for i, g in enumerate(groups)]
        self.ready.set()
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _load_markets(self) -> None:
        ex = self.exchange
        if self.seed_markets is not None:
            try:
                ex.set_markets([dict(m) for m in self.seed_markets])
            except Exception as exc:  # ccxt indexes the dicts and raises whatever it trips on
                self.metrics.venue_errors.labels(self.venue).inc()
                log.error("%s: the configured markets are not usable by ccxt (%s: %s)", self.venue,
                          type(exc).__name__, exc)
                return
        else:
            delays = backoff(base=1.0, cap=60.0)
            while True:
                try:
                    await ex.load_markets()
                    break
                except Exception as exc:  # any ccxt or transport failure: retry forever
                    self.metrics.venue_errors.labels(self.venue).inc()
                    delay = next(delays)
                    log.error("%s: load_markets failed (%s: %s); retrying in %.1fs", self.venue,
                              type(exc).__name__, exc, delay)
                    await asyncio.sleep(delay)
        markets = ex.markets or {}
        for sym in self.settings.symbols:
            m = markets.get(sym)
            if m is None or m.get("active") is False:
                log.warning("%s: does not list %s (or it is not trading); left out for this venue", self.venue, sym)
                continue
            self.symbols.append(sym)
            self.books[sym] = L2Book()
            self.valid[sym] = False

    async def _watch(self, symbols: list[str]) -> None:
        """Watch ``symbols`` forever; errors invalidate, count, back off and retry."""
        ex, limit = self.exchange, self.settings.limit
        single = None if ex.has.get("watchOrderBookForSymbols") else symbols[0]  # then one symbol per loop
        delays: Iterator[float] | None = None
        while True:
            try:
                if single is not None:
                    ob = await ex.watch_order_book(single, limit)
                else:
                    ob = await ex.watch_order_book_for_symbols(symbols, limit)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # ccxt errors and anything ccxt's parsing throws: never give up
                if delays is None:
                    delays = backoff(base=0.5, cap=30.0)
                delay = next(delays)
                self.on_error(exc, symbols, delay)
                await asyncio.sleep(delay)
                continue
            delays = None
            self.on_book(ob, time.time_ns())

    def on_book(self, ob: Any, recv_ns: int) -> None:
        """Convert one ccxt book (a dict) and hand it to the sink (the hot path)."""
        self._m_messages.inc()
        if not isinstance(ob, dict):
            self.metrics.parse_errors.labels(self.venue, "malformed").inc()
            return
        sym = ob.get("symbol")
        if not isinstance(sym, str) or (book := self.books.get(sym)) is None:
            self.metrics.parse_errors.labels(self.venue, "unknown_instrument").inc()
            return
        try:
            load_book(book, ob, self.depth, recv_ns, self._fmt_cache)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            self.metrics.parse_errors.labels(self.venue, "bad_level").inc()
            self.invalidate(sym, "bad_level", str(exc))
            return
        if book.crossed():
            self.invalidate(sym, "crossed", "best bid >= best ask")
            return
        if not self.valid[sym]:
            self.valid[sym] = True
            log.info("%s: %s book valid", self.venue, sym)
        self.updates += 1
        self._m_updates.inc()
        if book.exch_ms:
            self._m_latency.observe(max(0.0, recv_ns / 1e9 - book.exch_ms / 1e3))
        self.sink.mark(self.venue, sym, book)

    def on_error(self, exc: BaseException, symbols: list[str], delay: float) -> None:
        """A watch failed: invalidate the books it names (else all of ``symbols``), count it."""
        self.errors += 1
        reason = _reason(exc)
        text = str(exc)
        named = [s for s in symbols if s in text] if reason in ("checksum", "seq_gap") else []
        if reason == "reconnect":
            self.metrics.reconnects.labels(self.venue, "network").inc()
        elif reason == "venue_error":
            self.metrics.venue_errors.labels(self.venue).inc()
        log.warning("%s: %s: %s; books invalid, retrying in %.2fs", self.venue, type(exc).__name__, text[:300],
                    delay)
        for sym in named or symbols:
            self.invalidate(sym, reason, type(exc).__name__)

    def invalidate(self, sym: str, reason: str, detail: str) -> None:
        """Publish ``sym`` as invalid; counted as a resync when it was valid."""
        if self.valid.get(sym):
            self.metrics.resyncs.labels(self.venue, reason).inc()
            log.info("%s: %s book invalid (%s: %s)", self.venue, sym, reason, detail)
        self.valid[sym] = False
        self.sink.mark_invalid(self.venue, sym)
