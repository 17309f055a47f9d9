"""Runs simulated venues: :class:`SimCluster` starts several :class:`SimVenue` apps that share
one :class:`MarketWalk`, ticks them together, and exposes their URLs, books and fault
switches to Python (tests run it in-process); each venue also takes ``POST /sim/*`` control
requests on its own port for out-of-process use.

    async with SimCluster(venues=["okx", "binance"], symbols=["BTC/USDT"], seed=1) as cluster:
        cluster.url("okx")            # ws://127.0.0.1:PORT/ws/v5/public
        cluster.venue("okx").skip_seq("BTC/USDT")

``tick_ms=0`` disables the clock: the market then moves only on ``cluster.step()``.

HTTP control, on every venue's own port (JSON bodies; 400 with ``{"ok": false, "error"}``):
``POST /sim/fault {"fault": "drop"|"garbage"|"skip_seq"|"corrupt_checksum"|"corrupt_level"|"stall"|
"snapshot_lag"|"notice"|"shutdown"|"seq_reset", "symbol", "count", "mode", "seconds", "ticks", "delay",
"clean"}``, ``POST /sim/book {"symbol", "bids", "asks", "hold"}``, ``GET /sim/book?symbol=&depth=``,
``POST /sim/release {"symbol"}``, ``POST /sim/freeze {"frozen"}``, ``GET /sim/requests``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from scanner.sim.base import FaultUnsupported, RequestRecord, SimConfig, SimConn, SimVenue
from scanner.sim.binance import BinanceVenue
from scanner.sim.bitget import BitgetVenue
from scanner.sim.bybit import BybitVenue
from scanner.sim.coinbase import CoinbaseVenue
from scanner.sim.gate import GateVenue
from scanner.sim.htx import HtxVenue
from scanner.sim.hyperliquid import HyperliquidVenue
from scanner.sim.kraken import KrakenVenue
from scanner.sim.kucoin import KucoinVenue
from scanner.sim.market import MarketWalk, WalkParams, default_symbols
from scanner.sim.mexc import MexcVenue
from scanner.sim.okx import OkxVenue

__all__ = [
    "VENUE_CLASSES", "FaultUnsupported", "RequestRecord", "SimCluster", "SimConfig", "SimConn", "SimVenue",
]

log = logging.getLogger(__name__)

VENUE_CLASSES: dict[str, type[SimVenue[Any]]] = {
    "okx": OkxVenue,
    "binance": BinanceVenue,
    "bybit": BybitVenue,
    "coinbase": CoinbaseVenue,
    "kraken": KrakenVenue,
    "gate": GateVenue,
    "kucoin": KucoinVenue,
    "bitget": BitgetVenue,
    "htx": HtxVenue,
    "mexc": MexcVenue,
    "hyperliquid": HyperliquidVenue,
}


class SimCluster:
    """Several simulated venues over one market walk, started and stopped together."""

    def __init__(
        self,
        venues: Sequence[str] = ("okx", "binance"),
        symbols: Sequence[str] | None = None,
        host: str = "127.0.0.1",
        ports: Mapping[str, int] | None = None,
        seed: int = 1,
        tick_ms: int = 100,
        okx_checksum: bool = False,
        config: SimConfig | None = None,
        walk_params: WalkParams | None = None,
        markets_dir: Path | None = None,
        prices: Mapping[str, float] | None = None,
        stagger_ms: int = 0,
    ) -> None:
        """``stagger_ms`` > 0 spreads each tick's pushes over the tick in phases of that length
        (each book at its own phase, as live venues' streams are), instead of every book at once."""
        unknown = [v for v in venues if v not in VENUE_CLASSES]
        if unknown:
            raise ValueError(f"no simulator for {unknown}; have {sorted(VENUE_CLASSES)}")
        cfg = config or SimConfig()
        if okx_checksum:
            cfg = dataclasses.replace(cfg, okx_checksum=True)
        self.config = cfg
        self.symbols = list(symbols) if symbols else default_symbols(venues, markets_dir)
        self.tick_ms = tick_ms
        self.stagger_ms = stagger_ms
        self.walk = MarketWalk(self.symbols, list(venues), seed, tick_ms or 100, walk_params, prices)
        self.venues: dict[str, SimVenue[Any]] = {
            v: VENUE_CLASSES[v](self.walk, self.symbols, host=host, port=(ports or {}).get(v, 0), seed=seed,
                                config=cfg, markets_dir=markets_dir)
            for v in venues
        }
        self.ticks = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._tasks: list[asyncio.Task[None]] = []

    # ----- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        for v in self.venues.values():
            await v.start()
        if self.tick_ms > 0:
            self._tasks.append(asyncio.create_task(self._clock()))
        self._tasks.append(asyncio.create_task(self._housekeeping()))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        for v in self.venues.values():
            await v.stop()

    async def __aenter__(self) -> SimCluster:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # ----- access ---------------------------------------------------------------------
    def venue(self, name: str) -> SimVenue[Any]:
        return self.venues[name]

    __getitem__ = venue

    @property
    def okx(self) -> OkxVenue:
        v = self.venues["okx"]
        assert isinstance(v, OkxVenue)
        return v

    @property
    def binance(self) -> BinanceVenue:
        v = self.venues["binance"]
        assert isinstance(v, BinanceVenue)
        return v

    def url(self, name: str) -> str:
        """The venue's public WebSocket URL (OKX ``/ws/v5/public``, Binance ``/stream``)."""
        return self.venues[name].url()

    def rest_url(self, name: str) -> str:
        return self.venues[name].rest_url()

    def book(self, venue: str, symbol: str, depth: int | None = None) -> tuple[
            list[tuple[str, str]], list[tuple[str, str]]]:
        return self.venues[venue].book(symbol, depth)

    def seq(self, venue: str, symbol: str) -> int:
        return self.venues[venue].seq(symbol)

    def set_book(self, venue: str, symbol: str, bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]],
                 hold: bool = True) -> None:
        self.venues[venue].set_book(symbol, bids, asks, hold)

    @property
    def frozen(self) -> bool:
        return self.walk.frozen

    def freeze(self, frozen: bool = True) -> None:
        """Stop (or restart) every book moving; hand-set books and faults still go out."""
        self.walk.frozen = frozen

    # ----- the clock ------------------------------------------------------------------
    def step(self, n: int = 1) -> None:
        """Advance the market ``n`` ticks now and push the resulting updates."""
        for _ in range(n):
            self.walk.step()
            now_ms, mono = int(time.time() * 1000), time.monotonic()
            for v in self.venues.values():
                v.tick(now_ms, mono)
            self._ticked()

    def _ticked(self) -> None:
        self.ticks += 1
        if self._waiters:
            keep = []
            for target, fut in self._waiters:
                if self.ticks >= target:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    keep.append((target, fut))
            self._waiters = keep

    async def wait_ticks(self, n: int = 1) -> None:
        """Wait until ``n`` more ticks have gone out (wrap in ``asyncio.wait_for`` for a deadline)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self.ticks + n, fut))
        await fut

    async def _clock(self) -> None:
        loop = asyncio.get_running_loop()
        slots = max(1, self.tick_ms // self.stagger_ms) if self.stagger_ms > 0 else 1
        period = self.tick_ms / 1000.0 / slots
        due, slot = loop.time(), 0
        while True:
            due += period
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -10 * period * slots:  # far behind (debugger, overload): do not burst
                due = loop.time()
            try:
                if slots == 1:
                    self.step()
                    continue
                if slot == 0:
                    self.walk.step()
                now_ms, mono = int(time.time() * 1000), time.monotonic()
                for v in self.venues.values():
                    v.tick(now_ms, mono, slot, slots)
                slot = (slot + 1) % slots
                if slot == 0:
                    self._ticked()
            except Exception:
                log.exception("simulator tick failed")

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.config.housekeeping_s)
            mono = time.monotonic()
            for v in self.venues.values():
                try:
                    v.housekeeping(mono)
                except Exception:
                    log.exception("simulator housekeeping failed")
