"""The Hyperliquid simulator through our own parser and books (every push a full top-20 book equal
to the simulator's; the tick rule; keepalive; faults), end to end through the real pipeline and
Redis, and ccxt.pro's ``hyperliquid`` pointed at it. The market is stepped by hand (``tick_ms=0``)
unless a live clock is the point; waiting is on frames or ticks with deadlines, never bare sleeps."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import ccxt.pro
import orjson
import pytest
from redis.asyncio import Redis

from scanner.app import Pipeline
from scanner.book.errors import CrossedBook, ParseError
from scanner.book.sync import SyncedBook
from scanner.model import BookMsg, Control
from scanner.sim.base import FaultUnsupported
from scanner.sim.hyperliquid import HlKnobs, HyperliquidVenue
from scanner.sim.server import SimCluster, SimConfig
from scanner.venues.hyperliquid import HyperliquidParser, make_book, parse_instruments
from tests.pipeline_helpers import as_floats, ccxt_market, metric, redis_equals_sim, running, settings_for, until

TIMEOUT = 5.0
SYMBOLS = ["HYPE/USDC", "UBTC/USDC"]
COINS = {"HYPE/USDC": "@107", "UBTC/USDC": "@142"}


@pytest.fixture
def markets(tmp_path: Path) -> Path:
    """spotMeta with the two test pairs (as in configs/markets/hyperliquid.json; a copy of our own)."""
    tokens = [{"name": "USDC", "szDecimals": 8, "weiDecimals": 8, "index": 0},
              {"name": "HYPE", "szDecimals": 2, "weiDecimals": 8, "index": 150},
              {"name": "UBTC", "szDecimals": 5, "weiDecimals": 10, "index": 197}]
    universe = [{"tokens": [150, 0], "name": "@107", "index": 107, "isCanonical": False},
                {"tokens": [197, 0], "name": "@142", "index": 142, "isCanonical": False}]
    (tmp_path / "hyperliquid.json").write_bytes(orjson.dumps({"universe": universe, "tokens": tokens}))
    return tmp_path


def hl_cluster(markets: Path, **cfg: Any) -> SimCluster:
    return SimCluster(venues=["hyperliquid"], symbols=SYMBOLS, seed=9, tick_ms=0, config=SimConfig(**cfg),
                      markets_dir=markets)


def sim(cluster: SimCluster) -> HyperliquidVenue:
    v = cluster.venue("hyperliquid")
    assert isinstance(v, HyperliquidVenue)
    return v


class Feed:
    """One socket's frames → HyperliquidParser → one SyncedBook per coin."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.parser = ws, HyperliquidParser()
        self.books: dict[str, SyncedBook] = {}
        self.msgs: list[BookMsg] = []
        self.controls: list[Control] = []
        self.raw: list[Any] = []

    async def frame(self) -> aiohttp.WSMessage:
        return await asyncio.wait_for(self.ws.receive(), TIMEOUT)

    async def read(self) -> None:
        msg = await self.frame()
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        self.raw.append(orjson.loads(msg.data))
        for it in self.parser.parse(msg.data, time.time_ns()):
            if isinstance(it, BookMsg):
                self.msgs.append(it)
                self.books.setdefault(it.inst, make_book("l2Book")).on_message(it)
            else:
                self.controls.append(it)

    async def until(self, cond: Callable[[], bool]) -> None:
        while not cond():
            await self.read()

    async def sync(self, venue: HyperliquidVenue, coin: str) -> None:
        def done() -> bool:
            b = self.books.get(coin)
            return b is not None and b.valid and b.book.seq == venue.seq(coin)

        await self.until(done)

    def assert_same(self, venue: HyperliquidVenue, coin: str) -> None:
        assert self.books[coin].book.top(100) == venue.book(coin, 20)


async def request(ws: aiohttp.ClientWebSocketResponse, method: str, coin: str, **extra: object) -> None:
    await ws.send_str(orjson.dumps({"method": method, "subscription": {"type": "l2Book", "coin": coin, **extra}})
                      .decode())


async def subscribed(session: aiohttp.ClientSession, cluster: SimCluster, *coins: str) -> Feed:
    feed = Feed(await session.ws_connect(cluster.url("hyperliquid")))
    for coin in coins:
        await request(feed.ws, "subscribe", coin)
        await feed.sync(sim(cluster), coin)
    return feed


def sig_figs(px: str) -> int:
    return len(Decimal(px).normalize().as_tuple().digits)


async def test_every_push_is_the_simulators_top_20(session: aiohttp.ClientSession, markets: Path) -> None:
    async with hl_cluster(markets) as cluster:
        venue = sim(cluster)
        assert cluster.url("hyperliquid").endswith("/ws")
        feed = await subscribed(session, cluster, "@107", "@142")
        acks = [d for d in feed.raw if d["channel"] == "subscriptionResponse"]
        assert [a["data"] for a in acks] == [{"method": "subscribe", "subscription": {
            "type": "l2Book", "coin": c, "nSigFigs": None, "mantissa": None, "fast": False}} for c in ("@107", "@142")]
        for _ in range(20):
            cluster.step()
            for coin in ("@107", "@142"):
                await feed.sync(venue, coin)
                feed.assert_same(venue, coin)
        for coin in ("@107", "@142"):
            msgs = [m for m in feed.msgs if m.inst == coin]
            assert all(m.snapshot and len(m.bids) == len(m.asks) == 20 for m in msgs)
            assert all(b.seq > a.seq for a, b in itertools.pairwise(msgs))  # "time" strictly increasing
        pushes = [d["data"] for d in feed.raw if d["channel"] == "l2Book"]
        assert all(set(lv) == {"px", "sz", "n"} for d in pushes for side in d["levels"] for lv in side)
        ubtc = [lv["px"] for d in pushes if d["coin"] == "@142" for lv in d["levels"][0]]
        assert all(px.endswith(".0") for px in ubtc) and 30_000 < float(ubtc[0]) < 130_000  # "64094.0", near BTC
        # the tick rule: at most 5 significant figures, at most 8 - szDecimals decimals
        for d in pushes:
            for px in (lv["px"] for side in d["levels"] for lv in side):
                assert sig_figs(px) <= 5 and -Decimal(px).normalize().as_tuple().exponent <= 6  # type: ignore[operator]


async def test_ping_errors_and_unsubscribe(session: aiohttp.ClientSession, markets: Path) -> None:
    async with hl_cluster(markets) as cluster:
        ws = await session.ws_connect(cluster.url("hyperliquid"))

        async def reply() -> Any:
            return orjson.loads((await asyncio.wait_for(ws.receive(), TIMEOUT)).data)

        await ws.send_str('{"method":"ping"}')
        assert await reply() == {"channel": "pong"}
        await ws.send_str("{oops")
        assert (await reply())["channel"] == "error"
        await request(ws, "subscribe", "@999")
        assert (await reply())["data"].startswith("Invalid subscription")
        await request(ws, "subscribe", "@107", nSigFigs=3)
        assert (await reply())["channel"] == "error"
        await request(ws, "unsubscribe", "@107")
        assert (await reply())["data"].startswith("Already unsubscribed")
        await request(ws, "subscribe", "@107")
        assert [(await reply())["channel"] for _ in range(2)] == ["subscriptionResponse", "l2Book"]
        await request(ws, "subscribe", "@107")
        err = await reply()
        assert err["data"].startswith("Already subscribed")
        assert HyperliquidParser().parse(orjson.dumps(err), 0) == [Control("error", "", err["data"])]
        await request(ws, "subscribe", "@142")
        assert [(await reply())["channel"] for _ in range(2)] == ["subscriptionResponse", "l2Book"]
        await request(ws, "unsubscribe", "@107")
        assert (await reply())["data"]["method"] == "unsubscribe"
        while True:  # step until UBTC moves: only its book comes, HYPE's no longer does
            cluster.step()
            try:
                d = orjson.loads((await asyncio.wait_for(ws.receive(), 0.2)).data)
                break
            except TimeoutError:
                continue
        assert d["data"]["coin"] == "@142"


async def test_silent_clients_are_closed(session: aiohttp.ClientSession, markets: Path) -> None:
    async with hl_cluster(markets, housekeeping_s=0.02) as cluster:
        sim(cluster).knobs = HlKnobs(idle_s=0.4)
        silent = await subscribed(session, cluster, "@107")
        pinging = await subscribed(session, cluster, "@142")
        while True:  # book data keeps coming on both; only the client that sends stays connected
            cluster.step()
            await pinging.ws.send_str('{"method":"ping"}')
            await pinging.until(lambda: pinging.raw[-1] == {"channel": "pong"})
            try:
                msg = await asyncio.wait_for(silent.ws.receive(), 0.05)
            except TimeoutError:
                continue
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
        assert msg.type is aiohttp.WSMsgType.CLOSE and not pinging.ws.closed
        assert sim(cluster).pings > 0


async def test_faults(session: aiohttp.ClientSession, markets: Path) -> None:
    async with hl_cluster(markets) as cluster:
        venue = sim(cluster)
        feed = await subscribed(session, cluster, "@107")
        cluster.freeze()
        venue.corrupt_level("HYPE/USDC", "crossed")
        cluster.step()
        with pytest.raises(CrossedBook):
            await feed.until(lambda: False)
        cluster.step()  # the next full book replaces the bad one: nothing to resubscribe
        await feed.sync(venue, "@107")
        feed.assert_same(venue, "@107")
        venue.corrupt_level("HYPE/USDC", "size")  # no checksum: accepted, and wrong
        cluster.step()
        await feed.sync(venue, "@107")
        assert feed.books["@107"].book.top(1)[0] != cluster.book("hyperliquid", "HYPE/USDC", 1)[0]
        for name in ("skip_seq", "corrupt_checksum", "seq_reset", "snapshot_lag"):
            with pytest.raises(FaultUnsupported):
                venue.apply_fault({"fault": name, "symbol": "HYPE/USDC"})
        cluster.freeze(False)
        venue.garbage(6)
        for _ in range(6):
            with pytest.raises(ParseError):
                feed.parser.parse((await feed.frame()).data, 0)
        venue.drop()
        assert (await feed.frame()).type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE,
                                             aiohttp.WSMsgType.ERROR)


async def test_info_endpoint(session: aiohttp.ClientSession, markets: Path) -> None:
    async with hl_cluster(markets) as cluster:
        url = cluster.rest_url("hyperliquid") + "/info"
        async with session.post(url, json={"type": "spotMeta"}) as r:
            assert sorted(m.symbol for m in parse_instruments(await r.read())) == sorted(SYMBOLS)
        async with session.post(url, json={"type": "l2Book", "coin": "@142"}) as r:
            d = await r.json()
        assert [(lv["px"], lv["sz"]) for lv in d["levels"][1]] == cluster.book("hyperliquid", "UBTC/USDC", 20)[1]
        async with session.post(url, json={"type": "nope"}) as r:
            assert r.status == 422
        assert [q.weight for q in sim(cluster).requests] == [20, 2, 0]


# ------------------------------------------------------------------ end to end and ccxt.pro


def resyncs(p: Pipeline, reason: str) -> float:
    return metric(p, "scanner_resyncs_total", {"venue": "hyperliquid", "reason": reason})


async def test_end_to_end_books_in_redis_and_resyncs(redis_url: str, market_cache: Path) -> None:
    async with SimCluster(venues=["hyperliquid"], symbols=SYMBOLS, tick_ms=50, seed=5) as sims:
        venue, r = sim(sims), Redis.from_url(redis_url, socket_timeout=30)
        async with running(settings_for(sims, redis_url, market_cache, venue={"ping_idle_s": 0.5})) as p:
            col = p.collectors["hyperliquid"]
            assert sorted(col.books) == ["@107", "@142"]
            await until(lambda: all(b.valid for b in col.books.values()), sims, "both books")
            pings = venue.pings  # pinged on schedule although books keep arriving every 50 ms
            await until(lambda: venue.pings >= pings + 3, sims, "periodic pings")
            await redis_equals_sim(r, sims, "hyperliquid", "HYPE/USDC")
            venue.corrupt_level("UBTC/USDC", "crossed")
            await until(lambda: resyncs(p, "crossed") >= 1, sims, "the crossed book to be refused")
            await until(lambda: all(b.valid for b in col.books.values()), sims, "UBTC to recover")
            assert resyncs(p, "crossed") == 1
            await redis_equals_sim(r, sims, "hyperliquid", "UBTC/USDC")
            venue.drop()
            await until(lambda: resyncs(p, "reconnect") >= 2, sims, "the reconnect to invalidate both books")
            await until(lambda: all(b.valid for b in col.books.values()), sims, "the books after reconnecting")
            await redis_equals_sim(r, sims, "hyperliquid", "HYPE/USDC")
        await r.aclose()


async def test_ccxt_pro_hyperliquid_keeps_the_simulators_book() -> None:
    async with SimCluster(venues=["hyperliquid"], symbols=["HYPE/USDC"], seed=3, tick_ms=25) as cluster:
        ex = ccxt.pro.hyperliquid({"urls": {"api": {"ws": {"public": cluster.url("hyperliquid")}}}})
        try:
            ex.set_markets([ccxt_market(m, baseName=m.base, active=True,
                                        limits={"amount": {"min": float(m.min_size), "max": None}})
                            for m in sim(cluster).markets])
            stamps: set[int] = set()
            for _ in range(4):
                ob = await asyncio.wait_for(ex.watch_order_book("HYPE/USDC"), 10)
                stamps.add(ob["timestamp"])
            assert len(stamps) > 1  # it followed the pushes, not only the first book
            cluster.freeze()
            target = cluster.seq("hyperliquid", "HYPE/USDC")
            while ob["timestamp"] != target:  # frozen: the last push is on its way, then nothing moves
                async with asyncio.timeout(10):
                    ob = await ex.watch_order_book("HYPE/USDC")
            bids, asks = cluster.book("hyperliquid", "HYPE/USDC", 20)
            assert ob["bids"] == as_floats(bids)
            assert ob["asks"] == as_floats(asks)
        finally:
            await ex.close()
