"""Collector throughput: how many OKX ``books`` updates one collector process applies and writes to Redis.

A "blaster" websocket server runs in its own process and speaks enough OKX v5 (subscribe acks,
text ``ping``/``pong``): once every instrument is subscribed it sends the bench file's snapshot and
update frames, byte for byte and in file order, as fast as the socket takes them (or at ``--rate``
frames/s). This process runs the real receive path — a COLLECT-only :class:`~scanner.app.Pipeline`:
picows connection → OkxParser → SyncedBook (seq chain + checksum on every frame) → BookStore →
a private Redis — and measures, from the moment every book is in sync:

* book updates applied/s (the collector's counter), Redis book writes/s (``BookStore.writes``), frames/s;
* CPU% (``time.process_time``) and peak RSS of this process;
* frame received → Redis write acknowledged, per written book (``BookStore.on_written``: the book's
  ``recv_ns`` taken when the payload is built, the ack time when the pipeline returns), p50/p99;
* at the end, that Redis holds the final books: ``book:{SYM}:okx`` top of book and ``seq`` equal
  ``expected_top.json`` (whole file sent) or, for a prefix, the collector's own final books; and that
  no resync, parse error, venue error, reconnect, REST snapshot or Redis failure happened.

The bench file comes from ``../shared/bench/gen_okx_books.py`` (standard library only)::

    python3 ../shared/bench/gen_okx_books.py --out .bench/okx_books.jsonl --expected .bench/expected_top.json

(or ``.venv/bin/python -m scanner.bench.peers``, which makes it on the way). Usage::

    .venv/bin/python -m scanner.bench.throughput [--seconds 30] [--rate 0] [--frames N] [--file PATH]

Human lines first; the last stdout line is one JSON object (``"bench": "throughput"``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import picows
from prometheus_client import Counter
from redis.asyncio import Redis

from scanner.app import COLLECT, Pipeline
from scanner.bench.peers import file_sha256
from scanner.config import from_dict
from scanner.feed.collector import VenueCollector
from scanner.markets import shipped_markets_dir
from scanner.redis_server import PrivateRedis
from scanner.store.schema import book_key, decode_book

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FILE = ROOT / ".bench" / "okx_books.jsonl"
START_TIMEOUT_S = 20.0
DRAIN_TIMEOUT_S = 15.0
BATCH = 256  # frames the blaster sends between two looks at its socket


# -- the bench file ------------------------------------------------------------------------------------------
@dataclass
class FileInfo:
    """What the bench process needs to know about the frames sent (the frames themselves stay in the blaster)."""

    path: Path
    lines: int  # lines used (all, or the first --frames)
    insts: list[str]  # from the subscribe acks, in file order
    snapshots: int
    updates: int
    whole_file: bool
    expected: dict[str, dict[str, Any]] = field(default_factory=dict)  # inst -> expected top (whole file only)


def scan_file(path: Path, limit: int = 0, expected_path: Path | None = None) -> FileInfo:
    """Count the frames of ``path`` (its first ``limit`` lines when ``limit`` > 0) without keeping them."""
    insts: list[str] = []
    lines = snapshots = updates = 0
    total = 0
    with path.open("rb") as fh:
        for line in fh:
            total += 1
            if limit and lines >= limit:
                continue
            lines += 1
            if b'"action":"update"' in line:
                updates += 1
            elif b'"action":"snapshot"' in line:
                snapshots += 1
            elif b'"event":"subscribe"' in line:
                insts.append(str(orjson.loads(line)["arg"]["instId"]))
    info = FileInfo(path, lines, insts, snapshots, updates, lines == total)
    sidecar = expected_path or path.with_name("expected_top.json")
    if info.whole_file and sidecar.exists():
        exp = json.loads(sidecar.read_text())
        if exp.get("lines") == total and exp.get("sha256") == file_sha256(path):
            info.expected = exp["top"]
    return info


# -- the blaster (its own process) -----------------------------------------------------------------------------
class _Blaster(picows.WSListener):
    """One client connection: acks subscriptions, answers pings, then streams the frames."""

    def __init__(self, acks: dict[str, bytes], stream: list[bytes], rate: float, go: asyncio.Event) -> None:
        self.acks, self.stream, self.rate, self.go = acks, stream, rate, go
        # the snapshots go out at once; the updates when the bench process says go (its clock starts then)
        self.n_snapshots = next((i for i, f in enumerate(stream) if b'"action":"snapshot"' not in f), len(stream))
        self.pending = set(acks)
        self.transport: picows.WSTransport | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.task: asyncio.Task[None] | None = None

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type is picows.WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type is not picows.WSMsgType.TEXT:
            return
        payload = frame.get_payload_as_bytes()
        if payload == b"ping":
            transport.send(picows.WSMsgType.TEXT, b"pong")
            return
        try:
            req = orjson.loads(payload)
            op, args = req["op"], req["args"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        for arg in args:
            inst = str(arg.get("instId", ""))
            if op == "subscribe" and inst in self.acks:
                transport.send(picows.WSMsgType.TEXT, self.acks[inst])  # the file's own ack line
            else:
                transport.send(picows.WSMsgType.TEXT, orjson.dumps({"event": op, "arg": arg}))
            self.pending.discard(inst)
        if not self.pending and self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._blast(transport))

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    async def _blast(self, transport: picows.WSTransport) -> None:
        stream, n, i = self.stream, len(self.stream), self.n_snapshots
        text = picows.WSMsgType.TEXT
        for frame in stream[:i]:
            transport.send(text, frame)
        await self.go.wait()
        t0 = time.monotonic()
        while i < n and not transport.is_disconnected:
            await self.writable.wait()
            end = min(n, i + BATCH)
            if self.rate > 0:
                end = min(end, int((time.monotonic() - t0) * self.rate) + 1)
                if end <= i:
                    await asyncio.sleep(0.001)
                    continue
            while i < end:
                transport.send(text, stream[i])
                i += 1
            await asyncio.sleep(0)  # let pings and the socket's pause/resume through

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.writable.set()


async def _serve(path: Path, limit: int, rate: float, lifetime: float,
                 conn: multiprocessing.connection.Connection) -> None:
    acks: dict[str, bytes] = {}
    stream: list[bytes] = []
    with path.open("rb") as fh:
        for n, line in enumerate(fh):
            if limit and n >= limit:
                break
            frame = line.rstrip(b"\r\n")
            if frame.startswith(b'{"event":"subscribe"'):
                acks[str(orjson.loads(frame)["arg"]["instId"])] = frame
            else:
                stream.append(frame)
    go, stop = asyncio.Event(), asyncio.Event()
    server = await picows.ws_create_server(lambda _req: _Blaster(acks, stream, rate, go), "127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    threading.Thread(target=_read_parent, args=(conn, loop, go, stop), daemon=True).start()
    conn.send(server.sockets[0].getsockname()[1])
    try:  # bounded: the bench process says stop (or goes away), at the latest after ``lifetime``
        await asyncio.wait_for(stop.wait(), lifetime)
    except TimeoutError:
        pass
    finally:
        server.close()


def _read_parent(conn: multiprocessing.connection.Connection, loop: asyncio.AbstractEventLoop,
                 go: asyncio.Event, stop: asyncio.Event) -> None:
    """The blaster's pipe to the bench process: ``"go"`` starts the updates, ``"stop"`` (or EOF) ends."""
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            msg = "stop"
        if msg == "go":
            loop.call_soon_threadsafe(go.set)
            continue
        loop.call_soon_threadsafe(go.set)
        loop.call_soon_threadsafe(stop.set)
        return


def blaster_main(path: str, limit: int, rate: float, lifetime: float,
                 conn: multiprocessing.connection.Connection) -> None:
    """Entry point of the blaster process."""
    import uvloop

    uvloop.run(_serve(Path(path), limit, rate, lifetime, conn))


class BlasterProcess:
    """The blaster in a spawned process; ``port`` once it listens."""

    def __init__(self, path: Path, limit: int, rate: float, lifetime: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=blaster_main, args=(str(path), limit, rate, lifetime, child),
                                name="okx-blaster", daemon=True)
        self.proc.start()
        child.close()
        if not self.conn.poll(START_TIMEOUT_S):
            self.close()
            raise RuntimeError("the blaster did not start")
        self.port = int(self.conn.recv())

    def go(self) -> None:
        """Start sending the updates (the snapshots went out with the subscribe acks)."""
        self.conn.send("go")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send("stop")
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        self.conn.close()


# -- the measurement (this process) ----------------------------------------------------------------------------
def counter_total(c: Counter) -> float:
    """A labelled counter summed over all its children."""
    return sum(s.value for m in c.collect() for s in m.samples if s.name.endswith("_total"))


def _pct(xs: list[float], q: float) -> float:
    if len(xs) < 2:
        return xs[0] if xs else 0.0
    return statistics.quantiles(xs, n=1000)[int(q * 1000) - 1]


class WriteLatency:
    """``BookStore.on_written``: frame received → Redis acknowledged, per written book, and the last seq
    Redis acknowledged per symbol. Every acknowledged pass sets ``written``: each change the collector
    makes ends in one, so the bench re-checks its conditions there instead of polling."""

    def __init__(self) -> None:
        self.lat_ns: list[int] = []
        self.acked_seq: dict[str, int] = {}
        self.recording = False
        self.written = asyncio.Event()

    def __call__(self, stamps: list[tuple[str, str, int, int]], ack_ns: int) -> None:
        for _venue, symbol, seq, recv_ns in stamps:
            self.acked_seq[symbol] = seq
            if self.recording:
                self.lat_ns.append(ack_ns - recv_ns)
        self.written.set()

    async def until(self, cond: Callable[[], bool], limit_s: float) -> bool:
        """Wait until ``cond()`` holds after a write pass; False if ``limit_s`` passed first."""
        deadline = time.monotonic() + limit_s
        while not cond():
            self.written.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self.written.wait(), left)
            except TimeoutError:
                return cond()
        return True


def _applied(c: VenueCollector) -> int:
    return int(counter_total(c.metrics.book_updates)) + c._applied


def _frames(c: VenueCollector) -> int:
    return int(counter_total(c.metrics.messages)) + c._frames


async def measure(info: FileInfo, port: int, go: Callable[[], None], redis_url: str,
                  seconds: float) -> dict[str, Any]:
    """Run the COLLECT pipeline against the blaster on ``port`` until every frame is applied (or ``seconds``);
    ``go()`` makes the blaster send the updates once every book has its snapshot."""
    symbols = [i.replace("-", "/") for i in info.insts]
    settings = from_dict({
        "symbols": symbols,
        "venues": {"okx": {"ws_url": f"ws://127.0.0.1:{port}/ws/v5/public", "rest_url": f"http://127.0.0.1:{port}"}},
        "redis": {"url": redis_url},
        "metrics": {"port": 0},
        "markets": {"refresh": False, "cache_dir": str(shipped_markets_dir())},
    }, {})
    pipeline = Pipeline(settings, {COLLECT})
    rec = WriteLatency()
    pipeline.store.on_written = rec
    await pipeline.redis.ping()  # the writer's first pass must not wait for a connect while frames pour in
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop), name="pipeline")
    try:
        started = asyncio.ensure_future(pipeline.started.wait())
        await asyncio.wait({started, task}, timeout=START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if task.done():
            await task  # raises what stopped it
            raise RuntimeError("the pipeline stopped at start")
        if not pipeline.started.is_set():
            raise RuntimeError("the pipeline did not start")
        col = pipeline.collectors["okx"]
        if sorted(col.symbols) != sorted(info.insts):
            raise RuntimeError(f"instruments not all resolved: {sorted(col.symbols)} vs {sorted(info.insts)}")
        if not await rec.until(lambda: all(sb.valid for sb in col.books.values()), START_TIMEOUT_S):
            raise RuntimeError("the books did not all get their snapshot")
        rec.recording = True
        a0, f0, w0, cpu0, t0 = _applied(col), _frames(col), pipeline.store.writes, time.process_time(), \
            time.monotonic()
        go()
        total = info.snapshots + info.updates
        await rec.until(lambda: _applied(col) >= total or task.done(), seconds)
        t1, cpu1 = time.monotonic(), time.process_time()
        a1, f1, w1 = _applied(col), _frames(col), pipeline.store.writes
        rec.recording = False
        finished = a1 >= total

        # Redis must have acknowledged every book as the collector holds it now
        def flushed() -> bool:
            return all(rec.acked_seq.get(col.symbols[i]) == sb.book.seq for i, sb in col.books.items())

        if not await rec.until(flushed, DRAIN_TIMEOUT_S):
            raise RuntimeError("Redis did not acknowledge the last books")
        books_ok, detail = await _check_books(pipeline.redis, col, info)
        m = pipeline.metrics
        errors = {
            "resyncs": counter_total(m.resyncs), "parse_errors": counter_total(m.parse_errors),
            "venue_errors": counter_total(m.venue_errors), "reconnects": counter_total(m.reconnects),
            "rest_snapshots": counter_total(m.snapshots), "redis_failures": float(pipeline.store.failures),
        }
        applied_total = _applied(col)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    elapsed = max(t1 - t0, 1e-9)
    lat = [x / 1e6 for x in rec.lat_ns]
    return {
        "updates_per_s": (a1 - a0) / elapsed, "writes_per_s": (w1 - w0) / elapsed, "frames_per_s": (f1 - f0) / elapsed,
        "cpu_pct": 100 * (cpu1 - cpu0) / elapsed, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "write_lat_p50_ms": _pct(lat, 0.5), "write_lat_p99_ms": _pct(lat, 0.99),
        "write_lat_max_ms": max(lat) if lat else 0.0, "lat_samples": len(lat),
        "seconds": elapsed, "finished": finished, "updates_total": applied_total - info.snapshots,
        "updates_sent": info.updates, "writes_total": pipeline.store.writes,
        "books_ok": books_ok, "books_check": detail, "errors": int(sum(errors.values())), "error_counts": errors,
    }


async def _check_books(redis: Redis, col: VenueCollector, info: FileInfo) -> tuple[bool, str]:
    """Redis ``book:{SYM}:okx`` against ``expected_top.json`` (whole file) or the collector's final books."""
    ok = True
    against = "expected_top.json" if info.expected else "collector memory"
    for inst, sb in col.books.items():
        sym = col.symbols[inst]
        raw = await redis.get(book_key(sym, "okx"))
        if raw is None:
            print(f"!!! {sym}: no book in Redis", file=sys.stderr)
            ok = False
            continue
        view = decode_book(raw)
        seq = orjson.loads(raw)["seq"]
        got = (view.bids[0][0], view.bids[0][1], view.asks[0][0], view.asks[0][1], seq) if view.valid else None
        if info.expected:
            e = info.expected[inst]
            want: tuple[str, str, str, str, int] | None = (e["bid_px"], e["bid_sz"], e["ask_px"], e["ask_sz"],
                                                           int(e["seqId"]))
        else:
            b = sb.book
            want = (b.bids.pxs[0], b.bids.szs[0], b.asks.pxs[0], b.asks.szs[0], b.seq) if sb.valid else None
        if got != want:
            print(f"!!! {sym}: Redis has {got}, expected {want}", file=sys.stderr)
            ok = False
    return ok, against


def run(path: Path, frames: int = 0, rate: float = 0.0, seconds: float = 30.0,
        redis_url: str | None = None) -> dict[str, Any]:
    """The bench core: blaster process + measurement; a private Redis unless ``redis_url`` is given."""
    import uvloop

    info = scan_file(path, frames)
    if not info.insts or info.snapshots != len(info.insts):
        raise SystemExit(f"{path}: expected one subscribe ack and one snapshot per instrument at the top")
    blaster = BlasterProcess(path, frames, rate, lifetime=seconds + 60)
    try:
        if redis_url is not None:
            res = uvloop.run(measure(info, blaster.port, blaster.go, redis_url, seconds))
        else:
            with PrivateRedis() as redis:
                res = uvloop.run(measure(info, blaster.port, blaster.go, redis.url, seconds))
    finally:
        blaster.close()
    res["lines"] = info.lines
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", type=Path, default=DEFAULT_FILE, help="OKX books JSON-lines file (%(default)s)")
    ap.add_argument("--seconds", type=float, default=30.0, help="stop measuring after this long (default 30)")
    ap.add_argument("--rate", type=float, default=0.0, help="frames/s the blaster sends (0: as fast as possible)")
    ap.add_argument("--frames", type=int, default=0, help="send only the first N lines of the file (0: all)")
    args = ap.parse_args(argv)
    if not args.file.exists():
        print(f"no bench file at {args.file}; make it with\n  python3 ../shared/bench/gen_okx_books.py "
              f"--out {args.file} --expected {args.file.with_name('expected_top.json')}", file=sys.stderr)
        return 2
    res = run(args.file, args.frames, args.rate, args.seconds)
    rate = f"{args.rate:.0f} frames/s" if args.rate > 0 else "as fast as possible"
    print(f"throughput, OKX books, {res['lines']} lines ({res['updates_sent']} updates), {rate}, "
          f"{res['seconds']:.2f} s measured{'' if res['finished'] else ' (stopped before the last frame)'}")
    print(f"  book updates applied {res['updates_per_s']:,.0f}/s   Redis book writes {res['writes_per_s']:,.0f}/s   "
          f"frames {res['frames_per_s']:,.0f}/s")
    print(f"  cpu {res['cpu_pct']:.0f}% of one core   peak rss {res['rss_mb']:.0f} MB")
    print(f"  frame received -> Redis write acknowledged: p50 {res['write_lat_p50_ms']:.3f} ms  "
          f"p99 {res['write_lat_p99_ms']:.3f} ms  max {res['write_lat_max_ms']:.2f} ms  "
          f"({res['lat_samples']} book writes)")
    print(f"  books in Redis vs {res['books_check']}: {'OK' if res['books_ok'] else 'MISMATCH'}   "
          f"errors {res['errors']} {res['error_counts']}   updates applied {res['updates_total']}/"
          f"{res['updates_sent']}")
    keys = ("updates_per_s", "writes_per_s", "frames_per_s", "cpu_pct", "rss_mb", "write_lat_p50_ms",
            "write_lat_p99_ms")
    out: dict[str, Any] = {"bench": "throughput", **{k: round(float(res[k]), 4) for k in keys}}
    out.update(books_ok=bool(res["books_ok"]), errors=int(res["errors"]))
    print(json.dumps(out), flush=True)
    return 0 if res["books_ok"] and not res["errors"] and res["finished"] else 1


if __name__ == "__main__":
    sys.exit(main())
