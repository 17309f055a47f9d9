"""The generic ccxt.pro adapter (``ccxtpro:<id>``) against our OKX and Binance simulators, through
the full pipeline (ccxt.pro client → BookStore → real Redis → detector). ccxt is pointed at the
simulators with its ``urls`` and pre-seeded markets (``set_markets``): nothing leaves the machine.

Waiting is on conditions checked between simulator ticks or on Redis pub/sub messages, each
under an ``asyncio.wait_for`` deadline; never bare sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from redis.asyncio import Redis

from scanner.book.l2 import L2Book
from scanner.config import from_dict
from scanner.feed.ccxtpro import CcxtProCollector
from scanner.markets import Market
from scanner.sim.server import SimCluster
from scanner.sinks.metrics import Metrics
from scanner.store.schema import book_key, decode_book
from tests.pipeline_helpers import ccxt_market, metric, native, running, settings_for, until

SYMBOLS = ["BTC/USDT", "ETH/USDT"]


# ----- helpers -------------------------------------------------------------------------------------
def ccxt_markets(markets: list[Market]) -> list[dict[str, Any]]:
    """ccxt unified market dicts for a simulator's instruments (read from configs/markets)."""
    return [ccxt_market(m, lowercaseId=m.venue_id.lower(), linear=None, inverse=None) for m in markets]


def ccxt_venue(sims: SimCluster, venue: str, **extra: Any) -> dict[str, Any]:
    """Settings for ``ccxtpro:<venue>`` pointed at the simulator.

    OKX: ccxt appends ``/public`` to ``urls.api.ws``. Binance spot: ccxt connects to
    ``urls.api.ws.spot + "/" + <stream index>`` (``.../ws/0``) and fetches the REST snapshot from
    ``urls.api.public + "/depth"``. Our simulator refuses ``/ws/0`` (``0`` is no stream name), so
    the base ends in ``/ws?s=``: the index lands in a query parameter the simulator ignores."""
    port = sims.venue(venue).port
    if venue == "okx":
        urls: dict[str, Any] = {"api": {"ws": f"ws://127.0.0.1:{port}/ws/v5"}}
    else:
        urls = {"api": {"ws": {"spot": f"ws://127.0.0.1:{port}/ws?s="}, "public": f"{sims.rest_url(venue)}/api/v3"}}
    return {"options": {"urls": urls}, "markets": ccxt_markets(sims.venue(venue).markets), **extra}


class Stored:
    """Reads ``book:{SYM}:<venue>`` from Redis; ``last`` keeps the latest payload read."""

    def __init__(self, r: Redis, symbol: str, venue: str) -> None:
        self.r, self.key = r, book_key(symbol, venue)
        self.last: dict[str, Any] = {}

    async def read(self) -> dict[str, Any]:
        raw = await self.r.get(self.key)
        self.last = orjson.loads(raw) if raw is not None else {}
        return self.last


async def wait_stored(sims: SimCluster, stored: Stored, cond: Callable[[dict[str, Any]], bool], what: str,
                      seconds: float = 20.0) -> dict[str, Any]:
    async def loop() -> dict[str, Any]:
        while not cond(await stored.read()):
            await sims.wait_ticks(1)
        return stored.last
    try:
        return await asyncio.wait_for(loop(), seconds)
    except TimeoutError:
        pytest.fail(f"timed out after {seconds}s waiting for {what}; last payload: {stored.last}")


def same_levels(stored: list[list[str]], sim: list[tuple[str, str]]) -> bool:
    return [(Decimal(p), Decimal(q)) for p, q in stored] == [(Decimal(p), Decimal(q)) for p, q in sim]


async def assert_book_matches_simulator(sims: SimCluster, r: Redis, venue: str, symbol: str, depth: int) -> None:
    """Freeze the market, wait until the stored ccxt book reached the simulator's last sequence
    number, and compare the top ``depth`` levels exactly (as decimals)."""
    sims.freeze()
    target = sims.seq(venue, symbol)
    stored = Stored(r, symbol, f"ccxtpro:{venue}")
    got = await wait_stored(sims, stored, lambda d: d.get("valid") is True and d.get("seq") == target,
                            f"{symbol} at seq {target} in Redis")
    bids, asks = sims.book(venue, symbol, depth)
    assert len(got["bids"]) == len(bids) == depth
    assert same_levels(got["bids"], bids)
    assert same_levels(got["asks"], asks)
    assert got["integrity"] == "ccxt" and got["venue"] == f"ccxtpro:{venue}" and got["exch_ms"] > 0
    sims.freeze(False)


class MarkSink:
    """Records which symbols were marked valid."""

    def __init__(self) -> None:
        self.valid: set[str] = set()

    def mark(self, venue: str, symbol: str, book: L2Book) -> None:
        self.valid.add(symbol)

    def mark_invalid(self, venue: str, symbol: str) -> None:
        self.valid.discard(symbol)

    def set_integrity(self, venue: str, integrity: str) -> None:
        pass


async def test_per_symbol_watch_when_the_exchange_lacks_watch_for_symbols() -> None:
    async with SimCluster(venues=["okx"], symbols=SYMBOLS, tick_ms=50, seed=10) as sims:
        v = ccxt_venue(sims, "okx")
        v["options"]["has"] = {"watchOrderBookForSymbols": False}  # ccxt deep-merges it into exchange.has
        s = from_dict({"symbols": SYMBOLS, "venues": {"ccxtpro:okx": v}}, {}).ccxt_venues["ccxtpro:okx"]
        sink, stop = MarkSink(), asyncio.Event()
        c = CcxtProCollector(s, sink, Metrics())
        task = asyncio.create_task(c.run(stop))
        try:
            await until(lambda: sink.valid == set(SYMBOLS), sims,
                        "both symbols through watch_order_book", seconds=20)
            assert c.watch_loops == 2 and c.exchange.has["watchOrderBookForSymbols"] is False
            assert all(c.valid.values()) and c.errors == 0
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)


# ----- the pipeline against the simulators -------------------------------------------------------
async def test_ccxt_okx_books_land_in_redis_and_survive_gap_and_disconnect(redis_url: str,
                                                                          market_cache: Path) -> None:
    async with SimCluster(venues=["okx"], symbols=SYMBOLS, tick_ms=50, seed=11) as sims:
        r = Redis.from_url(redis_url, socket_timeout=30)
        s = settings_for(sims, redis_url, market_cache, venues={"ccxtpro:okx": ccxt_venue(sims, "okx", depth=20)})
        async with running(s) as p:
            c = p.ccxt_collectors["ccxtpro:okx"]
            await until(lambda: all(c.valid.values()) and len(c.valid) == 2, sims, "both ccxt books valid", seconds=20)
            for sym in SYMBOLS:
                await assert_book_matches_simulator(sims, r, "okx", sym, 20)
            assert [q.path for q in sims.okx.requests] == ["/ws/v5/public"]  # one websocket, no REST

            # a lost update: ccxt's seqId check rejects the watch, we invalidate and it resubscribes
            labels = {"venue": "ccxtpro:okx", "reason": "seq_gap"}
            sims.okx.skip_seq("BTC/USDT")
            await until(lambda: metric(p, "scanner_resyncs_total", labels) >= 1, sims, "the ccxt nonce error",
                        seconds=20)
            await until(lambda: c.valid["BTC/USDT"], sims, "BTC/USDT valid again", seconds=20)
            await assert_book_matches_simulator(sims, r, "okx", "BTC/USDT", 20)

            # a dropped connection: every book invalid in Redis, then valid again after ccxt reconnects
            pubsub = r.pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(s.redis.channel)
            went_invalid: set[str] = set()
            recovered: set[str] = set()

            async def follow() -> None:
                while recovered != set(SYMBOLS):
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None:
                        continue
                    view = decode_book(msg["data"])
                    if view.venue != "ccxtpro:okx":
                        continue
                    if not view.valid:
                        went_invalid.add(view.symbol)
                    elif view.symbol in went_invalid:
                        recovered.add(view.symbol)  # valid again, after it was published invalid

            sims.okx.drop()
            try:
                await asyncio.wait_for(follow(), 20)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            assert went_invalid == recovered == set(SYMBOLS)
            assert metric(p, "scanner_reconnects_total", {"venue": "ccxtpro:okx", "reason": "network"}) >= 1
            assert metric(p, "scanner_resyncs_total", {"venue": "ccxtpro:okx", "reason": "reconnect"}) >= 1
            for sym in SYMBOLS:
                await assert_book_matches_simulator(sims, r, "okx", sym, 20)
        await r.aclose()


async def test_ccxt_binance_bridges_rest_snapshot_and_lands_in_redis(redis_url: str, market_cache: Path) -> None:
    async with SimCluster(venues=["binance"], symbols=SYMBOLS, tick_ms=50, seed=12) as sims:
        r = Redis.from_url(redis_url, socket_timeout=30)
        s = settings_for(sims, redis_url, market_cache, venues={"ccxtpro:binance": ccxt_venue(sims, "binance")})
        async with running(s) as p:
            c = p.ccxt_collectors["ccxtpro:binance"]
            await until(lambda: all(c.valid.values()) and len(c.valid) == 2, sims, "both ccxt books valid", seconds=20)
            for sym in SYMBOLS:
                await assert_book_matches_simulator(sims, r, "binance", sym, 20)
            paths = [q.path for q in sims.binance.requests]
            assert paths[0] == "/ws?s=/0"  # ccxt's own stream url, under our simulator's /ws
            assert sorted(q for q in paths if q.startswith("/api/v3/depth")) == [
                "/api/v3/depth?symbol=BTCUSDT&limit=1000", "/api/v3/depth?symbol=ETHUSDT&limit=1000"]
            native_labels = {"venue": "ccxtpro:binance", "symbol": "BTC/USDT"}
            assert metric(p, "scanner_book_valid", native_labels) == 1.0
        await r.aclose()


async def test_opportunity_between_native_and_ccxt_venue_carries_integrity(redis_url: str,
                                                                           market_cache: Path) -> None:
    async with SimCluster(venues=["okx", "binance"], symbols=["BTC/USDT"], tick_ms=50, seed=13) as sims:
        sims.freeze()
        sims.set_book("okx", "BTC/USDT", bids=[["64990", "1"]], asks=[["65000", "0.5"], ["65010", "1"]])
        sims.set_book("binance", "BTC/USDT", bids=[["65500", "0.3"], ["65150", "1"]], asks=[["65600", "1"]])
        r = Redis.from_url(redis_url, socket_timeout=30)
        venues = {"okx": native(sims, "okx"), "ccxtpro:binance": ccxt_venue(sims, "binance")}
        async with running(settings_for(sims, redis_url, market_cache, venues=venues)):
            got = cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]],
                       await r.xread({"opportunities": "0"}, block=20_000, count=10))
            raw = await r.get(book_key("BTC/USDT", "okx"))
        await r.aclose()
    assert got, "no opportunity reached the Redis stream"
    o = orjson.loads(got[0][1][0][1][b"data"])
    # buy 0.3 on OKX at 65000 (x 1.001 = 65065), sell on ccxt Binance at 65500 (x 0.998, ccxt's default fee,
    # = 65369): 304 per unit, 46.72 bps; the next bid 65150 x 0.998 = 65019.7 < 65065 stops the walk.
    assert (o["buy_venue"], o["sell_venue"], o["size"]) == ("okx", "ccxtpro:binance", "0.3")
    assert (o["buy_fee"], o["sell_fee"], o["profit_quote"]) == ("0.001", "0.002", "91.2")
    assert (o["buy_integrity"], o["sell_integrity"]) == ("native", "ccxt")
    assert raw is not None and decode_book(raw).integrity == "native"
