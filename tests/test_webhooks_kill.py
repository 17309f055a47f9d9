"""At-least-once across a real crash: a delivering process is SIGKILLed while every event is in flight
(the receiver holds the requests unanswered), then a fresh worker delivers them all. Nothing acked
before a 2xx means nothing is lost; duplicates are allowed."""

from __future__ import annotations

import asyncio
import os
import sys

from redis.asyncio import Redis

from scanner.webhooks.signing import webhook_id
from tests.webhook_helpers import (
    SECRET_ENV,
    Receiver,
    append,
    event,
    new_secret,
    pending,
    webhook_settings,
    worker_running,
)

# The delivering process: the real TargetWorker, configured as the test's own settings, until killed.
WORKER = """
import asyncio, os, sys
import aiohttp
from redis.asyncio import Redis
from scanner.config_webhooks import parse_webhooks
from scanner.sinks.metrics import Metrics
from scanner.webhooks.sender import TargetWorker

async def main() -> None:
    ws = parse_webhooks({"targets": {"desk": {"url": sys.argv[1], "format": "json", "secret_env": sys.argv[3],
                                              "max_in_flight": 4}}, "claim_idle_s": 0}, os.environ)
    r = Redis.from_url(sys.argv[2])
    w = TargetWorker(r, ws, ws.targets["desk"], Metrics())
    await w.setup()
    print("ready", flush=True)
    async with aiohttp.ClientSession() as session:
        await w.run(asyncio.Event(), session)

asyncio.run(main())
"""


async def test_killed_mid_delivery_then_restarted_delivers_everything(redis_url: str) -> None:
    secret = new_secret()
    rx = await Receiver(secret).start()
    rx.hold = asyncio.Event()
    r = Redis.from_url(redis_url)
    ws = webhook_settings(rx.url, secret, claim_idle_s=0, max_in_flight=4)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER, rx.url, redis_url, SECRET_ENV, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, SECRET_ENV: secret})
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.strip() == b"ready"  # its consumer group exists: events appended now are its to deliver
        ids = await append(r, ws, [event(i) for i in range(4)])
        await rx.wait_for(lambda: len({a.msg_id for a in rx.arrivals}) == 4)  # all four in flight, unanswered
        proc.kill()
        assert await asyncio.wait_for(proc.wait(), 10) == -9
        assert await pending(r, ws) == 4  # killed mid-delivery: nothing acknowledged, nothing lost
        rx.hold.set()
        rx.hold = None
        async with worker_running(r, ws) as w:  # the restarted scanner (same consumer name)
            await w.wait_for(lambda: w.counts.get("delivered", 0) == 4, 15)
        assert {webhook_id(i, "desk") for i in ids} <= rx.ok_ids()
        assert await pending(r, ws) == 0 and rx.bad_signatures == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await rx.stop()
        await r.aclose()
