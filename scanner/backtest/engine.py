"""The backtest engine: captures -> parsers -> synced books -> the live detector, in receive-time order.

Pure apart from reading the captures. Every capture is streamed (see :mod:`scanner.backtest.sources`) and
the captures are merged by receive time with :func:`heapq.merge`, so venues interleave as they arrived.
Each venue has the state ``scanner replay`` uses (a :class:`~scanner.replay.Replayer`: the venue's parser
and one ``SyncedBook`` per instrument, all validation on). Books reach the detector as the live book store
hands them over: after each message that changed a valid book, the view of its best
``redis.book_depth`` levels (:func:`~scanner.store.schema.view_of`); after a book error or a stream gap,
an invalid view, which the detector refuses and which closes that book's opportunities. The detector is
built from the settings exactly as ``scanner run`` builds it, and its clock is the recorded receive time:
``update(view, ts)`` per book change, ``poll(ts)`` whenever the recorded time has moved >= 100 ms since
the last poll, and one last ``poll`` at the end. Opportunities still open then are reported as open.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from operator import itemgetter

from scanner.backtest.sources import Event, Source, events, resolve
from scanner.book.errors import BookError, ParseError
from scanner.book.sync import SyncedBook
from scanner.config import Settings
from scanner.detect.detector import SpreadDetector, detector_for, unusable_reason
from scanner.detect.lifecycle import OpportunityTracker
from scanner.model import BookMsg, Control, Opportunity
from scanner.replay import Replayer
from scanner.sinks.metrics import Metrics
from scanner.store.schema import BookView, levels_of, view_of

POLL_NS = 100_000_000  # the live runner polls at least this often
SAMPLE_NS = 1_000_000_000  # spread samples: at most one per symbol per recorded second

PairKey = tuple[str, str, str]  # (symbol, buy venue, sell venue)


@dataclass(slots=True)
class VenueStats:
    """What one capture gave: frames read, book messages applied, errors by reason, unmapped instruments."""

    file: str
    venue: str
    channel: str
    frames: int
    snapshots: int
    applied: int
    parse_errors: int
    errors: dict[str, int]
    books: int
    invalid: list[str]  # instruments whose book is not valid at the end
    unmapped: list[str]  # instruments with no known unified symbol (not given to the detector)


@dataclass(slots=True)
class BacktestResult:
    events: list[Opportunity]  # every open / update / close, in order
    still_open: list[Opportunity]  # open at the end: figures, duration and peaks as of the last record
    venues: list[VenueStats]
    first_ns: int
    last_ns: int
    records: int  # frames + REST snapshots replayed
    samples: dict[PairKey, list[tuple[int, float]]] = field(default_factory=dict)  # top-of-book gross bps
    timeline: list[tuple[int, int]] = field(default_factory=list)  # (ns, source index) per record, if asked
    refusals: dict[tuple[str, ...], float] = field(default_factory=dict)  # the detector's refusal counters
    unconfigured: list[str] = field(default_factory=list)  # venues replayed that the settings have no fee for

    @property
    def span_s(self) -> float:
        return max(0, self.last_ns - self.first_ns) / 1e9

    def closed(self) -> list[Opportunity]:
        return [e for e in self.events if e.event == "close"]


class _Venue:
    """One capture's replay state and the views it hands the detector."""

    __slots__ = ("books", "depth", "replayer", "source")

    def __init__(self, source: Source, depth: int) -> None:
        self.source, self.depth = source, depth
        self.replayer = Replayer(source.venue, source.channel)
        self.books = self.replayer.result.books

    def view(self, inst: str, book: SyncedBook | None) -> BookView | None:
        """The view of ``inst``'s book as the store would publish it (invalid: ``book`` None)."""
        symbol = resolve(self.source, inst)
        if symbol is None:
            return None
        b = book.book if book is not None and book.valid else None
        return view_of(self.source.venue, symbol, b, *levels_of(b, self.depth))

    def frame(self, data: str | bytes, ns: int) -> list[BookView]:
        """Parse and apply one frame as the collector does; the views of the books it changed or broke."""
        res = self.replayer.result
        res.frames += 1
        out: list[BookView] = []
        try:
            items = self.replayer.parser.parse(data, ns)
        except ParseError:
            res.parse_errors += 1
            return out
        for item in items:
            if type(item) is BookMsg:
                res.book_msgs += 1
                book = self.books.get(item.inst)
                if book is None:
                    book = self.books[item.inst] = self.replayer.spec.make_book(self.source.channel)
                try:
                    changed = book.on_message(item)
                except BookError as exc:  # the book dropped itself: published invalid until resynced
                    res.errors[exc.reason] = res.errors.get(exc.reason, 0) + 1
                    res.error_log.append((item.inst, exc.reason, str(exc)))
                    changed, book = True, None
                if changed:
                    if book is not None:
                        res.applied += 1
                    v = self.view(item.inst, book)
                    if v is not None:
                        out.append(v)
            else:
                res.controls += 1
                if type(item) is Control and item.kind == "resync":
                    self.replayer.stream_resync(item)
                    for inst in list(self.books):
                        if not item.inst or inst == item.inst:
                            v = self.view(inst, None)
                            if v is not None:
                                out.append(v)
        return out

    def snapshot(self, inst: str, body: bytes, ns: int) -> list[BookView]:
        res = self.replayer.result
        applied, n_err = res.applied, sum(res.errors.values())
        self.replayer.feed_snapshot(inst, body, ns)
        if res.applied > applied:
            v = self.view(inst, self.books[inst])
        elif sum(res.errors.values()) > n_err:
            v = self.view(inst, None)
        else:
            return []
        return [] if v is None else [v]

    def stats(self) -> VenueStats:
        r = self.replayer.result
        return VenueStats(self.source.name, self.source.venue, self.source.channel, r.frames, r.snapshots,
                          r.applied, r.parse_errors, {k: v for k, v in r.errors.items() if v}, len(r.books),
                          r.invalid(), sorted(self.source.unmapped))


def _tagged(i: int, it: Iterator[Event]) -> Iterator[tuple[int, int, str | bytes, str | None]]:
    for ns, data, inst in it:
        yield ns, i, data, inst


def run(settings: Settings, sources: list[Source], *, keep_timeline: bool = False,
        detector: SpreadDetector | None = None) -> BacktestResult:
    """Replay ``sources`` together through ``settings``' detector (the one ``scanner run`` builds,
    :func:`~scanner.detect.detector.detector_for`, unless given)."""
    det = detector or detector_for(settings, Metrics())
    depth = settings.redis.book_depth
    venues = [_Venue(s, depth) for s in sources]
    merged = heapq.merge(*(_tagged(i, events(s)) for i, s in enumerate(sources)), key=itemgetter(0))
    out: list[Opportunity] = []
    samples: dict[PairKey, list[tuple[int, float]]] = {}
    sampled: dict[str, int] = {}
    timeline: list[tuple[int, int]] = []
    first = last = last_poll = -1
    records = 0
    update, poll = det.update, det.poll
    max_age_ns = settings.detector.max_book_age_ms * 1_000_000
    for ns, i, data, inst in merged:
        if ns < last:  # a capture out of order: the detector's clock never goes back
            ns = last
        if first < 0:
            first = last_poll = ns
        last = ns
        records += 1
        if keep_timeline:
            timeline.append((ns, i))
        st = venues[i]
        views = st.frame(data, ns) if inst is None else st.snapshot(inst, data if isinstance(data, bytes)
                                                                    else data.encode(), ns)
        for view in views:
            opps = update(view, ns)
            if opps:
                out.extend(opps)
            if view.valid and ns - sampled.get(view.symbol, -SAMPLE_NS) >= SAMPLE_NS and _sample(
                    det, view.symbol, ns, max_age_ns, samples):
                sampled[view.symbol] = ns
        if ns - last_poll >= POLL_NS:
            last_poll = ns
            polled = poll(ns)
            if polled:
                out.extend(polled)
    if last >= 0:
        out.extend(det.poll(last))
    fees = det.fees
    return BacktestResult(
        events=out, still_open=_still_open(det, last), venues=[v.stats() for v in venues],
        first_ns=max(first, 0), last_ns=max(last, 0), records=records, samples=samples, timeline=timeline,
        refusals={k: v for k, v in det.metrics.refusals.snapshot().items() if v},
        unconfigured=sorted({s.venue for s in sources if s.venue not in fees}))


def _sample(det: SpreadDetector, symbol: str, ns: int, max_age_ns: int,
            samples: dict[PairKey, list[tuple[int, float]]]) -> bool:
    """Top-of-book gross spread (bps) of every directed pair of ``symbol``'s usable books now; False when
    fewer than two venues have one."""
    books = [v for v in det.books.get(symbol, {}).values() if unusable_reason(v, ns, max_age_ns) is None]
    for buy in books:
        for sell in books:
            if buy is not sell:
                gross = (sell.best_bid - buy.best_ask) / buy.best_ask * 1e4
                samples.setdefault((symbol, buy.venue, sell.venue), []).append((ns, gross))
    return len(books) > 1


def _still_open(det: SpreadDetector, now_ns: int) -> list[Opportunity]:
    """The opportunities open at the end, as an ``open`` event would show them now."""
    return [OpportunityTracker.event_of(live, live.last, "open", now_ns)
            for live in det.tracker.live.values() if live.opened]


def total_profit(opps: list[Opportunity]) -> Decimal:
    """Sum of the opportunities' peak profits (exact)."""
    return sum((Decimal(o.peak_profit_quote or "0") for o in opps), Decimal(0))
