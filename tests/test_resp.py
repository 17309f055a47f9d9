"""RespConnection (scanner/store/resp.py) against a real redis-server: pipelined replies in order,
error replies as ResponseError, a lost server as ConnectionError/TimeoutError, and recovery."""

from __future__ import annotations

import asyncio
import socket

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from scanner.redis_server import PrivateRedis
from scanner.store.resp import RespConnection


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_pipelined_replies_come_back_in_order(redis_url: str) -> None:
    conn = RespConnection(redis_url)
    try:
        cmds: list[tuple[str | bytes | int, ...]] = [
            ("SET", f"k{i}", f"v{i}".encode(), "PX", 60_000) for i in range(500)]
        assert await conn.execute(cmds) == [b"OK"] * 500
        got = await conn.execute([("GET", f"k{i}") for i in range(500)])
        assert got == [f"v{i}".encode() for i in range(500)]
        # several executes in flight at once on the one connection
        results = await asyncio.gather(*(conn.execute([("INCR", "n")]) for _ in range(200)))
        assert sorted(r[0] for r in results) == list(range(1, 201))
        entry = await conn.execute([("XADD", "s", "MAXLEN", "~", 10, "*", "data", b"x")])
        assert isinstance(entry[0], bytes) and b"-" in entry[0]
    finally:
        conn.close()


async def test_error_reply_is_response_error_and_the_connection_stays_usable(redis_url: str) -> None:
    conn = RespConnection(redis_url)
    try:
        await conn.execute([("SET", "str", "x")])
        with pytest.raises(ResponseError, match="not an integer"):
            await conn.execute([("SET", "a", "1"), ("INCR", "str"), ("SET", "b", "2")])
        assert await conn.execute([("MGET", "a", "b")]) == [[b"1", b"2"]]  # the others ran
    finally:
        conn.close()


async def test_unreachable_server_is_a_connection_error() -> None:
    conn = RespConnection(f"redis://127.0.0.1:{_free_port()}/0", connect_timeout=1.0)
    with pytest.raises(RedisConnectionError, match="cannot connect"):
        await conn.execute([("PING",)])


async def test_server_restart_fails_the_call_then_reconnects() -> None:
    with PrivateRedis() as server:
        conn = RespConnection(server.url)
        try:
            assert await conn.execute([("PING",)]) == [b"PONG"]
            server.stop()
            with pytest.raises(RedisError):  # the dropped connection, or no server to reconnect to
                await conn.execute([("PING",)])
            server.start()
            assert await conn.execute([("PING",)]) == [b"PONG"]
        finally:
            conn.close()


async def test_no_reply_in_time_is_a_timeout_then_it_recovers() -> None:
    with PrivateRedis() as server:
        conn = RespConnection(server.url, timeout=0.5)
        try:
            assert await conn.execute([("PING",)]) == [b"PONG"]
            server.pause()  # SIGSTOP: the socket stays open, nothing answers
            try:
                with pytest.raises(RedisTimeoutError):
                    await conn.execute([("PING",)])
            finally:
                server.resume()
            assert await conn.execute([("PING",)]) == [b"PONG"]
        finally:
            conn.close()


async def test_password_and_db_from_the_url() -> None:
    with PrivateRedis() as server:
        admin = redis.Redis.from_url(server.url)
        try:
            admin.config_set("requirepass", "s3cret")
            url = server.url.replace("redis://", "redis://:s3cret@").rsplit("/", 1)[0] + "/3"
            conn = RespConnection(url)
            try:
                await conn.execute([("SET", "where", "db3")])
            finally:
                conn.close()
            authed = redis.Redis.from_url(url)
            assert authed.get("where") == b"db3" and authed.dbsize() == 1
            authed.close()
            bad = RespConnection(server.url.replace("redis://", "redis://:wrong@"))
            with pytest.raises(RedisConnectionError) as err:
                await bad.execute([("PING",)])
            assert "wrong" not in str(err.value)  # the password is never in a message
        finally:
            admin.close()


async def test_a_write_behind_an_answered_one_gets_its_whole_timeout() -> None:
    """One reply timer per connection: armed at the first write's deadline, it finds that write answered and
    waits for the next one's deadline instead of expiring it early; then that write times out, and the
    connection recovers."""
    with PrivateRedis() as server:
        conn = RespConnection(server.url, timeout=0.4)
        try:
            assert await conn.execute([("PING",)]) == [b"PONG"]  # arms the timer at this write's deadline
            server.pause()
            # the scenario's time gap (not a wait for anything): the next write goes out halfway to that deadline
            await asyncio.sleep(0.2)
            loop = asyncio.get_running_loop()
            sent = loop.time()
            try:
                with pytest.raises(RedisTimeoutError):
                    await conn.execute([("PING",)])
            finally:
                server.resume()
            assert loop.time() - sent >= 0.4  # not at the first write's deadline, 0.2 s earlier
            assert await conn.execute([("PING",)]) == [b"PONG"]
        finally:
            conn.close()
