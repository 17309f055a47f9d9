"""Live load: 10 venues x 50 symbols of simulated traffic through one scanner pipeline.

The simulators (``scanner simulate``, their own process) serve 50 synthetic coins on each of 10
venues (:mod:`scanner.bench.synth_markets`), every book moving on the market walk at the normal
100 ms cadence, with each book's push at its own phase of the tick (``--stagger-ms``), as live
streams arrive. The pipeline ``scanner run`` builds (:class:`scanner.app.Pipeline`: collectors ->
Redis -> detector -> stream) runs in this process against a private Redis, with the detector's
normal thresholds, so the opportunities are the ones a user would see.

Measured over ``--seconds`` after ``--warmup``:
- frame -> opportunity in Redis, as the issue defines it (receive ns -> detector emit ns): every
  open/update event carries its triggering frame's receive time (ns, stamped by the connection as the
  frame arrives); the sink stamps the moment its XADD is written to Redis. p50/p90/p99/max.
- the same up to Redis acknowledging the XADD, as this process reads the reply: the emit figure plus
  the round trip plus however long the event loop takes to get to the reply.
- CPU (% of one core, process time) and peak RSS of the pipeline process (target: <= 100 %, <= 300 MB),
  and of the simulators for reference; book updates/s, frames/s, Redis book writes/s, evaluations/s.

``--split`` runs the same pipeline as two processes, the deployment ``scanner collect`` + ``scanner
detect`` (collectors -> Redis in a subprocess; the detector, reading the Redis channel, in this one):
target 4 is about one ``scanner run``, so its CPU and RSS are then the two processes' sums.

    python -m scanner.bench.live [--seconds 300] [--venues ...] [--symbols 50] [--all-pairs] [--split]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from scanner.app import COLLECT, DETECT, Pipeline
from scanner.bench.e2e import _free_port, _wait_port
from scanner.bench.synth_markets import write_markets
from scanner.bench.venues import cpu_s, rss_mb, scrape, synthetic_simulators
from scanner.config import from_dict
from scanner.redis_server import PrivateRedis
from scanner.sinks.metrics import Metrics

VENUES10 = ("okx", "binance", "bybit", "coinbase", "kraken", "gate", "kucoin", "bitget", "htx", "mexc")


def pct(xs: list[float], q: float) -> float:
    if len(xs) < 2:
        return xs[0] if xs else float("nan")
    return statistics.quantiles(xs, n=1000)[int(q * 1000) - 1]


def pipeline_config(all_pairs: bool, urls: dict[str, tuple[str, str]], symbols: list[str], markets: Path,
                    redis_url: str) -> dict[str, object]:
    """The pipeline's settings against the load benchmarks' simulators (``scanner run`` config shape)."""
    detector: dict[str, object] = {"max_book_age_ms": 5000}
    if all_pairs:  # every evaluated pair qualifies: a latency sample on every book update (stress, not realistic)
        detector.update(min_net_bps=-10000, min_profit_quote=-1e12, emit_interval_ms=0)
    return {
        "symbols": symbols,
        "venues": {v: {"ws_url": ws, "rest_url": rest} for v, (ws, rest) in urls.items()},
        "redis": {"url": redis_url},
        "detector": detector,
        "metrics": {"port": 0},
        "markets": {"refresh": True, "cache_dir": str(markets)},
        "log_level": "WARNING",
    }


def start_collector(config: dict[str, object], workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``scanner collect`` with ``config`` in its own process (``--split``); (process, metrics port)."""
    port = _free_port()
    path = workdir / "collect.yaml"
    path.write_text(yaml.safe_dump({**config, "metrics": {"host": "127.0.0.1", "port": port}}))
    proc = subprocess.Popen([sys.executable, "-m", "scanner", "collect", "--config", str(path)])
    try:
        _wait_port(port, time.monotonic() + 30)
    except BaseException:
        proc.terminate()
        proc.wait(15)
        raise
    return proc, port


async def measure(args: argparse.Namespace, config: dict[str, object], sim_pids: list[int],
                  collector: subprocess.Popen[bytes] | None, collector_port: int) -> dict[str, float]:
    pipeline = Pipeline(from_dict(config, {}), {DETECT} if collector is not None else {COLLECT, DETECT})
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    return await _measure(args, pipeline, task, stop, sim_pids, collector, collector_port)


async def _measure(args: argparse.Namespace, pipeline: Pipeline, task: asyncio.Task[None], stop: asyncio.Event,
                   sim_pids: list[int], collector: subprocess.Popen[bytes] | None,
                   collector_port: int) -> dict[str, float]:
    await asyncio.sleep(args.warmup)  # bench pacing: connect, snapshots, steady state (not a test)
    if task.done():
        await task
    sink, store, m = pipeline.sink, pipeline.store, pipeline.metrics
    sink.latencies_ns.clear()
    sink.emit_ns.clear()
    own = [os.getpid()] + ([collector.pid] if collector is not None else [])

    def counters() -> tuple[float, float, float]:
        if collector is None:
            return _sum(m, "scanner_book_updates"), _sum(m, "scanner_messages"), float(store.writes)
        c = scrape(collector_port)
        return (c.get("scanner_book_updates_total", 0.0), c.get("scanner_messages_total", 0.0),
                c.get("scanner_book_writes_total", 0.0))

    emitted0 = sink.emitted
    (updates0, frames0, writes0), evals0 = counters(), _sum(m, "scanner_evaluations")
    cpu0, sim_cpu0, t0 = sum(map(cpu_s, own)), sum(map(cpu_s, sim_pids)), time.monotonic()
    rss_peak = sim_rss = 0.0
    while time.monotonic() - t0 < args.seconds:
        await asyncio.sleep(1.0)
        rss_peak = max(rss_peak, sum(map(rss_mb, own)))
        sim_rss = max(sim_rss, sum(map(rss_mb, sim_pids)))
    el = time.monotonic() - t0
    updates1, frames1, writes1 = counters()
    lat = [x / 1e6 for x in sink.latencies_ns]
    emit = [x / 1e6 for x in sink.emit_ns]
    out = {
        "venues": len(args.venues.split(",")), "symbols": args.symbols, "split": int(args.split),
        "seconds": round(el, 1),
        "books": sum(1 for _ in m.book_rows()),
        "events": sink.emitted - emitted0, "samples": len(lat),
        "p50_ms": pct(lat, 0.5), "p90_ms": pct(lat, 0.9), "p99_ms": pct(lat, 0.99), "max_ms": max(lat, default=0.0),
        "emit_p50_ms": pct(emit, 0.5), "emit_p90_ms": pct(emit, 0.9), "emit_p99_ms": pct(emit, 0.99),
        "emit_max_ms": max(emit, default=0.0),
        "cpu_pct": 100 * (sum(map(cpu_s, own)) - cpu0) / el, "rss_mb": rss_peak,
        "sim_cpu_pct": 100 * (sum(map(cpu_s, sim_pids)) - sim_cpu0) / el, "sim_rss_mb": sim_rss,
        "book_updates_per_s": (updates1 - updates0) / el,
        "frames_per_s": (frames1 - frames0) / el,
        "book_writes_per_s": (writes1 - writes0) / el,
        "evaluations_per_s": (_sum(m, "scanner_evaluations") - evals0) / el,
    }
    stop.set()
    await task
    return out


def pin(others: list[int], pipeline: int) -> None:
    """The pipeline alone on the last CPU, everything else (simulators, Redis) on the others."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--pin needs at least 2 CPUs")
    for pid in others:
        for task in os.listdir(f"/proc/{pid}/task"):  # every thread (Redis has I/O threads)
            os.sched_setaffinity(int(task), cpus[:-1])
    os.sched_setaffinity(pipeline, cpus[-1:])


def rss_mb_self() -> float:
    return rss_mb(os.getpid())


def _sum(metrics: Metrics, family: str) -> float:
    """Sum of a counter family's ``_total`` samples in the pipeline's own registry."""
    total = 0.0
    for fam in metrics.registry.collect():
        if fam.name == family:
            total += sum(s.value for s in fam.samples if s.name.endswith("_total"))
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--warmup", type=float, default=12.0)
    ap.add_argument("--venues", default=",".join(VENUES10))
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--tick-ms", type=int, default=100)
    ap.add_argument("--stagger-ms", type=int, default=2, help="0: every book pushes at the same instant each tick")
    ap.add_argument("--sim-procs", type=int, default=2, help="simulator processes (venues split between them)")
    ap.add_argument("--sim-nice", type=int, default=10,
                    help="simulators' CPU priority below the pipeline's (0: equal): they stand in for remote venues")
    ap.add_argument("--all-pairs", action="store_true", help="every evaluated pair qualifies (latency stress)")
    ap.add_argument("--split", action="store_true",
                    help="scanner collect in a subprocess, the detector here (two processes, via Redis)")
    ap.add_argument("--pin", action="store_true",
                    help="simulators and Redis on CPU 0, the pipeline alone on CPU 1 (the venues on other machines)")
    args = ap.parse_args(argv)
    # SIGTERM (timeout, CI) unwinds like Ctrl-C, so the simulators and Redis are stopped too
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    venues = args.venues.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        markets = Path(tmp) / "markets"
        symbols = write_markets(venues, args.symbols, markets)
        # the simulators' own cost (~0.14 ms of Python per pushed book) would saturate one process at
        # 5,000 pushes/s and then send in bursts: they run in --sim-procs processes, venues split between them
        with synthetic_simulators(venues, symbols, markets, args.tick_ms, args.stagger_ms, args.sim_procs,
                                  args.sim_nice) as (sims, urls, served), PrivateRedis() as redis:
            import uvloop

            config = pipeline_config(args.all_pairs, urls, symbols, markets, redis.url)
            collector, collector_port = start_collector(config, Path(tmp)) if args.split else (None, 0)
            try:
                if args.pin:
                    pin([p.pid for p in sims] + ([redis.pid] if redis.pid else []), os.getpid())
                res = uvloop.run(measure(args, config, [p.pid for p in sims], collector, collector_port))
            finally:
                if collector is not None:
                    collector.terminate()
                    collector.wait(15)
    res["books_served"] = served
    print(f"live: {res['venues']} venues x {res['symbols']} symbols ({served} books served, {res['books']} held) "
          f"@ {args.tick_ms} ms, {res['seconds']:.0f} s")
    print(f"  frame -> opportunity in Redis: p50 {res['p50_ms']:.3f} ms  p90 {res['p90_ms']:.3f} ms  "
          f"p99 {res['p99_ms']:.3f} ms  max {res['max_ms']:.2f} ms  ({res['samples']:.0f} events)")
    print(f"  frame -> XADD written (detector emit): p50 {res['emit_p50_ms']:.3f} ms  p90 {res['emit_p90_ms']:.3f} ms  "
          f"p99 {res['emit_p99_ms']:.3f} ms  max {res['emit_max_ms']:.2f} ms")
    print(f"  pipeline: cpu {res['cpu_pct']:.1f}% of a core, peak rss {res['rss_mb']:.0f} MB; "
          f"{res['book_updates_per_s']:.0f} book updates/s, {res['frames_per_s']:.0f} frames/s, "
          f"{res['book_writes_per_s']:.0f} Redis book writes/s, {res['evaluations_per_s']:.0f} evaluations/s")
    print(f"  simulators: cpu {res['sim_cpu_pct']:.1f}%, rss {res['sim_rss_mb']:.0f} MB")
    print(json.dumps({"bench": "live", **{k: round(v, 4) for k, v in res.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
