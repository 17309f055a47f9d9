"""End-to-end latency: frame received → opportunity written to the Redis stream.

The simulators run in their own process (``scanner simulate``) at a realistic 100 ms
cadence per book; the pipeline (collectors → Redis → detector → stream) runs here against
a private Redis. Each opportunity carries its triggering frame's receive time (ns); the
sink stamps when Redis acknowledged the XADD. To get a sample on every book update the
threshold is set so every evaluated pair qualifies (``min_net_bps`` far below zero,
``emit_interval_ms: 0``) — the same code path a real opportunity takes.
Prints p50/p90/p99/max, book updates/s, CPU and RSS of this process.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from decimal import Decimal

import orjson
from aiohttp import web

from scanner.app import COLLECT, DETECT, Pipeline
from scanner.config import from_dict
from scanner.redis_server import PrivateRedis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"simulator port {port} did not open")


def _pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=1000)[int(q * 1000) - 1] if len(xs) > 1 else (xs[0] if xs else 0.0)


async def _receiver(lat_ms: list[float]) -> tuple[web.AppRunner, int]:
    """A local webhook receiver noting, per POST, frame receive time (``data.recv_ns``) → arrival."""

    async def handle(request: web.Request) -> web.Response:
        now = time.time_ns()
        body = orjson.loads(await request.read())
        lat_ms.append((now - int(body["data"]["recv_ns"])) / 1e6)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, int(runner.addresses[0][1])


async def measure(seconds: float, symbols: list[str], redis_url: str, okx_port: int,
                  binance_port: int, webhook: bool = False) -> dict[str, float]:
    hook_ms: list[float] = []
    hook_runner, env, hooks = None, {}, {}
    if webhook:  # one signed json target; the receiver measures frame received -> POST received
        hook_runner, port = await _receiver(hook_ms)
        env = {"SCANNER_BENCH_WEBHOOK_SECRET": "whsec_" + base64.b64encode(os.urandom(24)).decode()}
        hooks = {"webhooks": {"targets": {"bench": {
            "url": f"http://127.0.0.1:{port}/hook", "secret_env": "SCANNER_BENCH_WEBHOOK_SECRET",
            "events": ["open", "update"], "max_in_flight": 32}}}}
    settings = from_dict({
        "symbols": symbols,
        "venues": {
            "okx": {"ws_url": f"ws://127.0.0.1:{okx_port}/ws/v5/public", "rest_url": f"http://127.0.0.1:{okx_port}"},
            "binance": {"ws_url": f"ws://127.0.0.1:{binance_port}/stream",
                        "rest_url": f"http://127.0.0.1:{binance_port}"},
        },
        "redis": {"url": redis_url},
        "detector": {"min_net_bps": -10000, "min_profit_quote": -1e12, "emit_interval_ms": 0,
                     "max_book_age_ms": 5000},
        "metrics": {"port": 0},
        "markets": {"refresh": True},
        **hooks,
    }, env)
    settings = replace(settings, detector=replace(settings.detector, max_notional_quote=Decimal(1000)))
    pipeline = Pipeline(settings, {COLLECT, DETECT})
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    await asyncio.sleep(3)  # warm-up: connect, snapshots, first books (bench pacing, not a test)
    pipeline.sink.latencies_ns.clear()
    hook_ms.clear()
    writes0, cpu0, t0 = pipeline.store.writes, time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    lat = [x / 1e6 for x in pipeline.sink.latencies_ns]
    elapsed = time.monotonic() - t0
    writes, cpu = pipeline.store.writes - writes0, time.process_time() - cpu0
    hooks_seen = list(hook_ms)
    stop.set()
    await task
    if hook_runner is not None:
        await hook_runner.cleanup()
    if not lat:
        raise RuntimeError("no opportunities were emitted; is the simulator running?")
    out = {
        "samples": len(lat), "p50_ms": _pct(lat, 0.5), "p90_ms": _pct(lat, 0.9), "p99_ms": _pct(lat, 0.99),
        "max_ms": max(lat), "book_writes_per_s": writes / elapsed, "cpu_pct": 100 * cpu / elapsed,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if webhook:
        if not hooks_seen:
            raise RuntimeError("no webhook POST arrived")
        out.update(webhook_posts=len(hooks_seen), webhook_p50_ms=_pct(hooks_seen, 0.5),
                   webhook_p99_ms=_pct(hooks_seen, 0.99), webhook_max_ms=max(hooks_seen))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--symbols", default="BTC/USDT,ETH/USDT,SOL/USDT,XRP/USDT,DOGE/USDT,ADA/USDT,LTC/USDT,LINK/USDT,"
                                         "AVAX/USDT,DOT/USDT,TRX/USDT,ETH/BTC")
    ap.add_argument("--tick-ms", type=int, default=100)
    ap.add_argument("--webhook", action="store_true",
                    help="also deliver every event to a local signed json webhook: frame received -> POST received")
    args = ap.parse_args()
    symbols = args.symbols.split(",")
    okx_port, binance_port = _free_port(), _free_port()
    sim = subprocess.Popen([sys.executable, "-m", "scanner", "simulate", "--venues", "okx,binance", "--symbols",
                            args.symbols, "--port", f"okx={okx_port}", "--port", f"binance={binance_port}",
                            "--tick-ms", str(args.tick_ms)], stdout=subprocess.DEVNULL)
    try:
        _wait_port(okx_port, time.monotonic() + 20)
        _wait_port(binance_port, time.monotonic() + 20)
        with PrivateRedis() as redis:
            import uvloop

            res = uvloop.run(measure(args.seconds, symbols, redis.url, okx_port, binance_port, args.webhook))
    finally:
        sim.terminate()
        sim.wait(10)
    print(f"end-to-end, 2 venues x {len(symbols)} symbols @ {args.tick_ms} ms, {args.seconds:.0f} s: "
          f"p50 {res['p50_ms']:.3f} ms  p90 {res['p90_ms']:.3f} ms  p99 {res['p99_ms']:.3f} ms  "
          f"max {res['max_ms']:.2f} ms  ({res['samples']} samples, {res['book_writes_per_s']:.0f} book writes/s, "
          f"cpu {res['cpu_pct']:.0f}%, rss {res['rss_mb']:.0f} MB)")
    if args.webhook:
        print(f"frame received -> webhook POST received: p50 {res['webhook_p50_ms']:.3f} ms  "
              f"p99 {res['webhook_p99_ms']:.3f} ms  max {res['webhook_max_ms']:.2f} ms  "
              f"({res['webhook_posts']:.0f} POSTs)")
    print(json.dumps({"bench": "e2e", **{k: round(v, 4) for k, v in res.items()}}))


if __name__ == "__main__":
    main()
