"""Protocol tests for the Bybit v5 spot simulator: a plain aiohttp client feeds what the simulator
sends through our own Bybit parser and SyncedBook and checks the result against the simulator's
book windows; keepalive, errors and every fault switch are driven and observed. The market is
stepped by hand (``tick_ms=0``) except in the live-clock test, so nothing depends on timing."""

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
from scanner.sim.bybit import BybitKnobs, BybitVenue
from scanner.sim.server import SimCluster, SimConfig
from scanner.venues.bybit import BybitParser, make_book, parse_instruments

TIMEOUT = 5.0
SYMBOLS = ["BTC/USDT", "XRP/USDT", "ETH/USDC"]
# (symbol, base, quote, tickSize, basePrecision) as in configs/markets/bybit.json; the tests keep their
# own copy so that they do not depend on the cache file, which the app may refresh.
INSTRUMENTS = [
    ("BTCUSDT", "BTC", "USDT", "0.1", "0.000001"),
    ("XRPUSDT", "XRP", "USDT", "0.0001", "0.01"),
    ("ETHUSDC", "ETH", "USDC", "0.01", "0.00001"),
]


def bybit_markets_body() -> bytes:
    rows = [{"symbol": s, "baseCoin": b, "quoteCoin": q, "status": "Trading",
             "lotSizeFilter": {"basePrecision": lot, "quotePrecision": "0.000001", "minOrderQty": lot,
                               "minOrderAmt": "5"}, "priceFilter": {"tickSize": t}} for s, b, q, t, lot in INSTRUMENTS]
    return orjson.dumps({"retCode": 0, "retMsg": "OK", "result": {"category": "spot", "list": rows},
                         "retExtInfo": {}, "time": 1})


@pytest.fixture
def markets(tmp_path: Path) -> Path:
    (tmp_path / "bybit.json").write_bytes(bybit_markets_body())
    return tmp_path


def bybit_cluster(markets: Path, knobs: BybitKnobs | None = None, **cfg: Any) -> SimCluster:
    cluster = SimCluster(venues=["bybit"], symbols=SYMBOLS, seed=5, tick_ms=int(cfg.pop("tick_ms", 0)),
                         config=SimConfig(**cfg), markets_dir=markets)
    venue = cluster.venue("bybit")
    assert isinstance(venue, BybitVenue)
    venue.knobs = knobs or BybitKnobs(resnapshot_p=0.0)
    return cluster


def sim(cluster: SimCluster) -> BybitVenue:
    v = cluster.venue("bybit")
    assert isinstance(v, BybitVenue)
    return v


class Feed:
    """One socket's frames → BybitParser (one per channel) → one SyncedBook per topic."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.parsers = {f"orderbook.{d}": BybitParser(f"orderbook.{d}") for d in (1, 50, 200, 1000)}
        self.books: dict[str, SyncedBook] = {}  # topic -> book
        self.msgs: dict[str, list[BookMsg]] = {}
        self.controls: list[Control] = []
        self.raw: list[dict[str, Any]] = []

    async def frame(self) -> aiohttp.WSMessage:
        return await asyncio.wait_for(self.ws.receive(), TIMEOUT)

    async def read(self) -> None:
        msg = await self.frame()
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        d = orjson.loads(msg.data)
        self.raw.append(d)
        topic = d.get("topic", "")
        channel = topic.rpartition(".")[0] if topic else "orderbook.50"
        for it in self.parsers[channel].parse(msg.data, time.time_ns()):
            if isinstance(it, BookMsg):
                self.msgs.setdefault(topic, []).append(it)
                self.books.setdefault(topic, make_book(channel)).on_message(it)
            else:
                self.controls.append(it)

    async def until(self, cond: Callable[[], bool]) -> None:
        while not cond():
            await self.read()

    async def sync(self, venue: BybitVenue, topic: str) -> None:
        """Read until our book for ``topic`` is valid and at the topic's current update id."""
        _, depth, inst = topic.split(".")

        def done() -> bool:
            b = self.books.get(topic)
            return b is not None and b.valid and b.book.seq == venue.topic_u(inst, int(depth))

        await self.until(done)

    def assert_same(self, venue: BybitVenue, topic: str) -> None:
        _, depth, inst = topic.split(".")
        assert self.books[topic].book.top(10**6) == venue.book(inst, int(depth))


async def send(ws: aiohttp.ClientWebSocketResponse, op: str, *args: str, **extra: object) -> None:
    await ws.send_str(orjson.dumps({**extra, "op": op, "args": list(args)}).decode())


async def subscribed_feed(session: aiohttp.ClientSession, cluster: SimCluster, *topics: str) -> Feed:
    feed = Feed(await session.ws_connect(cluster.url("bybit")))
    await send(feed.ws, "subscribe", *topics)
    for t in topics:
        await feed.sync(sim(cluster), t)
    return feed


async def test_snapshot_then_deltas_keep_the_window_equal(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bybit_cluster(markets) as cluster:
        venue = sim(cluster)
        topics = ["orderbook.50.BTCUSDT", "orderbook.50.ETHUSDC"]
        feed = Feed(await session.ws_connect(cluster.url("bybit")))
        await send(feed.ws, "subscribe", *topics, req_id="s1")
        for t in topics:
            await feed.sync(venue, t)
        ack = feed.raw[0]
        assert list(ack) == ["success", "ret_msg", "conn_id", "req_id", "op"]
        assert ack["success"] is True and ack["ret_msg"] == "subscribe" and ack["req_id"] == "s1"
        assert feed.controls[0] == Control("subscribed", "", "s1")
        snap = feed.raw[1]
        assert list(snap) == ["topic", "ts", "type", "data", "cts"] and snap["type"] == "snapshot"
        assert list(snap["data"]) == ["s", "b", "a", "u", "seq"] and len(snap["data"]["b"]) == 50
        assert all(not (("." in s) and s.endswith("0")) for lv in snap["data"]["b"] for s in lv)  # canonical
        for _ in range(30):
            cluster.step()
            for t in topics:
                await feed.sync(venue, t)
                feed.assert_same(venue, t)
        for t in topics:
            msgs = feed.msgs[t]
            assert msgs[0].snapshot and not any(m.snapshot for m in msgs[1:])
            for a, b in itertools.pairwise(msgs):
                assert b.seq == a.seq + 1 and b.prev == a.seq  # u continuity per topic
            assert len(feed.books[t].book.bids) == len(feed.books[t].book.asks) == 50
        deltas = [d for d in feed.raw if d.get("type") == "delta"]
        assert all(list(d["data"]) == ["s", "b", "a", "u", "seq"] for d in deltas)
        assert any(lv[1] == "0" for d in deltas for lv in d["data"]["b"] + d["data"]["a"])  # levels leave
        seqs = [d["data"]["seq"] for d in deltas if d["topic"] == topics[0]]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # cross sequence grows


async def test_deeper_topics_share_one_book(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bybit_cluster(markets) as cluster:
        venue = sim(cluster)
        topics = ["orderbook.200.XRPUSDT", "orderbook.1000.XRPUSDT"]
        feed = await subscribed_feed(session, cluster, *topics)
        for _ in range(15):
            cluster.step()
            for t in topics:
                await feed.sync(venue, t)
                feed.assert_same(venue, t)
        assert len(feed.books[topics[0]].book.bids) == 200
        assert feed.books[topics[1]].book.top(10**6) == venue.book("XRP/USDT")  # the whole book (400)
        assert venue.seq("XRP/USDT") == venue.topic_u("XRPUSDT", 1000)
        last = {t: next(d for d in reversed(feed.raw) if d.get("topic") == t) for t in topics}
        assert last[topics[0]]["data"]["seq"] <= last[topics[1]]["data"]["seq"]


async def test_depth_1_sends_snapshots_and_resends_them_unchanged(session: aiohttp.ClientSession,
                                                                   markets: Path) -> None:
    async with bybit_cluster(markets, BybitKnobs(l1_resend_s=0.0, resnapshot_p=0.0)) as cluster:
        venue = sim(cluster)
        feed = await subscribed_feed(session, cluster, "orderbook.1.BTCUSDT")
        for _ in range(5):
            cluster.step()
            await feed.sync(venue, "orderbook.1.BTCUSDT")
            feed.assert_same(venue, "orderbook.1.BTCUSDT")
        cluster.freeze()
        n = len(feed.msgs["orderbook.1.BTCUSDT"])
        cluster.step()
        await feed.until(lambda: len(feed.msgs["orderbook.1.BTCUSDT"]) > n)
        again = feed.msgs["orderbook.1.BTCUSDT"]
        assert again[-1].seq == again[-2].seq and again[-1].bids == again[-2].bids  # same u, same level
        assert all(m.snapshot and len(m.bids) == len(m.asks) == 1 for m in again)
        assert {d["type"] for d in feed.raw if "topic" in d} == {"snapshot"}


async def test_ping_errors_and_unsubscribe(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bybit_cluster(markets) as cluster:
        ws = await session.ws_connect(cluster.url("bybit"))
        parser = BybitParser()

        async def reply() -> Any:
            msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
            return orjson.loads(msg.data)

        await ws.send_str('{"op":"ping"}')
        pong = await reply()
        assert pong == {"success": True, "ret_msg": "pong", "conn_id": pong["conn_id"], "op": "ping"}
        assert parser.parse(orjson.dumps(pong), 0) == [Control("pong")]
        assert b'"pong"' in orjson.dumps(pong) and len(orjson.dumps(pong)) < 256  # what the connection matches
        await ws.send_str('{"req_id":"7","op":"ping"}')
        assert (await reply())["req_id"] == "7"
        await ws.send_str("{nope")
        assert (await reply())["success"] is False
        await send(ws, "login")
        assert "handler not found" in (await reply())["ret_msg"]
        await send(ws, "subscribe", *[f"orderbook.50.BTCUSDT{i}" for i in range(11)])
        assert (await reply())["ret_msg"] == "error:args size >10"
        await send(ws, "subscribe", "orderbook.25.BTCUSDT")
        assert (await reply())["success"] is False
        await send(ws, "subscribe", "orderbook.50.NOPEUSDT")
        err = await reply()
        assert parser.parse(orjson.dumps(err), 0) == [
            Control("error", "NOPEUSDT", "subscribe failed: error:handler not found,topic:orderbook.50.NOPEUSDT")]
        await send(ws, "subscribe", "orderbook.50.BTCUSDT", "orderbook.50.XRPUSDT")
        frames = [await reply() for _ in range(3)]
        assert [f.get("op", f.get("type")) for f in frames] == ["subscribe", "snapshot", "snapshot"]
        await send(ws, "subscribe", "orderbook.50.BTCUSDT")
        dup = await reply()
        assert dup["success"] is False and "already subscribed" in dup["ret_msg"]
        await send(ws, "unsubscribe", "orderbook.50.BTCUSDT")
        unsub = await reply()
        assert unsub["success"] is True and parser.parse(orjson.dumps(unsub), 0) == [Control("unsubscribed", "", "")]
        cluster.step()
        nxt = await reply()  # BTCUSDT would come first within a tick; it no longer comes at all
        assert nxt["topic"] == "orderbook.50.XRPUSDT" and nxt["type"] == "delta"


async def test_idle_connections_are_closed(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bybit_cluster(markets, BybitKnobs(idle_s=0.3), housekeeping_s=0.02) as cluster:
        never = await session.ws_connect(cluster.url("bybit"))
        msg = await asyncio.wait_for(never.receive(), TIMEOUT)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        silent = await subscribed_feed(session, cluster, "orderbook.50.BTCUSDT")
        pinging = await subscribed_feed(session, cluster, "orderbook.50.XRPUSDT")
        sim(cluster).stall(60)  # no book data: only pings keep a connection alive
        while True:
            await pinging.ws.send_str('{"op":"ping"}')
            assert orjson.loads((await pinging.frame()).data)["ret_msg"] == "pong"
            try:
                msg = await asyncio.wait_for(silent.ws.receive(), 0.05)
                break
            except TimeoutError:
                continue
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert not pinging.ws.closed


async def test_skip_seq_is_a_gap_and_resubscribe_heals(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bybit_cluster(markets) as cluster:
        venue, topic = sim(cluster), "orderbook.50.BTCUSDT"
        feed = await subscribed_feed(session, cluster, topic)
        venue.skip_seq("BTC/USDT")
        cluster.step()
        with pytest.raises(SequenceGap):
            await feed.until(lambda: False)
        assert not feed.books[topic].valid
        await send(feed.ws, "unsubscribe", topic)
        await send(feed.ws, "subscribe", topic)
        await feed.sync(venue, topic)
        cluster.step()
        await feed.sync(venue, topic)
        feed.assert_same(venue, topic)


async def test_corrupt_level_and_unsupported_faults(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bybit_cluster(markets) as cluster:
        venue = sim(cluster)
        feed = await subscribed_feed(session, cluster, "orderbook.50.BTCUSDT", "orderbook.50.XRPUSDT")
        venue.corrupt_level("BTC/USDT", "size")  # no checksum on Bybit: goes unnoticed, the book is wrong
        cluster.step()
        await feed.sync(venue, "orderbook.50.BTCUSDT")
        assert feed.books["orderbook.50.BTCUSDT"].valid
        assert feed.books["orderbook.50.BTCUSDT"].book.top(1)[0] != venue.book("BTC/USDT", 1)[0]
        venue.corrupt_level("XRP/USDT", "crossed")
        cluster.step()
        with pytest.raises(CrossedBook):
            await feed.until(lambda: False)
        for fault in (venue.corrupt_checksum, lambda s: venue.snapshot_lag(3), lambda s: venue.notice(),
                      lambda s: venue.shutdown()):
            with pytest.raises(FaultUnsupported):
                fault("BTC/USDT")


async def test_service_restart_and_resnapshots(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bybit_cluster(markets) as cluster:
        venue, topic = sim(cluster), "orderbook.50.BTCUSDT"
        feed = await subscribed_feed(session, cluster, topic)
        venue.seq_reset("BTC/USDT")
        cluster.step()
        await feed.sync(venue, topic)
        restart = feed.raw[-1]
        assert restart["type"] == "snapshot" and restart["data"]["u"] == 1 and feed.msgs[topic][-1].snapshot
        cluster.step(3)
        await feed.sync(venue, topic)
        assert [m.seq for m in feed.msgs[topic][-4:]] == [1, 2, 3, 4]
        feed.assert_same(venue, topic)
        venue.resnapshot("BTC/USDT")
        cluster.step()
        await feed.sync(venue, topic)
        assert feed.raw[-1]["type"] == "snapshot" and feed.msgs[topic][-1].seq == 5
        venue.knobs = BybitKnobs(resnapshot_p=1.0)  # every delta becomes an unprompted snapshot
        cluster.step(2)
        await feed.sync(venue, topic)
        assert [d["type"] for d in feed.raw[-2:]] == ["snapshot", "snapshot"]
        feed.assert_same(venue, topic)


async def test_rest_orderbook_and_instruments(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bybit_cluster(markets) as cluster:
        rest, venue = cluster.rest_url("bybit"), sim(cluster)
        cluster.step(3)
        async with session.get(f"{rest}/v5/market/orderbook?category=spot&symbol=BTCUSDT&limit=200") as r:
            d = await r.json()
        assert d["retCode"] == 0 and d["result"]["u"] == venue.seq("BTC/USDT")
        bids, asks = venue.book("BTC/USDT", 200)
        assert [tuple(x) for x in d["result"]["b"]] == bids and [tuple(x) for x in d["result"]["a"]] == asks
        async with session.get(f"{rest}/v5/market/orderbook?category=spot&symbol=NOPE") as r:
            assert (await r.json())["retCode"] == 10001
        async with session.get(f"{rest}/v5/market/instruments-info?category=spot") as r:
            body = await r.read()
        assert body == bybit_markets_body()  # served unchanged
        assert sorted(m.symbol for m in parse_instruments(body)) == sorted(SYMBOLS)
        async with session.get(f"{rest}/v5/market/instruments-info?category=linear") as r:
            assert (await r.json())["result"]["list"] == []
        async with session.get(f"{rest}/v5/market/instruments-info") as r:
            assert (await r.json())["retCode"] == 10001
        with pytest.raises(ParseError):
            parse_instruments(b'{"retCode":0,"result":{"category":"linear","list":[]}}')


async def test_garbage_stall_and_drop(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bybit_cluster(markets) as cluster:
        venue = sim(cluster)
        feed = await subscribed_feed(session, cluster, "orderbook.50.BTCUSDT")
        venue.garbage(4)
        outcomes = []
        for _ in range(4):
            m = await feed.frame()
            try:
                outcomes.append(feed.parsers["orderbook.50"].parse(m.data, 0)[0].__class__.__name__)
            except ParseError:
                outcomes.append("ParseError")
        assert outcomes == ["ParseError", "ParseError", "Control", "ParseError"]
        assert feed.books["orderbook.50.BTCUSDT"].valid
        venue.stall(60)
        u = venue.topic_u("BTCUSDT", 50)
        cluster.step(3)
        assert venue.topic_u("BTCUSDT", 50) == u
        await feed.ws.send_str('{"op":"ping"}')  # pings are still answered
        assert orjson.loads((await feed.frame()).data)["ret_msg"] == "pong"
        venue.stall(0)
        venue.drop()
        end = await feed.frame()
        assert end.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR)


async def test_live_clock(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bybit_cluster(markets, tick_ms=20) as cluster:
        topics = ["orderbook.50.BTCUSDT", "orderbook.200.ETHUSDC"]
        feed = await subscribed_feed(session, cluster, *topics)
        await feed.until(lambda: sum(len(m) for m in feed.msgs.values()) >= 30)
        cluster.freeze()
        for t in topics:
            await feed.sync(sim(cluster), t)
            feed.assert_same(sim(cluster), t)
