"""HTX end to end: the simulator + the real pipeline (collector, Redis, detector) in-process, and
ccxt.pro's ``htx`` client pointed at the simulator. Waiting is on simulator ticks or frames with
deadlines, never on bare sleeps."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import ccxt.pro
import orjson
from redis.asyncio import Redis

from scanner.feed.collector import VenueCollector
from scanner.sim.htx import HtxKnobs, HtxVenue
from scanner.sim.server import SimCluster, SimConfig
from scanner.store.schema import book_key
from tests.pipeline_helpers import as_floats, book_lands_in_redis, ccxt_market, metric, running, settings_for, until

SYMBOLS = ["BTC/USDT", "ETH/USDT"]


def htx(sims: SimCluster) -> HtxVenue:
    v = sims.venue("htx")
    assert isinstance(v, HtxVenue)
    return v


async def lands_in_redis(r: Redis, sims: SimCluster, col: VenueCollector, symbol: str) -> dict[str, Any]:
    """Redis and the collector hold the simulator's last ``mbp.150`` state of ``symbol`` (its top 20)."""
    venue, inst = htx(sims), symbol.replace("/", "").lower()
    return await book_lands_in_redis(r, sims, col, "htx", symbol, inst, lambda: venue.view_seq(inst, 150),
                                     lambda: venue.book(symbol, 20), "seqNum")


async def test_htx_books_reach_redis_keepalive_holds_and_resyncs_heal(redis_url: str, market_cache: Path) -> None:
    async with SimCluster(venues=["htx"], symbols=SYMBOLS, tick_ms=50, seed=8,
                          config=SimConfig(housekeeping_s=0.02)) as sims:
        venue = htx(sims)
        venue.knobs = HtxKnobs(ping_interval_s=0.1)
        async with running(settings_for(sims, redis_url, market_cache)) as p:
            r = Redis.from_url(redis_url, socket_timeout=10)
            col = p.collectors["htx"]
            await until(lambda: all(b.valid for b in col.books.values()), sims, "the HTX books to sync")
            first = await lands_in_redis(r, sims, col, "BTC/USDT")
            assert first["venue"] == "htx" and first["exch_ms"] > 0
            await lands_in_redis(r, sims, col, "ETH/USDT")

            # keepalive: {"ping"} every 0.1 s, closed after two misses; the parser's "send" control
            # answers each one, so the single connection stays up
            await until(lambda: venue.pongs >= 15, sims, "15 answered pings")
            assert metric(p, "scanner_connections", {"venue": "htx"}) == 1
            assert sum(metric(p, "scanner_reconnects_total", {"venue": "htx", "reason": why})
                       for why in ("closed_by_venue", "watchdog", "connect_failed")) == 0

            # a lost update: only btcusdt resyncs (a new req on the same socket), ethusdt keeps its book
            eth = col.books["ethusdt"]
            gaps = {"venue": "htx", "reason": "seq_gap"}
            venue.skip_seq("BTC/USDT")
            await until(lambda: metric(p, "scanner_resyncs_total", gaps) >= 1, sims, "the sequence gap")
            await until(lambda: col.books["btcusdt"].valid, sims, "btcusdt to resync")
            assert metric(p, "scanner_resyncs_total", gaps) == 1 and col.books["ethusdt"] is eth and eth.valid
            await lands_in_redis(r, sims, col, "BTC/USDT")

            # a crossing level (HTX has no checksum; the crossed-book check catches this one)
            crossed = {"venue": "htx", "reason": "crossed"}
            venue.corrupt_level("ETH/USDT", "crossed")
            await until(lambda: metric(p, "scanner_resyncs_total", crossed) >= 1, sims, "the crossed book")
            await until(lambda: col.books["ethusdt"].valid, sims, "ethusdt to resync")
            await lands_in_redis(r, sims, col, "ETH/USDT")

            # a dropped connection: every book resyncs after the reconnect
            reconnects = {"venue": "htx", "reason": "reconnect"}
            venue.drop()
            await until(lambda: metric(p, "scanner_resyncs_total", reconnects) >= 2, sims, "the disconnect")
            await until(lambda: all(b.valid for b in col.books.values()), sims, "the books after reconnecting")
            await lands_in_redis(r, sims, col, "BTC/USDT")
            await lands_in_redis(r, sims, col, "ETH/USDT")
            assert metric(p, "scanner_connections", {"venue": "htx"}) == 1
            assert metric(p, "scanner_parse_errors_total", {"venue": "htx", "reason": "malformed"}) == 0
            assert metric(p, "scanner_venue_errors_total", {"venue": "htx"}) == 0
            await r.aclose()


async def test_htx_number_text_prices_an_opportunity_exactly(redis_url: str, market_cache: Path) -> None:
    async with SimCluster(venues=["okx", "htx"], symbols=["BTC/USDT"], tick_ms=50, seed=4) as sims:
        sims.freeze()
        sims.set_book("okx", "BTC/USDT", bids=[["64990", "1"]], asks=[["65000", "0.5"]])
        sims.set_book("htx", "BTC/USDT", bids=[["65400", "0.3"]], asks=[["65500", "1"]])  # "65400.0", "0.3"
        r = Redis.from_url(redis_url, socket_timeout=30)
        async with running(settings_for(sims, redis_url, market_cache)):
            got = cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]],
                       await r.xread({"opportunities": "0"}, block=20_000, count=1))
            stored = orjson.loads(await r.get(book_key("BTC/USDT", "htx")) or b"{}")
        await r.aclose()
    assert stored["bids"] == [["65400.0", "0.3"]] and stored["asks"] == [["65500.0", "1.0"]]
    assert got, "no opportunity reached the Redis stream"
    o = orjson.loads(got[0][1][0][1][b"data"])
    # buy 0.3 on OKX at 65000 (taker 0.1 %), sell on HTX at 65400 (taker 0.2 %)
    assert (o["buy_venue"], o["sell_venue"], Decimal(o["size"])) == ("okx", "htx", Decimal("0.3"))
    assert Decimal(o["sell_vwap"]) == Decimal("65400") and Decimal(o["buy_vwap"]) == Decimal("65000")
    assert Decimal(o["profit_quote"]) == Decimal("0.3") * (Decimal("65400") * Decimal("0.998")
                                                          - Decimal("65000") * Decimal("1.001"))


async def test_ccxt_pro_htx_keeps_the_simulators_book() -> None:
    async with SimCluster(venues=["htx"], symbols=SYMBOLS, seed=3, tick_ms=25) as cluster:
        venue = htx(cluster)
        # ccxt uses the /feed URL for spot mbp books: subscribe, req on the same socket, pong the pings
        ex = ccxt.pro.htx({"urls": {"api": {"ws": {"api": {"spot": {"feed": cluster.url("htx")}}}}}})
        try:
            ex.set_markets([ccxt_market(m, baseId=m.base.lower(), quoteId=m.quote.lower(), settle=None, settleId=None,
                                      linear=None, inverse=None) for m in venue.markets])
            nonces = []
            for _ in range(6):
                ob = await asyncio.wait_for(ex.watch_order_book("BTC/USDT"), 15)
                nonces.append(ob["nonce"])
            assert len(set(nonces)) > 1  # it followed live updates, not just the image
            cluster.freeze()
            target = venue.view_seq("btcusdt", 150)
            while ob["nonce"] != target:  # frozen: only the updates already on the wire arrive
                ob = await asyncio.wait_for(ex.watch_order_book("BTC/USDT"), 10)
            bids, asks = cluster.book("htx", "BTC/USDT", 150)
            assert len(ob["bids"]) == len(bids) == 150
            assert ob["bids"] == as_floats(bids) and ob["asks"] == as_floats(asks)
            assert [q.path for q in venue.requests] == ["/feed"]  # no REST at all
        finally:
            await ex.close()
