"""The one websocket connection loop every venue runs (picows underneath).

``run_connection`` connects, lets the collector subscribe, keeps the venue's keepalive
(text ping/pong via picows' auto-ping; protocol PINGs are answered automatically),
watches for silence, closes before the venue's connection lifetime runs out, and
reconnects with full-jitter exponential backoff, forever, until ``stop`` is set.
Frames are handed to the collector synchronously from picows' receive callback: no
queue and no await between the socket and the book.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import picows

from scanner.aio import wait_stop
from scanner.feed.backoff import backoff
from scanner.venues.spec import ConnectInfo

if TYPE_CHECKING:
    from scanner.feed.tap import FrameTap

log = logging.getLogger(__name__)

HEALTHY_AFTER_S = 30.0  # a connection that lived this long resets the backoff
PONG_MAX_LEN = 256  # JSON pongs ({"op":"pong",...}) are short; longer frames are never taken for one


class FrameSink(Protocol):
    def on_open(self, conn: Connection) -> None: ...
    def on_frame(self, conn: Connection, payload: bytes, recv_ns: int) -> None: ...
    def on_close(self, conn: Connection, reason: str) -> None: ...
    def on_reconnect_wait(self, conn: Connection, reason: str, delay: float) -> None: ...


class Connection:
    """One logical venue connection (a shard of instruments) across reconnects."""

    def __init__(self, venue: str, url: str, insts: Sequence[str], *, text_ping: bytes | None,
                 text_pong: bytes | None, ping_idle_s: float, watchdog_s: float, max_age_s: float,
                 max_sends_per_s: float, shard: int = 0,
                 resolve: Callable[[], Awaitable[ConnectInfo]] | None = None,
                 ping_periodically: bool = False) -> None:
        """``text_pong`` is the venue's keepalive answer: a frame equal to it, or a short frame
        containing it (JSON pongs carry ids and times). ``resolve`` runs before every connect
        and returns the URL to use (a venue's token handshake)."""
        self.venue, self.url, self.insts, self.shard = venue, url, list(insts), shard
        self.resolve = resolve
        self.ping_periodically = ping_periodically  # ping every ping_idle_s, not only when idle
        self.text_ping, self.text_pong, self.ping_idle_s = text_ping, text_pong, ping_idle_s
        self.watchdog_s, self.max_age_s = watchdog_s, max_age_s
        self.send_interval = 1.0 / max_sends_per_s if max_sends_per_s > 0 else 0.0
        self.transport: picows.WSTransport | None = None
        self.addr = url  # the URL of the current connection (a handshake may resolve another)
        self.tap: FrameTap | None = None  # scanner record: sees every frame sent
        self.last_frame = 0.0  # monotonic time of the last frame handed to the sink
        self.opened_at = 0.0
        self._outbox: deque[str] = deque()
        self._outbox_ready = asyncio.Event()
        self._close_reason: str | None = None
        self._close_requested = asyncio.Event()

    @property
    def is_open(self) -> bool:
        return self.transport is not None

    def send(self, text: str) -> None:
        """Queue a frame; frames go out paced within the venue's client message rate."""
        if self.tap is not None:
            self.tap.on_send(self, text)
        self._outbox.append(text)
        self._outbox_ready.set()

    def request_close(self, reason: str) -> None:
        """Close the socket soon (e.g. the venue announced maintenance); the loop reconnects."""
        if self._close_reason is None:
            self._close_reason = reason
        self._close_requested.set()

    async def _pace_sends(self) -> None:
        while True:
            await self._outbox_ready.wait()
            while self._outbox and self.transport is not None:
                self.transport.send(picows.WSMsgType.TEXT, self._outbox.popleft().encode())
                if self.send_interval:
                    await asyncio.sleep(self.send_interval)
            self._outbox_ready.clear()


class _Listener(picows.WSListener):
    def __init__(self, conn: Connection, sink: FrameSink) -> None:
        self.conn, self.sink = conn, sink
        self.fragments: list[bytes] = []
        self.disconnected = asyncio.get_running_loop().create_future()
        # Frames that arrive before the sink's on_open (a venue's welcome can come with the
        # handshake, before ws_connect returns) wait here; None once they were handed over.
        self.early: list[tuple[bytes, int]] | None = []

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        mt = frame.msg_type
        if mt is picows.WSMsgType.TEXT or mt is picows.WSMsgType.BINARY:
            if frame.fin:
                self._deliver(frame.get_payload_as_bytes())
            else:
                self.fragments = [frame.get_payload_as_bytes()]
        elif mt is picows.WSMsgType.CONTINUATION:
            self.fragments.append(frame.get_payload_as_bytes())
            if frame.fin:
                payload, self.fragments = b"".join(self.fragments), []
                self._deliver(payload)
        elif mt is picows.WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def _deliver(self, payload: bytes) -> None:
        recv_ns = time.time_ns()
        self.conn.last_frame = time.monotonic()
        if self.early is not None:
            self.early.append((payload, recv_ns))
            return
        self._hand(payload, recv_ns)

    def release(self) -> None:
        """The sink has seen on_open: hand over the frames that came before it, in order."""
        early, self.early = self.early or [], None
        for payload, recv_ns in early:
            self._hand(payload, recv_ns)

    def _hand(self, payload: bytes, recv_ns: int) -> None:
        try:
            self.sink.on_frame(self.conn, payload, recv_ns)
        except Exception:  # a bug in handling one frame must not kill the connection
            log.exception("%s: frame handler failed; frame skipped", self.conn.venue)

    def send_user_specific_ping(self, transport: picows.WSTransport) -> None:
        if self.conn.text_ping is not None:
            transport.send(picows.WSMsgType.TEXT, self.conn.text_ping)
        else:
            transport.send_ping()

    def is_user_specific_pong(self, frame: picows.WSFrame) -> bool:
        pong = self.conn.text_pong
        if pong is None:
            return bool(frame.msg_type is picows.WSMsgType.PONG)
        if frame.msg_type is not picows.WSMsgType.TEXT or frame.payload_size > PONG_MAX_LEN:
            return False
        payload = frame.get_payload_as_bytes()
        return payload == pong or pong in payload

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        if not self.disconnected.done():
            self.disconnected.set_result(None)


async def run_connection(conn: Connection, sink: FrameSink, stop: asyncio.Event) -> None:
    """Keep ``conn`` connected until ``stop`` is set. Never gives up."""
    delays = backoff()
    while not stop.is_set():
        reason = "connect_failed"
        served = 0.0  # how long this attempt's connection lasted (0: it never opened)
        try:
            url = conn.url
            strategy = picows.WSAutoPingStrategy.PING_WHEN_IDLE
            if conn.ping_periodically:
                strategy = picows.WSAutoPingStrategy.PING_PERIODICALLY
            if conn.resolve is not None:
                info = await conn.resolve()
                url = info.url
                if info.ping_interval_s > 0:
                    conn.ping_idle_s = info.ping_interval_s
            conn.addr = url
            ssl_ctx = ssl.create_default_context() if url.startswith("wss://") else None
            transport, listener = await picows.ws_connect(
                lambda: _Listener(conn, sink), url, ssl_context=ssl_ctx,
                enable_auto_ping=conn.ping_idle_s > 0, auto_ping_idle_timeout=conn.ping_idle_s or 10.0,
                auto_ping_reply_timeout=min(10.0, conn.ping_idle_s or 10.0), auto_ping_strategy=strategy,
                websocket_handshake_timeout=10.0,
                max_frame_size=64 * 1024 * 1024,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s[%d]: connect to %s failed: %s", conn.venue, conn.shard, conn.url, exc)
        else:
            assert isinstance(listener, _Listener)
            reason = await _serve(conn, sink, transport, listener, stop)
            served = time.monotonic() - conn.opened_at
        if stop.is_set():
            break
        if served > HEALTHY_AFTER_S:  # only the connection just lost counts: failed connects keep backing off
            delays = backoff()
        delay = next(delays)
        sink.on_reconnect_wait(conn, reason, delay)
        await wait_stop(stop, delay)


async def _serve(conn: Connection, sink: FrameSink, transport: picows.WSTransport, listener: _Listener,
                 stop: asyncio.Event) -> str:
    conn.transport = transport
    conn.opened_at = conn.last_frame = time.monotonic()
    conn._close_reason = None
    conn._close_requested.clear()
    conn._outbox.clear()
    pacer = asyncio.create_task(conn._pace_sends(), name=f"{conn.venue}-sends")
    reason = "closed_by_venue"
    try:
        sink.on_open(conn)
        listener.release()
        check = min(1.0, conn.watchdog_s / 4)
        stop_wait = asyncio.ensure_future(stop.wait())
        close_wait = asyncio.ensure_future(conn._close_requested.wait())
        try:
            while True:
                await asyncio.wait({listener.disconnected, stop_wait, close_wait}, timeout=check,
                                   return_when=asyncio.FIRST_COMPLETED)
                now = time.monotonic()
                if listener.disconnected.done():
                    break
                if stop.is_set():
                    reason = "stop"
                elif conn._close_requested.is_set():
                    reason = conn._close_reason or "requested"
                elif now - conn.last_frame > conn.watchdog_s:
                    reason = "watchdog"
                    log.warning("%s[%d]: no data for %.1fs; reconnecting", conn.venue, conn.shard, conn.watchdog_s)
                elif conn.max_age_s and now - conn.opened_at > conn.max_age_s:
                    reason = "max_age"
                else:
                    continue
                transport.send_close(picows.WSCloseCode.OK)
                transport.disconnect()
                break
        finally:
            stop_wait.cancel()
            close_wait.cancel()
    finally:
        pacer.cancel()
        conn.transport = None
        sink.on_close(conn, reason)
    return reason
