"""``scanner simulate``: serve simulated venues on local ports until Ctrl-C / SIGTERM (or for
``--duration`` seconds), printing each venue's WebSocket and REST URLs."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from scanner.sim.server import VENUE_CLASSES, SimCluster

# Fixed local ports per simulated venue (configs/demo.yaml points the collectors at them).
DEFAULT_PORTS: dict[str, int] = {
    "okx": 8701, "binance": 8702, "bybit": 8703, "coinbase": 8704, "kraken": 8705, "gate": 8706, "kucoin": 8707,
    "bitget": 8708, "htx": 8709, "hyperliquid": 8710, "mexc": 8711,
}


def _csv(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _port(text: str) -> tuple[str, int]:
    venue, _, port = text.partition("=")
    try:
        return venue.strip(), int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected VENUE=PORT, got {text!r}") from None


def _price(text: str) -> tuple[str, float]:
    symbol, _, price = text.partition("=")
    try:
        return symbol.strip(), float(price)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SYMBOL=PRICE, got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--venues", type=_csv, default=["okx", "binance"],
                   help="comma list, or 'all' (default okx,binance)")
    p.add_argument("--symbols", type=_csv, default=None,
                   help="comma list of unified symbols, e.g. BTC/USDT,ETH/USDT (default: all in configs/markets)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, action="append", default=[], metavar="VENUE=PORT",
                   help="listen port of one venue (repeatable; 0 = any free port; defaults: okx=8701, "
                        "binance=8702, ... mexc=8711 as in configs/demo.yaml)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tick-ms", type=int, default=100, help="market tick and update cadence")
    p.add_argument("--okx-checksum", action="store_true", help="real CRC32 checksums instead of 0")
    p.add_argument("--stagger-ms", type=int, default=0,
                   help="spread each tick's pushes over the tick in phases of this many ms (0: all books at once)")
    p.add_argument("--markets-dir", type=Path, default=None,
                   help="venue market files (<venue>.json) to serve instead of configs/markets")
    p.add_argument("--price", type=_price, action="append", default=[], metavar="SYMBOL=PRICE",
                   help="starting mid of a symbol without a built-in one (repeatable)")
    p.add_argument("--duration", type=float, default=0.0, help="seconds to run; 0 = until Ctrl-C/SIGTERM")


async def serve(args: argparse.Namespace) -> int:
    if args.venues == ["all"]:
        args.venues = list(VENUE_CLASSES)
    unknown = [v for v in args.venues if v not in VENUE_CLASSES]
    if unknown:
        print(f"simulate: no simulator for {', '.join(unknown)} (have {', '.join(VENUE_CLASSES)})", file=sys.stderr)
        return 2
    ports = {**DEFAULT_PORTS, **dict(args.port)}
    cluster = SimCluster(venues=args.venues, symbols=args.symbols, host=args.host, ports=ports, seed=args.seed,
                         tick_ms=args.tick_ms, okx_checksum=args.okx_checksum, stagger_ms=args.stagger_ms,
                         markets_dir=args.markets_dir, prices=dict(args.price) or None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with cluster:
        for name, v in cluster.venues.items():
            print(f"{name}: ws={v.url()} rest={v.rest_url()} symbols={len(v.states)}", flush=True)
        if args.duration > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), args.duration)
        else:
            await stop.wait()
    return 0


def main(args: argparse.Namespace) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but optional here
        return asyncio.run(serve(args))
    return uvloop.run(serve(args))
