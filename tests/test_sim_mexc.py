"""Protocol tests of the MEXC simulator through our own MEXC parser and SyncedBook: binary protobuf
diffs bridged to REST snapshots, partial books, JSON control frames, keepalive and idle rules, REST
limits and every fault switch (end to end and ccxt.pro: test_sim_mexc_e2e.py). The market is
stepped by hand (``tick_ms=0``) except where a live clock is the point; waits are on frames or
simulator ticks with deadlines, never bare sleeps."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from scanner.book.errors import CrossedBook, ParseError, SequenceGap
from scanner.book.sync import SyncedBook
from scanner.model import BookMsg, Control
from scanner.sim.base import FaultUnsupported
from scanner.sim.mexc import MexcKnobs, MexcVenue
from scanner.sim.server import SimCluster, SimConfig
from scanner.venues.mexc import MexcParser, make_book, parse_instruments, parse_snapshot, subscribe
from scanner.venues.mexc_pb import decode_push

TIMEOUT = 5.0
SYMBOLS = ["BTC/USDT", "ETH/USDT", "XRP/USDT"]
# (symbol, base, quote, baseAssetPrecision, quoteAssetPrecision) as in configs/markets/mexc.json
MEXC = [("BTCUSDT", "BTC", "USDT", 6, 2), ("ETHUSDT", "ETH", "USDT", 5, 2), ("XRPUSDT", "XRP", "USDT", 2, 4)]


@pytest.fixture
def markets(tmp_path: Path) -> Path:
    rows = [{"symbol": s, "status": "1", "baseAsset": b, "quoteAsset": q, "baseAssetPrecision": bp,
             "quotePrecision": qp, "quoteAssetPrecision": qp, "baseSizePrecision": "0", "isSpotTradingAllowed": True}
            for s, b, q, bp, qp in MEXC]
    (tmp_path / "mexc.json").write_bytes(orjson.dumps({"timezone": "CST", "symbols": rows}))
    return tmp_path


def mexc_cluster(markets: Path | None, tick_ms: int = 0, **cfg: Any) -> SimCluster:
    return SimCluster(venues=["mexc"], symbols=SYMBOLS, seed=9, tick_ms=tick_ms, config=SimConfig(**cfg),
                      markets_dir=markets)


def mexc(cluster: SimCluster) -> MexcVenue:
    v = cluster.venue("mexc")
    assert isinstance(v, MexcVenue)
    return v


class Feed:
    """One socket's frames → MexcParser → one SyncedBook per instrument."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, channel: str = "aggre.depth@100ms") -> None:
        self.ws, self.channel = ws, channel
        self.parser = MexcParser(channel)
        self.books: dict[str, SyncedBook] = {}
        self.events: dict[str, list[BookMsg]] = {}
        self.controls: list[Control] = []
        self.binary = 0

    async def frame(self) -> aiohttp.WSMessage:
        return await asyncio.wait_for(self.ws.receive(), TIMEOUT)

    async def read(self) -> None:
        msg = await self.frame()
        assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), msg
        self.binary += msg.type is aiohttp.WSMsgType.BINARY
        for it in self.parser.parse(msg.data, time.time_ns()):
            if isinstance(it, BookMsg):
                self.events.setdefault(it.inst, []).append(it)
                self.books.setdefault(it.inst, make_book(self.channel)).on_message(it)
            else:
                self.controls.append(it)

    async def until(self, cond: Callable[[], bool]) -> None:
        while not cond():
            await self.read()

    async def sync(self, venue: MexcVenue, inst: str) -> None:
        def done() -> bool:
            b = self.books.get(inst)
            return b is not None and b.valid and b.book.seq == venue.seq(inst)

        await self.until(done)


async def rest_depth(session: aiohttp.ClientSession, cluster: SimCluster, inst: str) -> BookMsg:
    async with session.get(f"{cluster.rest_url('mexc')}/api/v3/depth?symbol={inst}&limit=5000") as r:
        assert r.status == 200
        return parse_snapshot(inst, await r.read(), 0)


async def bridged_feed(session: aiohttp.ClientSession, cluster: SimCluster, *insts: str) -> Feed:
    """Subscribe, buffer diffs, seed each book from REST, bridge."""
    feed = Feed(await session.ws_connect(cluster.url("mexc")))
    await feed.ws.send_str(subscribe(insts, feed.channel)[0])
    await feed.until(lambda: sum(c.kind == "subscribed" for c in feed.controls) == len(insts))
    cluster.step(2)
    await feed.until(lambda: all(len(feed.events.get(i, [])) >= 2 for i in insts))
    for inst in insts:
        feed.books[inst].on_snapshot(await rest_depth(session, cluster, inst))
    cluster.step()
    for inst in insts:
        await feed.sync(mexc(cluster), inst)
    return feed


async def test_diffs_bridge_to_rest_and_equal_the_simulator(session: aiohttp.ClientSession, markets: Path) -> None:
    async with mexc_cluster(markets) as cluster:
        venue = mexc(cluster)
        feed = await bridged_feed(session, cluster, "BTCUSDT", "ETHUSDT")
        fast = Feed(await session.ws_connect(cluster.url("mexc")), "aggre.depth@10ms")
        await fast.ws.send_str(subscribe(["BTCUSDT"], fast.channel)[0])
        await fast.until(lambda: bool(fast.controls))
        for _ in range(20):
            cluster.step()
            for inst in ("BTCUSDT", "ETHUSDT"):
                await feed.sync(venue, inst)
                assert feed.books[inst].book.top(10**6) == venue.book(inst)
        await fast.until(lambda: len(fast.events.get("BTCUSDT", [])) == 20)
        same = [[(e.prev, e.seq, e.bids, e.asks, e.exch_ms) for e in f.events["BTCUSDT"][-20:]] for f in (fast, feed)]
        assert same[0] == same[1]  # the same diffs on the 10 ms topic
        for evs in feed.events.values():
            for a, b in itertools.pairwise(evs):
                assert b.prev == a.seq + 1 and b.seq >= b.prev + len(b.bids) + len(b.asks) - 1
            assert all(e.exch_ms > 0 and not e.snapshot for e in evs)
        assert feed.binary == sum(len(e) for e in feed.events.values()) and fast.controls == [
            Control("subscribed", "BTCUSDT", "spot@public.aggre.depth.v3.api.pb@10ms@BTCUSDT")]
        assert any(lv[1] == "0" for evs in feed.events.values() for e in evs for lv in e.bids + e.asks)


async def test_limit_depth_streams_push_top_n(session: aiohttp.ClientSession, markets: Path) -> None:
    async with mexc_cluster(markets) as cluster:
        venue = mexc(cluster)
        feed = Feed(await session.ws_connect(cluster.url("mexc")), "limit.depth@5")
        await feed.ws.send_str(subscribe(["XRPUSDT"], feed.channel)[0])
        await feed.until(lambda: "XRPUSDT" in feed.books)  # pushed at once after the ack
        for _ in range(5):
            assert feed.books["XRPUSDT"].book.top(10**6) == venue.book("XRPUSDT", 5)
            assert feed.events["XRPUSDT"][-1].seq == venue.seq("XRPUSDT") and feed.books["XRPUSDT"].valid
            n = len(feed.events["XRPUSDT"])
            cluster.step()
            await feed.until(lambda: len(feed.events["XRPUSDT"]) > n)  # noqa: B023
        assert all(e.snapshot and len(e.bids) == len(e.asks) == 5 for e in feed.events["XRPUSDT"])


async def test_control_messages_and_subscription_limit(session: aiohttp.ClientSession, markets: Path) -> None:
    async with mexc_cluster(markets) as cluster:
        venue = mexc(cluster)
        venue.knobs = MexcKnobs(max_subs=2)
        ws = await session.ws_connect(cluster.url("mexc"))

        async def call(body: object) -> Any:
            await ws.send_str(body if isinstance(body, str) else orjson.dumps(body).decode())
            msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
            assert msg.type is aiohttp.WSMsgType.TEXT
            return orjson.loads(msg.data)

        assert await call({"method": "PING"}) == {"id": 0, "code": 0, "msg": "PONG"}
        assert await call({"method": "ping"}) == {"id": 0, "code": 0, "msg": "PONG"}  # as ccxt sends it
        btc, eth = "spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT", "spot@public.limit.depth.v3.api.pb@ETHUSDT@5"
        assert await call({"method": "SUBSCRIPTION", "params": [btc]}) == {"id": 0, "code": 0, "msg": btc}
        for t, why in (("spot@public.aggre.depth.v3.api.pb@100ms@btcusdt", "Symbol not found"),
                       ("spot@public.increase.depth.v3.api@BTCUSDT", "Blocked! "),
                       ("spot@public.aggre.depth.v3.api.pb@100ms@DOGEUSDT", "Symbol not found")):
            reply = await call({"method": "SUBSCRIPTION", "params": [t]})
            assert reply["msg"] == f"Not Subscribed successfully! [{t}].  Reason: {why}"
            assert MexcParser().parse(orjson.dumps(reply), 0) == [Control("error", t.split("@")[-1], reply["msg"])]
        both = {"method": "SUBSCRIPTION", "params": [eth, btc.replace("100ms", "10ms")]}
        await ws.send_str(orjson.dumps(both).decode())
        refused, ok = [orjson.loads((await asyncio.wait_for(ws.receive(), TIMEOUT)).data) for _ in range(2)]
        assert refused["msg"].endswith("Exceeded the maximum of 2 subscriptions") and ok["msg"] == eth
        snapshot = await asyncio.wait_for(ws.receive(), TIMEOUT)  # the limit depth, at once
        assert decode_push(snapshot.data)[1] == "spot@public.limit.depth.v3.api.pb@ETHUSDT@5"
        assert await call({"method": "UNSUBSCRIPTION", "params": [btc]}) == {"id": 0, "code": 0, "msg": btc}
        assert sorted(venue.subs) == [eth]
        cluster.step()
        nxt = await asyncio.wait_for(ws.receive(), TIMEOUT)  # BTC would come first if still subscribed
        assert nxt.type is aiohttp.WSMsgType.BINARY and decode_push(nxt.data)[2] == "ETHUSDT"
        assert (await call("{oops"))["msg"] == "Invalid JSON"
        assert (await call({"method": "FLY"}))["msg"] == "Invalid request"


async def closing(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    """Read until the server closes; the close message."""
    while True:
        msg = await ws.receive()
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return msg


async def test_idle_connections_are_closed_and_ping_keeps_one_open(
        session: aiohttp.ClientSession, markets: Path) -> None:
    async with mexc_cluster(markets, tick_ms=20, housekeeping_s=0.02) as cluster:
        venue = mexc(cluster)
        venue.knobs = MexcKnobs(no_sub_s=0.3, idle_s=0.6)
        lazy, quiet, pinger = [await session.ws_connect(cluster.url("mexc")) for _ in range(3)]
        for ws in (quiet, pinger):
            await ws.send_str(subscribe(["BTCUSDT"], "aggre.depth@100ms")[0])
        cluster.freeze()
        lazy_closed, quiet_closed = asyncio.create_task(closing(lazy)), asyncio.create_task(closing(quiet))

        async def keep_pinging(until: asyncio.Task[aiohttp.WSMessage]) -> int:
            pongs = 0
            while not until.done():
                await cluster.wait_ticks(2)
                await pinger.send_str('{"method":"PING"}')
                while True:
                    m = await pinger.receive()
                    if m.type is aiohttp.WSMsgType.TEXT and orjson.loads(m.data)["msg"] == "PONG":
                        pongs += 1
                        break
                    assert m.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), m
            return pongs

        assert await asyncio.wait_for(keep_pinging(quiet_closed), 10) > 5
        assert (await lazy_closed).extra == "no valid subscription"
        assert (await quiet_closed).extra == "no data"
        assert not pinger.closed
        venue.knobs = MexcKnobs(max_age_s=0.1)
        last = await asyncio.wait_for(closing(pinger), TIMEOUT)
        assert last.extra == "connection lifetime exceeded"


async def test_rest_depth_exchange_info_and_limits(session: aiohttp.ClientSession, markets: Path) -> None:
    async with mexc_cluster(markets) as cluster:
        rest, venue = cluster.rest_url("mexc"), mexc(cluster)
        async with session.get(f"{rest}/api/v3/exchangeInfo") as r:
            body = await r.read()
            assert body == (markets / "mexc.json").read_bytes()
            assert sorted(m.symbol for m in parse_instruments(body)) == sorted(SYMBOLS)
        for query, n in (("symbol=ETHUSDT", 100), ("symbol=ETHUSDT&limit=5000", 400), ("symbol=ETHUSDT&limit=3", 3)):
            async with session.get(f"{rest}/api/v3/depth?{query}") as r:
                d = await r.json()
                assert len(d["bids"]) == len(d["asks"]) == n and d["lastUpdateId"] == venue.seq("ETHUSDT")
                assert [tuple(x) for x in d["bids"]] == venue.book("ETHUSDT", n)[0]
        async with session.get(f"{rest}/api/v3/depth?symbol=NOPE") as r:
            assert r.status == 400 and (await r.json())["code"] == -1121
        async with session.get(f"{rest}/api/v3/depth?symbol=ETHUSDT&limit=x") as r:
            assert r.status == 400 and (await r.json())["code"] == -1100
        venue.knobs = MexcKnobs(rest_per_10s=5)
        async with session.get(f"{rest}/api/v3/depth?symbol=ETHUSDT") as r:
            assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
        assert [(q.weight, q.status) for q in venue.requests] == [(10, 200), (1, 200), (1, 200), (1, 200),
                                                                   (1, 400), (1, 400), (0, 429)]


async def test_faults(session: aiohttp.ClientSession, markets: Path) -> None:
    async with mexc_cluster(markets) as cluster:
        venue = mexc(cluster)
        feed = await bridged_feed(session, cluster, "BTCUSDT", "ETHUSDT")
        venue.skip_seq("BTCUSDT")
        cluster.step()
        with pytest.raises(SequenceGap):
            await feed.until(lambda: False)
        venue.corrupt_level("ETH/USDT", "size")  # no checksum on MEXC: goes unnoticed
        cluster.step()
        await feed.sync(venue, "ETHUSDT")
        assert feed.books["ETHUSDT"].book.top(1)[0] != venue.book("ETHUSDT", 1)[0]
        venue.corrupt_level("ETH/USDT", "crossed")
        cluster.step()
        with pytest.raises(CrossedBook):
            await feed.until(lambda: feed.books["ETHUSDT"].book.seq == venue.seq("ETHUSDT"))
        venue.garbage(4)
        outcomes = []
        for _ in range(4):
            m = await feed.frame()
            try:
                outcomes.append(type(feed.parser.parse(m.data, 0)[0]).__name__)
            except ParseError:
                outcomes.append("ParseError")
        assert outcomes == ["ParseError", "ParseError", "Control", "ParseError"]
        venue.stall(60)
        seq = venue.seq("BTCUSDT")
        cluster.step(3)
        assert venue.seq("BTCUSDT") == seq
        await feed.ws.send_str('{"method":"PING"}')
        await feed.until(lambda: Control("pong") in feed.controls)
        unsupported: list[Callable[[], None]] = [
            lambda: venue.corrupt_checksum("BTCUSDT"), lambda: venue.notice(), lambda: venue.shutdown(),
            lambda: venue.seq_reset("BTCUSDT"), lambda: venue.snapshot_lag(3)]
        for fault in unsupported:
            with pytest.raises(FaultUnsupported):
                fault()
        async with session.post(f"{cluster.rest_url('mexc')}/sim/fault",
                                json={"fault": "corrupt_checksum", "symbol": "BTCUSDT"}) as r:
            assert r.status == 400
        venue.drop()
        end = await feed.frame()
        assert end.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR)
