"""``scanner record``: capture every raw frame and REST book snapshot the collectors receive.

``scanner record --venues okx,binance --out DIR`` runs the venues' collectors (with a no-op book
sink: no Redis needed) and writes ``DIR/<venue>.jsonl.zst`` in the capture format of
../shared/recorded (see :mod:`scanner.capture_writer`), which ``scanner replay`` and ``scanner
backtest`` read. ``--with-pipeline`` runs the whole ``scanner run`` pipeline (Redis, detector, sinks)
on the same collectors while recording. Stops on SIGINT/SIGTERM or after ``--duration`` seconds,
flushes and closes the files, and prints a summary (frames, bytes raw/compressed, files). A bad
``--out`` or a failed write exits with code 1 and says why.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from pathlib import Path

from scanner.app import COLLECT, DETECT, Pipeline, load_settings, make_collectors, run_until_signalled, setup_logging
from scanner.book.l2 import L2Book
from scanner.capture_writer import CaptureWriteError, CaptureWriter, VenueCapture
from scanner.config import Settings
from scanner.feed.collector import VenueCollector
from scanner.sinks.metrics import Metrics


class NullSink:
    """The BookSink of a recording without the pipeline: books are kept, never published."""

    def mark(self, venue: str, symbol: str, book: L2Book) -> None:
        pass

    def mark_invalid(self, venue: str, symbol: str) -> None:
        pass


def select(settings: Settings, venues: list[str], symbols: list[str] | None) -> Settings:
    """``settings`` reduced to ``venues`` (each with ``symbols`` when given); ValueError names what is wrong."""
    unknown = [v for v in venues if v not in settings.venues]
    if unknown:
        ccxt = [v for v in unknown if v in settings.ccxt_venues or v.startswith("ccxtpro:")]
        if ccxt:
            raise ValueError(f"cannot record ccxt.pro venues ({', '.join(ccxt)}): ccxt does not expose raw frames")
        have = ", ".join(sorted(settings.venues)) or "none"
        raise ValueError(f"--venues: {', '.join(unknown)} not enabled in {settings.source or 'the config'} "
                         f"(enabled: {have})")
    chosen = {}
    for name in venues:
        vs = settings.venues[name]
        chosen[name] = replace(vs, symbols=tuple(symbols)) if symbols else vs
    syms = tuple(symbols) if symbols else settings.symbols
    return replace(settings, venues=chosen, ccxt_venues={}, symbols=syms)


class Recording:
    """Collectors (or the whole pipeline) with every collector tapped into one CaptureWriter."""

    def __init__(self, settings: Settings, out_dir: Path, *, with_pipeline: bool = False,
                 flush_s: float = 0.5, level: int = 3) -> None:
        self.settings, self.with_pipeline = settings, with_pipeline
        self.writer = CaptureWriter(out_dir, flush_s=flush_s, level=level)
        self.collectors: dict[str, VenueCollector] = {}
        self.pipeline: Pipeline | None = None
        self.started = asyncio.Event()

    def tap_for(self, collector: VenueCollector) -> VenueCapture:
        """Open ``collector``'s capture file (header written) and return its tap."""
        cap = self.writer.open_venue(collector.venue, collector.settings.channel, dict(collector.symbols),
                                     {"ws_url": collector.settings.ws_url, "rest_url": collector.settings.rest_url})
        self.collectors[collector.venue] = collector
        return cap

    async def build_collectors(self, metrics: Metrics) -> None:
        """The configured venues' collectors with a no-op book sink, as ``scanner run`` makes them, each tapped."""
        for col in (await make_collectors(self.settings, NullSink(), metrics)).values():
            col.set_tap(self.tap_for(col))

    async def run(self, stop: asyncio.Event) -> None:
        """Record until ``stop`` is set (or a write fails), then flush and close the files.
        Raises CaptureWriteError when the capture could not be written."""
        loop = asyncio.get_running_loop()

        def on_error(message: str) -> None:  # writer thread: stop recording, the message is reported at the end
            loop.call_soon_threadsafe(stop.set)

        self.writer.on_error = on_error
        CaptureWriter.check_dir(self.writer.out_dir)
        self.writer.start()
        try:
            if self.with_pipeline:
                self.pipeline = Pipeline(self.settings, {COLLECT, DETECT}, latency_samples=0)
                self.pipeline.tap_factory = self.tap_for
                task = asyncio.create_task(self.pipeline.run(stop))
                started = asyncio.ensure_future(self.pipeline.started.wait())
                await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
                self.started.set()
                started.cancel()
                await task
            else:
                await self.build_collectors(Metrics())
                if not self.collectors:
                    raise RuntimeError("no venue could be started; see the errors above")
                async with asyncio.TaskGroup() as tg:
                    for name, col in self.collectors.items():
                        tg.create_task(col.run(stop), name=f"record-{name}")
                    self.started.set()
        finally:
            await asyncio.to_thread(self.writer.close)  # raises the first write error, if any

    def summary(self) -> str:
        t = self.writer.totals()
        raw, comp = t["raw_bytes"], t["compressed_bytes"]
        lines = [f"recorded {t['frames']} frames, {t['snapshots']} REST snapshots, {t['records']} records; "
                 f"{raw / 1e6:.2f} MB raw -> {comp / 1e6:.2f} MB compressed"
                 f"{f' (x{raw / comp:.1f})' if comp else ''}; {t['files']} files"]
        for cap in self.writer.files.values():
            st = cap.stats
            lines.append(f"  {st.path}: {st.frames} frames, {st.snapshots} snapshots, "
                         f"{st.raw_bytes} B raw, {st.compressed_bytes} B on disk")
        return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--venues", required=True, help="comma-separated venues to record, e.g. okx,binance")
    p.add_argument("--out", required=True, type=Path, help="output directory (created; one <venue>.jsonl.zst each)")
    p.add_argument("--config", default="configs/default.yaml", help="YAML settings file (default: %(default)s)")
    p.add_argument("--symbols", default=None, help="comma-separated unified symbols (default: the config's)")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)")
    p.add_argument("--with-pipeline", action="store_true",
                   help="also run the full pipeline (Redis, detector, sinks) on the recorded collectors")
    p.add_argument("--flush-s", type=float, default=0.5,
                   help="seconds between flushes; each appends one complete zstd frame (default %(default)s, max 1)")
    p.add_argument("--level", type=int, default=3, help="zstd compression level (default %(default)s)")


def main(args: argparse.Namespace) -> int:
    venues = [v.strip() for v in str(args.venues).split(",") if v.strip()]
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()] if args.symbols else None
    if not venues:
        print("record: --venues is empty", file=sys.stderr)
        return 2
    if not 0 < args.flush_s <= 1.0:
        print("record: --flush-s must be in (0, 1]", file=sys.stderr)
        return 2
    if not 1 <= args.level <= 22:
        print("record: --level must be 1..22", file=sys.stderr)
        return 2
    settings = load_settings(args.config)
    if settings is None:
        return 2
    try:
        settings = select(settings, venues, symbols)
    except ValueError as exc:
        print(f"record: {exc}", file=sys.stderr)
        return 2
    try:
        CaptureWriter.check_dir(args.out)
    except CaptureWriteError as exc:
        print(f"record: {exc}", file=sys.stderr)
        return 1
    setup_logging(settings.log_level)
    rec = Recording(settings, args.out, with_pipeline=args.with_pipeline, flush_s=args.flush_s, level=args.level)
    rc = run_until_signalled(rec.run, args.duration)
    print(rec.summary())
    if rec.writer.error is not None:
        print(f"record: FAILED: {rec.writer.error}", file=sys.stderr)
        return 1
    return rc
