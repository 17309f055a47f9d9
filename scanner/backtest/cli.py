"""``scanner backtest DIR_OR_FILES...``: replay captures through the parsers, books and detector with the
configured fees, thresholds and transfer rules; print each opportunity and a summary; optionally export the
opportunities (CSV, Parquet) and plot the spreads (PNG)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from scanner.backtest.engine import BacktestResult, run
from scanner.backtest.export import ExportError, write_csv, write_parquet
from scanner.backtest.report import report_lines
from scanner.backtest.sources import SourceError, capture_files, open_source
from scanner.config import ConfigError
from scanner.config import load as load_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", type=Path, metavar="DIR_OR_FILE",
                   help="capture files (*.jsonl.zst), or directories of them (one file per venue)")
    p.add_argument("--config", default="configs/default.yaml", help="settings: fees, detector thresholds, transfers")
    p.add_argument("--venue-map", action="append", default=[], metavar="FILE=VENUE",
                   help="replay FILE (its name, with or without suffixes) as VENUE; repeatable")
    p.add_argument("--csv", type=Path, metavar="FILE", help="write one row per opportunity as CSV")
    p.add_argument("--parquet", type=Path, metavar="FILE", help="write one row per opportunity as Parquet (pyarrow)")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="plot the top-of-book spreads over time (matplotlib)")
    p.add_argument("--quiet", action="store_true", help="summary only: no line per opportunity open and close")


def _venue_map(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, venue = item.partition("=")
        if not sep or not name or not venue:
            raise SourceError(f"--venue-map {item!r}: expected FILE=VENUE")
        out[name] = venue.strip().lower()
    return out


def main(args: argparse.Namespace) -> int:
    try:
        settings = load_config(args.config)
    except ConfigError as exc:
        print(f"backtest: config error: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        venue_map = _venue_map(args.venue_map)
        channels = {v.name: v.channel for v in settings.venues.values()}
        sources = [open_source(f, venue_map, channels) for f in capture_files(args.inputs)]
        venues = [s.venue for s in sources]
        twice = sorted({v for v in venues if venues.count(v) > 1})
        if twice:
            raise SourceError(f"more than one capture of {', '.join(twice)}: give one file per venue")
        result = run(settings, sources)
    except SourceError as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - t0
    out = sys.stdout
    for line in report_lines(result, quiet=args.quiet):
        out.write(line + "\n")
    try:
        _exports(result, args)
    except ExportError as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    frames = sum(v.frames for v in result.venues)
    speed = result.span_s / wall if wall > 0 else float("inf")
    out.write(f"backtest: {frames} frames from {len(result.venues)} captures, {result.span_s:.1f} s recorded, "
              f"{wall:.2f} s wall, {speed:.0f}x real time\n")
    out.flush()
    return 0


def _exports(result: BacktestResult, args: argparse.Namespace) -> None:
    if args.csv is not None:
        n = write_csv(result, args.csv)
        print(f"wrote {n} opportunities to {args.csv}")
    if args.parquet is not None:
        n = write_parquet(result, args.parquet)
        print(f"wrote {n} opportunities to {args.parquet}")
    if args.plot is not None:
        from scanner.backtest.plot import write_plot

        n = write_plot(result, args.plot)
        print(f"wrote spreads of {n} symbols to {args.plot}")
