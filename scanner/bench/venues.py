"""All venues at once: every simulator in one process (``scanner simulate --venues all``) at its
normal cadence, and one ``scanner run`` collecting every venue into a private Redis and
detecting across them. Reports, per process, CPU (% of one core) and RSS over the window,
plus the pipeline's book updates/s and frames/s read from its own /metrics.

    python -m scanner.bench.venues [--seconds 60] [--symbols 50] [--tick-ms 100]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from scanner.bench.e2e import _free_port, _wait_port
from scanner.bench.synth_markets import TEMPLATE_PRICE
from scanner.markets import MarketMap
from scanner.redis_server import PrivateRedis
from scanner.sim.market import load_markets
from scanner.sim.server import VENUE_CLASSES
from scanner.venues import VENUES

CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
URL_LINE = re.compile(r"^(\S+): ws=(\S+) rest=(\S+) symbols=(\d+)")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


def shared_symbols(venues: list[str], limit: int) -> list[str]:
    """The symbols listed by the most venues, most widely listed first."""
    count: Counter[str] = Counter()
    for v in venues:
        count.update(list(MarketMap(v, load_markets(v)[0]).by_symbol))
    return [s for s, _n in count.most_common(limit)]


def start_simulators(venues: list[str], symbols: list[str], extra: list[str], nice: int = 0
                     ) -> tuple[subprocess.Popen[str], dict[str, tuple[str, str]], int]:
    """``scanner simulate`` for ``venues`` on free ports; (process, venue -> (ws, rest) URL, books served).
    ``nice`` > 0 lowers the simulators' CPU priority: they stand in for exchanges on other machines, so
    on a small box they must not take the CPU from the pipeline being measured when both want it."""
    cmd = [sys.executable, "-m", "scanner", "simulate", "--venues", ",".join(venues), "--symbols", ",".join(symbols),
           *[a for v in venues for a in ("--port", f"{v}=0")], *extra]
    sim = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                           preexec_fn=(lambda: os.nice(nice)) if nice > 0 else None)
    urls: dict[str, tuple[str, str]] = {}
    served = 0
    assert sim.stdout is not None
    while len(urls) < len(venues):
        line = sim.stdout.readline()
        if not line:
            sim.wait(5)
            raise RuntimeError("the simulator exited before printing its URLs")
        m = URL_LINE.match(line)
        if m:
            urls[m[1]] = (m[2], m[3])
            served += int(m[4])
    return sim, urls, served


@contextmanager
def synthetic_simulators(venues: list[str], symbols: list[str], markets: Path, tick_ms: int, stagger_ms: int,
                         procs: int, nice: int = 0
                         ) -> Iterator[tuple[list[subprocess.Popen[str]], dict[str, tuple[str, str]], int]]:
    """The simulators of the load benchmarks (:mod:`scanner.bench.synth_markets` coins at the template's
    price), venues split between ``procs`` processes; (processes, venue -> URLs, books served). They are
    stopped on exit."""
    sims: list[subprocess.Popen[str]] = []
    urls: dict[str, tuple[str, str]] = {}
    served = 0
    try:
        for part in range(procs):
            group = venues[part::procs]
            if not group:
                continue
            sim, got, n = start_simulators(group, symbols, [
                "--tick-ms", str(tick_ms), "--stagger-ms", str(stagger_ms), "--markets-dir", str(markets),
                *[a for s in symbols for a in ("--price", f"{s}={TEMPLATE_PRICE}")]], nice=nice)
            sims.append(sim)
            urls.update(got)
            served += n
        yield sims, urls, served
    finally:
        for sim in sims:
            sim.terminate()
        for sim in sims:
            sim.wait(15)


REPORTED = ("scanner_messages_total", "scanner_book_updates_total", "scanner_book_writes_total",
            "scanner_resyncs_total", "scanner_evaluations_total", "scanner_opportunities_total")


def scrape(port: int, families: tuple[str, ...] = REPORTED) -> dict[str, float]:
    """Each of ``families`` (``_total`` sample names), summed over its labels, from the pipeline's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in families:
            sums[name] = sums.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return sums


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=8.0)
    ap.add_argument("--symbols", type=int, default=50, help="how many symbols (most widely listed first)")
    ap.add_argument("--tick-ms", type=int, default=100)
    args = ap.parse_args()
    venues = [v for v in VENUE_CLASSES if v in VENUES]
    symbols = shared_symbols(venues, args.symbols)
    sim, urls, served = start_simulators(venues, symbols, ["--tick-ms", str(args.tick_ms)])
    run: subprocess.Popen[bytes] | None = None
    try:
        with PrivateRedis() as redis, tempfile.TemporaryDirectory() as tmp:
            mport = _free_port()
            cfg = Path(tmp) / "bench.yaml"
            cfg.write_text(yaml.safe_dump({
                "symbols": symbols,
                "venues": {v: {"ws_url": ws, "rest_url": rest} for v, (ws, rest) in urls.items()},
                "redis": {"url": redis.url},
                "metrics": {"port": mport},
                "log_level": "WARNING",
            }))
            run = subprocess.Popen([sys.executable, "-m", "scanner", "run", "--config", str(cfg)])
            _wait_port(mport, time.monotonic() + 30)
            time.sleep(args.warmup)  # bench pacing: connect, snapshots, steady state
            c0 = {p: cpu_s(p) for p in (sim.pid, run.pid)}
            m0, t0 = scrape(mport), time.monotonic()
            rss_peak = {sim.pid: 0.0, run.pid: 0.0}
            while time.monotonic() - t0 < args.seconds:
                time.sleep(1.0)
                for p in rss_peak:
                    rss_peak[p] = max(rss_peak[p], rss_mb(p))
            el = time.monotonic() - t0
            m1 = scrape(mport)
            cpu = {p: 100 * (cpu_s(p) - c0[p]) / el for p in c0}
            res = {
                "venues": len(venues), "symbols": len(symbols), "books_served": served, "seconds": round(el, 1),
                "sim_cpu_pct": round(cpu[sim.pid], 1), "sim_rss_mb": round(rss_peak[sim.pid], 1),
                "run_cpu_pct": round(cpu[run.pid], 1), "run_rss_mb": round(rss_peak[run.pid], 1),
                **{k.removeprefix("scanner_").removesuffix("_total") + "_per_s":
                   round((m1.get(k, 0.0) - m0.get(k, 0.0)) / el, 1) for k in m1},
            }
            run.terminate()  # before its Redis goes away
            run.wait(15)
            run = None
    finally:
        for proc in (run, sim):
            if proc is not None:
                proc.terminate()
                proc.wait(15)
    print(f"{res['venues']} venues, {res['symbols']} symbols ({res['books_served']} books) @ {args.tick_ms} ms: "
          f"simulators cpu {res['sim_cpu_pct']}% rss {res['sim_rss_mb']} MB; scanner run cpu {res['run_cpu_pct']}% "
          f"rss {res['run_rss_mb']} MB")
    print(json.dumps({"bench": "venues", **res}))


if __name__ == "__main__":
    main()
