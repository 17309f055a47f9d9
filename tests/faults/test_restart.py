"""Fault scenario 9 (issue 8): the whole scanner restarts mid-run. A first pipeline runs while the webhook
receiver is down, so its events pile up in the outbox (pending in the target's consumer group); it is
stopped, and a second pipeline starts against the same Redis and simulators with the receiver back.

Asserted: the second pipeline's books rebuild from the venues (every book valid again, fresh in Redis;
the time from its start is ``recover_s``), and its webhook worker resumes the outbox from Redis: every
event the first pipeline produced and could not deliver is delivered, and nothing is left pending or
dead-lettered."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from scanner.sim.server import SimCluster
from scanner.store.schema import book_key
from scanner.webhooks import outbox
from tests.faults.conftest import scaled
from tests.faults.infra_helpers import SYMBOL, WALKING, SinkSpy, delivered, set_open
from tests.faults.report import Row
from tests.pipeline_helpers import running, settings_for, until
from tests.webhook_helpers import Receiver, new_secret, pending, reserved_port, webhook_settings


async def test_restart_rebuilds_books_and_resumes_the_outbox(redis_url: str, market_cache: Path, fault_report: Row,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    flips = int(scaled(4, 20))
    secret = new_secret()
    held = reserved_port()  # the receiver is down while the first pipeline runs: its port refuses, and stays ours
    rx = Receiver(secret, port=held.getsockname()[1])
    r = Redis.from_url(redis_url, socket_timeout=5)
    ws = webhook_settings(rx.url, secret, max_attempts=100, backoff_base_s=0.5, backoff_max_s=1.0,  # no dead letters
                          timeout_s=2)
    try:
        async with SimCluster(venues=["okx", "binance"], symbols=[SYMBOL, WALKING], tick_ms=50, seed=9) as sims:
            set_open(sims, False)
            settings = dataclasses.replace(settings_for(sims, redis_url, market_cache), webhooks=ws)
            async with running(settings) as p1:
                spy1 = SinkSpy().install(p1, monkeypatch)
                await until(lambda: all(sb.valid for c in p1.collectors.values() for sb in c.books.values()),
                            sims, "every book valid (first run)")
                for i in range(flips):  # open, close, open, close ...
                    set_open(sims, i % 2 == 0)
                    await until(lambda n=i + 1: len(spy1.written) >= n, sims, f"event {i + 1}")  # type: ignore[misc]
                assert p1.webhooks is not None
                worker1 = p1.webhooks.workers["desk"]
                try:
                    await worker1.wait_for(lambda: worker1.counts.get("failures", 0) >= 1, 30)  # receiver down
                except TimeoutError:
                    pytest.fail(f"no failed delivery while the receiver was down: counts {worker1.counts}, "
                                f"in flight {len(worker1.inflight)}")
                books1 = {v: dict(c.books) for v, c in p1.collectors.items()}
            left_pending = await outbox.lag(r, ws.outbox_stream, "desk")  # pending (read, unacked) + never read
            undelivered = set(spy1.written)
            assert left_pending == len(undelivered) >= flips  # stopped with every event still in the outbox
            assert spy1.failed == []

            held.close()
            await rx.start()
            started_ns, started = time.time_ns(), time.monotonic()
            async with running(settings) as p2:
                await until(lambda: all(sb.valid for c in p2.collectors.values() for sb in c.books.values()),
                            sims, "every book valid (second run)")

                async def fresh() -> None:
                    while True:
                        raws = [await r.get(book_key(s, v)) for v in ("okx", "binance") for s in (SYMBOL, WALKING)]
                        books = [orjson.loads(x) for x in raws if x]
                        if len(books) == 4 and all(b["valid"] and b["recv_ns"] > started_ns for b in books):
                            return
                        await sims.wait_ticks(1)
                await asyncio.wait_for(fresh(), 15)
                recover_s = time.monotonic() - started
                assert all(p2.collectors[v].books[i] is not sb for v, bs in books1.items() for i, sb in bs.items())
                await rx.wait_for(lambda: undelivered <= set(delivered(rx)), 20)
                assert p2.webhooks is not None
                worker2 = p2.webhooks.workers["desk"]
                await worker2.wait_for(lambda: not worker2.inflight, 10)
                resumed_s = time.monotonic() - started
                left_after = await outbox.lag(r, ws.outbox_stream, "desk") + await pending(r, ws)
                counts2 = dict(worker2.counts)
    finally:
        held.close()
        await rx.stop()
        await r.aclose()
    got = delivered(rx)
    missing = undelivered - set(got)
    assert not missing
    assert left_after == 0
    assert counts2.get("dead_letter", 0) == 0
    fault_report.injected = (f"scanner stopped mid-run with {len(undelivered)} events undelivered (receiver down), "
                             "restarted against the same Redis and simulators with the receiver back")
    fault_report.observed = {
        "books": sum(len(b) for b in books1.values()), "undelivered_at_stop": left_pending,
        "delivered_after_restart": len(set(got) & undelivered), "duplicates": sum(n - 1 for n in got.values()),
        "outbox_resumed_s": round(resumed_s, 2), "pending_after": left_after}
    fault_report.recover_s = recover_s
    fault_report.lost = len(missing)
