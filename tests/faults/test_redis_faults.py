"""Fault scenario 6 (issue 8): Redis goes away for ``scaled(3, 10)`` seconds, either stopped and started
again on the same port (all data gone: the private server persists nothing) or frozen with SIGSTOP
(connections hang, as in a network outage). A test-owned :class:`PrivateRedis` is used, never the
session one.

Asserted: the collectors keep their book objects in memory and valid, with the sequence advancing
during the outage; nothing escapes (every pipeline task still running, no traceback but the expected
connection-loss ones); books in Redis are fresh again and opportunities flow after Redis returns; and
the webhook outbox loses nothing: every event the detector produced, before, during and after the
outage, reaches the receiver at least once (matched by event, not by delivery)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from scanner.redis_server import PrivateRedis
from scanner.sim.server import SimCluster
from scanner.store.schema import book_key
from tests.faults.conftest import scaled
from tests.faults.infra_helpers import SYMBOL, WALKING, SinkSpy, delivered, set_open, toggle
from tests.faults.report import Row
from tests.pipeline_helpers import running, settings_for, until
from tests.webhook_helpers import Receiver, new_secret, webhook_settings

PIPELINE_TASKS = ("webhooks", "book-store", "detector", "collector-okx", "collector-binance")
EXPECTED_ERRORS = (RedisError, OSError, TimeoutError)


async def _fresh_in_redis(r: Redis, since_ns: int) -> bool:
    try:
        raw = await r.get(book_key(WALKING, "okx"))
    except (RedisError, OSError):
        return False
    if not raw:
        return False
    book = orjson.loads(raw)
    return bool(book["valid"]) and int(book["recv_ns"]) > since_ns



@pytest.mark.parametrize("mode", ["stop_start", "pause_resume"])
async def test_redis_outage(mode: str, market_cache: Path, fault_report: Row, caplog: pytest.LogCaptureFixture,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    outage_s = scaled(3.0, 10.0)
    caplog.set_level(logging.WARNING)
    srv = await asyncio.to_thread(PrivateRedis().start)
    secret = new_secret()
    rx = await Receiver(secret).start()
    r = Redis.from_url(srv.url, socket_timeout=2, socket_connect_timeout=1)
    try:
        async with SimCluster(venues=["okx", "binance"], symbols=[SYMBOL, WALKING], tick_ms=50, seed=3) as sims:
            set_open(sims, False)
            settings = dataclasses.replace(settings_for(sims, srv.url, market_cache),
                                           webhooks=webhook_settings(rx.url, secret))
            async with running(settings) as p:
                spy = SinkSpy().install(p, monkeypatch)
                okx = p.collectors["okx"]
                inst = next(i for i, s in okx.symbols.items() if s == WALKING)
                await until(lambda: all(sb.valid for c in p.collectors.values() for sb in c.books.values()),
                            sims, "every book valid")
                stop_toggle = asyncio.Event()
                toggler = asyncio.create_task(toggle(sims, stop_toggle, 8))
                await until(lambda: len(spy.written) >= 2, sims, "opportunities before the outage")

                books_before = {(v, i): sb for v, c in p.collectors.items() for i, sb in c.books.items()}
                seq_before = okx.books[inst].book.seq
                errors_before = p.store.failures
                # ---- the outage
                if mode == "stop_start":
                    await asyncio.to_thread(srv.stop)
                else:
                    srv.pause()
                t0 = time.monotonic()
                await until(lambda: okx.books[inst].book.seq > seq_before, sims, "seq advancing during the outage")
                await until(lambda: time.monotonic() - t0 >= outage_s, sims, "the outage", outage_s + 5)
                books_during = {(v, i): sb for v, c in p.collectors.items() for i, sb in c.books.items()}
                seq_during = okx.books[inst].book.seq
                assert all(books_during[k] is sb for k, sb in books_before.items())  # kept in memory
                assert all(sb.valid for sb in books_during.values())
                assert seq_during > seq_before
                tasks = {t.get_name(): t for t in asyncio.all_tasks()}
                assert all(not tasks[n].done() for n in PIPELINE_TASKS), "a pipeline task ended during the outage"
                written_at_outage = len(spy.written)
                # ---- Redis returns
                back_ns, back = time.time_ns(), time.monotonic()
                if mode == "stop_start":
                    await asyncio.to_thread(srv.start)
                else:
                    srv.resume()

                async def resumed() -> None:
                    while not await _fresh_in_redis(r, back_ns) or len(spy.written) <= written_at_outage:
                        await sims.wait_ticks(1)
                await asyncio.wait_for(resumed(), 20)
                recover_s = time.monotonic() - back
                assert all(not tasks[n].done() for n in PIPELINE_TASKS)
                stop_toggle.set()
                await asyncio.wait_for(toggler, 5)
                await until(lambda: bool(spy.written) and spy.written[-1][1] == "close"
                            and spy.all <= set(delivered(rx)), sims, "the last close and every event delivered", 30)
                got, emitted = delivered(rx), spy.all
                redis_errors = p.store.failures - errors_before
    finally:
        await rx.stop()
        await r.aclose()
        await asyncio.to_thread(srv.close)

    tracebacks = [rec for rec in caplog.records
                  if rec.exc_info and rec.exc_info[1] is not None and not isinstance(rec.exc_info[1], EXPECTED_ERRORS)]
    assert not tracebacks, [rec.getMessage() for rec in tracebacks]
    missing = emitted - set(got)
    assert not missing
    fault_report.injected = f"redis {mode.replace('_', '/')} for {outage_s:g} s, webhook receiver up"
    fault_report.observed = {
        "events": len(emitted), "write_failures": len(spy.failed), "delivered": len(got),
        "duplicates": sum(n - 1 for n in got.values()), "seq_advance_during": seq_during - seq_before,
        "store_redis_errors": redis_errors,
        "error_logs": sum(1 for rec in caplog.records if rec.levelno >= logging.ERROR)}
    fault_report.recover_s = recover_s
    fault_report.lost = len(missing)
