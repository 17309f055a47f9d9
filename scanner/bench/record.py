"""Overhead of ``scanner record``: the tap on the event loop and the writer thread, per frame and in MB/s.

The ``recv`` frames of real recordings in ../shared/recorded/cryptofeed are loaded into memory as
``bytes`` (untimed), repeated up to ``--min-frames``, then pushed through a
:class:`~scanner.capture_writer.VenueCapture` exactly as a collector reports them:

* ``tap_us_per_frame``: the event-loop side, ``on_recv(conn, payload, recv_ns)`` (what the
  receive path pays per frame while recording);
* ``writer_us_per_frame`` / ``writer_mb_per_s``: the writer thread's flush (JSON line, zstd,
  write to a file in a temp directory), timed directly on this thread, per frame and in
  raw-frame MB per second;
* ``ratio``: JSON-lines bytes / compressed bytes of one pass over the recording (not repeated).

Median of ``--runs``; one JSON line per file.

    python -m scanner.bench.record [--runs 5] [--min-frames 20000] [--level 3] [FILE ...]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

from scanner.capture import Recv, read_cryptofeed
from scanner.capture_writer import CaptureWriter
from scanner.feed.connection import Connection

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FILES = [ROOT.parent / "shared" / "recorded" / "cryptofeed" / f"{n}.jsonl.zst"
                 for n in ("OKX", "BINANCE", "HUOBI")]


def load_frames(path: Path) -> list[bytes]:
    """The capture's received frames as the socket delivered them (text frames UTF-8 encoded)."""
    return [r.data if isinstance(r.data, bytes) else r.data.encode()
            for r in read_cryptofeed(path) if isinstance(r, Recv)]


def run_once(frames: list[bytes], level: int) -> tuple[float, float, int, int]:
    """(tap ns, writer ns, raw JSON bytes, compressed bytes) for one pass over ``frames``."""
    conn = Connection("bench", "wss://bench.invalid/ws", [], text_ping=None, text_pong=None, ping_idle_s=0,
                      watchdog_s=30, max_age_s=0, max_sends_per_s=0)
    with tempfile.TemporaryDirectory() as tmp:
        writer = CaptureWriter(Path(tmp), level=level)
        cap = writer.open_venue("bench", "books", {"X": "X/Y"})
        cap.on_connect(conn, conn.url)
        on_recv = cap.on_recv
        ns = time.time_ns()
        gc.collect()
        t0 = time.perf_counter_ns()
        for i, payload in enumerate(frames):
            on_recv(conn, payload, ns + i)
        t1 = time.perf_counter_ns()
        writer.flush_all()
        t2 = time.perf_counter_ns()
        writer.close()
        return t1 - t0, t2 - t1, cap.stats.raw_bytes, cap.stats.compressed_bytes


def bench_file(path: Path, runs: int, min_frames: int, level: int) -> dict[str, object]:
    base = load_frames(path)
    if not base:
        raise ValueError(f"{path} holds no recv frames")
    frames = base * max(1, -(-min_frames // len(base)))
    payload_mb = sum(len(f) for f in frames) / 1e6
    run_once(frames[: min(len(frames), 2000)], level)  # warm-up
    results = [run_once(frames, level) for _ in range(max(1, runs))]
    tap = statistics.median(r[0] for r in results) / 1000 / len(frames)
    wr = statistics.median(r[1] for r in results)
    _, _, raw, comp = run_once(base, level)  # the ratio of the recording itself: repeats would compress too well
    return {
        "file": path.name, "frames": len(frames), "avg_frame_bytes": round(payload_mb * 1e6 / len(frames)),
        "tap_us_per_frame": round(tap, 3),
        "writer_us_per_frame": round(wr / 1000 / len(frames), 3),
        "writer_mb_per_s": round(payload_mb / (wr / 1e9), 1),
        "ratio": round(raw / comp, 1) if comp else None, "level": level, "runs": len(results),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scanner.bench.record", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", type=Path, help="cryptofeed captures (default: OKX, BINANCE, HUOBI)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--min-frames", type=int, default=20_000)
    ap.add_argument("--level", type=int, default=3)
    args = ap.parse_args(argv)
    for path in args.files or DEFAULT_FILES:
        if not path.is_file():
            print(f"bench.record: no such file: {path}", file=sys.stderr)
            return 2
        sys.stdout.write(orjson.dumps(bench_file(path, args.runs, args.min_frames, args.level)).decode() + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
