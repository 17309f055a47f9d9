"""Fault scenario 8 (issue 8): REST snapshot limits. Binance books are seeded and resynced from REST
``/api/v3/depth`` (weight 25 at ``limit=500``), and a mass reconnect of 50 symbols needs 50 snapshots
at once. The scanner pays for them from a token bucket of ``rest_weight_per_min`` (default 3000, half of
Binance's documented 6000 per minute, ``SimConfig.binance_weight_limit``), bursts of one second's worth.

A cold start of 50 symbols and then a dropped connection (every book resyncs) are checked on the
simulator's request log: no request got 429/418; in every 60 s window the summed weight stays within
the venue's limit; and over every run of requests the weight never outpaces the budget (burst plus rate
times the span, with one request of slack for arrival jitter). All 50 books end valid.

Fast scale scales the budget and the simulator's limit up tenfold (the same 1:2 ratio) so the 50
snapshots take seconds instead of 25 s each round; full scale runs the real figures."""

from __future__ import annotations

import time
from pathlib import Path

from scanner.bench.synth_markets import TEMPLATE_PRICE, write_markets
from scanner.sim.server import RequestRecord, SimCluster, SimConfig
from scanner.venues import VENUES
from scanner.venues.binance import SNAPSHOT_LIMIT, depth_weight
from tests.faults.conftest import scaled
from tests.faults.report import Row
from tests.pipeline_helpers import native, running, settings_for, until

N = 50
DOCUMENTED_LIMIT = SimConfig().binance_weight_limit  # Binance: 6000 request weight per minute per IP


def _depth(records: list[RequestRecord], since: float) -> list[RequestRecord]:
    return [q for q in records if q.path.startswith("/api/v3/depth") and q.t >= since]


def _worst_window(reqs: list[RequestRecord], window_s: float) -> int:
    """The most weight any ``window_s`` window (starting at a request) saw."""
    worst, j, acc = 0, 0, 0
    for i, q in enumerate(reqs):
        while j < len(reqs) and reqs[j].t < q.t + window_s:
            acc += reqs[j].weight
            j += 1
        worst = max(worst, acc)
        acc -= q.weight
        if j == i:
            j += 1
    return worst


def _worst_pacing_excess(reqs: list[RequestRecord], per_min: int) -> float:
    """max over runs i..j of weight(i..j) - (burst + rate * (t_j - t_i)): > 0 means faster than the bucket."""
    rate, burst = per_min / 60.0, per_min / 60.0
    worst = float("-inf")
    for i in range(len(reqs)):
        acc = 0
        for j in range(i, len(reqs)):
            acc += reqs[j].weight
            worst = max(worst, acc - (burst + rate * (reqs[j].t - reqs[i].t)))
    return worst


async def test_mass_resnapshot_stays_within_rest_limit(tmp_path: Path, redis_url: str, fault_report: Row) -> None:
    factor = int(scaled(10, 1))
    budget = VENUES["binance"].rest_weight_per_min * factor
    limit = DOCUMENTED_LIMIT * factor
    assert budget <= limit // 2  # the default budget is half the documented limit
    markets = tmp_path / "markets"
    symbols = write_markets(["binance"], N, markets)
    assert len(symbols) == N
    cfg = SimConfig(binance_weight_limit=limit)
    weight = depth_weight(SNAPSHOT_LIMIT)
    async with SimCluster(venues=["binance"], symbols=symbols, tick_ms=100, seed=7, config=cfg, markets_dir=markets,
                          prices=dict.fromkeys(symbols, TEMPLATE_PRICE)) as sims:
        settings = settings_for(sims, redis_url, markets,
                                venues={"binance": native(sims, "binance", rest_weight_per_min=budget)})
        venue = sims.venue("binance")
        rounds: list[tuple[str, float, float]] = []  # (what, start, recovered after s)
        start = time.monotonic()
        async with running(settings) as p:
            col = p.collectors["binance"]
            assert len(col.books) == N
            per_round = N * weight / (budget / 60.0)
            await until(lambda: all(sb.valid for sb in col.books.values()), sims, "50 books valid (cold start)",
                        per_round + 20)
            rounds.append(("cold start", start, time.monotonic() - start))
            dropped = time.monotonic()
            resyncs_before = len(_depth(list(venue.requests), dropped))
            venue.drop()
            await until(lambda: len(_depth(list(venue.requests), dropped)) > resyncs_before, sims, "re-snapshots")
            await until(lambda: all(sb.valid for sb in col.books.values()), sims, "50 books valid (reconnect)",
                        per_round + 20)
            rounds.append(("reconnect", dropped, time.monotonic() - dropped))
            valid_end = sum(1 for sb in col.books.values() if sb.valid)
    reqs = _depth(list(venue.requests), start)
    after_drop = _depth(reqs, rounds[1][1])
    refused = [q for q in reqs if q.status in (418, 429)]
    worst_minute = _worst_window(reqs, 60.0)
    excess = _worst_pacing_excess(reqs, budget)
    assert not refused
    assert len(after_drop) >= N  # every book was re-snapshotted after the mass reconnect
    assert worst_minute <= limit
    assert excess <= weight  # never ahead of the token bucket, beyond one request of arrival jitter
    assert valid_end == N
    span = reqs[-1].t - reqs[0].t
    fault_report.injected = (f"binance, {N} symbols: cold start, then every connection dropped (mass re-snapshot); "
                             f"budget {budget}/min, venue limit {limit}/min")
    fault_report.observed = {
        "snapshot_requests": len(reqs), "after_drop": len(after_drop), "http_429_418": len(refused),
        "worst_60s_weight": worst_minute, "limit_per_min": limit,
        "worst_pacing_excess_weight": round(excess, 1), "span_s": round(span, 2),
        "budget_per_s": round(budget / 60.0, 1), "books_valid": valid_end}
    fault_report.recover_s = max(r[2] for r in rounds)
    fault_report.lost = N - valid_end
