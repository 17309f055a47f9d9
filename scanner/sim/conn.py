"""Simulator plumbing shared by every venue: behaviour knobs (:class:`SimConfig`), the
request log record, per-symbol state with pending faults, and :class:`SimConn`, one client
WebSocket whose frames go through an ordered queue drained by its own writer task (so a
slow client never delays the market tick).
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from aiohttp import WSMsgType, web

from scanner.sim.book import BookShape, SimBook

TEXT, BINARY, PING, PONG, CLOSE = range(5)
DIRECT_LIMIT = 1 << 16  # bytes buffered in the transport above which frames queue for the writer task
_LEN2 = struct.Struct("!BBH").pack  # WebSocket frame header, 16-bit length (server frames are not masked)
_LEN3 = struct.Struct("!BBQ").pack  # 64-bit length
# Per-request notes for the request log: set by handlers, read by the logging middleware.
WEIGHT = web.RequestKey("weight", int)
IS_WS = web.RequestKey("ws", bool)


class FaultUnsupported(ValueError):
    """The fault does not exist on this venue (or needs a mode it is not in)."""


@dataclass(frozen=True)
class SimConfig:
    """Venue behaviour knobs; the defaults are the real venues' documented values."""

    depth: int = 400  # levels per side of every simulated book
    shape: BookShape = field(default_factory=BookShape)
    okx_checksum: bool = False  # real signed CRC32 instead of 0 (OKX before 2026-06-23)
    okx_idle_s: float = 30.0  # close if no subscription / no push for this long
    okx_keepalive_s: float = 10.0  # empty update (prevSeqId == seqId) after this long unchanged
    okx_max_ops_per_hour: int = 480  # subscribe + unsubscribe requests per connection
    binance_ping_interval_s: float = 20.0
    binance_pong_timeout_s: float = 60.0
    binance_max_msgs_per_s: int = 5
    binance_max_age_s: float = 24 * 3600.0
    binance_weight_limit: int = 6000  # REST weight per minute
    history: int = 200  # state changes kept per symbol for Binance ``snapshot_lag``
    housekeeping_s: float = 0.25  # how often pings / idle / lifetime rules are checked
    max_queue: int = 100_000  # frames queued for one client before it is cut off as too slow


class RequestRecord(NamedTuple):
    """One request the venue served: monotonic time, path with query, REST weight, HTTP status
    (101 for a WebSocket upgrade)."""

    t: float
    path: str
    weight: int
    status: int


@dataclass(eq=False)
class SymState:
    """One symbol on one venue: its book plus pending one-shot faults."""

    symbol: str
    inst: str
    book: SimBook
    rng: random.Random  # sequence jumps
    held: bool = False  # hand-set book: not evolved by the walk until released
    skip: bool = False
    corrupt: str = ""  # corrupt_level mode pending ("" = none)
    bad_checksum: bool = False
    reset: bool = False


class SimConn:
    """One client WebSocket: an ordered outgoing queue drained by a writer task."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, conn_id: str, max_queue: int) -> None:
        self.ws = ws
        self.transport = request.transport
        self.id = conn_id
        self.path = request.path_qs
        self.combined = False
        now = time.monotonic()
        self.connected_at = now
        self.last_push = now
        self.subscribed_ever = False
        self.subs: set[str] = set()
        self.incoming: deque[float] = deque()
        self.last_ping = now
        self.ping_outstanding = 0.0  # send time of the oldest unanswered ping, 0 = none
        self.closed = False
        self.close_code = 0
        self._close_msg = b""
        self._max_queue = max_queue
        self._out: deque[tuple[int, bytes]] = deque()
        self._wake = asyncio.Event()
        # Direct framing is only byte-identical without permessage-deflate (which no client here asks for).
        self._direct = not ws.compress
        self._task = asyncio.create_task(self._writer())

    def _put(self, kind: int, data: bytes) -> None:
        if self.closed:
            return
        if kind <= BINARY and not self._out and self._direct:
            # Nothing queued ahead: frame and write it now, as aiohttp's writer would (same bytes),
            # without a task switch per frame. Only while the socket keeps up; else it queues.
            t = self.transport
            if t is None or t.is_closing():
                self.closed = True
                return
            if t.get_write_buffer_size() < DIRECT_LIMIT:
                n = len(data)
                op = 0x81 if kind == TEXT else 0x82
                if n < 126:
                    t.write(bytes((op, n)) + data)
                elif n < 65536:
                    t.write(_LEN2(op, 126, n) + data)
                else:
                    t.write(_LEN3(op, 127, n) + data)
                return
        if len(self._out) >= self._max_queue:
            self.abort()
            return
        self._out.append((kind, data))
        self._wake.set()

    def send(self, frame: bytes | str) -> None:
        """Queue a text frame; pass the bytes (UTF-8 JSON) when many clients get the same frame."""
        self.last_push = time.monotonic()
        self._put(TEXT, frame.encode() if isinstance(frame, str) else frame)

    def send_bytes(self, frame: bytes) -> None:
        self.last_push = time.monotonic()
        self._put(BINARY, frame)

    def ping(self, payload: bytes = b"") -> None:
        self._put(PING, payload)

    def pong(self, payload: bytes = b"") -> None:
        self._put(PONG, payload)

    def close(self, code: int = 1000, message: str = "") -> None:
        """Close after the frames already queued have gone out."""
        if self.closed:
            return
        self._put(CLOSE, b"")
        self.close_code, self._close_msg = code, message.encode()[:120]
        self.closed = True

    def abort(self) -> None:
        """Drop the TCP connection without a close frame."""
        self.closed = True
        self._out.clear()
        if self.transport is not None:
            self.transport.abort()

    async def _writer(self) -> None:
        ws, out = self.ws, self._out
        try:
            while True:
                while not out:
                    self._wake.clear()
                    await self._wake.wait()
                kind, data = out.popleft()
                if kind == TEXT:
                    await ws.send_frame(data, WSMsgType.TEXT)
                elif kind == BINARY:
                    await ws.send_frame(data, WSMsgType.BINARY)
                elif kind == PING:
                    await ws.ping(data)
                elif kind == PONG:
                    await ws.pong(data)
                else:
                    await ws.close(code=self.close_code, message=self._close_msg)
                    return
        except (ConnectionError, RuntimeError):
            self.closed = True

    def stop(self) -> None:
        self.closed = True
        self._task.cancel()
