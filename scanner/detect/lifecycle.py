"""Opportunity lifecycle: turns "this pair qualifies now" / "it no longer does" into events.

Each directed pair has a stable id, ``"{symbol}|{buy_venue}|{sell_venue}"`` (e.g.
``BTC/USDT|okx|binance``; the order of the venues is the direction; a cross-quote pair's symbol is
``BTC/USDC>BTC/USDT``, buy symbol > sell symbol). One lifecycle of that
id is identified by ``(id, opened_ns)``, where ``opened_ns`` is when it first qualified.

* ``open``: once the pair has qualified continuously for ``min_duration_ms`` (at once when 0),
  on the next evaluation or ``poll``. Its ``duration_ms`` is the persistence so far.
* ``update``: while open, at most once per ``emit_interval_ms`` (every evaluation when 0),
  carrying the current figures.
* ``close``: when it stops qualifying or one of its books becomes unusable; carries the last
  qualifying figures, ``duration_ms`` (first qualified → close) and the peaks.
  A candidate that stops before ``min_duration_ms`` emits nothing and is reported to
  ``on_too_short`` instead (the detector counts it as refusal ``too_short``).

Peaks (``peak_net_bps``, ``peak_size``, ``peak_profit_quote``) are the maxima over every
qualifying evaluation of the lifecycle, pending time included. Pure: the caller passes the clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from scanner.detect.spread import fmt
from scanner.model import Opportunity, evolve

Key = tuple[str, str, str]  # (symbol or "buy symbol>sell symbol", buy venue, sell venue)


def opportunity_id(symbol: str, buy_venue: str, sell_venue: str) -> str:
    """The stable id of a directed venue pair for one symbol."""
    return f"{symbol}|{buy_venue}|{sell_venue}"


@dataclass(slots=True)
class _Live:
    first_ns: int  # when it first qualified
    make: Callable[[], Opportunity]  # builds the figures of the latest qualifying evaluation
    peak_net_bps: Decimal
    peak_size: Decimal
    peak_profit: Decimal
    opened: bool = False
    last_emit_ns: int = 0
    built: Opportunity | None = None  # make() once called, until the next evaluation

    @property
    def last(self) -> Opportunity:
        """The figures of the latest qualifying evaluation, built on first use (most evaluations of a
        live pair emit nothing, so formatting them would be wasted)."""
        if self.built is None:
            self.built = self.make()
        return self.built

    def set_last(self, opp: Opportunity) -> None:
        self.built = opp


class OpportunityTracker:
    def __init__(self, min_duration_ms: int, emit_interval_ms: int,
                 on_too_short: Callable[[Key], None] | None = None) -> None:
        self._min_ns = min_duration_ms * 1_000_000
        self._interval_ns = emit_interval_ms * 1_000_000
        self._on_too_short = on_too_short
        self._live: dict[Key, _Live] = {}
        self.live = self._live  # read-only for callers: ``key in tracker.live`` before a drop() on the hot path

    def __len__(self) -> int:
        return len(self._live)

    def live_keys(self) -> list[Key]:
        return list(self._live)

    def is_open(self, key: Key) -> bool:
        live = self._live.get(key)
        return live is not None and live.opened

    def qualify(self, opp: Opportunity, net_bps: Decimal, size: Decimal, profit: Decimal,
                now_ns: int) -> Opportunity | None:
        """The pair qualifies now with these figures; returns the event to emit, if any."""
        return self.qualify_lazy((opp.pair_symbol, opp.buy_venue, opp.sell_venue), lambda: opp, net_bps, size,
                                 profit, now_ns)

    def qualify_lazy(self, key: Key, make: Callable[[], Opportunity], net_bps: Decimal, size: Decimal,
                     profit: Decimal, now_ns: int) -> Opportunity | None:
        """:meth:`qualify` with the figures built by ``make()`` only if an event needs them (``make`` must
        capture everything it uses: it may run at a later ``drop`` or ``poll``). ``key`` is the
        opportunity's ``(pair_symbol, buy_venue, sell_venue)``."""
        live = self._live.get(key)
        if live is None:
            live = self._live[key] = _Live(now_ns, make, net_bps, size, profit)
        else:
            live.make, live.built = make, None
            if net_bps > live.peak_net_bps:  # max(), without the call
                live.peak_net_bps = net_bps
            if size > live.peak_size:
                live.peak_size = size
            if profit > live.peak_profit:
                live.peak_profit = profit
        if not live.opened:
            return self._open(live, now_ns) if now_ns - live.first_ns >= self._min_ns else None
        if now_ns - live.last_emit_ns < self._interval_ns:
            return None
        live.last_emit_ns = now_ns
        return self.event_of(live, live.last, "update", now_ns)

    def drop(self, key: Key, now_ns: int, trigger_ns: int) -> Opportunity | None:
        """The pair no longer qualifies (or a book is unusable): the close event if it was open."""
        live = self._live.pop(key, None)
        if live is None:
            return None
        if not live.opened:
            if self._on_too_short is not None:
                self._on_too_short(key)
            return None
        last = evolve(live.last, recv_ns=trigger_ns)
        return self.event_of(live, last, "close", now_ns)

    def poll(self, now_ns: int) -> list[Opportunity]:
        """Open the candidates that have persisted ``min_duration_ms`` without a new evaluation."""
        out: list[Opportunity] = []
        for live in self._live.values():
            if not live.opened and now_ns - live.first_ns >= self._min_ns:
                live.set_last(evolve(live.last, recv_ns=now_ns))
                out.append(self._open(live, now_ns))
        return out

    def _open(self, live: _Live, now_ns: int) -> Opportunity:
        live.opened, live.last_emit_ns = True, now_ns
        return self.event_of(live, live.last, "open", now_ns)

    @staticmethod
    def event_of(live: _Live, opp: Opportunity, event: str, now_ns: int) -> Opportunity:
        """``opp`` as the ``event`` of the live pair ``live`` at ``now_ns``: id, times and peaks filled in."""
        return evolve(opp, id=opportunity_id(opp.pair_symbol, opp.buy_venue, opp.sell_venue), event=event,
                       detected_ns=now_ns, opened_ns=live.first_ns, duration_ms=(now_ns - live.first_ns) / 1e6,
                       peak_net_bps=fmt(live.peak_net_bps, 4), peak_size=fmt(live.peak_size, 12),
                       peak_profit_quote=fmt(live.peak_profit, 8))
