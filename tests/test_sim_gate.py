"""Protocol tests for the Gate spot v4 simulator: a plain aiohttp client feeds what the simulator
sends through our own Gate parser and SyncedBook (``spot.obu`` full + diffs, and the legacy
``spot.order_book_update`` bridged to REST) and checks the result against the simulator's book
windows; keepalive, errors and every fault switch are driven and observed. The market is stepped
by hand (``tick_ms=0``) except in the live-clock test, so nothing depends on timing."""

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
from scanner.sim.base import FaultUnsupported
from scanner.sim.gate import GateKnobs, GateVenue
from scanner.sim.server import SimCluster, SimConfig
from scanner.venues.gate import GateParser, make_book, parse_instruments, parse_snapshot

TIMEOUT = 5.0
SYMBOLS = ["BTC/USDT", "TRX/USDT", "ETH/USDC"]
# (pair, precision, amount_precision) as in configs/markets/gate.json; the tests keep their own copy
# so that they do not depend on the cache file, which the app may refresh.
PAIRS = [("BTC_USDT", 1, 6), ("TRX_USDT", 5, 2), ("ETH_USDC", 2, 4)]


def gate_markets_body() -> bytes:
    return orjson.dumps([{"id": p, "base": p.split("_")[0], "quote": p.split("_")[1], "fee": "0.2",
                          "min_quote_amount": "3", "amount_precision": amt, "precision": prec,
                          "trade_status": "tradable", "sell_start": 0, "buy_start": 0} for p, prec, amt in PAIRS])


@pytest.fixture
def markets(tmp_path: Path) -> Path:
    (tmp_path / "gate.json").write_bytes(gate_markets_body())
    return tmp_path


def gate_cluster(markets: Path, knobs: GateKnobs | None = None, **cfg: Any) -> SimCluster:
    cluster = SimCluster(venues=["gate"], symbols=SYMBOLS, seed=9, tick_ms=int(cfg.pop("tick_ms", 0)),
                         config=SimConfig(**cfg), markets_dir=markets)
    sim(cluster).knobs = knobs or GateKnobs(resnapshot_p=0.0)
    return cluster


def sim(cluster: SimCluster) -> GateVenue:
    v = cluster.venue("gate")
    assert isinstance(v, GateVenue)
    return v


class Feed:
    """One socket's frames → GateParser (per channel) → one SyncedBook per stream.

    Streams are named as the simulator names them: ``ob.BTC_USDT.50`` and ``legacy.BTC_USDT.100``."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.parsers = {c: GateParser(c) for c in ("obu.50", "obu.400", "order_book_update")}
        self.books: dict[str, SyncedBook] = {}
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
        r = d.get("result") if d.get("event") == "update" else None
        if d.get("channel") == "spot.order_book_update" and r:
            channel, key = "order_book_update", f"legacy.{r['s']}.100"
        elif d.get("channel") == "spot.obu" and r:
            channel, key = f"obu.{r['s'].rpartition('.')[2]}", r["s"]
        else:  # acks and pongs: the parser of the channel they name
            channel, key = "order_book_update" if d.get("channel") == "spot.order_book_update" else "obu.50", ""
        for it in self.parsers[channel].parse(msg.data, time.time_ns()):
            if isinstance(it, BookMsg):
                self.msgs.setdefault(key, []).append(it)
                self.books.setdefault(key, make_book(channel)).on_message(it)
            else:
                self.controls.append(it)

    async def until(self, cond: Callable[[], bool]) -> None:
        while not cond():
            await self.read()

    async def sync(self, venue: GateVenue, key: str) -> None:
        kind, pair, level = key.split(".")

        def target() -> int:
            return venue.seq(pair) if kind == "legacy" else venue.obu_u(pair, int(level))

        def done() -> bool:
            b = self.books.get(key)
            return b is not None and b.valid and b.book.seq == target()

        await self.until(done)

    def assert_same(self, venue: GateVenue, key: str) -> None:
        _, pair, level = key.split(".")
        assert self.books[key].book.top(10**6) == venue.book(pair, int(level))


async def send(ws: aiohttp.ClientWebSocketResponse, event: str, channel: str, *payload: str, **extra: Any) -> None:
    await ws.send_str(orjson.dumps({"time": int(time.time()), **extra, "channel": channel, "event": event,
                                    "payload": list(payload)}).decode())


async def obu_feed(session: aiohttp.ClientSession, cluster: SimCluster, *streams: str) -> Feed:
    feed = Feed(await session.ws_connect(cluster.url("gate")))
    for s in streams:
        await send(feed.ws, "subscribe", "spot.obu", s)
    for s in streams:
        await feed.sync(sim(cluster), s)
    return feed


async def rest_book(session: aiohttp.ClientSession, cluster: SimCluster, pair: str, limit: int = 100) -> BookMsg:
    url = f"{cluster.rest_url('gate')}/api/v4/spot/order_book?currency_pair={pair}&limit={limit}&with_id=true"
    async with session.get(url) as r:
        assert r.status == 200
        return parse_snapshot(pair, await r.read(), 0)


async def test_obu_full_then_diffs_keep_the_window_equal(session: aiohttp.ClientSession, markets: Path) -> None:
    async with gate_cluster(markets) as cluster:
        venue = sim(cluster)
        streams = ["ob.BTC_USDT.50", "ob.TRX_USDT.400"]
        feed = Feed(await session.ws_connect(cluster.url("gate")))
        await send(feed.ws, "subscribe", "spot.obu", streams[0], id=7)
        await send(feed.ws, "subscribe", "spot.obu", streams[1])
        for s in streams:
            await feed.sync(venue, s)
        ack = feed.raw[0]
        assert ack["id"] == 7 and ack["result"] == {"status": "success"} and ack["payload"] == [streams[0]]
        assert {"time", "time_ms", "conn_id", "trace_id", "channel", "event", "requestId"} <= set(ack)
        assert feed.controls[0] == Control("info", "BTC_USDT", "subscribed spot.obu")
        full = feed.raw[1]["result"]
        assert full["full"] is True and full["s"] == streams[0] and "U" not in full and len(full["b"]) == 50
        for _ in range(25):
            cluster.step()
            for s in streams:
                await feed.sync(venue, s)
                feed.assert_same(venue, s)
        for s in streams:
            msgs = feed.msgs[s]
            assert msgs[0].snapshot and not any(m.snapshot for m in msgs[1:])
            for a, b in itertools.pairwise(msgs):
                assert b.prev == a.seq + 1 and b.seq >= b.prev  # U == previous u + 1
            assert any(m.seq > m.prev for m in msgs[1:])  # ids advance by the changes, not by one
        assert len(feed.books[streams[1]].book.bids) == 400
        diffs = [d["result"] for d in feed.raw if d.get("event") == "update" and "U" in d["result"]]
        assert all(list(r) == ["t", "s", "U", "u", "b", "a"] for r in diffs)
        assert any(lv[1] == "0" for r in diffs for lv in r["b"] + r["a"])  # levels leave the window


async def test_legacy_diffs_bridge_to_rest(session: aiohttp.ClientSession, markets: Path) -> None:
    async with gate_cluster(markets) as cluster:
        venue, key = sim(cluster), "legacy.ETH_USDC.100"
        feed = Feed(await session.ws_connect(cluster.url("gate")))
        await send(feed.ws, "subscribe", "spot.order_book_update", "ETH_USDC", "100ms")
        await feed.until(lambda: bool(feed.controls))
        assert feed.controls == [Control("subscribed", "ETH_USDC")]  # the collector's cue to fetch REST
        cluster.step(3)
        await feed.until(lambda: len(feed.msgs.get(key, [])) == 3)
        book = feed.books[key]
        assert not book.valid and book.buffered == 3
        venue.snapshot_lag(1)  # REST one change behind the stream: bridging drops two diffs, applies one
        snap = await rest_book(session, cluster, "ETH_USDC")
        assert snap.seq == feed.msgs[key][1].seq
        book.on_snapshot(snap)
        assert book.valid and book.book.seq == venue.seq("ETH/USDC")
        late = make_book("order_book_update")  # holds only the last diff: a snapshot two changes old is too old
        late.on_message(feed.msgs[key][-1])
        venue.snapshot_lag(2)
        with pytest.raises(SnapshotTooOld):
            late.on_snapshot(await rest_book(session, cluster, "ETH_USDC", 5))
        venue.snapshot_lag(0)
        for _ in range(20):
            cluster.step()
            await feed.sync(venue, key)
            feed.assert_same(venue, key)
        for a, b in itertools.pairwise(feed.msgs[key]):
            assert b.prev == a.seq + 1
        legacy = next(d for d in feed.raw if d.get("event") == "update")
        assert list(legacy) == ["time", "time_ms", "channel", "event", "result"]
        assert list(legacy["result"]) == ["t", "e", "E", "s", "U", "u", "b", "a"]


async def test_ping_errors_and_unsubscribe(session: aiohttp.ClientSession, markets: Path) -> None:
    async with gate_cluster(markets) as cluster:
        ws = await session.ws_connect(cluster.url("gate"))
        parser = GateParser()

        async def reply() -> Any:
            return orjson.loads((await asyncio.wait_for(ws.receive(), TIMEOUT)).data)

        await ws.send_str('{"channel":"spot.ping"}')  # what the collector sends: no time
        pong = await reply()
        assert pong["channel"] == "spot.pong" and pong["event"] == "" and pong["result"] is None
        assert parser.parse(orjson.dumps(pong), 0) == [Control("pong")]
        assert b'"spot.pong"' in orjson.dumps(pong) and len(orjson.dumps(pong)) < 256
        await ws.send_str('{"time":1729100692,"channel":"spot.ping","id":5}')
        assert (await reply())["id"] == 5
        await ws.send_str("{nope")
        assert (await reply())["error"]["code"] == 1
        await send(ws, "subscribe", "spot.obu", "ob.NOPE_USDT.50")
        err = await reply()
        assert err["error"] == {"code": 2, "message": "unknown currency pair NOPE_USDT"}
        assert parser.parse(orjson.dumps(err), 0) == [
            Control("error", "NOPE_USDT", "subscribe spot.obu: 2 unknown currency pair NOPE_USDT")]
        await send(ws, "subscribe", "spot.obu", "ob.BTC_USDT.20")
        assert (await reply())["error"]["code"] == 2
        await send(ws, "subscribe", "spot.obu", "ob.BTC_USDT.50")
        assert [(await reply()).get("event") for _ in range(2)] == ["subscribe", "update"]
        await send(ws, "subscribe", "spot.obu", "ob.BTC_USDT.50")
        dup = await reply()
        assert dup["error"] == {"code": 2, "message": "Alert sub ob.BTC_USDT.50"}
        await send(ws, "subscribe", "spot.obu", "ob.TRX_USDT.50")
        assert [(await reply()).get("event") for _ in range(2)] == ["subscribe", "update"]
        await send(ws, "unsubscribe", "spot.obu", "ob.BTC_USDT.50")
        unsub = await reply()
        assert unsub["event"] == "unsubscribe" and parser.parse(orjson.dumps(unsub), 0) == [
            Control("unsubscribed", "BTC_USDT")]
        cluster.step()
        nxt = await reply()  # BTC_USDT would come first within a tick; it no longer comes at all
        assert nxt["result"]["s"] == "ob.TRX_USDT.50"


async def test_idle_rule_is_a_knob(session: aiohttp.ClientSession, markets: Path) -> None:
    async with gate_cluster(markets, GateKnobs(idle_s=0.3), housekeeping_s=0.02) as cluster:
        silent = await obu_feed(session, cluster, "ob.BTC_USDT.50")
        pinging = await obu_feed(session, cluster, "ob.TRX_USDT.50")
        sim(cluster).stall(60)
        while True:
            await pinging.ws.send_str('{"channel":"spot.ping"}')
            assert orjson.loads((await pinging.frame()).data)["channel"] == "spot.pong"
            try:
                msg = await asyncio.wait_for(silent.ws.receive(), 0.05)
                break
            except TimeoutError:
                continue
        assert msg.type is aiohttp.WSMsgType.CLOSE and not pinging.ws.closed
    assert GateKnobs().idle_s == 0  # undocumented by Gate: off unless asked for


async def test_skip_seq_is_a_gap_on_both_channels(session: aiohttp.ClientSession, markets: Path) -> None:
    async with gate_cluster(markets) as cluster:
        venue, key = sim(cluster), "ob.BTC_USDT.50"
        feed = await obu_feed(session, cluster, key)
        venue.skip_seq("BTC/USDT")
        cluster.step()
        with pytest.raises(SequenceGap):
            await feed.until(lambda: False)
        await send(feed.ws, "unsubscribe", "spot.obu", key)
        await send(feed.ws, "subscribe", "spot.obu", key)
        await feed.sync(venue, key)
        cluster.step()
        await feed.sync(venue, key)
        feed.assert_same(venue, key)
        await send(feed.ws, "unsubscribe", "spot.obu", key)
        await send(feed.ws, "subscribe", "spot.order_book_update", "BTC_USDT", "100ms")
        await feed.until(lambda: Control("subscribed", "BTC_USDT") in feed.controls)
        cluster.step()
        await feed.until(lambda: "legacy.BTC_USDT.100" in feed.msgs)
        feed.books["legacy.BTC_USDT.100"].on_snapshot(await rest_book(session, cluster, "BTC_USDT"))
        venue.skip_seq("BTC/USDT")
        cluster.step()
        with pytest.raises(SequenceGap):
            await feed.until(lambda: False)


async def test_corrupt_level_and_unsupported_faults(session: aiohttp.ClientSession, markets: Path) -> None:
    async with gate_cluster(markets) as cluster:
        venue = sim(cluster)
        feed = await obu_feed(session, cluster, "ob.BTC_USDT.50", "ob.TRX_USDT.50")
        venue.corrupt_level("BTC/USDT", "size")  # no checksum on Gate: goes unnoticed, the book is wrong
        cluster.step()
        await feed.sync(venue, "ob.BTC_USDT.50")
        assert feed.books["ob.BTC_USDT.50"].book.top(1)[0] != venue.book("BTC/USDT", 1)[0]
        venue.corrupt_level("TRX/USDT", "crossed")
        cluster.step()
        with pytest.raises(CrossedBook):
            await feed.until(lambda: False)
        for fault in (venue.corrupt_checksum, venue.seq_reset, lambda s: venue.notice(), lambda s: venue.shutdown()):
            with pytest.raises(FaultUnsupported):
                fault("BTC/USDT")


async def test_full_pushes_at_any_time(session: aiohttp.ClientSession, markets: Path) -> None:
    async with gate_cluster(markets) as cluster:
        venue, key = sim(cluster), "ob.BTC_USDT.50"
        feed = await obu_feed(session, cluster, key)
        venue.resnapshot("BTC/USDT")
        cluster.step()
        await feed.sync(venue, key)
        assert feed.raw[-1]["result"]["full"] is True and feed.msgs[key][-1].snapshot
        venue.knobs = GateKnobs(resnapshot_p=1.0)
        cluster.step(3)
        await feed.sync(venue, key)
        assert [d["result"].get("full") for d in feed.raw[-3:]] == [True, True, True]
        feed.assert_same(venue, key)


async def test_rest_endpoints(session: aiohttp.ClientSession, markets: Path) -> None:
    async with gate_cluster(markets) as cluster:
        rest = cluster.rest_url("gate")
        cluster.step(2)
        async with session.get(f"{rest}/api/v4/spot/order_book?currency_pair=BTC_USDT&limit=500&with_id=true") as r:
            d = await r.json()
        assert d["id"] == cluster.seq("gate", "BTC/USDT") and len(d["bids"]) == 100
        assert [tuple(x) for x in d["asks"]] == cluster.book("gate", "BTC/USDT", 100)[1]
        async with session.get(f"{rest}/api/v4/spot/order_book?currency_pair=BTC_USDT") as r:
            d = await r.json()
        assert "id" not in d and len(d["asks"]) == 10
        with pytest.raises(ParseError):
            parse_snapshot("BTC_USDT", orjson.dumps(d), 0)
        async with session.get(f"{rest}/api/v4/spot/order_book?currency_pair=NOPE_USDT") as r:
            assert r.status == 400 and (await r.json())["label"] == "INVALID_CURRENCY_PAIR"
        async with session.get(f"{rest}/api/v4/spot/currency_pairs") as r:
            body = await r.read()
        assert body == gate_markets_body()
        assert sorted(m.symbol for m in parse_instruments(body)) == sorted(SYMBOLS)
        assert all(q.weight == 1 for q in sim(cluster).requests)


async def test_garbage_stall_and_drop(session: aiohttp.ClientSession, markets: Path) -> None:
    async with gate_cluster(markets) as cluster:
        venue = sim(cluster)
        feed = await obu_feed(session, cluster, "ob.BTC_USDT.50")
        venue.garbage(4)
        outcomes = []
        for _ in range(4):
            m = await feed.frame()
            try:
                outcomes.append(feed.parsers["obu.50"].parse(m.data, 0)[0].__class__.__name__)
            except ParseError:
                outcomes.append("ParseError")
        assert outcomes == ["ParseError", "ParseError", "Control", "ParseError"]
        venue.stall(60)
        u = venue.obu_u("BTC_USDT", 50)
        cluster.step(3)
        assert venue.obu_u("BTC_USDT", 50) == u
        await feed.ws.send_str('{"channel":"spot.ping"}')
        assert orjson.loads((await feed.frame()).data)["channel"] == "spot.pong"
        venue.stall(0)
        venue.drop()
        end = await feed.frame()
        assert end.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR)


async def test_live_clock(session: aiohttp.ClientSession, markets: Path) -> None:
    async with gate_cluster(markets, tick_ms=20) as cluster:
        streams = ["ob.BTC_USDT.50", "ob.ETH_USDC.400"]
        feed = await obu_feed(session, cluster, *streams)
        await feed.until(lambda: sum(len(m) for m in feed.msgs.values()) >= 30)
        cluster.freeze()
        for s in streams:
            await feed.sync(sim(cluster), s)
            feed.assert_same(sim(cluster), s)
