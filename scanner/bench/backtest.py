"""``scanner backtest`` speed on the shared recordings: each capture alone, then all of them together.

Timed as the command runs: reading the captures (zstd, JSON, per-connection merge), parsers, books, the
detector (``configs/default.yaml``) and spread sampling; the report is not timed. Per row: frames, the
recorded span, wall time (median of ``--runs``, each from fresh state), x real time (span / wall) and
µs per frame. The captures were recorded years apart, so for "all" the real time is the sum of their own
spans (the merged span covers the years between them).

    python -m scanner.bench.backtest [--runs 3] [--recorded ../shared/recorded] [--config configs/default.yaml]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from pathlib import Path

from scanner.backtest.engine import BacktestResult, run
from scanner.backtest.sources import open_source
from scanner.config import Settings, load

ROOT = Path(__file__).resolve().parents[2]
TARGET_X = 20.0


def timed(settings: Settings, paths: list[Path]) -> tuple[float, BacktestResult]:
    gc.collect()
    channels = {v.name: v.channel for v in settings.venues.values()}
    t0 = time.perf_counter()
    sources = [open_source(p, {}, channels) for p in paths]
    result = run(settings, sources)
    return time.perf_counter() - t0, result


def measure(settings: Settings, paths: list[Path], runs: int) -> tuple[float, BacktestResult]:
    walls: list[float] = []
    result: BacktestResult | None = None
    for _ in range(max(1, runs)):
        wall, result = timed(settings, paths)
        walls.append(wall)
    assert result is not None
    return statistics.median(walls), result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--recorded", type=Path, default=ROOT.parent / "shared" / "recorded")
    ap.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    args = ap.parse_args()
    settings = load(args.config)
    paths = sorted((args.recorded / "cryptofeed").glob("*.jsonl.zst"))
    if not paths:
        print(f"no recordings in {args.recorded / 'cryptofeed'}")
        return 2
    print(f"{'capture':<20} {'frames':>7} {'span s':>8} {'wall ms':>8} {'x real':>8} {'us/frame':>9} {'opps':>5}")
    spans: list[float] = []
    worst = float("inf")
    for path in paths:
        wall, r = measure(settings, [path], args.runs)
        frames = sum(v.frames for v in r.venues)
        spans.append(r.span_s)
        x = r.span_s / wall
        worst = min(worst, x)
        _row(path.name.split(".")[0], frames, r.span_s, wall, x, len(r.closed()) + len(r.still_open))
    wall, r = measure(settings, paths, args.runs)
    frames = sum(v.frames for v in r.venues)
    _row("all (9 merged)", frames, sum(spans), wall, sum(spans) / wall, len(r.closed()) + len(r.still_open))
    verdict = "ok" if worst >= TARGET_X else "BELOW TARGET"
    print(f"slowest single capture: {worst:.0f}x real time (target >= {TARGET_X:.0f}x): {verdict}")
    return 0 if worst >= TARGET_X else 1


def _row(name: str, frames: int, span: float, wall: float, x: float, opps: int) -> None:
    print(f"{name:<20} {frames:>7} {span:>8.1f} {wall * 1e3:>8.1f} {x:>8.0f} {wall * 1e6 / max(frames, 1):>9.1f} "
          f"{opps:>5}", flush=True)
    print(json.dumps({"bench": "backtest", "capture": name, "frames": frames, "span_s": round(span, 3),
                      "wall_s": round(wall, 4), "x_real_time": round(x, 1),
                      "us_per_frame": round(wall * 1e6 / max(frames, 1), 2)}), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
