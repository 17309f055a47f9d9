"""Writes captures (the zstd JSON Lines format :mod:`scanner.capture` reads) from live collectors.

:class:`CaptureWriter` owns an output directory and one background thread; :meth:`CaptureWriter.open_venue`
creates ``<dir>/<venue>.jsonl.zst``, writes its header at once (a bad directory fails before any
connection is made) and returns a :class:`VenueCapture`, the :class:`~scanner.feed.tap.FrameTap` a
:class:`~scanner.feed.collector.VenueCollector` reports to. On the event loop a frame costs one
``deque.append`` of a tuple; the thread turns the queued records into JSON lines, compresses them and
appends one complete zstd frame per file every ``flush_s`` seconds. Concatenated zstd frames decode
as one stream, so a recorder killed at any moment leaves a file readable up to its last flush.

Records carry ``ts`` (receive time, unix seconds, as in ../shared/recorded) and ``ns``, the exact
``time.time_ns()`` the collector handed to its parser. A write failure (disk full, file removed
from under us) is reported once through ``on_error`` and by :meth:`CaptureWriter.close`; it is never
silent.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import zstandard

from scanner import __version__

if TYPE_CHECKING:
    from scanner.feed.connection import Connection

FORMAT = 2
_CONNECT, _SEND, _RECV, _HTTP = range(4)
QueuedRecord = tuple[int, str, int, Any, Any]  # kind, conn, ns, payload, url (http only)
# Encoding holds the GIL: the writer thread lets go of it every this many records, so the event loop
# waits at most ~0.1 ms for it during a flush instead of the interpreter's 5 ms switch interval.
YIELD_EVERY = 32
# records waiting for the writer thread, per file: past this (a disk that stalls rather than fails) the
# recording stops with an error instead of growing memory without bound (~40 s of a 5,000 frames/s venue)
MAX_QUEUED = 200_000
# query parameters whose values never reach a capture file (KuCoin's connect token, signed URLs)
SECRET_PARAMS = frozenset({"token", "signature", "sign", "apikey", "api_key", "key", "secret", "passphrase"})


class CaptureWriteError(OSError):
    """The capture could not be written; the message names the file and the reason."""


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


@dataclass(slots=True)
class FileStats:
    """What one capture file holds so far."""

    path: Path
    records: int = 0
    frames: int = 0  # recv records
    snapshots: int = 0  # http records
    raw_bytes: int = 0  # JSON lines before compression
    compressed_bytes: int = 0  # bytes on disk (header included)
    flushes: int = 0  # zstd frames appended after the header


def redact_url(url: str) -> str:
    """``url`` with the values of :data:`SECRET_PARAMS` query parameters replaced by ``***``."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not any(k.lower() in SECRET_PARAMS for k, _ in pairs):
        return url  # untouched, byte for byte (a venue may match its stream URL exactly)
    query = [(k, "***" if k.lower() in SECRET_PARAMS else v) for k, v in pairs]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


def encode(rec: QueuedRecord) -> bytes:
    """One queued record as a JSON line (with its newline)."""
    kind, conn, ns, payload, url = rec
    ts = ns / 1e9
    if kind == _RECV:
        try:
            d: dict[str, Any] = {"t": "recv", "conn": conn, "ts": ts, "ns": ns, "data": payload.decode()}
        except UnicodeDecodeError:  # a binary frame (HTX: gzip)
            d = {"t": "recv", "conn": conn, "ts": ts, "ns": ns, "b64": base64.b64encode(payload).decode()}
    elif kind == _HTTP:
        d = {"t": "http", "conn": conn, "ts": ts, "ns": ns, "url": url,
             "data": payload.decode(errors="replace")}
    elif kind == _SEND:
        d = {"t": "send", "conn": conn, "ts": ts, "ns": ns, "data": payload}
    else:
        d = {"t": "connect", "conn": conn, "addr": payload, "ts": ts, "ns": ns}
    return orjson.dumps(d, option=orjson.OPT_APPEND_NEWLINE)


class VenueCapture:
    """One venue's capture file: the tap a collector reports to (event loop side) plus the file
    state the writer thread owns."""

    def __init__(self, path: Path, exchange: str, fh: Any, level: int,
                 fail: Callable[[str], None] | None = None) -> None:
        self.path, self.exchange = path, exchange
        self._fail = fail  # the writer's error report (stops the recording)
        self.stats = FileStats(path)
        self.queue: deque[QueuedRecord] = deque()
        self._fh = fh  # raw (unbuffered) binary file
        self._cctx = zstandard.ZstdCompressor(level=level)
        self._names: dict[int, str] = {}  # shard -> name of its current connection
        self._connects = 0
        self._http = f"{exchange}.http"
        self.failed = False  # a write failed: later records are dropped (the writer has reported it)
        self.full = False  # MAX_QUEUED reached: later frames are refused (reported; the queue is still written)

    # -- FrameTap (event loop) ---------------------------------------------------------------------
    def on_connect(self, conn: Connection, addr: str) -> None:
        self._connects += 1
        name = self._names[conn.shard] = f"{self.exchange}.ws.{conn.shard}.{self._connects}"
        self.queue.append((_CONNECT, name, time.time_ns(), redact_url(addr), None))

    def on_send(self, conn: Connection, text: str) -> None:
        self.queue.append((_SEND, self._name(conn), time.time_ns(), text, None))

    def on_recv(self, conn: Connection, payload: bytes, recv_ns: int) -> None:
        q = self.queue
        if len(q) >= MAX_QUEUED or self.full:
            self._behind()
            return
        q.append((_RECV, self._names.get(conn.shard) or self._name(conn), recv_ns, payload, None))

    def _behind(self) -> None:
        """The writer thread has not kept up: refuse this frame and every later one (the file stays a true
        prefix of the traffic; what is queued is still written); report it once, which stops the recording."""
        if not self.full:
            self.full = True
            if self._fail is not None:
                self._fail(f"{self.path}: the writer fell {len(self.queue):,} records behind (is the disk "
                           f"stalled?); recording stopped")

    def on_http(self, url: str, body: bytes, recv_ns: int) -> None:
        self.queue.append((_HTTP, self._http, recv_ns, body, url))

    def _name(self, conn: Connection) -> str:
        return self._names.get(conn.shard) or f"{self.exchange}.ws.{conn.shard}.0"

    # -- writer thread -----------------------------------------------------------------------------
    def write_raw(self, data: bytes) -> None:
        """Append ``data`` to the file, all of it (raises CaptureWriteError)."""
        view = memoryview(data)
        try:
            while view:
                n = self._fh.write(view)
                if not n:
                    raise OSError("write returned 0")
                view = view[n:]
        except OSError as exc:
            raise CaptureWriteError(f"cannot write {self.path}: {_why(exc)}") from None
        self.stats.compressed_bytes += len(data)

    def flush(self) -> None:
        """Encode what is queued and append it as one complete zstd frame."""
        q = self.queue
        n = len(q)
        if not n:
            return
        lines: list[bytes] = []
        st = self.stats
        popleft = q.popleft
        for i in range(n):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                os.sched_yield()  # releases the GIL: the event loop takes it if it waits
            rec = popleft()
            lines.append(encode(rec))
            if rec[0] == _RECV:
                st.frames += 1
            elif rec[0] == _HTTP:
                st.snapshots += 1
        data = b"".join(lines)
        st.records += n
        st.raw_bytes += len(data)
        self.write_raw(self._cctx.compress(data))
        st.flushes += 1

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError as exc:
            raise CaptureWriteError(f"cannot close {self.path}: {_why(exc)}") from None


class CaptureWriter:
    """Capture files in ``out_dir``, flushed by one background thread every ``flush_s`` seconds."""

    def __init__(self, out_dir: Path, flush_s: float = 0.5, level: int = 3,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.out_dir, self.flush_s, self.level = out_dir, flush_s, level
        self.on_error = on_error  # called once with the first error's message (writer thread, or loop on overflow)
        self.files: dict[str, VenueCapture] = {}
        self.error: str | None = None
        self.flushed = threading.Condition()  # notified after every flush cycle (tests wait on it)
        self.cycles = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # flush cycles: the thread's and close()'s never overlap

    @staticmethod
    def check_dir(out_dir: Path) -> None:
        """Create ``out_dir`` if needed and prove a file can be written there (raises CaptureWriteError)."""
        if out_dir.exists() and not out_dir.is_dir():
            raise CaptureWriteError(f"--out {out_dir} exists and is not a directory")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            probe = out_dir / f".scanner-record-probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise CaptureWriteError(f"cannot write to {out_dir}: {_why(exc)}") from None

    def open_venue(self, venue: str, channel: str, symbols: dict[str, str],
                   extra: dict[str, Any] | None = None) -> VenueCapture:
        """Create ``<venue>.jsonl.zst`` (never overwriting one) and write its header as the first zstd frame.
        ``symbols`` maps the venue's instrument ids to unified symbols."""
        if venue in self.files:
            return self.files[venue]
        path = self.out_dir / f"{venue}.jsonl.zst"
        try:
            fh = open(path, "xb", buffering=0)  # noqa: SIM115 - closed by VenueCapture.close
        except FileExistsError:
            raise CaptureWriteError(f"{path} already exists; record into an empty directory") from None
        except OSError as exc:
            raise CaptureWriteError(f"cannot create {path}: {_why(exc)}") from None
        exchange = venue.upper()
        cap = VenueCapture(path, exchange, fh, self.level, self._fail)
        header = {"t": "header", "format": FORMAT, "exchange": exchange, "config": {channel: list(symbols)},
                  "recorded": time.time(), "venue": venue, "channel": channel, "symbols": dict(symbols),
                  "scanner": __version__, "ns": True, **(extra or {})}
        line = orjson.dumps(header, option=orjson.OPT_APPEND_NEWLINE)
        try:
            cap.write_raw(cap._cctx.compress(line))
        except CaptureWriteError:
            cap.close()
            raise
        cap.stats.raw_bytes += len(line)
        self.files[venue] = cap
        return cap

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush_all()

    def flush_all(self) -> None:
        """One flush cycle over every file; a failing file is reported and then only drained
        (the others keep being written until the recording stops)."""
        with self._lock:
            for cap in list(self.files.values()):
                if cap.failed:
                    cap.queue.clear()
                    continue
                try:
                    cap.flush()
                except CaptureWriteError as exc:
                    cap.failed = True
                    self._fail(str(exc))
                    cap.queue.clear()
        with self.flushed:
            self.cycles += 1
            self.flushed.notify_all()

    def _fail(self, message: str) -> None:
        if self.error is None:
            self.error = message
            if self.on_error is not None:
                self.on_error(message)

    def wait_flush(self, timeout: float) -> bool:
        """Block until the next flush cycle completes (False on timeout). For tests and benchmarks."""
        with self.flushed:
            start = self.cycles
            return self.flushed.wait_for(lambda: self.cycles > start, timeout)

    def close(self) -> None:
        """Stop the thread, flush what is queued, close every file; raises CaptureWriteError if any
        write failed during the recording."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush_all()
        for cap in self.files.values():
            try:
                cap.close()
            except CaptureWriteError as exc:
                self._fail(str(exc))
        if self.error is not None:
            raise CaptureWriteError(self.error)

    def totals(self) -> dict[str, int]:
        out = {"files": len(self.files), "frames": 0, "snapshots": 0, "records": 0, "raw_bytes": 0,
               "compressed_bytes": 0}
        for cap in self.files.values():
            st = cap.stats
            out["frames"] += st.frames
            out["snapshots"] += st.snapshots
            out["records"] += st.records
            out["raw_bytes"] += st.raw_bytes
            out["compressed_bytes"] += st.compressed_bytes
        return out
