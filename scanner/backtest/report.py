"""The printed backtest report: each opportunity's open and close, a summary per symbol and venue pair, and
what each capture gave (frames, book errors, instruments without a symbol)."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

from scanner.backtest.engine import BacktestResult, VenueStats
from scanner.model import Opportunity


def iso(ns: int) -> str:
    """Receive time as UTC ISO 8601 with milliseconds."""
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _pair(o: Opportunity) -> str:
    return f"{o.pair_symbol} buy {o.buy_venue} sell {o.sell_venue}"


def event_lines(result: BacktestResult) -> Iterator[str]:
    """One line per open and close (updates are left out), then the opportunities still open at the end."""
    for o in result.events:
        if o.event == "open":
            yield (f"{iso(o.detected_ns)} OPEN   {_pair(o)}: net {o.net_bps} bps, size {o.size}, "
                   f"profit {o.profit_quote}")
        elif o.event == "close":
            yield (f"{iso(o.detected_ns)} CLOSE  {_pair(o)}: lasted {o.duration_ms / 1000:.3f} s, "
                   f"peak {o.peak_net_bps} bps, peak profit {o.peak_profit_quote}")
    for o in result.still_open:
        yield (f"{iso(o.detected_ns)} STILL OPEN {_pair(o)} (opened {iso(o.opened_ns)}): "
               f"{o.duration_ms / 1000:.3f} s so far, peak {o.peak_net_bps} bps, peak profit {o.peak_profit_quote}")


Group = tuple[str, str, str]  # (pair symbol, buy venue, sell venue)


def lifetimes(result: BacktestResult) -> list[Opportunity]:
    """Every opportunity once: its close event, or its state at the end if still open."""
    return result.closed() + result.still_open


def summary_rows(result: BacktestResult) -> list[tuple[Group, int, float, Decimal, int]]:
    """Per (symbol, buy venue, sell venue): count, median duration (s), total peak profit, how many still open."""
    groups: dict[Group, list[Opportunity]] = {}
    for o in lifetimes(result):
        groups.setdefault((o.pair_symbol, o.buy_venue, o.sell_venue), []).append(o)
    rows = []
    for key in sorted(groups):
        opps = groups[key]
        med = statistics.median(o.duration_ms for o in opps) / 1000
        total = sum((Decimal(o.peak_profit_quote or "0") for o in opps), Decimal(0))
        n_open = sum(1 for o in opps if o.event == "open")  # the still-open ones
        rows.append((key, len(opps), med, total, n_open))
    return rows


def summary_lines(result: BacktestResult) -> Iterator[str]:
    rows = summary_rows(result)
    yield ("Summary per symbol and venue pair (closed + still-open opportunities; total profit = sum of each "
           "one's peak profit, in the quote currency):")
    if not rows:
        yield "  no opportunities"
        return
    yield f"  {'symbol':<16} {'buy':<12} {'sell':<12} {'count':>5} {'open':>4} {'median s':>9} {'total profit':>16}"
    for (sym, buy, sell), n, med, total, n_open in rows:
        yield f"  {sym:<16} {buy:<12} {sell:<12} {n:>5} {n_open:>4} {med:>9.3f} {total:>16}"


def venue_line(v: VenueStats) -> str:
    errors = ", ".join(f"{k} {n}" for k, n in sorted(v.errors.items())) or "none"
    out = (f"  {v.file}: {v.venue} {v.channel}, {v.frames} frames, {v.snapshots} REST snapshots, {v.applied} applied, "
           f"{v.books} books, book errors: {errors}")
    if v.parse_errors:
        out += f", {v.parse_errors} unparsable frames"
    if v.invalid:
        out += f"; invalid at the end: {', '.join(v.invalid)}"
    if v.unmapped:
        shown = ", ".join(v.unmapped[:5]) + (f" (+{len(v.unmapped) - 5})" if len(v.unmapped) > 5 else "")
        out += f"; no unified symbol (not detected on): {shown}"
    return out


def report_lines(result: BacktestResult, quiet: bool = False) -> Iterator[str]:
    """The whole report; ``quiet`` leaves out the per-opportunity lines."""
    if not quiet:
        yield from event_lines(result)
        yield ""
    yield from summary_lines(result)
    yield ""
    yield f"Captures ({iso(result.first_ns)} .. {iso(result.last_ns)}):"
    for v in result.venues:
        yield venue_line(v)
    if result.unconfigured:
        yield (f"  note: no fee configured for {', '.join(result.unconfigured)}: the detector refuses their books "
               "(unknown_venue); add them under venues: in the config")
    refused = sorted(((k, int(n)) for k, n in result.refusals.items()), key=lambda kv: -kv[1])
    if refused:
        yield "Detector refusals: " + ", ".join(f"{'/'.join(k)} {n}" for k, n in refused[:8])
