"""Simulator cost: CPU per pushed frame of ``scanner simulate`` under the live benchmark's load.

Starts the simulators exactly as :mod:`scanner.bench.live` does (10 venues x ``--symbols`` synthetic
coins, ``--stagger-ms`` phases, venues split over ``--sim-procs`` processes) and the collectors of
``scanner collect`` (the ``collect`` role of :class:`scanner.app.Pipeline`, no detector) against a
private Redis, so every venue's books are subscribed the way the scanner subscribes them. Over
``--seconds`` after ``--warmup`` it reports the simulators' process CPU (utime + stime from /proc),
the frames the collectors received per second, and the simulators' CPU per received frame; also
the simulators' write syscalls per second (/proc/PID/io ``syscw``, about one per frame sent).

    python -m scanner.bench.sims [--seconds 30] [--warmup 10] [--runs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from scanner.app import COLLECT, Pipeline
from scanner.bench.live import VENUES10, _sum
from scanner.bench.synth_markets import write_markets
from scanner.bench.venues import CLK, cpu_s, synthetic_simulators
from scanner.config import from_dict
from scanner.redis_server import PrivateRedis


def sys_s(pid: int) -> float:
    """Kernel CPU seconds of the process (stime): socket writes, epoll, timers."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[12]) / CLK


def syscw(pid: int) -> int:
    """Write syscalls the process has made (sockets included)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    return 0


async def measure(args: argparse.Namespace, urls: dict[str, tuple[str, str]], symbols: list[str], markets: Path,
                  redis_url: str, pids: list[int]) -> dict[str, float]:
    settings = from_dict({
        "symbols": symbols,
        "venues": {v: {"ws_url": ws, "rest_url": rest} for v, (ws, rest) in urls.items()},
        "redis": {"url": redis_url},
        "metrics": {"port": 0},
        "markets": {"refresh": True, "cache_dir": str(markets)},
        "log_level": "ERROR",
    }, {})
    pipeline = Pipeline(settings, {COLLECT})
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    await asyncio.sleep(args.warmup)  # bench pacing: connect, snapshots, steady state (not a test)
    if task.done():
        await task
    m = pipeline.metrics
    frames0, cpu0, w0, t0 = _sum(m, "scanner_messages"), sum(map(cpu_s, pids)), sum(map(syscw, pids)), time.monotonic()
    sys0 = sum(map(sys_s, pids))
    await asyncio.sleep(args.seconds)
    el = time.monotonic() - t0
    frames = (_sum(m, "scanner_messages") - frames0) / el
    cpu = (sum(map(cpu_s, pids)) - cpu0) / el
    writes = (sum(map(syscw, pids)) - w0) / el
    kernel = (sum(map(sys_s, pids)) - sys0) / el
    stop.set()
    await task
    return {"seconds": round(el, 1), "sim_cpu_pct": 100 * cpu, "frames_per_s": frames,
            "sim_us_per_frame": 1e6 * cpu / frames if frames else float("nan"), "sim_writes_per_s": writes,
            "sim_sys_pct": 100 * kernel}


def run_once(args: argparse.Namespace) -> dict[str, float]:
    venues = args.venues.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        markets = Path(tmp) / "markets"
        symbols = write_markets(venues, args.symbols, markets)
        with synthetic_simulators(venues, symbols, markets, args.tick_ms, args.stagger_ms,
                                  args.sim_procs) as (sims, urls, _), PrivateRedis() as redis:
            import uvloop

            return uvloop.run(measure(args, urls, symbols, markets, redis.url, [p.pid for p in sims]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--venues", default=",".join(VENUES10))
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--tick-ms", type=int, default=100)
    ap.add_argument("--stagger-ms", type=int, default=2)
    ap.add_argument("--sim-procs", type=int, default=2)
    args = ap.parse_args(argv)
    for _ in range(args.runs):
        res = run_once(args)
        print(f"sims: cpu {res['sim_cpu_pct']:.1f}% of a core, {res['frames_per_s']:.0f} frames/s received, "
              f"{res['sim_us_per_frame']:.1f} us CPU per frame "
              f"(kernel {res['sim_sys_pct']:.1f}% of a core), {res['sim_writes_per_s']:.0f} write syscalls/s",
              flush=True)
        print(json.dumps({"bench": "sims", **{k: round(v, 3) for k, v in res.items()}}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
