"""SpreadDetector: holds the latest book of every (symbol, venue) and, on each update,
re-evaluates only the venue pairs that involve the updated venue, both directions.

A book is refused (and counted by reason) when it is invalid or resyncing, older than
``max_book_age_ms`` by exchange timestamp or by receive time, empty, or crossed. A pair that
is evaluated but not reported is counted too: ``below_fees`` (positive gross spread, net edge
below ``min_net_bps``), ``insufficient_depth`` (top of book passes, the walk finds no fill),
``below_min_profit`` and ``too_short`` (gone before ``min_duration_ms``). Qualifying pairs go
through the lifecycle tracker (lifecycle.py), which decides the open/update/close events.
Books are compared only within one unified symbol (USDT, USDC and USD books never mix) unless
``detector.quote_groups`` joins quotes: then BASE/QA is also compared with BASE/QB on other venues,
the proceeds converted back on the sell venue's stable-pair book (crossquote.py); without a usable
one the pair is refused as ``no_conversion_book``.
Pure: the caller passes the clock; sinks are the caller's business.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from decimal import Decimal

from scanner.config import DetectorSettings, Settings
from scanner.detect import crossquote, spread
from scanner.detect.lifecycle import Key, OpportunityTracker
from scanner.detect.spread import Fill, fmt, top_spread_bps, walk
from scanner.fees import FeeModel, PairFees
from scanner.model import Opportunity, evolve
from scanner.sinks.metrics import Metrics
from scanner.store.schema import BookView
from scanner.transfer.build import build_checker
from scanner.transfer.route import Check, TransferChecker, no_transfer_data

POLL_INTERVAL_NS = 100_000_000  # poll() does its work at most this often


class SpreadDetector:
    def __init__(self, fees: dict[str, Decimal], settings: DetectorSettings, metrics: Metrics,
                 transfers: TransferChecker | None = None, fee_model: FeeModel | None = None) -> None:
        self.transfers = transfers or no_transfer_data(settings)  # routes, identity (scanner/transfer/)
        self.fees = fees
        self.fee_model = fee_model or FeeModel.flat(fees)  # per symbol, fee currency (scanner/fees.py)
        self.ffees = {v: float(f) for v, f in fees.items()}
        self.settings, self.metrics = settings, metrics
        self.books: dict[str, dict[str, BookView]] = {}
        self.tracker = OpportunityTracker(settings.min_duration_ms, settings.emit_interval_ms, self._too_short)
        # When set, open/update events from the pair walks are handed over the moment each is made, before
        # the rest of the update's pairs are evaluated (the runner writes them to Redis at once); they are
        # then not in update()'s result. Order per pair is kept: one caller, one sequence.
        self.early: Callable[[list[Opportunity]], None] | None = None
        self._min_net_bps = float(settings.min_net_bps)
        self._max_age_ns = settings.max_book_age_ms * 1_000_000
        # an ask side whose float notional bound is below this cannot reach max_notional_quote (1% margin:
        # far above float and Decimal rounding), so the cap is not checked at every step of its walk
        self._cap_free_below = float(settings.max_notional_quote) / 1.01
        self._last_poll_ns = 0
        self._groups = {q: g for g in settings.quote_groups for q in g}  # quote -> its group
        # the per-evaluation metric families' dicts, written directly (scanner/sinks/metrics.py, ScrapeFamily);
        # the spread gauges and the pre-screen's below_fees counts are kept per pair and read at scrape time
        self._evals, self._refusals = metrics.evaluations.values, metrics.refusals.values
        metrics.spread_gross.sources.append(self._gross_series)
        metrics.spread_net.sources.append(self._net_series)
        metrics.refusals.sources.append(self._below_fees_series)
        self._screen = 1 + (self._min_net_bps - 0.01) / 1e4  # float pre-screen with a little slack (bps)
        self._pairs: dict[Key, _PairSpec] = {}  # every directed pair of one symbol met so far
        self._specs: dict[tuple[str, str], dict[str, tuple[_PairSpec, _PairSpec]]] = {}
        self._tops: dict[str, dict[str, BookView]] = {}  # symbol -> venue -> its last usable book (the gauges)
        self._fee_version = -1

    def update(self, view: BookView, now_ns: int) -> list[Opportunity]:
        """Take a new book and return the lifecycle events to emit now."""
        canonical = self.transfers.canonical(view)  # venue aliases applied; None: denied on that venue
        if canonical is None:
            self._refuse("suspect_identity", view.venue)
            return []
        view = canonical
        venues = self.books.setdefault(view.symbol, {})
        venues[view.venue] = view
        if view.venue not in self.fees:
            self._refuse("unknown_venue", view.venue)
            return []
        out: list[Opportunity] = []
        if not self._usable(view, now_ns):
            # a resyncing book is published with no receive time (recv_ns 0): its closes carry now
            trigger = view.recv_ns or now_ns
            for other in venues:
                if other != view.venue:
                    self._drop_pair(view.symbol, view.venue, other, now_ns, trigger, out)
            return out
        # The pre-screen of every pair is inlined here: most pairs stop at it (the fees eat the top-of-book
        # spread) at the cost of one float comparison; only pairs that pass it take the Decimal walk in
        # _walk. Per directed pair the key, fees, screen factors and counts live in one _PairSpec; a book's
        # usability is one comparison. The spread gauges are computed from the books at scrape time.
        symbol, trigger_ns = view.symbol, view.recv_ns
        self._tops.setdefault(symbol, {})[view.venue] = view
        specs_of = self._specs_for(symbol, view.venue)
        ask, bid = view.best_ask, view.best_bid
        evaluated = 0
        for other, ov in venues.items():
            specs = specs_of.get(other)
            if specs is None:
                if other == view.venue or other not in self.fees:
                    continue
                specs = specs_of[other] = (self._pair(symbol, view.venue, other), self._pair(symbol, other, view.venue))
            if ov.good_until < now_ns and not self._usable(ov, now_ns):
                self._drop_pair(symbol, view.venue, other, now_ns, trigger_ns, out)
                continue
            evaluated += 2
            here, there = specs
            obid = ov.best_bid
            if obid * here.sell_gain < ask * here.buy_cost:  # bought here, sold there: below the screen
                if obid > ask:  # a spread exists, the fees eat it (no spread at all is no candidate)
                    here.below += 1
                if here.armed:
                    self._disarm(here, now_ns, trigger_ns, out)
            else:
                out = self._passed(here, view, ov, now_ns, trigger_ns, out)
            oask = ov.best_ask
            if bid * there.sell_gain < oask * there.buy_cost:  # bought there, sold here
                if bid > oask:
                    there.below += 1
                if there.armed:
                    self._disarm(there, now_ns, trigger_ns, out)
            else:
                out = self._passed(there, ov, view, now_ns, trigger_ns, out)
        self._evals[()] += evaluated
        if self._groups:
            self._cross(view, now_ns, out)
        return out

    def poll(self, now_ns: int) -> list[Opportunity]:
        """Between updates (the runner calls this on every loop, work is done at most every 100 ms):
        close live opportunities whose books went stale without a new frame, and open candidates
        that have persisted ``min_duration_ms`` while no frame re-evaluated them."""
        if now_ns - self._last_poll_ns < POLL_INTERVAL_NS:
            return []
        self._last_poll_ns = now_ns
        out: list[Opportunity] = []
        for key in self.tracker.live_keys():
            symbol, buy, sell = key
            bsym, _, ssym = symbol.partition(">")  # a cross-quote key: "BTC/USDC>BTC/USDT"
            b, s = self.books.get(bsym, {}).get(buy), self.books.get(ssym or bsym, {}).get(sell)
            gone = ssym != "" and self._conversion_book(sell, ssym.partition("/")[2], bsym.partition("/")[2],
                                                        now_ns) is None
            if gone or b is None or s is None or unusable_reason(b, now_ns, self._max_age_ns) or unusable_reason(
                    s, now_ns, self._max_age_ns):
                closed = self.tracker.drop(key, now_ns, now_ns)
                if closed is not None:
                    out.append(closed)
        out.extend(self.tracker.poll(now_ns))
        return out

    def _drop_pair(self, symbol: str, a: str, b: str, now_ns: int, trigger_ns: int, out: list[Opportunity]) -> None:
        for key in ((symbol, a, b), (symbol, b, a)):
            closed = self.tracker.drop(key, now_ns, trigger_ns)
            if closed is not None:
                out.append(closed)

    def _disarm(self, spec: _PairSpec, now_ns: int, trigger_ns: int, out: list[Opportunity]) -> None:
        """A pair that passed the pre-screen before (so it may be a candidate or open) fell below it."""
        spec.armed = False
        closed = self.tracker.drop(spec.key, now_ns, trigger_ns)
        if closed is not None:
            out.append(closed)

    def _passed(self, spec: _PairSpec, buy: BookView, sell: BookView, now_ns: int, trigger_ns: int,
                out: list[Opportunity]) -> list[Opportunity]:
        """A pair that passed the pre-screen: walk it. With ``early`` set, an open/update event is handed over
        at once, after whatever came before it; returns the events still to emit with the update."""
        spec.armed = True
        opp = self._walk(buy, sell, spec.key, spec.fees, now_ns, trigger_ns)
        if opp is None:
            return out
        early = self.early
        if early is not None and opp.event != "close":
            if out:  # what came before it goes first
                early(out)
                out = []
            early([opp])
        else:
            out.append(opp)
        return out

    def _refuse(self, reason: str, venue: str) -> None:
        """``scanner_refusals_total{reason, venue}`` + 1."""
        r, k = self._refusals, (reason, venue)
        r[k] = r.get(k, 0.0) + 1.0

    def _too_short(self, key: Key) -> None:
        self._refuse("too_short", key[1])

    def _usable(self, v: BookView, now_ns: int) -> bool:
        """Whether ``v`` can be used now (its reason counted if not); caches when it stops being usable
        in ``v.good_until``, so the hot path's check is ``now_ns <= v.good_until``."""
        if v.good_until < 0:
            v.good_until = good_until(v, self._max_age_ns)
        if now_ns <= v.good_until:
            return True
        reason = unusable_reason(v, now_ns, self._max_age_ns) or "stale_book"
        self._refuse(reason, v.venue)
        return False

    def _specs_for(self, symbol: str, venue: str) -> dict[str, tuple[_PairSpec, _PairSpec]]:
        """Other venue -> the pair specs of (buy here, sell there) and (buy there, sell here); rebuilt when
        the fee model changed (account rates fetched), their counts carried over."""
        if self._fee_version != self.fee_model.version:
            self._fee_version = self.fee_model.version
            self._specs.clear()
            for spec in self._pairs.values():  # the pre-screen's counts so far stay in the counter
                if spec.below:
                    self._refusals[spec.below_fees] = self._refusals.get(spec.below_fees, 0.0) + spec.below
            self._pairs.clear()
        specs = self._specs.get((symbol, venue))
        if specs is None:
            specs = self._specs[(symbol, venue)] = {}
        return specs

    def _pair(self, symbol: str, buy: str, sell: str) -> _PairSpec:
        key = (symbol, buy, sell)
        spec = self._pairs.get(key)
        if spec is None:
            spec = self._pairs[key] = _PairSpec(key, self.fee_model.pair(symbol, buy, sell), self._screen)
            spec.armed = key in self.tracker.live  # rebuilt after a fee change while open
        return spec

    def _gross_series(self) -> Iterator[tuple[Key, float]]:
        """``scanner_spread_gross_bps`` of every pair whose books were both usable once, from the last usable
        books. A generator over the pairs as they are when it starts, so a reader may take it in slices
        between other work (the web view does)."""
        return self._spread_series(0)

    def _net_series(self) -> Iterator[tuple[Key, float]]:
        """``scanner_spread_net_bps``: the same after both taker fees."""
        return self._spread_series(1)

    def _spread_series(self, which: int) -> Iterator[tuple[Key, float]]:
        for key, spec, b, s in self._gauge_books():
            pf = spec.fees
            yield key, top_spread_bps(b.best_ask, s.best_bid, pf.buy_f, pf.sell_f, pf.buy_fee_in_base)[which]

    def _gauge_books(self) -> Iterator[tuple[Key, _PairSpec, BookView, BookView]]:
        tops = self._tops
        for key, spec in list(self._pairs.items()):
            books = tops.get(key[0])
            if books is not None:
                b, s = books.get(key[1]), books.get(key[2])
                if b is not None and s is not None:
                    yield key, spec, b, s

    def _below_fees_series(self) -> list[tuple[tuple[str, str], float]]:
        return [(spec.below_fees, float(spec.below)) for spec in list(self._pairs.values()) if spec.below]

    def _walk(self, buy: BookView, sell: BookView, key: Key, pf: PairFees, now_ns: int,
              trigger_ns: int) -> Opportunity | None:
        """A pair that passed the pre-screen in :meth:`update`: walk both books, check the route, qualify."""
        s = self.settings
        in_base = pf.buy_fee_in_base
        fill = walk(buy.asks, sell.bids, pf.buy, pf.sell, s.min_net_bps, self._cap(buy, in_base), in_base,
                    buy.dec_asks, sell.dec_bids)
        if fill is None:
            self._refuse("insufficient_depth", buy.venue)
            return self._close(key, now_ns, trigger_ns)
        check = self.transfers.check(key, fill)  # identity cap, route status, withdrawal fee if included
        if check.refusal is not None:
            self._refuse(check.refusal, buy.venue)
            return self._close(key, now_ns, trigger_ns)
        if check.profit < s.min_profit_quote:
            self._refuse("below_min_profit", buy.venue)
            return self._close(key, now_ns, trigger_ns)

        def make() -> Opportunity:  # the figures are formatted only when an event carries them
            return self._opportunity(buy, sell, fill, check, now_ns, trigger_ns)

        return self.tracker.qualify_lazy(key, make, check.net_bps, fill.size, check.profit, now_ns)

    def _cross(self, view: BookView, now_ns: int, out: list[Opportunity]) -> None:
        """Cross-quote pairs involving ``view``; a stable-pair book re-checks the pairs selling on its venue."""
        base, _, quote = view.symbol.partition("/")
        group = self._groups.get(quote, ())
        if base in group:
            for sym, venues in list(self.books.items()):
                sv = venues.get(view.venue)
                if sv is not None and sym.partition("/")[0] not in group:
                    self._cross_pairs(sv, now_ns, view.recv_ns, out, sell_only=True)
        elif group:
            self._cross_pairs(view, now_ns, view.recv_ns, out)

    def _cross_pairs(self, view: BookView, now_ns: int, trigger_ns: int, out: list[Opportunity],
                     sell_only: bool = False) -> None:
        base, _, quote = view.symbol.partition("/")
        if unusable_reason(view, now_ns, self._max_age_ns) is not None:
            return
        for q2 in self._groups.get(quote, ()):
            for ov in self.books.get(f"{base}/{q2}", {}).values() if q2 != quote else ():
                if ov.venue == view.venue or ov.venue not in self.fees or unusable_reason(ov, now_ns, self._max_age_ns):
                    continue
                for buy, sell in ((ov, view),) if sell_only else ((view, ov), (ov, view)):
                    opp = self._evaluate_cross(buy, sell, now_ns, trigger_ns)
                    if opp is not None:
                        out.append(opp)

    def _conversion_book(self, venue: str, from_code: str, to_code: str, now_ns: int) -> BookView | None:
        for sym in crossquote.book_symbols(from_code, to_code):
            v = self.books.get(sym, {}).get(venue)
            if v is not None and unusable_reason(v, now_ns, self._max_age_ns) is None:
                return v
        return None

    def _evaluate_cross(self, buy: BookView, sell: BookView, now_ns: int, trigger_ns: int) -> Opportunity | None:
        """BASE/QA bought on ``buy``, BASE/QB sold on ``sell``, proceeds converted to QA on ``sell``."""
        s, fm = self.settings, self.fee_model
        qa, qb = buy.symbol.partition("/")[2], sell.symbol.partition("/")[2]
        key = (f"{buy.symbol}>{sell.symbol}", buy.venue, sell.venue)
        self._evals[()] += 1.0
        cb = self._conversion_book(sell.venue, qb, qa, now_ns)
        if cb is None:
            self._refuse("no_conversion_book", sell.venue)
            return self._close(key, now_ns, trigger_ns)
        cfee = fm.taker(sell.venue, cb.symbol)
        rate = crossquote.top_rate(cb.symbol, qb, cb.bids, cb.asks, cfee)
        if rate is None:  # never for a usable book (both sides present)
            return self._close(key, now_ns, trigger_ns)
        bfee, sfee = fm.taker(buy.venue, buy.symbol), fm.taker(sell.venue, sell.symbol)
        in_base = fm.buy_fee_in_base(buy.venue)
        scaled = [(str(Decimal(p) * rate), q) for p, q in sell.bids]  # the bids in QA, conversion fee included
        fill = walk(buy.asks, scaled, bfee, sfee, s.min_net_bps, self._cap(buy, in_base), in_base, buy.dec_asks)
        if fill is None:
            if Decimal(scaled[0][0]) > Decimal(buy.asks[0][0]):
                self._refuse("below_fees", buy.venue)
            return self._close(key, now_ns, trigger_ns)
        raw = crossquote.sell_proceeds(sell.bids, fill.net_size)  # QB, before the sell fee
        conv = crossquote.convert(raw * (1 - sfee), cb.symbol, qb, cb.bids, cb.asks, cfee)
        if conv is None:
            self._refuse("insufficient_depth", sell.venue)
            return self._close(key, now_ns, trigger_ns)
        # in QA: proceeds at the conversion's average price (gross), net after the sell and conversion fees
        fill = dataclasses.replace(fill, proceeds=raw * conv.gross_out / conv.amount_in, net_proceeds=conv.amount_out)
        if fill.net_bps < s.min_net_bps:
            self._refuse("below_fees", buy.venue)
            return self._close(key, now_ns, trigger_ns)
        check = self.transfers.check((buy.symbol, buy.venue, sell.venue), fill)
        if check.refusal is not None:
            self._refuse(check.refusal, buy.venue)
            return self._close(key, now_ns, trigger_ns)
        if check.profit < s.min_profit_quote:
            self._refuse("below_min_profit", buy.venue)
            return self._close(key, now_ns, trigger_ns)

        def make() -> Opportunity:
            opp = self._opportunity(buy, sell, fill, check, now_ns, trigger_ns)
            return evolve(
                opp, buy_symbol=buy.symbol, sell_symbol=sell.symbol, conversion_symbol=cb.symbol,
                conversion_side=conv.side, conversion_in=fmt(conv.amount_in, 12),
                conversion_out=fmt(conv.amount_out, 12), conversion_vwap=fmt(conv.vwap, 12), conversion_fee=str(cfee),
                conversion_levels=conv.levels)

        return self.tracker.qualify_lazy(key, make, check.net_bps, fill.size, check.profit, now_ns)

    def _cap(self, buy: BookView, in_base: bool) -> Decimal | None:
        """``max_notional_quote`` for a walk of ``buy``'s asks, or None when it cannot bind: the whole
        side costs less than it with a wide margin (so the Decimal walk skips a division per step). The
        compiled walk (buy fee in quote) tests the cap exactly at each step for free: it always gets it."""
        cap = self.settings.max_notional_quote
        if spread.compiled_walk is not None and not in_base:
            return cap
        return None if buy.asks_notional_bound() < self._cap_free_below else cap

    def _close(self, key: Key, now_ns: int, trigger_ns: int) -> Opportunity | None:
        return self.tracker.drop(key, now_ns, trigger_ns) if len(self.tracker) else None

    def _opportunity(self, buy: BookView, sell: BookView, fill: Fill, check: Check, now_ns: int,
                     trigger_ns: int) -> Opportunity:
        """The event's figures: the fill's, with profit and net edge as the transfer check left them (the
        withdrawal fee subtracted when ``transfer_mode`` includes it) and the route found."""
        route = check.route
        return Opportunity(
            symbol=buy.symbol, buy_venue=buy.venue, sell_venue=sell.venue,
            size=fmt(fill.size, 12), buy_vwap=fmt(fill.buy_vwap, 12), sell_vwap=fmt(fill.sell_vwap, 12),
            gross_bps=fmt(fill.gross_bps, 4), net_bps=fmt(check.net_bps, 4), profit_quote=fmt(check.profit, 8),
            buy_fee=str(fill.buy_fee), sell_fee=str(fill.sell_fee),
            buy_book_age_ms=_age_ms(buy, now_ns), sell_book_age_ms=_age_ms(sell, now_ns),
            levels_buy=fill.levels_buy, levels_sell=fill.levels_sell, recv_ns=trigger_ns, detected_ns=now_ns,
            buy_integrity=buy.integrity, sell_integrity=sell.integrity,
            net_size=fmt(fill.net_size, 12), buy_fee_currency="base" if fill.buy_fee_in_base else "quote",
            transfer_status=route.status, transfer_network=route.network,
            transfer_fee="" if route.fee is None else fmt(route.fee, 12),
        )

    def book_count(self) -> int:
        return sum(len(v) for v in self.books.values())


class _PairSpec:
    """One directed pair of one symbol: its key, fees, the pre-screen's float factors, the ``below_fees``
    refusal key and count, and whether it passed the pre-screen since it last fell below it (``armed``:
    only then can the tracker hold it, so only then is a pair below the screen looked up there).

    Pre-screen: net bps >= ``min_net_bps`` - 0.01 with net as :func:`scanner.detect.spread.top_spread_bps`
    computes it, rearranged to ``bid * sell_gain >= ask * buy_cost`` (ask and the factors are positive)."""

    __slots__ = ("armed", "below", "below_fees", "buy_cost", "fees", "key", "sell_gain")

    def __init__(self, key: Key, fees: PairFees, screen: float) -> None:
        self.key, self.fees = key, fees
        up, down, keep = 1 + fees.buy_f, 1 - fees.sell_f, 1 - fees.buy_f
        if fees.buy_fee_in_base:  # the buy fee comes out of the coins bought: keep of them are sold
            self.sell_gain, self.buy_cost = keep * down, screen
        else:
            self.sell_gain, self.buy_cost = down, up * screen
        self.below_fees = ("below_fees", key[1])
        self.below = 0  # pre-screen refusals as below_fees, exported at scrape time
        self.armed = False


def good_until(v: BookView, max_age_ns: int) -> int:
    """The last time (ns) ``v`` is usable: 0 when it never is (invalid, empty, crossed), else when it turns
    stale by receive time or exchange timestamp (see :func:`unusable_reason`)."""
    if not v.valid or not v.bids or not v.asks or v.best_bid >= v.best_ask:
        return 0
    until = v.recv_ns + max_age_ns
    if v.exch_ms:
        until = min(until, v.exch_ms * 1_000_000 + max_age_ns)
    return until


def unusable_reason(v: BookView, now_ns: int, max_age_ns: int) -> str | None:
    """Why a book cannot be used now, or None."""
    if not v.valid:
        return "invalid_book"
    if not v.bids or not v.asks:
        return "empty_book"
    if now_ns - v.recv_ns > max_age_ns or (v.exch_ms and now_ns - v.exch_ms * 1_000_000 > max_age_ns):
        return "stale_book"
    if v.best_bid >= v.best_ask:
        return "crossed_book"
    return None


def _age_ms(v: BookView, now_ns: int) -> float:
    """Age by exchange timestamp when the venue gave one, else by receive time."""
    if v.exch_ms:
        return max(0.0, now_ns / 1e6 - v.exch_ms)
    return max(0.0, (now_ns - v.recv_ns) / 1e6)


def detector_for(settings: Settings, metrics: Metrics) -> SpreadDetector:
    """The detector ``settings`` describe: every venue's taker fee, the thresholds, the transfer rules and the
    fee model. ``scanner run``/``detect`` and ``scanner backtest`` build theirs here, so both judge alike."""
    fees = {v.name: v.taker_fee for v in settings.venues.values()}
    fees.update({v.name: v.taker_fee for v in settings.ccxt_venues.values()})
    return SpreadDetector(fees, settings.detector, metrics, build_checker(settings), fee_model=settings.fees.model())
