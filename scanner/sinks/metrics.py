"""Every Prometheus metric the scanner exports, in one object built on one registry.

Label sets stay low-cardinality: venue, symbol, venue pair and reason; never prices.
Hot paths count locally and flush here in batches (see the collector and detector). The detector's
per-evaluation families (evaluations, refusals, spread gauges) are :class:`ScrapeFamily`: plain dicts
updated without a lock, turned into samples at scrape time, with the same exposition as prometheus_client's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: they double the exposition for no use here

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
GC_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0)
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
FEED_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WEBHOOK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# (venue, symbol, exchange time of the last applied frame in ms, receive time in ns, valid)
BookAgeRow = tuple[str, str, int, int, bool]


class _BookAgeCollector(Collector):
    """Computes book ages at scrape time, so a silent feed shows a growing age."""

    def __init__(self) -> None:
        self.sources: list[Callable[[], Iterable[BookAgeRow]]] = []

    def collect(self) -> Iterator[Metric]:
        exch = GaugeMetricFamily("scanner_book_age_seconds",
                                 "Seconds since the exchange timestamp of the last frame applied to the book",
                                 labels=["venue", "symbol"])
        recv = GaugeMetricFamily("scanner_book_receive_age_seconds",
                                 "Seconds since the last frame for the book was received",
                                 labels=["venue", "symbol"])
        valid = GaugeMetricFamily("scanner_book_valid", "1 if the book is in sync and usable, else 0",
                                  labels=["venue", "symbol"])
        now_ns = time.time_ns()
        for source in self.sources:
            for venue, symbol, exch_ms, recv_ns, ok in source():
                if exch_ms:
                    exch.add_metric([venue, symbol], max(0.0, now_ns / 1e9 - exch_ms / 1e3))
                if recv_ns:
                    recv.add_metric([venue, symbol], max(0.0, (now_ns - recv_ns) / 1e9))
                valid.add_metric([venue, symbol], 1.0 if ok else 0.0)
        yield exch
        yield recv
        yield valid


LabelKey = tuple[str, ...]


class _Child:
    """``family.labels(...)``: the prometheus_client child API (``inc``, ``set``) over one dict entry."""

    __slots__ = ("_family", "_key")

    def __init__(self, family: ScrapeFamily, key: LabelKey) -> None:
        self._family, self._key = family, key

    def inc(self, amount: float = 1.0) -> None:
        self._family.add(self._key, amount)

    def set(self, value: float) -> None:
        self._family.put(self._key, value)

    def get(self) -> float:
        return self._family.snapshot().get(self._key, 0.0)


class ScrapeFamily(Collector):
    """A counter or gauge family kept in ``values`` (label values → value) and exposed at scrape time.

    Hot paths write ``values`` directly (one dict store, no lock, no child object): every writer runs on
    the event loop's thread, and a scrape copies the dict first. ``labels(...).inc()/.set()`` and, without
    labels, ``inc()`` behave like prometheus_client's; the exposition is the same (no ``_created``: disabled
    above for every family). ``sources`` add series computed at scrape time from their owner's own state
    (the detector keeps its spread gauges and ``below_fees`` counts per venue pair, not in this dict): a
    counter's contributions are added to the dict's value of the same labels, a gauge's replace it."""

    def __init__(self, kind: str, name: str, documentation: str, labelnames: tuple[str, ...] = (),
                 registry: CollectorRegistry | None = None) -> None:
        if kind not in ("counter", "gauge"):
            raise ValueError(kind)
        self.kind, self.name, self.documentation, self.labelnames = kind, name, documentation, labelnames
        self.values: dict[LabelKey, float] = {} if labelnames else {(): 0.0}
        self.sources: list[Callable[[], Iterable[tuple[LabelKey, float]]]] = []
        if registry is not None:
            registry.register(self)

    def labels(self, *values: object, **kw: object) -> _Child:
        if not self.labelnames:
            raise ValueError(f"No label names were set when constructing {self.name}")
        if kw:
            if values or sorted(kw) != sorted(self.labelnames):
                raise ValueError("Incorrect label names")
            values = tuple(kw[n] for n in self.labelnames)
        if len(values) != len(self.labelnames):
            raise ValueError("Incorrect label count")
        return _Child(self, tuple(str(v) for v in values))

    def add(self, key: LabelKey, amount: float = 1.0) -> None:
        """Counter increment of the series ``key`` (label values, as strings)."""
        if self.kind == "counter" and amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.values[key] = self.values.get(key, 0.0) + float(amount)

    def put(self, key: LabelKey, value: float) -> None:
        """Gauge set of the series ``key``."""
        if self.kind != "gauge":
            raise AttributeError(f"{self.name} is a counter: it has no set()")
        self.values[key] = float(value)

    def inc(self, amount: float = 1.0) -> None:
        """The unlabelled family's increment."""
        if self.labelnames:
            raise ValueError(f"{self.name} has labels: use labels(...).inc()")
        self.add((), amount)

    def _family(self) -> CounterMetricFamily | GaugeMetricFamily:
        if self.kind == "counter":
            return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def series(self) -> Iterator[tuple[LabelKey, float]]:
        """The dict's series, then each source's, as they are produced (a reader may take them in slices; a
        counter's labels may come more than once, to be added up)."""
        yield from self.values.copy().items()  # copy(): atomic under the GIL
        for source in list(self.sources):
            yield from source()

    def snapshot(self) -> dict[LabelKey, float]:
        """Every series' value now: the dict's, with the sources' series added (counter) or set (gauge)."""
        if self.kind != "counter":
            return dict(self.series())
        out: dict[LabelKey, float] = {}
        for key, value in self.series():
            out[key] = out.get(key, 0.0) + value
        return out

    def collect(self) -> Iterator[Metric]:
        fam = self._family()
        for key, value in self.snapshot().items():
            fam.add_metric(list(key), value)
        yield fam


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        # collectors
        self.messages = Counter("scanner_messages", "Frames received from venues", ["venue"], registry=r)
        self.book_updates = Counter("scanner_book_updates", "Book frames applied to a valid book", ["venue"],
                                    registry=r)
        self.parse_errors = Counter("scanner_parse_errors", "Frames that could not be parsed and were skipped",
                                    ["venue", "reason"], registry=r)
        self.venue_errors = Counter("scanner_venue_errors", "Error frames sent by the venue (e.g. bad subscription)",
                                    ["venue"], registry=r)
        self.reconnects = Counter("scanner_reconnects", "Connections re-established after a loss",
                                  ["venue", "reason"], registry=r)
        self.resyncs = Counter("scanner_resyncs", "Books invalidated and resynchronised", ["venue", "reason"],
                               registry=r)
        self.snapshots = Counter("scanner_rest_snapshots", "REST book snapshot requests by outcome",
                                 ["venue", "outcome"], registry=r)
        self.connections = Gauge("scanner_connections", "Open websocket connections", ["venue"], registry=r)
        self.feed_latency = Histogram("scanner_feed_latency_seconds", "Exchange timestamp to local receive time",
                                      ["venue"], buckets=FEED_BUCKETS, registry=r)
        self.book_writes = Counter("scanner_book_writes", "Books written to Redis", ["venue"], registry=r)
        self.redis_errors = Counter("scanner_redis_errors", "Failed Redis operations", ["component"], registry=r)
        self.store_backlog = Gauge("scanner_store_backlog", "Books waiting to be written to Redis", registry=r)
        # detector
        self.evaluations = ScrapeFamily("counter", "scanner_evaluations", "Venue-pair evaluations run by the detector",
                                        registry=r)
        self.opportunities = Counter("scanner_opportunities", "Opportunities opened",
                                     ["symbol", "buy_venue", "sell_venue"], registry=r)
        self.refusals = ScrapeFamily("counter", "scanner_refusals", "Books or opportunities refused, by reason",
                                     ("reason", "venue"), registry=r)
        self.spread_gross = ScrapeFamily("gauge", "scanner_spread_gross_bps",
                                         "Top-of-book gross spread, sell bid over buy ask, bps",
                                         ("symbol", "buy_venue", "sell_venue"), registry=r)
        self.spread_net = ScrapeFamily("gauge", "scanner_spread_net_bps",
                                       "Top-of-book spread after both taker fees, bps",
                                       ("symbol", "buy_venue", "sell_venue"), registry=r)
        self.opportunity_size = Gauge("scanner_opportunity_size_base", "Executable size of the last opportunity",
                                      ["symbol", "buy_venue", "sell_venue"], registry=r)
        self.opportunity_profit = Counter("scanner_opportunity_profit_quote",
                                          "Sum of the peak expected profit of closed opportunities (quote currency)",
                                          ["symbol", "buy_venue", "sell_venue"], registry=r)
        self.detect_latency = Histogram("scanner_detect_latency_seconds",
                                        "Frame received to opportunity emitted (written to Redis)",
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.opportunity_events = Counter("scanner_opportunity_events", "Opportunity lifecycle events by kind",
                                          ["event"], registry=r)
        self.opportunity_duration = Histogram("scanner_opportunity_duration_seconds",
                                              "How long closed opportunities lasted (first qualified to close)",
                                              buckets=DURATION_BUCKETS, registry=r)
        self.gc_pause = Histogram("scanner_gc_pause_seconds", "Garbage-collector pauses by generation",
                                  ["generation"], buckets=GC_BUCKETS, registry=r)
        self.detector_books = Gauge("scanner_detector_books", "Books the detector currently holds", registry=r)
        # webhooks (scanner/webhooks/sender.py)
        self.webhook_deliveries = Counter("scanner_webhook_deliveries",
                                          "Webhook events by target and outcome (delivered, dead_letter, filtered, "
                                          "cooldown, replayed)", ["target", "outcome"], registry=r)
        self.webhook_retries = Counter("scanner_webhook_retries", "Webhook attempts that failed and were retried",
                                       ["target"], registry=r)
        self.webhook_dead_letters = Counter("scanner_webhook_dead_letters",
                                            "Webhook events moved to the dead-letter stream", ["target"], registry=r)
        self.webhook_latency = Histogram("scanner_webhook_delivery_latency_seconds",
                                         "Opportunity detected to webhook answered 2xx", ["target"],
                                         buckets=WEBHOOK_BUCKETS, registry=r)
        self.webhook_outbox_lag = Gauge("scanner_webhook_outbox_lag",
                                        "Outbox entries not yet delivered to the target (unread + pending)",
                                        ["target"], registry=r)
        self._ages = _BookAgeCollector()
        r.register(self._ages)

    def add_book_source(self, source: Callable[[], Iterable[BookAgeRow]]) -> None:
        """Register a callable listing books for the scrape-time age/validity gauges."""
        self._ages.sources.append(source)

    def book_rows(self) -> Iterator[BookAgeRow]:
        """Every registered book as a ``BookAgeRow`` (for ``/readyz``, scanner/sinks/readiness.py)."""
        for source in self._ages.sources:
            yield from source()

    def render(self) -> bytes:
        return generate_latest(self.registry)
