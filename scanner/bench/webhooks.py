"""Webhook latency on loopback: opportunity event appended to the outbox (XADD) → signed POST received.

A private Redis, one ``json`` target served by a local aiohttp receiver, the real worker
(scanner/webhooks/sender.py). Each event is stamped (``detected_ns``, and ``recv_ns`` as its frame
time) just before its XADD, as the detector does; the receiver takes ``time.time_ns()`` on arrival.
Events are paced at ``--rate`` per second. Prints p50/p90/p99/max in ms (issue target: p99 ≤ 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import time

import aiohttp
import orjson
from aiohttp import web
from redis.asyncio import Redis

from scanner.config_webhooks import parse_webhooks
from scanner.redis_server import PrivateRedis
from scanner.sinks.metrics import Metrics
from scanner.webhooks.formats import sample_event
from scanner.webhooks.sender import TargetWorker


async def bench(n: int, rate: float) -> list[float]:
    lat_ms: list[float] = []
    done = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        now = time.time_ns()
        body = orjson.loads(await request.read())
        lat_ms.append((now - int(body["data"]["detected_ns"])) / 1e6)
        if len(lat_ms) >= n:
            done.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    ws = parse_webhooks({"targets": {"bench": {"url": f"http://127.0.0.1:{port}/hook", "format": "json",
                                               "secret_env": "BENCH_SECRET", "max_in_flight": 32}}},
                        {"BENCH_SECRET": secret})
    with PrivateRedis() as server:
        r = Redis.from_url(server.url)
        worker = TargetWorker(r, ws, ws.targets["bench"], Metrics())
        await worker.setup()
        stop = asyncio.Event()
        async with aiohttp.ClientSession() as session:
            task = asyncio.create_task(worker.run(stop, session))
            ev = sample_event()
            for i in range(n):
                now = time.time_ns()
                ev.update(recv_ns=now, detected_ns=now, opened_ns=now, id=f"BTC/USDT|okx|bybit{i}")
                await r.xadd(ws.outbox_stream, {"data": orjson.dumps(ev)})
                await asyncio.sleep(1 / rate)  # pacing the load generator, not synchronisation
            await asyncio.wait_for(done.wait(), 60)
            stop.set()
            await task
        await r.aclose()
    await runner.cleanup()
    return lat_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=200.0, help="events per second")
    a = ap.parse_args()
    lat = sorted(asyncio.run(bench(a.events, a.rate)))
    q = statistics.quantiles(lat, n=100)
    print(f"webhooks: outbox XADD → POST received, {len(lat)} events at {a.rate:g}/s on loopback: "
          f"p50 {q[49]:.2f} ms  p90 {q[89]:.2f} ms  p99 {q[98]:.2f} ms  max {lat[-1]:.2f} ms")


if __name__ == "__main__":
    main()
