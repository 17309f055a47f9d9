"""MEXC end to end: the simulator + the real pipeline (collector, Redis, detector) in-process, and
ccxt.pro's ``mexc`` pointed at the simulator. Waiting is on simulator ticks with deadlines, never
on bare sleeps."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from pathlib import Path
from typing import Any

import ccxt.pro
import orjson
from redis.asyncio import Redis

from scanner.feed.collector import VenueCollector
from scanner.sim.market import WalkParams
from scanner.sim.mexc import MexcKnobs, MexcVenue
from scanner.sim.server import SimCluster
from scanner.store.schema import book_key
from scanner.venues.mexc_pb import AGGRE_DEPTHS, decode_push
from tests.pipeline_helpers import as_floats, ccxt_markets, metric, running, settings_for, until

TIMEOUT = 5.0


def mexc(cluster: SimCluster) -> MexcVenue:
    v = cluster.venue("mexc")
    assert isinstance(v, MexcVenue)
    return v


async def lands_in_redis(r: Redis, sims: SimCluster, col: VenueCollector, symbol: str) -> None:
    """Freeze the market until Redis holds the simulator's current book of ``symbol``."""
    sims.freeze()
    venue, target = mexc(sims), mexc(sims).seq(symbol)
    stored: dict[str, Any] = {}

    def landed() -> bool:
        return bool(stored) and stored["valid"] and stored["seq"] == target

    while not landed():
        await asyncio.wait_for(sims.wait_ticks(1), TIMEOUT)
        raw = await r.get(book_key(symbol, "mexc"))
        stored = orjson.loads(raw) if raw else {}
    bids, asks = venue.book(symbol, 20)
    assert stored["bids"] == [list(x) for x in bids] and stored["asks"] == [list(x) for x in asks]
    assert col.books[venue.state(symbol).inst].book.seq == target
    sims.freeze(False)


async def test_mexc_books_reach_redis_and_resync(redis_url: str, market_cache: Path) -> None:
    async with SimCluster(venues=["mexc"], symbols=["BTC/USDT", "ETH/USDT"], tick_ms=50, seed=8) as sims, \
            running(settings_for(sims, redis_url, market_cache, venue={"ping_idle_s": 0.2})) as p:
        venue, col = mexc(sims), p.collectors["mexc"]
        venue.knobs = MexcKnobs(idle_s=1.0)
        r = Redis.from_url(redis_url, socket_timeout=10)
        await until(lambda: all(b.valid for b in col.books.values()), sims, "the MEXC books to sync")
        for sym in ("BTC/USDT", "ETH/USDT"):
            await asyncio.wait_for(lands_in_redis(r, sims, col, sym), 20)

        def depth_calls() -> list[str]:
            return [q.path.split("symbol=")[1].split("&")[0] for q in venue.requests if "/depth" in q.path]

        assert set(depth_calls()) == {"BTCUSDT", "ETHUSDT"}
        before, eth = len(depth_calls()), col.books["ETHUSDT"]
        gaps = {"venue": "mexc", "reason": "seq_gap"}
        venue.skip_seq("BTC/USDT")  # a lost diff: only BTCUSDT fetches a new REST snapshot
        await until(lambda: metric(p, "scanner_resyncs_total", gaps) >= 1, sims, "the sequence gap")
        await until(lambda: col.books["BTCUSDT"].valid, sims, "BTCUSDT to resync from REST")
        assert depth_calls()[before:] == ["BTCUSDT"] and col.books["ETHUSDT"] is eth and eth.valid
        assert metric(p, "scanner_resyncs_total", gaps) == 1

        crossed = {"venue": "mexc", "reason": "crossed"}
        venue.corrupt_level("ETH/USDT", "crossed")
        await until(lambda: metric(p, "scanner_resyncs_total", crossed) >= 1, sims, "the crossed book")
        await until(lambda: col.books["ETHUSDT"].valid, sims, "ETHUSDT to resync")

        # keepalive: the venue drops sockets silent for 1 s; our PING after 0.2 s of silence keeps it
        venue.stall(2.5)
        stalled_at = time.monotonic()
        await until(lambda: time.monotonic() > venue.stall_until, sims, "the stall to end")
        assert [c.last_ping > stalled_at + 1.0 and not c.closed for c in venue.clients] == [True]
        assert sum(metric(p, "scanner_reconnects_total", {"venue": "mexc", "reason": why})
                   for why in ("closed_by_venue", "watchdog", "connect_failed")) == 0

        venue.stall(0)
        reconnects = {"venue": "mexc", "reason": "reconnect"}
        venue.drop()  # every book resyncs after the reconnect
        await until(lambda: metric(p, "scanner_resyncs_total", reconnects) >= 2, sims, "the disconnect")
        await until(lambda: all(b.valid for b in col.books.values()), sims, "the books after reconnecting")
        assert metric(p, "scanner_reconnects_total", {"venue": "mexc", "reason": "closed_by_venue"}) >= 1
        for sym in ("BTC/USDT", "ETH/USDT"):
            await asyncio.wait_for(lands_in_redis(r, sims, col, sym), 20)
        assert metric(p, "scanner_parse_errors_total", {"venue": "mexc", "reason": "malformed"}) == 0
        await r.aclose()


# ----------------------------------------------------------------------------------- ccxt.pro
def message_to_dict(data: bytes) -> dict[str, Any]:
    """What ccxt's ``decode_proto_msg`` returns (``MessageToDict``), built with our decoder: used when
    the ``protobuf`` package ccxt needs for it is not installed."""
    body, channel, symbol, ts, asks, bids, frm, to = decode_push(data)
    d: dict[str, Any] = {"channel": channel, "symbol": symbol, "sendTime": str(ts)}
    if body == AGGRE_DEPTHS:
        d["publicAggreDepths"] = {
            "asks": [{"price": p, "quantity": q} for p, q in asks],
            "bids": [{"price": p, "quantity": q} for p, q in bids],
            "eventType": channel.rsplit("@", 1)[0], "fromVersion": frm, "toVersion": to}
    return d


def have_protobuf() -> bool:
    try:
        return importlib.util.find_spec("google.protobuf") is not None
    except ModuleNotFoundError:
        return False


async def test_ccxt_pro_mexc_keeps_the_simulators_book() -> None:
    # a steady mid, so the levels below ccxt's 100-level REST snapshot never move up into the top 20
    still = WalkParams(vol_bps=0.0, dev_bps=0.0, shock_per_s=0.0)
    async with SimCluster(venues=["mexc"], symbols=["BTC/USDT"], seed=3, tick_ms=20, walk_params=still) as sims:
        venue = mexc(sims)
        ex = ccxt.pro.mexc()
        ex.urls["api"]["ws"]["spot"] = sims.url("mexc")
        ex.urls["api"]["spot"]["public"] = sims.rest_url("mexc")
        if not have_protobuf():  # else ccxt decodes the frames itself
            ex.decode_proto_msg = message_to_dict
        try:
            ex.set_markets(ccxt_markets(venue.markets))
            nonces = []
            for _ in range(5):
                ob = await asyncio.wait_for(ex.watch_order_book("BTC/USDT"), 10)
                nonces.append(ob["nonce"])
            assert len(set(nonces)) > 1  # it bridged its REST snapshot and followed the diffs
            sims.freeze()
            target = venue.state("BTC/USDT").from_version  # ccxt's nonce is the last fromVersion
            await until(lambda: ex.orderbooks["BTC/USDT"]["nonce"] == target, sims, "ccxt to catch up")
            book = ex.orderbooks["BTC/USDT"]
            bids, asks = venue.book("BTC/USDT", 20)
            assert book["bids"][:20] == as_floats(bids)
            assert book["asks"][:20] == as_floats(asks)
            assert [q.path for q in venue.requests] == ["/ws", "/api/v3/depth?symbol=BTCUSDT"]
        finally:
            await ex.close()
