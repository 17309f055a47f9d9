"""Protocol tests for the Binance simulator (depth streams bridged to REST snapshots through our
own Binance parser and SyncedBook, framing, control messages, server pings, the message-rate
limit, REST weights, the request log and every fault switch), plus the shared market walk.
The market is stepped by hand (``tick_ms=0``) except in the live-clock test."""

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
from scanner.book.sync import SnapshotTooOld, SyncedBook
from scanner.model import BookMsg, Control
from scanner.sim.binance import BinanceVenue
from scanner.sim.market import MarketWalk
from scanner.sim.server import SimCluster, SimConfig
from scanner.venues.binance import BinanceParser, depth_weight, make_book, parse_instruments, parse_snapshot

TIMEOUT = 5.0
SYMBOLS = ["BTC/USDT", "ETH/BTC", "TRX/USDT"]
# Instruments as in configs/markets/*.json; the tests keep their own copy so that they do not
# depend on the cache files, which the app may refresh.
BINANCE = [  # symbol, base, quote, tickSize, stepSize
    ("BTCUSDT", "BTC", "USDT", "0.01000000", "0.00001000"),
    ("ETHBTC", "ETH", "BTC", "0.00001000", "0.00010000"),
    ("TRXUSDT", "TRX", "USDT", "0.00010000", "0.10000000"),
    ("SOLUSDT", "SOL", "USDT", "0.01000000", "0.00100000"),
]
OKX = [("BTC-USDT", "0.1", "0.00000001"), ("SOL-USDT", "0.01", "0.000001")]  # instId, tickSz, lotSz


@pytest.fixture
def markets(tmp_path: Path) -> Path:
    """A market folder holding binance.json and okx.json for the test instruments."""
    symbols = [{"symbol": sym, "status": "TRADING", "baseAsset": base, "quoteAsset": quote, "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00000000", "tickSize": tick},
        {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "9000000.00000000", "stepSize": step},
    ]} for sym, base, quote, tick, step in BINANCE]
    (tmp_path / "binance.json").write_bytes(orjson.dumps({"timezone": "UTC", "symbols": symbols}))
    rows = [{"instType": "SPOT", "instId": i, "baseCcy": i.split("-")[0], "quoteCcy": i.split("-")[1],
             "tickSz": t, "lotSz": lot, "minSz": lot, "state": "live"} for i, t, lot in OKX]
    (tmp_path / "okx.json").write_bytes(orjson.dumps({"code": "0", "msg": "", "data": rows}))
    return tmp_path


def bn_cluster(markets: Path, **cfg: Any) -> SimCluster:
    return SimCluster(venues=["binance"], symbols=SYMBOLS, seed=11, tick_ms=int(cfg.pop("tick_ms", 0)),
                      config=SimConfig(**cfg), markets_dir=markets)


class Feed:
    """One socket's frames → BinanceParser → one SyncedBook per stream (bridged from REST)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.parser = BinanceParser()
        self.books: dict[str, SyncedBook] = {}
        self.events: dict[str, list[BookMsg]] = {}
        self.controls: list[Control] = []
        self.raw: list[Any] = []

    async def frame(self) -> aiohttp.WSMessage:
        return await asyncio.wait_for(self.ws.receive(), TIMEOUT)

    async def read(self) -> None:
        msg = await self.frame()
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        d = orjson.loads(msg.data)
        self.raw.append(d)
        stream = d.get("stream", "") if isinstance(d, dict) else ""
        for it in self.parser.parse(msg.data, time.time_ns()):
            if isinstance(it, BookMsg):
                key = stream or f"{it.inst.lower()}@depth@100ms"
                self.events.setdefault(key, []).append(it)
                self.books.setdefault(key, make_book("depth@100ms")).on_message(it)
            else:
                self.controls.append(it)

    async def until(self, cond: Callable[[], bool]) -> None:
        while not cond():
            await self.read()

    async def sync(self, venue: BinanceVenue, stream: str) -> None:
        sym = stream.split("@")[0].upper()

        def done() -> bool:
            b = self.books.get(stream)
            return b is not None and b.valid and b.book.seq == venue.seq(sym)

        await self.until(done)

    def assert_same(self, venue: BinanceVenue, stream: str) -> None:
        assert self.books[stream].book.top(10**6) == venue.book(stream.split("@")[0].upper())


async def rest_depth(session: aiohttp.ClientSession, cluster: SimCluster, inst: str, limit: int = 1000) -> BookMsg:
    async with session.get(f"{cluster.rest_url('binance')}/api/v3/depth?symbol={inst}&limit={limit}") as r:
        assert r.status == 200
        return parse_snapshot(inst, await r.read(), 0)


async def bridged_feed(session: aiohttp.ClientSession, cluster: SimCluster, *insts: str) -> Feed:
    """Subscribe, buffer a few events, seed each book from REST, bridge."""
    feed = Feed(await session.ws_connect(cluster.url("binance")))
    streams = [f"{i.lower()}@depth@100ms" for i in insts]
    await feed.ws.send_str(orjson.dumps({"method": "SUBSCRIBE", "params": streams, "id": 1}).decode())
    await feed.until(lambda: {"result": None, "id": 1} in feed.raw)
    cluster.step(2)
    await feed.until(lambda: all(len(feed.events.get(s, [])) >= 2 for s in streams))
    for inst, s in zip(insts, streams, strict=True):
        feed.books[s].on_snapshot(await rest_depth(session, cluster, inst))
    cluster.step()
    for s in streams:
        await feed.sync(cluster.binance, s)
    return feed


async def test_diff_stream_bridges_to_rest_and_equals_the_simulator(
    session: aiohttp.ClientSession, markets: Path
) -> None:
    async with bn_cluster(markets) as cluster:
        venue = cluster.binance
        feed = await bridged_feed(session, cluster, "BTCUSDT", "ETHBTC")
        for _ in range(20):
            cluster.step()
            for s in ("btcusdt@depth@100ms", "ethbtc@depth@100ms"):
                await feed.sync(venue, s)
                feed.assert_same(venue, s)
        for evs in feed.events.values():
            for a, b in itertools.pairwise(evs):
                assert b.prev == a.seq + 1  # U == previous u + 1
            assert all(e.seq - e.prev + 1 == len(e.bids) + len(e.asks) for e in evs)  # ids = level changes
        wrapped = [d for d in feed.raw if "stream" in d]
        assert {d["stream"] for d in wrapped} == {"btcusdt@depth@100ms", "ethbtc@depth@100ms"}
        ev = wrapped[-1]["data"]
        assert set(ev) == {"e", "E", "s", "U", "u", "b", "a"} and ev["e"] == "depthUpdate"
        assert all(len(x.split(".")[1]) == 8 for lv in ev["b"] + ev["a"] for x in lv)
        assert any(lv[1] == "0.00000000" for d in wrapped for lv in d["data"]["b"] + d["data"]["a"])


async def test_raw_combined_and_partial_depth_framing(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bn_cluster(markets) as cluster:
        url = cluster.rest_url("binance").replace("http", "ws")
        raw = await session.ws_connect(f"{url}/ws/btcusdt@depth@100ms")
        combined = await session.ws_connect(f"{url}/stream?streams=btcusdt@depth@100ms/ethbtc@depth5@100ms")
        partial = await session.ws_connect(f"{url}/ws/ethbtc@depth5@100ms")
        cluster.step()
        d = orjson.loads((await asyncio.wait_for(raw.receive(), TIMEOUT)).data)
        assert d["e"] == "depthUpdate" and d["s"] == "BTCUSDT" and d["u"] == cluster.seq("binance", "BTCUSDT")
        streams = {}
        for _ in range(2):
            c = orjson.loads((await asyncio.wait_for(combined.receive(), TIMEOUT)).data)
            streams[c["stream"]] = c["data"]
        assert streams["btcusdt@depth@100ms"] == d
        p = orjson.loads((await asyncio.wait_for(partial.receive(), TIMEOUT)).data)
        assert p == streams["ethbtc@depth5@100ms"] and set(p) == {"lastUpdateId", "bids", "asks"}
        bids, asks = cluster.book("binance", "ETH/BTC", 5)
        assert p["lastUpdateId"] == cluster.seq("binance", "ETH/BTC")
        assert [tuple(x) for x in p["bids"]] == bids and [tuple(x) for x in p["asks"]] == asks
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await session.ws_connect(f"{url}/ws/nopeusdt@depth")
        assert exc.value.status == 400


async def test_live_control_messages(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bn_cluster(markets) as cluster:
        url = cluster.rest_url("binance").replace("http", "ws")
        ws = await session.ws_connect(f"{url}/ws")

        async def call(body: object) -> Any:
            await ws.send_str(body if isinstance(body, str) else orjson.dumps(body).decode())
            return orjson.loads((await asyncio.wait_for(ws.receive(), TIMEOUT)).data)

        assert await call({"method": "SUBSCRIBE", "params": ["trxusdt@depth@100ms"], "id": 7}) == {
            "result": None, "id": 7}
        listed = await call({"method": "LIST_SUBSCRIPTIONS", "id": "x"})
        assert listed == {"result": ["trxusdt@depth@100ms"], "id": "x"}
        combined = await call({"method": "SET_PROPERTY", "params": ["combined", True], "id": 8})
        assert combined == {"result": None, "id": 8}
        assert await call({"method": "GET_PROPERTY", "params": ["combined"], "id": 9}) == {"result": True, "id": 9}
        cluster.step()
        d = orjson.loads((await asyncio.wait_for(ws.receive(), TIMEOUT)).data)
        assert d["stream"] == "trxusdt@depth@100ms" and d["data"]["s"] == "TRXUSDT"
        errs = await session.ws_connect(f"{url}/ws")
        ws = errs
        err = await call({"method": "SUBSCRIBE", "params": ["nopeusdt@depth@100ms"], "id": 1})
        assert err == {"code": 2, "msg": "Invalid request: unknown symbol", "id": 1}
        parsed = BinanceParser().parse(orjson.dumps(err), 0)
        assert parsed == [Control("error", "", "2 Invalid request: unknown symbol")]
        assert (await call("{oops"))["code"] == 3
        assert (await call({"method": "FLY", "id": 2}))["code"] == 2
        assert (await call({"method": "SET_PROPERTY", "params": ["speed", 1], "id": 3}))["code"] == 0


async def test_server_pings_and_pong_deadline(session: aiohttp.ClientSession, markets: Path) -> None:
    cfg: dict[str, Any] = {"binance_ping_interval_s": 0.25, "binance_pong_timeout_s": 0.6, "housekeeping_s": 0.02}
    async with bn_cluster(markets, **cfg) as cluster:
        mute = await session.ws_connect(cluster.url("binance"), autoping=False)
        polite = await session.ws_connect(cluster.url("binance"))  # aiohttp answers pings while reading
        polite_text = asyncio.Event()

        async def read_polite() -> None:
            async for m in polite:
                if m.type is aiohttp.WSMsgType.TEXT:
                    polite_text.set()

        reader = asyncio.create_task(read_polite())
        kinds = []
        while True:
            m = await asyncio.wait_for(mute.receive(), TIMEOUT)
            kinds.append(m.type)
            if m.type is not aiohttp.WSMsgType.PING:
                break
        assert kinds[:-1] and all(k is aiohttp.WSMsgType.PING for k in kinds[:-1])
        assert kinds[-1] is aiohttp.WSMsgType.CLOSE and m.data == 1008 and m.extra == "pong timeout"
        assert not polite.closed and not reader.done()
        await polite.send_str('{"method":"LIST_SUBSCRIPTIONS","id":1}')
        await asyncio.wait_for(polite_text.wait(), TIMEOUT)
        await polite.close()
        await reader


async def test_more_than_five_messages_a_second_closes(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bn_cluster(markets) as cluster:
        ws = await session.ws_connect(cluster.url("binance"))
        for i in range(6):
            await ws.send_str(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}).decode())
        replies = []
        while True:
            m = await asyncio.wait_for(ws.receive(), TIMEOUT)
            if m.type is not aiohttp.WSMsgType.TEXT:
                break
            replies.append(orjson.loads(m.data)["id"])
        assert replies == [0, 1, 2, 3, 4]
        assert m.type is aiohttp.WSMsgType.CLOSE and m.data == 1008


async def test_rest_weights_429_and_request_log(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bn_cluster(markets, binance_weight_limit=300) as cluster:
        rest = cluster.rest_url("binance")
        async with session.get(f"{rest}/api/v3/exchangeInfo") as r:
            assert r.headers["X-MBX-USED-WEIGHT-1M"] == "20"
            assert sorted(m.symbol for m in parse_instruments(await r.read())) == sorted([*SYMBOLS, "SOL/USDT"])
        used = 20
        for limit in (100, 500, 1000):
            async with session.get(f"{rest}/api/v3/depth?symbol=BTCUSDT&limit={limit}") as r:
                used += depth_weight(limit)
                assert r.status == 200 and r.headers["X-MBX-USED-WEIGHT-1M"] == str(used)
                d = await r.json()
                assert len(d["bids"]) == min(limit, 400) and d["lastUpdateId"] == cluster.seq("binance", "BTCUSDT")
        async with session.get(f"{rest}/api/v3/depth?symbol=BTCUSDT&limit=5000") as r:
            assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
            assert (await r.json())["code"] == -1003
        async with session.get(f"{rest}/api/v3/depth?symbol=NOPE") as r:
            assert r.status == 400 and (await r.json())["code"] == -1121
        log = cluster.binance.requests
        assert [(e.weight, e.status) for e in log] == [(20, 200), (5, 200), (25, 200), (50, 200), (0, 429), (5, 400)]
        assert log[1].path == "/api/v3/depth?symbol=BTCUSDT&limit=100"
        assert all(a.t <= b.t for a, b in itertools.pairwise(log))


async def test_snapshot_lag_is_older_than_the_stream(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bn_cluster(markets) as cluster:
        venue = cluster.binance
        feed = Feed(await session.ws_connect(f"{cluster.rest_url('binance').replace('http', 'ws')}/ws"))
        await feed.ws.send_str('{"method":"SUBSCRIBE","params":["btcusdt@depth@100ms"],"id":1}')
        await feed.until(lambda: bool(feed.raw))
        states = []
        for _ in range(5):
            cluster.step()
            states.append((cluster.seq("binance", "BTCUSDT"), cluster.book("binance", "BTCUSDT")))
        await feed.until(lambda: len(feed.events.get("btcusdt@depth@100ms", [])) == 5)
        venue.snapshot_lag(3)
        snap = await rest_depth(session, cluster, "BTCUSDT")
        assert snap.seq == states[1][0] < cluster.seq("binance", "BTCUSDT")
        assert ([tuple(x) for x in snap.bids], [tuple(x) for x in snap.asks]) == states[1][1]
        book = feed.books["btcusdt@depth@100ms"]
        book.on_snapshot(snap)  # bridges: drops 2 buffered events, applies 3
        assert book.valid and book.book.top(10**6) == venue.book("BTCUSDT")
        late = make_book("depth@100ms")
        for ev in feed.events["btcusdt@depth@100ms"][-2:]:
            late.on_message(ev)
        with pytest.raises(SnapshotTooOld):
            late.on_snapshot(snap)


async def test_faults_gap_crossed_garbage_stall_shutdown_drop(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bn_cluster(markets) as cluster:
        venue = cluster.binance
        feed = await bridged_feed(session, cluster, "BTCUSDT", "TRXUSDT")
        venue.skip_seq("BTCUSDT")
        cluster.step()
        with pytest.raises(SequenceGap):
            await feed.until(lambda: False)
        venue.corrupt_level("TRX/USDT", "size")  # no checksum on Binance: goes unnoticed
        cluster.step()
        await feed.sync(venue, "trxusdt@depth@100ms")
        assert feed.books["trxusdt@depth@100ms"].book.top(1)[0] != venue.book("TRXUSDT", 1)[0]
        venue.corrupt_level("TRX/USDT", "crossed")
        cluster.step()
        with pytest.raises(CrossedBook):
            await feed.until(lambda: False)
        venue.garbage(4)
        outcomes = []
        for _ in range(4):
            m = await feed.frame()
            try:
                outcomes.append(feed.parser.parse(m.data, 0)[0].__class__.__name__)
            except ParseError:
                outcomes.append("ParseError")
        assert outcomes == ["ParseError", "ParseError", "Control", "ParseError"]
        venue.stall(60)
        seq = venue.seq("BTCUSDT")
        cluster.step(3)
        assert venue.seq("BTCUSDT") == seq
        pinger = await session.ws_connect(cluster.url("binance"), autoping=False)
        await pinger.ping(b"hi")
        pong = await asyncio.wait_for(pinger.receive(), TIMEOUT)
        assert pong.type is aiohttp.WSMsgType.PONG and pong.data == b"hi"
        venue.stall(0)
        venue.shutdown(delay=0.01)
        await feed.until(lambda: Control("reconnect", "", "serverShutdown") in feed.controls)
        assert feed.raw[-1]["stream"] == "!serverShutdown" and feed.raw[-1]["data"]["e"] == "serverShutdown"
        close = await feed.frame()
        assert close.type is aiohttp.WSMsgType.CLOSE and close.data == 1001
        other = await session.ws_connect(cluster.url("binance"))
        venue.drop()
        end = await asyncio.wait_for(other.receive(), TIMEOUT)
        assert end.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR)


async def test_http_faults(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bn_cluster(markets) as cluster:
        rest = cluster.rest_url("binance")
        cluster.step(3)
        async with session.post(f"{rest}/sim/fault", json={"fault": "snapshot_lag", "ticks": 2}) as r:
            assert r.status == 200
        assert (await rest_depth(session, cluster, "ETHBTC")).seq < cluster.seq("binance", "ETH/BTC")
        for bad in ({"fault": "corrupt_checksum", "symbol": "ETHBTC"}, {"fault": "notice"}, {"fault": "seq_reset"}):
            async with session.post(f"{rest}/sim/fault", json=bad) as r:
                assert r.status == 400
        async with session.post(f"{rest}/sim/book", json={"symbol": "ETHBTC", "bids": [["0.05", "1"]],
                                                          "asks": [["0.06", "2"]]}) as r:
            assert r.status == 200
        assert cluster.book("binance", "ETH/BTC") == ([("0.05000000", "1.00000000")], [("0.06000000", "2.00000000")])


async def test_live_clock_100ms_and_1s_streams(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bn_cluster(markets, tick_ms=20) as cluster:
        url = cluster.rest_url("binance").replace("http", "ws")
        feed = Feed(await session.ws_connect(f"{url}/stream?streams=btcusdt@depth@100ms/btcusdt@depth"))
        fast, slow = "btcusdt@depth@100ms", "btcusdt@depth"
        await feed.until(lambda: len(feed.events.get(fast, [])) >= 3)
        snap = await rest_depth(session, cluster, "BTCUSDT")
        feed.books[fast].on_snapshot(snap)
        await feed.until(lambda: any(e.seq > snap.seq for e in feed.events.get(slow, [])))
        feed.books[slow].on_snapshot(snap)  # the 1 s stream bridges to the same snapshot
        await feed.until(lambda: len(feed.events[slow]) >= 2)
        cluster.freeze()
        for s in (fast, slow):
            await feed.sync(cluster.binance, s)
            feed.assert_same(cluster.binance, s)
        for a, b in itertools.pairwise(feed.events[slow]):
            assert b.prev == a.seq + 1


def test_walk_spreads_sometimes_exceed_fees_and_mostly_do_not() -> None:
    syms = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    walk = MarketWalk(syms, ["okx", "binance"], seed=5, tick_ms=100)
    over = n = 0
    for _ in range(30_000):
        walk.step()
        for s in syms:
            n += 1
            over += abs(walk.deviation_bps("okx", s) - walk.deviation_bps("binance", s)) > 20
    assert 0.005 < over / n < 0.25
    again = MarketWalk(syms, ["okx", "binance"], seed=5, tick_ms=100)
    for _ in range(30_000):
        again.step()
    assert again.mid == walk.mid and again.dev == walk.dev


def test_books_cross_venue_sometimes_and_stay_on_the_grid(markets: Path) -> None:
    cluster = SimCluster(symbols=["BTC/USDT", "SOL/USDT"], seed=2, tick_ms=0, markets_dir=markets)
    crossings = 0
    steps = 3000
    for _ in range(steps):
        cluster.step()
        for s in ("BTC/USDT", "SOL/USDT"):
            ob, oa = cluster.book("okx", s, 1)
            bb, ba = cluster.book("binance", s, 1)
            assert float(ob[0][0]) < float(oa[0][0]) and float(bb[0][0]) < float(ba[0][0])
            edge = max(float(ob[0][0]) / float(ba[0][0]), float(bb[0][0]) / float(oa[0][0])) - 1
            crossings += edge > 20e-4
    assert 0 < crossings < steps  # a >20 bps cross-venue edge happens, but rarely
    bids, asks = cluster.book("okx", "BTC/USDT")
    assert len(bids) == len(asks) == 400
    assert all(round(float(p) * 10) == float(p) * 10 for p, _ in bids[:50])
