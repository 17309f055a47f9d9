"""The trap scenario, end to end on the simulators (OKX, Binance, Bybit; frozen, books set by hand; a
test-local transfer table): one pipeline, one symbol per trap, and two real opportunities.

    BTC/USDT, ETH/USDT   real: buy OKX, sell Binance, routes open          → reported (open events)
    SOL/USDT             stale venue: Bybit stalls, OKX then shows a "spread" against its old book
                                                                            → stale_book (bybit)
    LINK/USDT            ticker collision: the two venues' ERC-20 contracts differ → suspect_identity
    ADA/USDT             OKX withdrawals closed                            → transfer_closed
    LTC/USDT             12.5 bps gross, 20 bps of taker fees              → below_fees
    XRP/USDT             one level of 10 XRP each side: 0.0879 USDT < 0.1  → below_min_profit
    BTC/USDC (Bybit)     76 bps under OKX's BTC/USDT bid, but another quote → never compared

Exactly the two real ids reach the Redis stream as open events; each trap's
``scanner_refusals_total{reason}`` rises. Waits are on the stream and simulator ticks, with deadlines.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from scanner import config_transfer
from scanner.app import Pipeline
from scanner.detect.detector import unusable_reason
from scanner.sim.server import SimCluster
from tests.pipeline_helpers import metric, native, next_opportunities, running, settings_for, until

REAL = {"BTC/USDT|okx|binance", "ETH/USDT|okx|binance"}
LINK_OKX, LINK_OTHER = "0x514910771af9ca656af840dff83e8264ecf986ca", "0x1111111111111111111111111111111111111111"
TABLE = {
    "okx": {"BTC": [{"network": "BTC", "deposit": "open", "withdraw": "open", "withdraw_fee": "0.0001"}],
            "ETH": [{"network": "ERC20", "deposit": "open", "withdraw": "open", "withdraw_fee": "0.002"}],
            "ADA": [{"network": "ADA", "deposit": "open", "withdraw": "closed"}],
            "LINK": [{"network": "ERC20", "deposit": "open", "withdraw": "open", "contract": LINK_OKX}]},
    "binance": {"BTC": [{"network": "BTC", "deposit": "open", "withdraw": "open"}],
                "ETH": [{"network": "ETH", "deposit": "open", "withdraw": "open"}],
                "ADA": [{"network": "ADA", "deposit": "open", "withdraw": "open"}],
                "LINK": [{"network": "ETH", "deposit": "open", "withdraw": "open", "contract": LINK_OTHER}]},
}
OKX = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "LINK/USDT", "ADA/USDT", "LTC/USDT", "XRP/USDT"]
BINANCE = ["BTC/USDT", "ETH/USDT", "LINK/USDT", "ADA/USDT", "LTC/USDT", "XRP/USDT"]
BYBIT = ["SOL/USDT", "BTC/USDC"]
BOOKS: dict[tuple[str, str], tuple[list[list[str]], list[list[str]]]] = {  # (venue, symbol): (bids, asks)
    ("okx", "BTC/USDT"): ([["64990", "1"]], [["65000", "0.5"], ["65010", "1"]]),
    ("binance", "BTC/USDT"): ([["65200", "0.3"], ["65150", "1"]], [["65210", "1"]]),
    ("okx", "ETH/USDT"): ([["2990", "1"]], [["3000", "1"]]),
    ("binance", "ETH/USDT"): ([["3010", "1"]], [["3020", "1"]]),
    ("okx", "SOL/USDT"): ([["149.9", "10"]], [["150", "10"]]),
    ("bybit", "SOL/USDT"): ([["149.95", "10"]], [["150.05", "10"]]),
    ("okx", "LINK/USDT"): ([["14.99", "100"]], [["15", "100"]]),
    ("binance", "LINK/USDT"): ([["15.2", "100"]], [["15.21", "100"]]),
    ("okx", "ADA/USDT"): ([["0.449", "1000"]], [["0.45", "1000"]]),
    ("binance", "ADA/USDT"): ([["0.455", "1000"]], [["0.456", "1000"]]),
    ("okx", "LTC/USDT"): ([["79.99", "10"]], [["80", "10"]]),
    ("binance", "LTC/USDT"): ([["80.1", "10"]], [["80.11", "10"]]),
    ("okx", "XRP/USDT"): ([["0.599", "10"]], [["0.6", "10"]]),
    ("binance", "XRP/USDT"): ([["0.61", "10"]], [["0.611", "1000"]]),
    ("bybit", "BTC/USDC"): ([["64490", "1"]], [["64500", "1"]]),
}
TRAPS = {"suspect_identity": "okx", "transfer_closed": "okx", "below_fees": "okx", "below_min_profit": "okx"}


def refused(p: Pipeline, reason: str, venue: str) -> float:
    return metric(p, "scanner_refusals_total", {"reason": reason, "venue": venue})


def was_refused(p: Pipeline, reason: str, venue: str) -> bool:
    return refused(p, reason, venue) >= 1


async def opens_until(r: Redis, ids: set[str], wait_s: float = 20.0) -> dict[str, dict[str, Any]]:
    """Read the stream from the start until an open event of every id in ``ids`` arrived."""
    seen: dict[str, dict[str, Any]] = {}
    last: bytes | str = "0"

    async def loop() -> None:
        nonlocal last
        while not ids <= set(seen):
            for eid, o in await next_opportunities(r, last, wait_s=1):
                last = eid
                if o["event"] == "open":
                    seen[o["id"]] = o
    try:
        await asyncio.wait_for(loop(), wait_s)
    except TimeoutError:
        pytest.fail(f"open events of {sorted(ids - set(seen))} never arrived; saw {sorted(seen)}")
    return seen


async def test_traps_refused_under_their_reasons_and_only_the_real_ones_reported(redis_url: str,
                                                                                  market_cache: Path) -> None:
    symbols = sorted(set(OKX + BINANCE + BYBIT))
    async with SimCluster(venues=["okx", "binance", "bybit"], symbols=symbols, tick_ms=50, seed=21) as sims:
        sims.freeze()
        for (venue, symbol), (bids, asks) in BOOKS.items():
            sims.set_book(venue, symbol, bids=bids, asks=asks)
        venues = {"okx": native(sims, "okx", symbols=OKX), "binance": native(sims, "binance", symbols=BINANCE),
                  "bybit": native(sims, "bybit", symbols=BYBIT)}
        settings = settings_for(sims, redis_url, market_cache, venues=venues, symbols=symbols)
        settings = dataclasses.replace(settings, transfers=config_transfer.parse(
            {"snapshot": "", "table": TABLE}, {"okx", "binance", "bybit"}))
        r = Redis.from_url(redis_url, socket_timeout=30)
        async with running(settings) as p:
            opened = await opens_until(r, REAL)
            btc, eth = opened["BTC/USDT|okx|binance"], opened["ETH/USDT|okx|binance"]
            assert (btc["size"], btc["profit_quote"], btc["transfer_status"]) == ("0.5", "24.91", "open")
            # 1 ETH: 3010 * 0.999 - 3000 * 1.001 = 3.99
            assert (eth["size"], eth["profit_quote"], eth["transfer_network"]) == ("1", "3.99", "ETH")
            for reason, venue in TRAPS.items():
                await until(functools.partial(was_refused, p, reason, venue), sims, f"the {reason} trap to be refused")
            det = p.detector
            await until(lambda: "bybit" in det.books.get("SOL/USDT", {}) and "okx" in det.books.get("SOL/USDT", {})
                        and "bybit" in det.books.get("BTC/USDC", {}), sims, "the Bybit books")
            # the stale venue: Bybit stops sending; once its SOL book is past max_book_age_ms, OKX's SOL ask
            # drops to 148, 131 bps under Bybit's last (stale) bid
            stale_before = refused(p, "stale_book", "bybit")
            sims.venue("bybit").stall(600)
            max_age_ns = settings.detector.max_book_age_ms * 1_000_000
            def bybit_sol_stale() -> bool:
                return unusable_reason(det.books["SOL/USDT"]["bybit"], time.time_ns(), max_age_ns) == "stale_book"

            await until(bybit_sol_stale, sims, "Bybit's SOL book to go stale")
            sims.set_book("okx", "SOL/USDT", bids=[["147.9", "10"]], asks=[["148", "10"]])
            await until(lambda: refused(p, "stale_book", "bybit") > stale_before, sims,
                        "the stale Bybit book to be refused")
            everything = await next_opportunities(r, "0", wait_s=0.5)
        await r.aclose()
    assert {o["id"] for _, o in everything if o["event"] == "open"} == REAL
    assert {o["symbol"] for _, o in everything} == {"BTC/USDT", "ETH/USDT"}  # no trap, no BTC/USDC, ever
    assert refused(p, "suspect_identity", "bybit") == 0

