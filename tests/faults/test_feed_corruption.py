"""Fault scenarios 3 and 5 of issue 8 on the feed side: a corrupted book on one symbol of one venue.

Each case first gives the venue's book a wide spread (its best bid 0.5 % under every other venue's,
its best ask far above), then corrupts one update so that the venue shows a bid about 5 % above
every other venue's ask: a large fake spread. Scenario 3 does it on a checksum venue (OKX, the
bogus level under the true checksum) and on a sequence venue (Binance, the bogus level in an update
that follows a lost one); scenario 5 with a bid above the venue's own best ask (Bybit with no
checksum, Kraken under a checksum that includes it). Each must resync that one instrument only,
other symbols keep flowing, and the opportunity stream never names the corrupted venue and symbol.
A control then publishes the same bid for real and the detector reports it: the fake would have
been caught had it been used."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from scanner.app import Pipeline
from scanner.sim.server import SimCluster
from tests.faults.conftest import scaled
from tests.faults.feed_helpers import Key, ResyncLog, all_events, all_keys, best, naming, on_tick, stored_books
from tests.faults.report import Row
from tests.pipeline_helpers import metric, running, settings_for, until, until_event

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
SYM = "BTC/USDT"


@dataclass
class Case:
    venue: str
    faults: tuple[str, ...]  # "skip_seq", "spike", "crossed"
    reason: str  # the scanner_resyncs_total reason expected
    observed: dict[str, float] = field(default_factory=dict)
    recover_s: float = 0.0
    false_events: int = 0


async def wait_book(r: Redis, sims: SimCluster, key: Key, best_bid: Decimal, since_ns: int = 0,
                    seconds: float = 15.0) -> dict[str, Any]:
    """Wait until Redis holds ``key`` valid, received after ``since_ns``, with best bid ``best_bid``."""
    got: dict[str, Any] = {}

    async def loop() -> None:
        nonlocal got
        while True:
            got = (await stored_books(r, [key]))[key]
            if got.get("valid") and got["recv_ns"] > since_ns and got["bids"] \
                    and Decimal(got["bids"][0][0]) == best_bid:
                return
            await sims.wait_ticks(1)
    try:
        await asyncio.wait_for(loop(), seconds)
    except TimeoutError:
        pytest.fail(f"{key} never valid in Redis with best bid {best_bid}; last {got}")
    return got


async def corrupt_and_check(p: Pipeline, r: Redis, sims: SimCluster, log: ResyncLog, case: Case) -> None:
    venue, sim = case.venue, sims.venue(case.venue)
    others = [v for v in sims.venues if v != venue and not sims.venue(v).state(SYM).held]  # walking books
    market = next(m for m in sim.markets if m.symbol == SYM)
    tick = Decimal(market.tick)
    lo_bid, hi_ask = best(sims, others, SYM)
    # a wide book: best bid under every other venue's, best ask far above (5 % over the fake bid)
    bid = Decimal(on_tick(lo_bid * Decimal("0.995"), tick))
    ask_factor = Decimal("1.05") if "crossed" in case.faults else Decimal("1.12")
    ask = Decimal(on_tick(hi_ask * ask_factor, tick))
    size = "0.05"
    sims.set_book(venue, SYM, bids=[[str(bid), size], [str(bid - 10 * tick), size]],
                  asks=[[str(ask), size], [str(ask + 10 * tick), size]])
    await wait_book(r, sims, (venue, SYM), bid)
    # the bogus bid the simulator will put on top (scanner/sim/base.py take_corrupt_bid)
    ticks = int(bid / tick)
    fake = (ticks + ticks // 20) * tick if "spike" in case.faults else ask + 2 * tick
    assert fake > hi_ask * Decimal("1.04"), (fake, hi_ask)
    col = p.collectors[venue]
    inst = market.venue_id
    keys = [(v, s) for v, s in all_keys(sims) if (v, s) != (venue, SYM) and not sims.venue(v).state(s).held]
    before = await stored_books(r, keys)
    resyncs0 = metric(p, "scanner_resyncs_total", {"venue": venue, "reason": case.reason})
    logged0 = len(log.seen)
    newest = cast(list[tuple[bytes, Any]], await r.xrevrange("opportunities", count=1))
    last = newest[0][0] if newest else b"0-0"
    t0, t0_ns = time.monotonic(), time.time_ns()
    for fault in case.faults:
        if fault == "skip_seq":
            sim.skip_seq(SYM)
        else:
            sim.corrupt_level(SYM, fault)
    await until(lambda: metric(p, "scanner_resyncs_total", {"venue": venue, "reason": case.reason}) > resyncs0,
                sims, f"{venue} to detect the {case.reason}", 10)
    await until(lambda: col.books[inst].valid, sims, f"{venue} {SYM} to resync", 10)
    await wait_book(r, sims, (venue, SYM), bid, t0_ns, 10)  # back in Redis with the true best bid
    case.recover_s = time.monotonic() - t0
    # every other book kept flowing meanwhile (newer frames reached Redis)
    async def advanced() -> bool:
        now = await stored_books(r, keys)
        return all(now[k].get("valid") and now[k]["recv_ns"] > before[k]["recv_ns"] for k in keys)
    deadline = time.monotonic() + 10
    while not await advanced():
        assert time.monotonic() < deadline, "another book stopped flowing"
        await sims.wait_ticks(1)
    resyncs = metric(p, "scanner_resyncs_total", {"venue": venue, "reason": case.reason}) - resyncs0
    new = log.seen[logged0:]
    assert resyncs == 1, resyncs
    assert new == [(venue, inst, case.reason)], f"other instruments resynced too: {new}"
    # zero opportunities from the corrupt book, nor any with the fake price
    events = await all_events(r, last)
    false = naming(events, venue, SYM) + [o for o in events if Decimal(o.get("sell_vwap", "0")) >= fake]
    case.false_events = len(false)
    assert not false, f"opportunities from the corrupt {venue} book: {false}"
    # control: the same bid published for real is reported at once
    if "crossed" in case.faults:  # a real bid there needs the ask moved above it
        sims.set_book(venue, SYM, bids=[[str(fake), size]], asks=[[str(fake + 100 * tick), size]])
    else:
        sims.set_book(venue, SYM, bids=[[str(fake), size], [str(bid), size]], asks=[[str(ask), size]])
    opened = await until_event(r, last, "open", 15)
    o = opened[-1][1]
    assert (o["symbol"], o["sell_venue"], Decimal(o["sell_vwap"])) == (SYM, venue, fake), o
    # back to the wide book; the control closes
    sims.set_book(venue, SYM, bids=[[str(bid), size]], asks=[[str(ask), size]])
    await until_event(r, opened[-1][0], "close", 15)
    case.observed = {f"{venue}_resyncs_{case.reason}": resyncs, f"{venue}_other_resyncs": len(new) - 1,
                     f"{venue}_fake_bid_over_best_ask_pct": float(round((fake / hi_ask - 1) * 100, 2)),
                     f"{venue}_control_opened": 1}


async def run_cases(redis_url: str, market_cache: Path, cases: list[Case], seed: int) -> None:
    async with SimCluster(venues=("okx", "binance", "bybit", "kraken"), symbols=SYMBOLS, tick_ms=50, seed=seed,
                          okx_checksum=True) as sims:
        r = Redis.from_url(redis_url, socket_timeout=10)
        keys = all_keys(sims)
        async with running(settings_for(sims, redis_url, market_cache)) as p:
            with ResyncLog() as log:
                await until(lambda: all(b.valid for c in p.collectors.values() for b in c.books.values()), sims,
                            "every book in sync", 15)
                for _ in range(int(scaled(1, 3))):
                    for case in cases:
                        await corrupt_and_check(p, r, sims, log, case)
                        assert len(await stored_books(r, keys)) == len(keys)
        await r.aclose()


def report(row: Row, injected: str, cases: list[Case]) -> None:
    row.injected = injected
    for c in cases:
        row.observed.update(c.observed)
    row.recover_s = max(c.recover_s for c in cases)
    row.lost = sum(c.false_events for c in cases)


async def test_gap_and_checksum_resync_one_symbol_without_false_opportunity(
        redis_url: str, market_cache: Path, fault_report: Row) -> None:
    cases = [Case("okx", ("spike",), "checksum"), Case("binance", ("skip_seq", "spike"), "seq_gap")]
    await run_cases(redis_url, market_cache, cases, seed=14)
    report(fault_report, "a bid ~5 % over every other venue's ask on one symbol: under the true checksum (okx), "
                         "and after a lost update (binance); 4 venues x 3 symbols", cases)


async def test_crossed_book_resynced_never_used(redis_url: str, market_cache: Path, fault_report: Row) -> None:
    cases = [Case("bybit", ("crossed",), "crossed"), Case("kraken", ("crossed",), "crossed")]
    await run_cases(redis_url, market_cache, cases, seed=15)
    report(fault_report, "a bid above the venue's own best ask, ~5 % over every other venue's ask, on one symbol "
                         "(bybit: no checksum; kraken: under a checksum that includes it)", cases)
