"""The live web view's in-memory state: the open opportunities (rebuilt from the Redis stream), a ring
buffer of spread samples per (symbol, buy venue, sell venue), and feed health and refusals read from this
process's metrics (``scanner run``/``demo``) or from the books stored in Redis (``scanner detect``).

Everything is bounded: rows by ``web.max_rows``, spread series by :data:`MAX_SERIES`, each series by
``web.history_s`` samples (one a second, stored as doubles)."""

from __future__ import annotations

import asyncio
import math
import re
import time
from array import array
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.registry import Collector

from scanner.sinks.metrics import Metrics
from scanner.store.schema import decode_book

SLICE = 256  # spread series computed between two turns of the event loop (net_spreads)
MAX_SERIES = 5_000  # spread series kept (symbol x directed venue pair); more are counted, not kept
CHART_PAIRS = 8  # lines per symbol chart: the venue pairs with the highest latest net spread
ROW_FIELDS = ("id", "symbol", "buy_venue", "sell_venue", "size", "net_bps", "gross_bps", "profit_quote",
              "opened_ns", "detected_ns", "duration_ms", "transfer_status", "event")
STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
SeriesKey = tuple[str, str, str]  # (symbol, buy venue, sell venue)


def parse_id(eid: str) -> tuple[int, int]:
    """A Redis stream id ``"<ms>-<seq>"`` as a comparable pair; ValueError if it is not one."""
    if not STREAM_ID.match(eid):
        raise ValueError(f"not a stream id: {eid!r}")
    ms, seq = eid.split("-")
    return int(ms), int(seq)


def row_of(eid: str, ev: Mapping[str, Any]) -> dict[str, Any]:
    """The table's view of one stream event: the fields the page shows, plus its stream id."""
    row = {k: ev.get(k) for k in ROW_FIELDS}
    if not row["id"]:
        row["id"] = f"{ev.get('symbol')}|{ev.get('buy_venue')}|{ev.get('sell_venue')}"
    row["stream_id"] = eid
    return row


class OpenOpportunities:
    """Open opportunities by id, the most recently updated last; a close event removes one."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.rows: dict[str, dict[str, Any]] = {}
        self.last_id = "0-0"  # the newest stream entry applied
        self.evicted = 0  # rows dropped because more than max_rows were open

    def apply(self, eid: str, ev: Mapping[str, Any]) -> dict[str, Any]:
        row = row_of(eid, ev)
        oid = str(row["id"])
        self.rows.pop(oid, None)
        if row["event"] != "close":
            self.rows[oid] = row
            while len(self.rows) > self.max_rows:
                del self.rows[next(iter(self.rows))]
                self.evicted += 1
        self.last_id = eid
        return row

    def newest_first(self) -> list[dict[str, Any]]:
        return list(reversed(self.rows.values()))


class SpreadHistory:
    """The last ``window`` one-second samples of every net spread gauge, in fixed-size rings."""

    def __init__(self, window: int, max_series: int = MAX_SERIES) -> None:
        self.window, self.max_series = window, max_series
        self.times = array("d", [math.nan]) * window  # unix ms of each slot
        self.series: dict[SeriesKey, array[float]] = {}
        self._seen: dict[SeriesKey, int] = {}  # sample number when the series last had a value
        self.head = 0  # the slot the next sample goes to
        self.samples = 0
        self.refused = 0  # new series not kept because max_series were held

    def add(self, t_ms: float, values: Mapping[SeriesKey, float]) -> None:
        slot, n = self.head, self.samples
        self.times[slot] = t_ms
        for key, ring in self.series.items():
            ring[slot] = values.get(key, math.nan)
        for key in values:
            if key in self.series:
                self._seen[key] = n
            elif len(self.series) < self.max_series:
                ring = array("d", [math.nan]) * self.window
                ring[slot] = values[key]
                self.series[key], self._seen[key] = ring, n
            else:
                self.refused += 1
        for key in [k for k, last in self._seen.items() if n - last >= self.window]:  # gone for a whole window
            del self.series[key], self._seen[key]
        self.head, self.samples = (slot + 1) % self.window, n + 1

    def _order(self) -> Iterator[int]:
        """Slot indexes, oldest sample first."""
        held = min(self.samples, self.window)
        start = (self.head - held) % self.window
        return ((start + i) % self.window for i in range(held))

    def symbols(self) -> list[str]:
        return sorted({k[0] for k in self.series})

    def chart(self, symbol: str, pairs: int = CHART_PAIRS) -> dict[str, Any]:
        """The ``pairs`` series of ``symbol`` with the highest latest value, over the window."""
        order = list(self._order())
        last = (self.head - 1) % self.window

        def latest(ring: array[float]) -> float:
            v = ring[last]
            return -math.inf if math.isnan(v) else v

        keys = sorted((k for k in self.series if k[0] == symbol), key=lambda k: latest(self.series[k]), reverse=True)
        return {
            "symbol": symbol,
            "t": [self.times[i] for i in order],
            "series": [{"buy": k[1], "sell": k[2], "values": [_num(self.series[k][i]) for i in order]}
                       for k in keys[:pairs]],
        }


def _num(v: float) -> float | None:
    return None if math.isnan(v) else round(v, 3)


def samples(collector: Collector, name: str) -> Iterator[tuple[dict[str, str], float]]:
    """``(labels, value)`` of every sample called ``name`` the collector exposes now."""
    for fam in collector.collect():
        for s in fam.samples:
            if s.name == name:
                yield s.labels, s.value


async def net_spreads(metrics: Metrics, slice_n: int = SLICE) -> dict[SeriesKey, float]:
    """The net spread gauges (labels: symbol, buy, sell venue). The detector computes its series from its books
    as they are read (~1 us a pair), so they are taken ``slice_n`` at a time with the event loop served in
    between: 10 venues x 50 symbols (4,500 pairs) is no 4 ms pause."""
    out: dict[SeriesKey, float] = {}
    for i, (k, v) in enumerate(metrics.spread_net.series(), 1):
        if math.isfinite(v) and len(k) == 3:
            out[(k[0], k[1], k[2])] = v
        if i % slice_n == 0:
            await asyncio.sleep(0)  # let frames in: this is the view's sampling, not the hot path
    return out


def refusals(metrics: Metrics) -> list[dict[str, Any]]:
    """Refusal counts by reason (largest first), each with its per-venue split."""
    by: dict[str, dict[str, float]] = {}
    for (reason, venue), value in metrics.refusals.snapshot().items():
        venues = by.setdefault(reason, {})
        venues[venue or "-"] = venues.get(venue or "-", 0.0) + value
    rows = [{"reason": r, "count": int(sum(v.values())), "venues": {k: int(c) for k, c in sorted(v.items())}}
            for r, v in by.items()]
    return sorted(rows, key=lambda r: (-int(r["count"]), str(r["reason"])))


def _per_venue(collector: Collector, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, value in samples(collector, name):
        out[labels["venue"]] = out.get(labels["venue"], 0.0) + value
    return out


class FeedHealth:
    """Per-venue feed health; :meth:`from_metrics` computes messages/s between successive calls."""

    def __init__(self, venues: Iterable[str], max_book_age_ms: int) -> None:
        self.venues = sorted(venues)
        self.max_age_s = max_book_age_ms / 1e3
        self._msgs: dict[str, float] = {}
        self._at = 0.0

    def _books(self, rows: Iterable[tuple[str, bool, int]], now_ns: int) -> dict[str, dict[str, Any]]:
        counts: dict[str, list[int]] = {v: [0, 0] for v in self.venues}  # books, valid
        ages: dict[str, float] = {}  # the oldest book's receive age, s
        for venue, valid, recv_ns in rows:
            c = counts.setdefault(venue, [0, 0])
            c[0] += 1
            c[1] += 1 if valid else 0
            if recv_ns:
                ages[venue] = max(ages.get(venue, 0.0), (now_ns - recv_ns) / 1e9)
        return {v: {"books": c[0], "valid": c[1], "book_age_s": round(max(ages[v], 0.0), 3) if v in ages else None}
                for v, c in counts.items()}

    def _status(self, h: dict[str, Any]) -> str:
        if h.get("connected") == 0 or not h["books"]:
            return "down"
        age = h["book_age_s"]
        if h["valid"] < h["books"] or age is None or age > self.max_age_s:
            return "degraded"
        return "ok"

    def from_metrics(self, metrics: Metrics) -> list[dict[str, Any]]:
        """Health of the collectors in this process: connections, book validity and age, messages/s, resyncs."""
        now = time.monotonic()
        books = self._books(((v, ok, recv) for v, _s, _e, recv, ok in metrics.book_rows()), time.time_ns())
        conns = _per_venue(metrics.connections, "scanner_connections")
        msgs = _per_venue(metrics.messages, "scanner_messages_total")
        resyncs = _per_venue(metrics.resyncs, "scanner_resyncs_total")
        dt = now - self._at
        out = []
        for venue, h in sorted(books.items()):
            prev = self._msgs.get(venue)
            rate = (msgs.get(venue, 0.0) - prev) / dt if prev is not None and dt > 0 else None
            h.update(venue=venue, connected=int(conns.get(venue, 0)), messages=int(msgs.get(venue, 0)),
                     msgs_per_s=None if rate is None else round(max(rate, 0.0), 1),
                     resyncs=int(resyncs.get(venue, 0)), source="process")
            h["status"] = self._status(h)
            out.append(h)
        self._msgs, self._at = msgs, now
        return out

    def from_redis(self, payloads: Iterable[bytes | None]) -> list[dict[str, Any]]:
        """Health from the books stored in Redis (``scanner detect``: no collector in this process);
        connections, messages/s and resyncs are not known here (None: "n/a" on the page)."""
        rows = []
        for p in payloads:
            if p is None:
                continue
            try:
                b = decode_book(p)
            except ValueError:
                continue
            rows.append((b.venue, b.valid, b.recv_ns))
        out = []
        for venue, h in sorted(self._books(rows, time.time_ns()).items()):
            h.update(venue=venue, connected=None, messages=None, msgs_per_s=None, resyncs=None, source="redis")
            h["status"] = self._status(h)
            out.append(h)
        return out
