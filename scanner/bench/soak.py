"""Soak: ``scanner run`` for a long stretch at realistic rates with random faults; RSS must stay flat.

Issue 8, scenario 10 (``make soak``, not in CI). The load benchmark's simulators
(:func:`scanner.bench.venues.synthetic_simulators`: 10 venues x 50 synthetic coins by default, 100 ms per
book, each book at its own phase of the tick, at ``nice 10``) serve a private Redis's pipeline, which runs
as users run it: a separate ``scanner run --config <tmp yaml>`` process. Its RSS is read from
``/proc/<pid>/status`` (VmRSS), a crash is seen as the process exiting, and its ``/metrics`` counters
(resyncs, reconnects, parse errors, opportunities, refusals) are scraped at the start and the end.

Every ``--fault-every`` seconds (jittered x0.5-1.5, seeded by ``--seed``) one random fault goes to one
random venue on one random symbol, through the simulator's own ``POST /sim/fault``: drop, garbage,
skip_seq, corrupt_checksum, corrupt_level, stall (short), snapshot_lag (switched off again after a few
seconds) or seq_reset. A venue that does not support the fault answers 400 (``FaultUnsupported``); that
pair is remembered and another is drawn. Faults start once every book has been valid once (or at the
end of the warm-up, whichever comes first) and stop at the end of the run.

Verdict, all of which must hold (exit 1 otherwise):
- RSS flat: sampled every 5 s (more often for runs shorter than 150 s after warm-up). After the warm-up,
  the mean of the last 5 minutes (the last 20 % for short runs) is at most ``--max-growth-pct`` (10) above
  the mean of the first 5 minutes (20 %) after it. Min/max/peak and a least-squares slope (MB/hour) are
  reported too.
- the pipeline is still alive at the end (no crash);
- every book is valid in Redis within 10 s after the last fault ended: each ``book:{symbol}:venue`` key
  decodes (:func:`scanner.store.schema.decode_book`) as valid, with both sides and not crossed, and was
  written within ``--fresh-s``;
- the counters show the faults were seen: resyncs + reconnects > 0, reconnects > 0 if a drop was injected,
  parse errors > 0 if garbage was.

Prints one table and a final JSON line ``{"bench": "soak", ...}``. Run it on an otherwise quiet machine:
the pipeline's CPU share and the machine's peak load average are reported with the RSS, because a
pipeline starved of CPU falls behind and its RSS keeps the high-water mark of that backlog (seen here:
+40 % when another CPU-bound process joined for 3 minutes), which this check rightly counts as growth.

    python -m scanner.bench.soak [--minutes 30] [--warmup-minutes 3] [--venues okx,...] [--symbols 50]
                                 [--fault-every 20] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import yaml

from scanner.bench.e2e import _free_port, _wait_port
from scanner.bench.live import VENUES10, pipeline_config
from scanner.bench.synth_markets import write_markets
from scanner.bench.venues import cpu_s, rss_mb, scrape, synthetic_simulators
from scanner.redis_server import PrivateRedis
from scanner.store.schema import book_key, decode_book

FAULTS = ("drop", "garbage", "skip_seq", "corrupt_checksum", "corrupt_level", "stall", "snapshot_lag", "seq_reset")
# /metrics families summed over their labels (the ``_total`` samples), reported as end - start
COUNTERS = ("messages", "book_updates", "parse_errors", "reconnects", "resyncs", "rest_snapshots", "opportunities",
            "refusals", "redis_errors")
VALID_WITHIN_S = 10.0  # every book valid again this long after the last fault ended
SNAPSHOT_LAG_S = 5.0  # how long a snapshot_lag fault stays switched on


@dataclass
class Injector:
    """Random faults on random venues and symbols through the simulators' ``POST /sim/fault``."""

    rng: random.Random
    rest: dict[str, str]  # venue -> simulator base URL (http://host:port)
    symbols: list[str]
    fault_every: float
    counts: Counter[str] = field(default_factory=Counter)  # "kind" -> injected
    by_venue: Counter[str] = field(default_factory=Counter)
    # (venue, kind) answered 400 -> the simulator's reason (FaultUnsupported: "okx has no ...")
    unsupported: dict[tuple[str, str], str] = field(default_factory=dict)
    reverts: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)  # (due, venue, spec)
    failures: list[str] = field(default_factory=list)  # other errors (simulator unreachable, 5xx)
    last_end: float = 0.0  # monotonic time the last fault's effect ends

    def inject(self) -> str | None:
        """One fault on a random (venue, kind) the venue supports; its ``venue:kind``, or None."""
        pairs = [(v, k) for v in self.rest for k in FAULTS if (v, k) not in self.unsupported]
        while pairs:
            venue, kind = pair = self.rng.choice(pairs)
            spec, lasts = self.spec(kind)
            status, body = post(self.rest[venue] + "/sim/fault", spec)
            if status == 400:
                try:
                    self.unsupported[pair] = str(json.loads(body).get("error", body))[:200]
                except ValueError:
                    self.unsupported[pair] = body[:200]
                pairs.remove(pair)
                continue
            if status != 200:
                self.failures.append(f"{venue} {kind}: HTTP {status} {body[:200]}")
                return None
            now = time.monotonic()
            self.counts[kind] += 1
            self.by_venue[venue] += 1
            self.last_end = max(self.last_end, now + lasts)
            if kind == "snapshot_lag":
                self.reverts.append((now + lasts, venue, {"fault": "snapshot_lag", "ticks": 0}))
            return f"{venue}:{kind}"
        return None

    def spec(self, kind: str) -> tuple[dict[str, Any], float]:
        """The request body for ``kind`` and how long its effect lasts (s)."""
        rng = self.rng
        spec: dict[str, Any] = {"fault": kind, "symbol": rng.choice(self.symbols)}
        if kind == "drop":
            spec["clean"] = rng.random() < 0.3
        elif kind == "garbage":
            spec["count"] = rng.randint(3, 8)
        elif kind == "corrupt_level":
            spec["mode"] = rng.choice(("size", "crossed"))
        elif kind == "stall":  # short: up to 8 s (the detector's 5 s staleness limit), below the watchdogs
            spec["seconds"] = round(rng.uniform(1.0, min(8.0, max(2.0, self.fault_every))), 1)
            return spec, float(spec["seconds"])
        elif kind == "snapshot_lag":
            spec["ticks"] = rng.randint(5, 30)
            return spec, SNAPSHOT_LAG_S
        return spec, 0.0

    def revert_due(self, now: float, everything: bool = False) -> None:
        """Switch off the timed faults whose time is up (all of them with ``everything``)."""
        keep = []
        for due, venue, spec in self.reverts:
            if everything or due <= now:
                status, body = post(self.rest[venue] + "/sim/fault", spec)
                if status != 200:
                    self.failures.append(f"{venue} revert {spec}: HTTP {status} {body[:200]}")
            else:
                keep.append((due, venue, spec))
        self.reverts = keep

    def next_in(self) -> float:
        return self.fault_every * self.rng.uniform(0.5, 1.5)


def post(url: str, body: dict[str, Any]) -> tuple[int, str]:
    """POST JSON; (status, body text); status 0 when the server could not be reached."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)


def counters(port: int) -> dict[str, float]:
    """Each of :data:`COUNTERS`, summed over its labels, from the pipeline's /metrics."""
    sums = scrape(port, tuple(f"scanner_{c}_total" for c in COUNTERS))
    return {c: sums.get(f"scanner_{c}_total", 0.0) for c in COUNTERS}


def valid_books(client: redis.Redis, keys: list[str], fresh_s: float) -> set[str]:
    """The keys whose book is valid now: decodes, ``valid``, both sides, not crossed, written within ``fresh_s``."""
    now_ns, ok = time.time_ns(), set()
    for key, raw in zip(keys, client.mget(keys), strict=True):
        if raw is None:
            continue
        try:
            view = decode_book(raw)
            pub_ns = int(json.loads(raw)["pub_ns"])
        except (ValueError, KeyError, TypeError):
            continue
        if (view.valid and view.bids and view.asks and 0 < view.best_bid < view.best_ask
                and now_ns - pub_ns <= fresh_s * 1e9):
            ok.add(key)
    return ok


def rss_stats(samples: list[tuple[float, float]], warmup_s: float, end_s: float) -> dict[str, float]:
    """Flatness of RSS samples ``(seconds since start, MB)``: the first and last windows after the warm-up
    (5 min each, or 20 % of the time after it when shorter), growth %, min/max, slope (MB/hour)."""
    post = [(t, mb) for t, mb in samples if t >= warmup_s]
    window = min(300.0, 0.2 * (end_s - warmup_s))
    first = [mb for t, mb in post if t < warmup_s + window] or [mb for _, mb in post[:1]]
    last = [mb for t, mb in post if t >= end_s - window] or [mb for _, mb in post[-1:]]
    if not first or not last:
        return {"rss_first_mb": 0.0, "rss_last_mb": 0.0, "rss_growth_pct": float("inf"), "rss_min_mb": 0.0,
                "rss_max_mb": 0.0, "rss_peak_mb": max((mb for _, mb in samples), default=0.0),
                "rss_slope_mb_per_h": 0.0, "rss_samples": float(len(samples)), "rss_window_s": window}
    m0, m1 = statistics.fmean(first), statistics.fmean(last)
    slope = 0.0
    if len(post) >= 2:
        ts, ms = [t for t, _ in post], [mb for _, mb in post]
        tm, mm = statistics.fmean(ts), statistics.fmean(ms)
        den = sum((t - tm) ** 2 for t in ts)
        slope = sum((t - tm) * (m - mm) for t, m in zip(ts, ms, strict=True)) / den * 3600 if den else 0.0
    return {"rss_first_mb": m0, "rss_last_mb": m1, "rss_growth_pct": 100 * (m1 / m0 - 1),
            "rss_min_mb": min(mb for _, mb in post), "rss_max_mb": max(mb for _, mb in post),
            "rss_peak_mb": max(mb for _, mb in samples), "rss_slope_mb_per_h": slope,
            "rss_samples": float(len(samples)), "rss_window_s": window}


def soak(args: argparse.Namespace) -> dict[str, Any]:
    venues = [v.strip() for v in args.venues.split(",") if v.strip()]
    duration, warmup = args.minutes * 60, args.warmup_minutes * 60
    if not 0 <= warmup < duration:
        raise SystemExit("--warmup-minutes must be shorter than --minutes")
    sample_s = min(5.0, max(0.5, (duration - warmup) / 30))
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        markets = Path(tmp) / "markets"
        symbols = write_markets(venues, args.symbols, markets)
        if not symbols:
            raise SystemExit(f"no synthetic symbol is listed by every one of {venues}")
        with synthetic_simulators(venues, symbols, markets, args.tick_ms, args.stagger_ms, min(2, len(venues)),
                                  args.sim_nice) as (_sims, urls, served), PrivateRedis() as rds:
            mport = _free_port()
            cfg = Path(tmp) / "soak.yaml"
            config = pipeline_config(False, urls, symbols, markets, rds.url)
            cfg.write_text(yaml.safe_dump({**config, "metrics": {"port": mport}}))
            log_path = Path(tmp) / "run.log"
            with log_path.open("wb") as log_file:
                run = subprocess.Popen([sys.executable, "-m", "scanner", "run", "--config", str(cfg)],
                                       stdout=log_file, stderr=subprocess.STDOUT)
                try:
                    res = drive(args, run, mport, rds.url, venues, symbols, urls, duration, warmup, sample_s, rng)
                finally:
                    if run.poll() is None:
                        run.terminate()  # before its Redis goes away
                        try:
                            run.wait(20)
                        except subprocess.TimeoutExpired:
                            run.kill()
                            run.wait(5)
            res["books_served"] = served
            if not res["alive"]:
                res["log_tail"] = log_path.read_text(errors="replace")[-3000:]
    return res


@dataclass
class Recovery:
    """Books seen valid since a point in time (the pipeline's start, then each fault's end): a window is
    complete once every book has been seen valid at least once in it (KuCoin's walk past its REST
    snapshot's horizon keeps a few books resyncing at any moment, so "all valid at one instant" is not
    the question); its time is the window's start to that moment."""

    keys: list[str]
    start: float
    seen: set[str] = field(default_factory=set)
    done_s: float | None = None  # start -> every book seen valid
    times: list[float] = field(default_factory=list)  # completed windows after faults
    interrupted: int = 0  # windows a later fault cut short

    def restart(self, at: float, after_fault: bool = True) -> None:
        if self.done_s is None and after_fault:
            self.interrupted += 1
        self.start, self.seen, self.done_s = at, set(), None

    def check(self, valid: set[str], now: float) -> bool:
        """Add the books valid at ``now``; True when the window has just completed."""
        if self.done_s is not None or now < self.start:
            return False
        self.seen |= valid
        if len(self.seen) == len(self.keys):
            self.done_s = now - self.start
            return True
        return False


def drive(args: argparse.Namespace, run: subprocess.Popen[bytes], mport: int, redis_url: str, venues: list[str],
          symbols: list[str], urls: dict[str, tuple[str, str]], duration: float, warmup: float, sample_s: float,
          rng: random.Random) -> dict[str, Any]:
    """The soak itself, with the pipeline started: faults, RSS samples, counters, the book checks."""
    t0 = time.monotonic()
    _wait_port(mport, t0 + 60)
    m0 = counters(mport)
    client = redis.Redis.from_url(redis_url)
    keys = [book_key(s, v) for v in venues for s in symbols]
    check_s = 0.5 if len(keys) <= 100 else 1.0  # reading and decoding every book costs the driver CPU
    inj = Injector(rng, {v: rest for v, (_ws, rest) in urls.items()}, symbols, args.fault_every)
    rec = Recovery(keys, t0)
    samples: list[tuple[float, float]] = []
    load_max = 0.0  # the machine's 1-min load average: RSS is only comparable on an otherwise quiet machine
    cpu0 = cpu_s(run.pid)
    startup_s: float | None = None
    faulting = False
    next_fault = next_sample = next_check = t0
    end = t0 + duration
    died_at: float | None = None
    while (now := time.monotonic()) < end:
        if run.poll() is not None:
            died_at = now - t0
            break
        if now >= next_sample:
            try:
                samples.append((now - t0, rss_mb(run.pid)))
            except (OSError, RuntimeError):  # exited between poll() and the read: seen on the next pass
                continue
            load_max = max(load_max, os.getloadavg()[0])
            next_sample += sample_s
        if now >= next_check:
            if rec.check(valid_books(client, keys, args.fresh_s), now):
                if startup_s is None:
                    startup_s = rec.done_s
                elif rec.done_s is not None:
                    rec.times.append(rec.done_s)
            next_check = now + check_s
        if not faulting and (startup_s is not None or now - t0 >= warmup):
            faulting, next_fault = True, now + inj.next_in()
        if faulting and now >= next_fault and inj.inject():
            rec.restart(inj.last_end, after_fault=startup_s is not None)
            startup_s = startup_s if startup_s is not None else float("nan")  # faults began before all were valid
            next_fault = now + inj.next_in()
        inj.revert_due(now)
        time.sleep(min(0.1, max(0.0, end - now)))  # pacing of the driver loop
    inj.revert_due(time.monotonic(), everything=True)
    alive = run.poll() is None and died_at is None
    # every book valid again within 10 s of the last fault's end (each seen valid at least once since then)
    deadline = max(rec.start, time.monotonic()) + VALID_WITHIN_S
    while alive and rec.done_s is None and (now := time.monotonic()) < deadline:
        if rec.check(valid_books(client, keys, args.fresh_s), now) and rec.done_s is not None:
            rec.times.append(rec.done_s)
            break
        time.sleep(0.25)  # polling Redis for the books' state
    books_valid = rec.done_s is not None and rec.done_s <= VALID_WITHIN_S
    client.close()
    alive = alive and run.poll() is None
    m1 = counters(mport) if alive else dict.fromkeys(COUNTERS, float("nan"))
    cpu_pct = 100 * (cpu_s(run.pid) - cpu0) / (time.monotonic() - t0) if alive else float("nan")
    delta = {k: m1[k] - m0[k] for k in COUNTERS}
    rss = rss_stats(samples, warmup, min(duration, died_at or duration))
    seen_faults = delta["resyncs"] + delta["reconnects"] > 0
    if inj.counts["drop"]:
        seen_faults = seen_faults and delta["reconnects"] > 0
    if inj.counts["garbage"]:
        seen_faults = seen_faults and delta["parse_errors"] > 0
    injected = sum(inj.counts.values())
    checks = {
        "alive": alive,
        "faults_injected": injected > 0 and not inj.failures,
        "faults_seen": seen_faults,
        "books_valid": books_valid,
        "rss_flat": rss["rss_growth_pct"] <= args.max_growth_pct,
    }
    return {
        "venues": len(venues), "symbols": len(symbols), "books": len(keys), "minutes": args.minutes,
        "warmup_minutes": args.warmup_minutes, "seed": args.seed, "fault_every_s": args.fault_every,
        "seconds": round(min(time.monotonic(), end) - t0, 1), "alive": alive, "died_at_s": died_at,
        "startup_s": startup_s, "faults_injected": injected, "faults": dict(sorted(inj.counts.items())),
        "faults_by_venue": dict(sorted(inj.by_venue.items())),
        "unsupported": {f"{v}:{k}": why for (v, k), why in sorted(inj.unsupported.items())},
        "fault_errors": inj.failures,
        **{k: delta[k] for k in COUNTERS},
        **rss, "cpu_pct": cpu_pct, "load_max": load_max, "cpus": os.cpu_count() or 0,
        "books_valid": books_valid, "books_valid_count": len(rec.seen),
        "books_valid_after_s": rec.done_s, "books_missing": sorted(set(keys) - rec.seen)[:20],
        "recover_max_s": max(rec.times, default=None), "recover_median_s": statistics.median(rec.times)
        if rec.times else None, "recoveries": len(rec.times), "recoveries_interrupted": rec.interrupted,
        "checks": checks, "verdict": "ok" if all(checks.values()) else "FAIL",
    }


def table(res: dict[str, Any], max_growth: float) -> str:
    def f(x: float | None, nd: int = 1) -> str:
        return "-" if x is None else f"{x:,.{nd}f}"

    rows = [
        ("run", f"{res['venues']} venues x {res['symbols']} symbols ({res['books']} books), {res['seconds']:.0f} s, "
                f"warm-up {res['warmup_minutes'] * 60:.0f} s, seed {res['seed']}, "
                f"a fault every ~{res['fault_every_s']} s"),
        ("startup (every book valid once)", f"{f(res['startup_s'])} s"),
        ("faults injected", f"{res['faults_injected']}: " + ", ".join(f"{k} {n}" for k, n in res["faults"].items())),
        ("unsupported (skipped)", "; ".join(f"{k} ({why})" for k, why in res["unsupported"].items()) or "-"),
        ("resyncs", f(res["resyncs"], 0)),
        ("reconnects", f(res["reconnects"], 0)),
        ("parse errors", f(res["parse_errors"], 0)),
        ("REST snapshots", f(res["rest_snapshots"], 0)),
        ("opportunities (opened)", f(res["opportunities"], 0)),
        ("refusals", f(res["refusals"], 0)),
        ("frames / book updates", f"{f(res['messages'], 0)} / {f(res['book_updates'], 0)}"),
        ("RSS first / last window", f"{f(res['rss_first_mb'])} / {f(res['rss_last_mb'])} MB "
                                    f"(windows of {res['rss_window_s']:.0f} s)"),
        ("RSS min / max / peak", f"{f(res['rss_min_mb'])} / {f(res['rss_max_mb'])} / {f(res['rss_peak_mb'])} MB"),
        ("RSS growth", f"{res['rss_growth_pct']:+.2f} % (limit {max_growth:g} %)"),
        ("RSS slope", f"{res['rss_slope_mb_per_h']:+.1f} MB/hour"),
        ("pipeline CPU / machine load", f"{f(res['cpu_pct'])} % of a core / peak 1-min load average "
                                        f"{res['load_max']:.2f} on {res['cpus']} CPUs"),
        ("books valid after last fault", f"{res['books_valid_count']}/{res['books']}"
                                         + (f" in {res['books_valid_after_s']:.1f} s" if res["books_valid"] else "")
                                         + f" (limit {VALID_WITHIN_S:g} s)"),
        ("every book valid after a fault", f"median {f(res['recover_median_s'])} s, max {f(res['recover_max_s'])} s "
                                           f"({res['recoveries']} faults; {res['recoveries_interrupted']} cut short "
                                           "by the next fault)"),
        ("pipeline alive", "yes" if res["alive"] else f"NO (exited at {f(res['died_at_s'])} s)"),
        ("checks", ", ".join(f"{k} {'ok' if v else 'FAIL'}" for k, v in res["checks"].items())),
        ("verdict", res["verdict"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0, help="how long the pipeline runs")
    ap.add_argument("--warmup-minutes", type=float, default=3.0, help="excluded from the RSS comparison")
    ap.add_argument("--venues", default=",".join(VENUES10))
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--fault-every", type=float, default=20.0, help="seconds between faults (jittered x0.5-1.5)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-growth-pct", type=float, default=10.0)
    ap.add_argument("--fresh-s", type=float, default=5.0, help="a valid book must have been written this recently")
    ap.add_argument("--tick-ms", type=int, default=100)
    ap.add_argument("--stagger-ms", type=int, default=2)
    ap.add_argument("--sim-nice", type=int, default=10)
    args = ap.parse_args(argv)
    # SIGTERM (timeout) unwinds like Ctrl-C, so the pipeline, the simulators and Redis are stopped too
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    res = soak(args)
    print(f"soak: {res['verdict']}")
    print(table(res, args.max_growth_pct))
    if "log_tail" in res:
        print("  pipeline log (tail):\n" + res.pop("log_tail"), file=sys.stderr)
    print(json.dumps({"bench": "soak", **{k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}}))
    return 0 if res["verdict"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
