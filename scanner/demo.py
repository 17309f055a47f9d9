"""``scanner demo``: the simulated venues, the full pipeline and the metrics endpoint, offline.

Uses Redis at ``SCANNER_REDIS_URL`` (or the config's URL) when it answers, else starts a
private ``redis-server``; prints each opportunity as it lands in the Redis stream; stops
on Ctrl-C or after ``--duration`` seconds and prints a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from dataclasses import replace
from decimal import Decimal
from typing import cast
from urllib.parse import urlsplit

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from scanner.app import COLLECT, DETECT, Pipeline, load_settings, run_until_signalled, setup_logging
from scanner.config import Settings
from scanner.redis_server import ensure_redis
from scanner.sim.server import SimCluster

log = logging.getLogger("scanner.demo")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="configs/demo.yaml", help="settings (default: %(default)s)")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)")
    p.add_argument("--seed", type=int, default=1, help="simulator random seed")
    p.add_argument("--quiet", action="store_true", help="log warnings only")


def main(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if settings is None:
        return 2
    setup_logging("WARNING" if args.quiet else settings.log_level)
    url = os.environ.get("SCANNER_REDIS_URL") or settings.redis.url
    try:
        url, private = ensure_redis(url)
    except RuntimeError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    settings = replace(settings, redis=replace(settings.redis, url=url))
    try:
        return run_until_signalled(lambda stop: run_demo(settings, args.seed, stop), args.duration)
    finally:
        if private is not None:
            private.stop()


def sim_ports(settings: Settings) -> dict[str, int]:
    return {name: urlsplit(v.ws_url).port or 0 for name, v in settings.venues.items()}


async def run_demo(settings: Settings, seed: int, stop: asyncio.Event) -> None:
    async with SimCluster(venues=list(settings.venues), symbols=list(settings.symbols), host="127.0.0.1",
                          ports=sim_ports(settings), seed=seed) as sims:
        for name in settings.venues:
            print(f"simulated {name}: {sims.url(name)}  rest {sims.rest_url(name)}", flush=True)
        pipeline = Pipeline(settings, {COLLECT, DETECT})
        printer = asyncio.create_task(print_opportunities(settings, stop))
        base = f"http://{settings.metrics.host}:{settings.metrics.port}"
        web = f"web view: {base}/   " if settings.web.enabled else ""
        print(f"{web}metrics: {base}/metrics   redis: {settings.redis.url}   (Ctrl-C to stop)", flush=True)
        try:
            await pipeline.run(stop)
        finally:
            printer.cancel()
        print(f"demo: {pipeline.sink.emitted} opportunity events emitted, {pipeline.store.writes} book writes",
              flush=True)


async def print_opportunities(settings: Settings, stop: asyncio.Event) -> None:
    redis = Redis.from_url(settings.redis.url)
    last: str | bytes = "$"
    try:
        while not stop.is_set():
            try:
                got = cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]],
                           await redis.xread({settings.redis.stream: last}, block=1000, count=100))
            except (RedisError, OSError) as exc:
                log.warning("demo: cannot read the opportunity stream: %s", exc)
                await asyncio.sleep(1)
                continue
            for _stream, entries in got:
                for entry_id, fields in entries:
                    last = entry_id
                    print(format_opportunity(orjson.loads(fields[b"data"])), flush=True)
    finally:
        await redis.aclose()


def _num(s: str, places: int) -> str:
    return f"{Decimal(s):,.{places}f}"


def format_opportunity(o: dict[str, object]) -> str:
    """``OPEN BTC/USDT buy okx 64,210.1 → sell binance 64,390.0, 0.42 BTC, net +18.3 bps, +49.80 USDT, ...``;
    a close ends with ``lasted 1.2 s, peak +18.30 bps``."""
    base, quote = str(o["symbol"]).split("/")
    event = str(o.get("event", "open"))
    tail = ""
    if event == "close":
        tail = (f", lasted {float(str(o.get('duration_ms', 0))) / 1e3:.1f} s, "
                f"peak {Decimal(str(o.get('peak_net_bps') or o['net_bps'])):+.2f} bps")
    return (f"{event.upper():<6} {o['symbol']} buy {o['buy_venue']} {_num(str(o['buy_vwap']), 6)} "
            f"→ sell {o['sell_venue']} "
            f"{_num(str(o['sell_vwap']), 6)}, {_num(str(o['size']), 6)} {base}, net {Decimal(str(o['net_bps'])):+.2f}"
            f" bps, {Decimal(str(o['profit_quote'])):+,.4f} {quote}, books {float(str(o['buy_book_age_ms'])):.0f}/"
            f"{float(str(o['sell_book_age_ms'])):.0f} ms old{tail}")
