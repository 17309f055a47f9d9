"""SpreadDetector: holds the latest book of every (symbol, venue) and, on each update,
re-evaluates only the venue pairs that involve the updated venue, both directions.

A book is refused (and counted by reason) when it is invalid or resyncing, older than
``max_book_age_ms`` by exchange timestamp or by receive time, empty, or crossed. Pure:
the caller passes the clock; sinks are the caller's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from scanner.config import DetectorSettings
from scanner.detect.spread import Fill, fmt, top_spread_bps, walk
from scanner.model import Opportunity
from scanner.sinks.metrics import Metrics
from scanner.store.schema import BookView


@dataclass(slots=True)
class _Emitted:
    at_ns: int
    net_bps: str
    size: str


class SpreadDetector:
    def __init__(self, fees: dict[str, Decimal], settings: DetectorSettings, metrics: Metrics) -> None:
        self.fees = fees
        self.ffees = {v: float(f) for v, f in fees.items()}
        self.settings, self.metrics = settings, metrics
        self.books: dict[str, dict[str, BookView]] = {}
        self._active: dict[tuple[str, str, str], _Emitted] = {}
        self._min_net_bps = float(settings.min_net_bps)
        self._max_age_ns = settings.max_book_age_ms * 1_000_000
        self._interval_ns = settings.emit_interval_ms * 1_000_000

    def update(self, view: BookView, now_ns: int) -> list[Opportunity]:
        """Take a new book and return the opportunities to emit now."""
        venues = self.books.setdefault(view.symbol, {})
        venues[view.venue] = view
        if view.venue not in self.fees:
            self.metrics.refusals.labels("unknown_venue", view.venue).inc()
            return []
        out: list[Opportunity] = []
        if not self._usable(view, now_ns):
            for other in venues:
                if other != view.venue:
                    self._active.pop((view.symbol, view.venue, other), None)
                    self._active.pop((view.symbol, other, view.venue), None)
            return out
        for other, ov in venues.items():
            if other == view.venue or other not in self.fees:
                continue
            if not self._usable(ov, now_ns):
                self._active.pop((view.symbol, view.venue, other), None)
                self._active.pop((view.symbol, other, view.venue), None)
                continue
            for buy, sell in ((view, ov), (ov, view)):
                opp = self._evaluate(buy, sell, now_ns, view.recv_ns)
                if opp is not None:
                    out.append(opp)
        return out

    def _usable(self, v: BookView, now_ns: int) -> bool:
        reason = None
        if not v.valid:
            reason = "invalid_book"
        elif not v.bids or not v.asks:
            reason = "empty_book"
        elif now_ns - v.recv_ns > self._max_age_ns or (v.exch_ms and now_ns - v.exch_ms * 1_000_000 > self._max_age_ns):
            reason = "stale_book"
        elif v.best_bid >= v.best_ask:
            reason = "crossed_book"
        if reason is None:
            return True
        self.metrics.refusals.labels(reason, v.venue).inc()
        return False

    def _evaluate(self, buy: BookView, sell: BookView, now_ns: int, trigger_ns: int) -> Opportunity | None:
        m, s = self.metrics, self.settings
        key = (buy.symbol, buy.venue, sell.venue)
        m.evaluations.inc()
        fa, fb = self.ffees[buy.venue], self.ffees[sell.venue]
        gross, net = top_spread_bps(buy.best_ask, sell.best_bid, fa, fb)
        m.spread_gross.labels(*key).set(gross)
        m.spread_net.labels(*key).set(net)
        # float pre-screen with a little slack; the Decimal walk decides
        if net < self._min_net_bps - 0.01:
            self._active.pop(key, None)
            return None
        fill = walk(buy.asks, sell.bids, self.fees[buy.venue], self.fees[sell.venue], s.min_net_bps,
                    s.max_notional_quote)
        if fill is None:
            self._active.pop(key, None)
            return None
        if fill.profit < s.min_profit_quote:
            m.refusals.labels("below_min_profit", buy.venue).inc()
            self._active.pop(key, None)
            return None
        opp = self._opportunity(buy, sell, fill, now_ns, trigger_ns)
        last = self._active.get(key)
        if last is not None and now_ns - last.at_ns < self._interval_ns:
            return None  # still open and emitted recently: at most one emission per interval
        self._active[key] = _Emitted(now_ns, opp.net_bps, opp.size)
        return opp

    def _opportunity(self, buy: BookView, sell: BookView, fill: Fill, now_ns: int, trigger_ns: int) -> Opportunity:
        return Opportunity(
            symbol=buy.symbol, buy_venue=buy.venue, sell_venue=sell.venue,
            size=fmt(fill.size, 12), buy_vwap=fmt(fill.buy_vwap, 12), sell_vwap=fmt(fill.sell_vwap, 12),
            gross_bps=fmt(fill.gross_bps, 4), net_bps=fmt(fill.net_bps, 4), profit_quote=fmt(fill.profit, 8),
            buy_fee=str(self.fees[buy.venue]), sell_fee=str(self.fees[sell.venue]),
            buy_book_age_ms=_age_ms(buy, now_ns), sell_book_age_ms=_age_ms(sell, now_ns),
            levels_buy=fill.levels_buy, levels_sell=fill.levels_sell, recv_ns=trigger_ns, detected_ns=now_ns,
            buy_integrity=buy.integrity, sell_integrity=sell.integrity,
        )

    def book_count(self) -> int:
        return sum(len(v) for v in self.books.values())


def _age_ms(v: BookView, now_ns: int) -> float:
    """Age by exchange timestamp when the venue gave one, else by receive time."""
    if v.exch_ms:
        return max(0.0, now_ns / 1e6 - v.exch_ms)
    return max(0.0, (now_ns - v.recv_ns) / 1e6)
