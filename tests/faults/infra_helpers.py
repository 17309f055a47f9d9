"""Shared helpers of the infrastructure fault scenarios (issue 8, scenarios 6-9: Redis outages, webhook
receiver faults, REST snapshot limits, restart): a spy on the opportunity sink that records every event
the detector handed over (and whether Redis took it), event keys for matching deliveries, and a book
toggle that makes one opportunity open and close on demand.

Waiting is on conditions with deadlines, never on sleeps."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from scanner.app import Pipeline
from scanner.model import Opportunity
from scanner.sim.server import SimCluster
from tests.webhook_helpers import Receiver

SYMBOL = "BTC/USDT"  # held (hand-set) on both venues: toggled to open and close one opportunity
WALKING = "ETH/USDT"  # left to the market walk: its seq keeps advancing
OPEN_OKX: dict[str, list[list[str]]] = {"bids": [["64990", "1"]], "asks": [["65000", "0.5"], ["65010", "1"]]}
BINANCE_RICH: dict[str, list[list[str]]] = {"bids": [["65200", "0.3"], ["65150", "1"]], "asks": [["65210", "1"]]}
BINANCE_FLAT: dict[str, list[list[str]]] = {"bids": [["64900", "1"]], "asks": [["65210", "1"]]}

Key = tuple[str, str, int]  # (opportunity id, event, detected_ns): one event, whatever the delivery


def key_of(ev: dict[str, Any]) -> Key:
    return str(ev["id"]), str(ev["event"]), int(ev["detected_ns"])


@dataclass
class SinkSpy:
    """Every event the detector handed to the sink: ``written`` (Redis took the pipeline) and ``failed``."""

    written: list[Key] = field(default_factory=list)
    failed: list[Key] = field(default_factory=list)

    def install(self, p: Pipeline, monkeypatch: pytest.MonkeyPatch) -> SinkSpy:
        orig = p.sink._done

        def done(opps: list[Opportunity], payloads: list[bytes], error: BaseException | None,
                 written_ns: int) -> None:
            keys = [key_of(orjson.loads(pl)) for pl in payloads]
            (self.failed if error is not None else self.written).extend(keys)
            orig(opps, payloads, error, written_ns)

        monkeypatch.setattr(p.sink, "_done", done)
        return self

    @property
    def all(self) -> set[Key]:
        return set(self.written) | set(self.failed)


def delivered(rx: Receiver) -> dict[Key, int]:
    """Event key → how many 2xx deliveries the receiver answered for it."""
    out: dict[Key, int] = {}
    for a in rx.arrivals:
        if 200 <= a.status < 300:
            k = key_of(orjson.loads(a.body)["data"])
            out[k] = out.get(k, 0) + 1
    return out


def set_open(sims: SimCluster, is_open: bool) -> None:
    """Hand-set both venues' SYMBOL books so that buying on OKX and selling on Binance pays (or not)."""
    binance = BINANCE_RICH if is_open else BINANCE_FLAT
    sims.set_book("okx", SYMBOL, OPEN_OKX["bids"], OPEN_OKX["asks"])
    sims.set_book("binance", SYMBOL, binance["bids"], binance["asks"])


async def toggle(sims: SimCluster, stop: asyncio.Event, ticks: int) -> None:
    """Open and close the SYMBOL opportunity every ``ticks`` simulator ticks until stopped, then close it."""
    is_open = False
    while not stop.is_set():
        is_open = not is_open
        set_open(sims, is_open)
        await sims.wait_ticks(ticks)
    set_open(sims, False)
