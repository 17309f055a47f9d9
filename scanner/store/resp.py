"""RespConnection: one Redis connection for the hot write paths, pipelined, with no per-call machinery.

redis-py's asyncio pipeline costs ~150 us of Python per ``execute()`` (connection pool, timeouts,
tasks); the book writer and the opportunity sink call it thousands of times a second. This sends
pre-packed commands (``hiredis.pack_command``) on one persistent connection and matches replies in
order as ``data_received`` parses them (``hiredis.Reader``); an ``execute`` is one write and one
future. Several executes may be in flight at once; replies come back in order.

Failures surface as redis-py's exceptions, so callers keep their handling: ``ConnectionError`` /
``TimeoutError`` (both ``RedisError``) when the server is unreachable, the connection drops or a
reply is late (the connection is then closed and the next call reconnects), ``ResponseError`` for an
error reply (e.g. ``READONLY``). URLs: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://``
(TLS, system CA) and ``unix://path[?db=N]``, as redis-py parses them.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import hiredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = str | bytes | int | float
# hiredis' stub types the argument as a fixed 1-tuple; any tuple of arguments is what it takes
_pack: Callable[[tuple[Arg, ...]], bytes] = hiredis.pack_command  # type: ignore[assignment]


@dataclass(slots=True)
class _Pending:
    n: int
    fut: asyncio.Future[list[Any]]
    replies: list[Any] = field(default_factory=list)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.pending: deque[_Pending] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        pending = self.pending
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self._fail(RedisConnectionError(f"redis protocol error: {exc}"))
                if self.transport is not None:
                    self.transport.close()
                return
            if reply is False:
                return
            if not pending:  # nothing asked for it (cannot happen with a well-behaved server)
                continue
            head = pending[0]
            head.replies.append(reply)
            if len(head.replies) == head.n:
                pending.popleft()
                if not head.fut.done():
                    head.fut.set_result(head.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or RedisConnectionError("connection closed by the server")
        self._fail(RedisConnectionError(f"redis connection lost: {self.lost}"))

    def _fail(self, exc: BaseException) -> None:
        while self.pending:
            p = self.pending.popleft()
            if not p.fut.done():
                p.fut.set_exception(exc)


class RespConnection:
    """A lazily connected, self-healing pipelined connection. Not for pub/sub or blocking commands."""

    def __init__(self, url: str, connect_timeout: float = 2.0, timeout: float = 5.0) -> None:
        self.url, self.connect_timeout, self.timeout = url, connect_timeout, timeout
        self._opts: dict[str, Any] = dict(parse_url(url))
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def execute(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Send ``commands`` in one write; their replies in order. Raises ResponseError for the first
        error reply (the other commands were still executed), ConnectionError/TimeoutError otherwise."""
        if not commands:
            return []
        proto = self._proto
        if proto is None or proto.lost is not None or proto.transport is None or proto.transport.is_closing():
            proto = await self._connect()
        data = b"".join([_pack(tuple(c)) for c in commands])
        replies = await self._send(proto, data, len(commands))
        for r in replies:
            if isinstance(r, ResponseError):
                raise r
        return replies

    async def _send(self, proto: _Protocol, data: bytes, n: int) -> list[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Any]] = loop.create_future()
        proto.pending.append(_Pending(n, fut))
        assert proto.transport is not None
        proto.transport.write(data)
        timer = loop.call_later(self.timeout, self._expire, proto, fut)
        try:
            return await fut
        finally:
            timer.cancel()

    def _expire(self, proto: _Protocol, fut: asyncio.Future[list[Any]]) -> None:
        if not fut.done():  # a late reply would be matched to the wrong request: start over on a new connection
            proto._fail(RedisTimeoutError(f"no reply from redis within {self.timeout:.1f} s"))
            if proto.transport is not None:
                proto.transport.abort()
            if self._proto is proto:
                self._proto = None

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            proto = self._proto
            if proto is not None and proto.lost is None and proto.transport is not None \
                    and not proto.transport.is_closing():
                return proto
            self.close()
            loop = asyncio.get_running_loop()
            o = self._opts
            try:
                if o.get("connection_class") is UnixDomainSocketConnection:
                    coro = loop.create_unix_connection(_Protocol, o["path"])
                else:
                    ctx = ssl.create_default_context() if o.get("connection_class") is SSLConnection else None
                    coro = loop.create_connection(_Protocol, o.get("host", "localhost"), int(o.get("port", 6379)),
                                                  ssl=ctx)
                _, new = await asyncio.wait_for(coro, self.connect_timeout)
            except (TimeoutError, OSError) as exc:
                raise RedisConnectionError(f"cannot connect to redis at {self._where()}: {exc!r}") from None
            setup: list[tuple[Arg, ...]] = []
            if o.get("password") is not None:
                setup.append(("AUTH", o["username"], o["password"]) if o.get("username") else ("AUTH", o["password"]))
            if int(o.get("db", 0) or 0):
                setup.append(("SELECT", int(o["db"])))
            if setup:
                replies = await self._send(new, b"".join(_pack(c) for c in setup), len(setup))
                bad = [r for r in replies if isinstance(r, ResponseError)]
                if bad:
                    assert new.transport is not None
                    new.transport.close()
                    raise RedisConnectionError(f"redis at {self._where()} refused the connection setup: {bad[0]}")
            self._proto = new
            return new

    def _where(self) -> str:
        o = self._opts
        return str(o["path"]) if "path" in o else f"{o.get('host', 'localhost')}:{o.get('port', 6379)}"

    def close(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.transport.close()
