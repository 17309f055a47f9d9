"""Detector scaling benchmark: µs per ``SpreadDetector.update`` by venue count and depth walked.

Usage: ``.venv/bin/python -m scanner.bench.detector [--quick] [--updates N] [--runs R] [--seconds S]``.

Venue ``i`` quotes every symbol about ``GAP_BPS * i`` above venue 0 (20 levels a side, one unit each),
so buying on the cheaper venue of any pair and selling on the dearer one qualifies, and the reverse
direction has a negative gross spread. Each book's first ``depth`` asks are near its mid and the rest
far above every bid, so every qualifying walk takes exactly ``depth`` levels on both books and then
stops (the marginal level is unprofitable). One update gives one venue a new book of one symbol (same
geometry); the opportunities stay live, as a persistent spread does. Only pairs involving the updated
venue are re-evaluated, so evaluations per update are 2*(N-1): linear in N, constant µs per evaluation.
The last stdout line is ``{"bench": "detector", "rows": [...]}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from dataclasses import dataclass
from decimal import Decimal

from scanner.config import DetectorSettings
from scanner.detect.detector import SpreadDetector
from scanner.model import Opportunity
from scanner.sinks.metrics import Metrics
from scanner.store.schema import BookView

FEE = Decimal("0.001")
LEVELS = 20
VENUES = (2, 5, 10)
DEPTHS = (1, 5, 20)
GAP_BPS = 50  # price step between consecutive venues: ≥ 2 fees + the books' half-spreads


@dataclass(frozen=True)
class Row:
    venues: int
    depth: int
    symbols: int
    updates: int  # timed updates per run
    runs: int
    us_per_update: float  # median over runs of the mean per run
    evals_per_update: float
    us_per_eval: float
    levels_buy: int  # of the opportunities opened (all equal, else the bench fails)
    levels_sell: int
    opened: int  # opportunities opened while loading: one per (symbol, venue pair)


def settings() -> DetectorSettings:
    return DetectorSettings(min_net_bps=Decimal(1), min_profit_quote=Decimal("0.01"), max_book_age_ms=3_600_000,
                            emit_interval_ms=1_000, max_net_bps=Decimal(10_000))


def book(venue: int, symbol: str, depth: int, now_ns: int) -> BookView:
    """Venue ``venue``'s book: mid ``100 * (1 + GAP_BPS * venue / 1e4)``, ``depth`` asks near it, the rest at 2x."""
    mid = 100 * (1 + GAP_BPS * venue / 1e4)
    bids = [(f"{mid * (1 - 1e-4 - k * 1e-5):.6f}", "1") for k in range(LEVELS)]
    asks = [(f"{mid * (1 + 1e-4 + k * 1e-5) if k < depth else mid * 2 + k:.6f}", "1") for k in range(LEVELS)]
    return BookView(f"v{venue}", symbol, True, bids, asks, 0, now_ns, float(bids[0][0]), float(asks[0][0]))


def evaluations(m: Metrics) -> float:
    return m.registry.get_sample_value("scanner_evaluations_total") or 0.0


def measure(n_venues: int, depth: int, symbols: int = 50, updates: int = 2_000, runs: int = 5) -> Row:
    """Build a detector with ``n_venues`` x ``symbols`` books, warm it up, then time ``runs`` x ``updates``."""
    syms = [f"S{i}/USDT" for i in range(symbols)]
    m = Metrics()
    det = SpreadDetector({f"v{i}": FEE for i in range(n_venues)}, settings(), m)
    clock = time.time_ns()
    order = [(s, v) for s in syms for v in range(n_venues)]  # round robin: every venue of a symbol in turn
    variants = [[book(v, s, depth, clock + k) for s, v in order] for k in range(2)]  # two objects per book

    # load every book once, then one warm-up pass: the opens prove the depth walked
    opened: list[Opportunity] = []
    for k in range(2):
        for view in variants[k]:
            clock += 1_000
            opened.extend(o for o in det.update(view, clock) if o.event == "open")
    levels = {(o.levels_buy, o.levels_sell) for o in opened}
    if levels != {(depth, depth)} or len(opened) != symbols * n_venues * (n_venues - 1) // 2:
        raise AssertionError(f"venues={n_venues} depth={depth}: opened {len(opened)}, levels {levels}")
    per_update: list[float] = []
    evals: list[float] = []
    n = len(order)
    for r in range(runs):
        e0, total = evaluations(m), 0
        for i in range(updates):
            clock += 1_000
            view = variants[(i // n + r) % 2][i % n]
            t0 = time.perf_counter_ns()
            det.update(view, clock)
            total += time.perf_counter_ns() - t0
        per_update.append(total / updates / 1e3)
        evals.append((evaluations(m) - e0) / updates)
    us = statistics.median(per_update)
    ev = statistics.median(evals)
    return Row(n_venues, depth, symbols, updates, runs, round(us, 2), ev, round(us / ev, 3), depth, depth,
               len(opened))


def run(venues: tuple[int, ...] = VENUES, depths: tuple[int, ...] = DEPTHS, symbols: int = 50, updates: int = 2_000,
        runs: int = 5) -> list[Row]:
    return [measure(n, d, symbols, updates, runs) for d in depths for n in venues]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m scanner.bench.detector", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few updates and runs (smoke test)")
    ap.add_argument("--updates", type=int, default=None, help="timed updates per run (default 2000, quick 200)")
    ap.add_argument("--runs", type=int, default=None, help="runs per configuration, median reported (5, quick 2)")
    ap.add_argument("--seconds", type=float, default=None,
                    help="rough time budget per configuration: sizes --updates from a calibration pass")
    ap.add_argument("--symbols", type=int, default=50)
    a = ap.parse_args(argv)
    updates = a.updates or (200 if a.quick else 2_000)
    runs = a.runs or (2 if a.quick else 5)
    rows: list[Row] = []
    for d in DEPTHS:
        for n in VENUES:
            u = updates
            if a.seconds is not None:  # calibrate on a short run, then fill the budget
                probe = measure(n, d, a.symbols, 100, 1)
                u = max(100, int(a.seconds * 1e6 / max(probe.us_per_update, 0.01) / runs))
            rows.append(measure(n, d, a.symbols, u, runs))
    print(f"{'venues':>6} {'depth':>5} {'us/update':>10} {'evals/update':>12} {'us/eval':>8} {'levels':>7}")
    for r in rows:
        print(f"{r.venues:>6} {r.depth:>5} {r.us_per_update:>10.2f} {r.evals_per_update:>12.1f} "
              f"{r.us_per_eval:>8.3f} {r.levels_buy:>3}/{r.levels_sell:<3}")
    by = {(r.venues, r.depth): r for r in rows}
    lo, hi = min(VENUES), max(VENUES)
    for d in DEPTHS:
        ratio = by[(hi, d)].us_per_update / by[(lo, d)].us_per_update
        pairs = by[(hi, d)].evals_per_update / by[(lo, d)].evals_per_update
        print(f"depth {d:>2}: cost({hi})/cost({lo}) = {ratio:.2f}x per update (pair evaluations {pairs:.0f}x; "
              f"us/eval {by[(lo, d)].us_per_eval:.3f} -> {by[(hi, d)].us_per_eval:.3f})")
    print(json.dumps({"bench": "detector", "rows": [dataclasses.asdict(r) for r in rows]}))


if __name__ == "__main__":
    main()
