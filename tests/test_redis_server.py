"""The private redis-server launcher used by tests and `make demo`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from scanner.redis_server import PrivateRedis, RedisUnavailable, ensure_redis, ping


def test_lifecycle_restart_pause_resume() -> None:
    with PrivateRedis() as s:
        assert s.port != 6379 and s.url.startswith("redis://127.0.0.1:")
        c = redis.Redis.from_url(s.url, socket_timeout=0.5)
        c.set("k", "v")
        assert c.get("k") == b"v"
        port, pid = s.port, s.pid
        s.restart()
        assert s.port == port and s.pid != pid and ping("127.0.0.1", port)
        assert c.get("k") is None  # nothing persisted; the client reconnected
        s.pause()
        with pytest.raises(redis.TimeoutError):
            c.get("k")
        s.resume()
        assert ping("127.0.0.1", port)
        c.close()
    assert not s.running


def test_ensure_reuses_a_live_server_and_starts_one_otherwise() -> None:
    url, srv = ensure_redis(None)
    assert srv is not None
    try:
        same, none = ensure_redis(url)
        assert same == url and none is None
    finally:
        srv.close()
    other, started = ensure_redis("redis://127.0.0.1:1/0")  # nothing listens on port 1
    assert started is not None and other != "redis://127.0.0.1:1/0"
    started.close()


def test_a_broken_binary_is_a_clear_error(tmp_path: Path) -> None:
    exe = tmp_path / "redis-server"
    exe.write_text("#!/bin/sh\necho boom >&2; exit 3\n")
    os.chmod(exe, 0o755)
    with pytest.raises(RedisUnavailable, match="exited"):
        PrivateRedis(str(exe)).start()
