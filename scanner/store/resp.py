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
from typing import Any, TypeVar

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
    deadline: float  # loop time by which its replies must have come
    replies: list[Any] = field(default_factory=list)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.pending: deque[_Pending] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        self.watch: asyncio.TimerHandle | None = None  # the reply deadline of the oldest pending write

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
        if self.watch is not None:
            self.watch.cancel()
            self.watch = None
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
        if proto is None or not _alive(proto):
            proto = await self._connect()
        replies = await self._write(proto, commands)
        for r in replies:
            if isinstance(r, ResponseError):
                raise r
        return replies

    @property
    def connected(self) -> bool:
        return _alive(self._proto)

    def send(self, commands: Sequence[Sequence[Arg]]) -> asyncio.Future[list[Any]] | None:
        """Write ``commands`` now if connected and return the future of their replies (error replies
        are left in the list, not raised); None if not connected (use :meth:`execute`)."""
        proto = self._proto
        if not commands or proto is None or not _alive(proto):
            return None
        return self._write(proto, commands)

    def _write(self, proto: _Protocol, commands: Sequence[Sequence[Arg]]) -> asyncio.Future[list[Any]]:
        """One write of the packed commands; the future of their replies, failed after ``timeout``."""
        assert proto.transport is not None
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Any]] = loop.create_future()
        deadline = loop.time() + self.timeout
        proto.pending.append(_Pending(len(commands), fut, deadline))
        proto.transport.write(b"".join([_pack(tuple(c)) for c in commands]))
        if proto.watch is None:  # one timer per connection, not one per write: replies come in order
            proto.watch = loop.call_at(deadline, self._watch, proto)
        return fut

    def _watch(self, proto: _Protocol) -> None:
        """The oldest write's deadline came: expire the connection if its replies are still missing, else
        wait for the deadline of the oldest one still pending (writes share one timeout, so it is the first due)."""
        proto.watch = None
        if not proto.pending:
            return
        loop = asyncio.get_running_loop()
        head = proto.pending[0]
        if head.deadline > loop.time():
            proto.watch = loop.call_at(head.deadline, self._watch, proto)
            return
        # a late reply would be matched to the wrong request: start over on a new connection
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
            if proto is not None and _alive(proto):
                return proto
            self.close()
            new = await open_protocol(self._opts, _Protocol, self.connect_timeout)
            setup = setup_commands(self._opts)
            if setup:
                replies = await self._write(new, setup)
                bad = [r for r in replies if isinstance(r, ResponseError)]
                if bad:
                    assert new.transport is not None
                    new.transport.close()
                    raise RedisConnectionError(f"redis at {where(self._opts)} refused the connection setup: {bad[0]}")
            self._proto = new
            return new

    def close(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.transport.close()


def _alive(proto: _Protocol | None) -> bool:
    return proto is not None and proto.lost is None and proto.transport is not None \
        and not proto.transport.is_closing()


P = TypeVar("P", bound=asyncio.Protocol)


async def open_protocol(opts: dict[str, Any], factory: Callable[[], P], connect_timeout: float) -> P:
    """Connect ``factory()`` to the server ``opts`` (redis-py's ``parse_url``) names; ConnectionError if not."""
    loop = asyncio.get_running_loop()
    try:
        if opts.get("connection_class") is UnixDomainSocketConnection:
            _, proto = await asyncio.wait_for(loop.create_unix_connection(factory, opts["path"]), connect_timeout)
        else:
            ctx = ssl.create_default_context() if opts.get("connection_class") is SSLConnection else None
            _, proto = await asyncio.wait_for(loop.create_connection(
                factory, opts.get("host", "localhost"), int(opts.get("port", 6379)), ssl=ctx), connect_timeout)
    except (TimeoutError, OSError) as exc:
        raise RedisConnectionError(f"cannot connect to redis at {where(opts)}: {exc!r}") from None
    return proto


def setup_commands(opts: dict[str, Any]) -> list[tuple[Arg, ...]]:
    """AUTH and SELECT for a new connection, from the URL."""
    setup: list[tuple[Arg, ...]] = []
    if opts.get("password") is not None:
        user = opts.get("username")
        setup.append(("AUTH", user, opts["password"]) if user else ("AUTH", opts["password"]))
    if int(opts.get("db", 0) or 0):
        setup.append(("SELECT", int(opts["db"])))
    return setup


def where(opts: dict[str, Any]) -> str:
    """host:port or the socket path; never the credentials."""
    return str(opts["path"]) if "path" in opts else f"{opts.get('host', 'localhost')}:{opts.get('port', 6379)}"


class _SubProtocol(asyncio.Protocol):
    def __init__(self, on_messages: Callable[[list[bytes]], None]) -> None:
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.on_messages = on_messages
        self.transport: asyncio.Transport | None = None
        self.replies: deque[Any] = deque()  # command replies (AUTH, SELECT, subscribe acks), in order
        self.got_reply = asyncio.Event()
        self.lost = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        batch: list[bytes] = []
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError:
                if self.transport is not None:
                    self.transport.close()
                break
            if reply is False:
                break
            if type(reply) is list and len(reply) == 3 and reply[0] == b"message":
                batch.append(reply[2])
            else:
                self.replies.append(reply)
                self.got_reply.set()
        if batch:
            self.on_messages(batch)  # every message this read brought, in one call

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()
        self.got_reply.set()


class RespSubscriber:
    """SUBSCRIBE to one channel; ``on_messages`` gets the payloads of each socket read, in order, called
    from the event loop's read callback (no task switch per message). :meth:`wait_lost` returns when the
    connection is gone: the owner then reconnects (and re-reads what it may have missed)."""

    def __init__(self, url: str, channel: str, on_messages: Callable[[list[bytes]], None],
                 connect_timeout: float = 2.0, timeout: float = 5.0) -> None:
        self.channel, self.on_messages = channel, on_messages
        self.connect_timeout, self.timeout = connect_timeout, timeout
        self._opts: dict[str, Any] = dict(parse_url(url))
        self._proto: _SubProtocol | None = None

    async def start(self) -> None:
        """Connect, authenticate, subscribe; returns once the server confirmed the subscription."""
        self.close()
        proto = await open_protocol(self._opts, lambda: _SubProtocol(self.on_messages), self.connect_timeout)
        self._proto = proto
        for cmd in [*setup_commands(self._opts), ("SUBSCRIBE", self.channel)]:
            assert proto.transport is not None
            proto.transport.write(_pack(cmd))
            reply = await self._reply(proto)
            if isinstance(reply, ResponseError):
                self.close()
                raise RedisConnectionError(f"redis at {where(self._opts)} refused {cmd[0]!s}: {reply}")

    async def _reply(self, proto: _SubProtocol) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                while not proto.replies:
                    if proto.lost.is_set():
                        raise RedisConnectionError(f"redis connection to {where(self._opts)} lost")
                    proto.got_reply.clear()
                    await proto.got_reply.wait()
        except TimeoutError:
            self.close()
            raise RedisTimeoutError(f"no reply from redis within {self.timeout:.1f} s") from None
        return proto.replies.popleft()

    async def wait_lost(self) -> None:
        if self._proto is not None:
            await self._proto.lost.wait()

    @property
    def connected(self) -> bool:
        return self._proto is not None and not self._proto.lost.is_set()

    def close(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.transport.close()
