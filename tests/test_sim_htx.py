"""Protocol tests for the HTX simulator: a plain aiohttp client feeds the simulator's gzip frames
through our own HTX parser and SyncedBook (answering pings and sending the ``req`` as the
collector does) and checks the result against the simulator's book; every fault switch is
driven and observed. The market is stepped by hand (``tick_ms=0``) except in the live-clock
test, so nothing depends on timing. End to end and ccxt.pro: ``test_sim_htx_e2e.py``."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from scanner.book.errors import CrossedBook, ParseError, SequenceGap
from scanner.book.sync import SyncedBook
from scanner.model import BookMsg, Control
from scanner.sim.base import FaultUnsupported
from scanner.sim.htx import HtxKnobs, HtxVenue
from scanner.sim.server import SimCluster, SimConfig
from scanner.venues.htx import LEVELS, HtxParser, make_book, parse_instruments, subscribe, ws_snapshot

TIMEOUT = 5.0
SYMBOLS = ["BTC/USDT", "ETH/BTC", "XRP/USDT"]
# (symbol, base, quote, price-precision, amount-precision, min-order-amt) in /v1/common/symbols form; the
# tests keep their own copy so they do not depend on configs/markets/htx.json.
INSTRUMENTS = [("btcusdt", "btc", "usdt", 2, 6, "0.0001"), ("ethbtc", "eth", "btc", 6, 4, "0.001"),
               ("xrpusdt", "xrp", "usdt", 5, 2, "1")]


@pytest.fixture
def markets(tmp_path: Path) -> Path:
    rows = ",".join(
        f'{{"base-currency":"{b}","quote-currency":"{q}","price-precision":{pp},"amount-precision":{ap},'
        f'"symbol-partition":"main","symbol":"{s}","state":"online","value-precision":8,"min-order-amt":{mn},'
        f'"api-trading":"enabled"}}' for s, b, q, pp, ap, mn in INSTRUMENTS)
    (tmp_path / "htx.json").write_text(f'{{"status":"ok","data":[{rows}]}}')
    return tmp_path


def htx_cluster(markets: Path, knobs: HtxKnobs | None = None, **cfg: Any) -> SimCluster:
    cluster = SimCluster(venues=["htx"], symbols=SYMBOLS, seed=7, tick_ms=int(cfg.pop("tick_ms", 0)),
                         config=SimConfig(**cfg), markets_dir=markets)
    if knobs is not None:
        venue(cluster).knobs = knobs
    return cluster


def venue(cluster: SimCluster) -> HtxVenue:
    v = cluster.venue("htx")
    assert isinstance(v, HtxVenue)
    return v


class Feed:
    """One socket's frames → HtxParser → one SyncedBook per instrument. Like the collector it
    answers pings (``pong``) and sends the ``req`` when a subscription is acknowledged (``req``)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, channel: str = "mbp.150", *, pong: bool = True,
                 req: bool = True) -> None:
        self.ws, self.channel, self.pong, self.req = ws, channel, pong, req
        self.parser = HtxParser(channel)
        self.books: dict[str, SyncedBook] = {}
        self.msgs: list[BookMsg] = []
        self.controls: list[Control] = []
        self.raw: list[dict[str, Any]] = []
        self.pings = 0

    async def frame(self) -> aiohttp.WSMessage:
        return await asyncio.wait_for(self.ws.receive(), TIMEOUT)

    async def read(self) -> list[BookMsg | Control]:
        msg = await self.frame()
        assert msg.type is aiohttp.WSMsgType.BINARY, msg
        self.raw.append(json.loads(gzip.decompress(msg.data)))
        items = self.parser.parse(msg.data, time.time_ns())
        for it in items:
            if isinstance(it, BookMsg):
                self.msgs.append(it)
                self.books.setdefault(it.inst, make_book(self.channel)).on_message(it)
                continue
            self.controls.append(it)
            if it.kind == "send":
                self.pings += 1
                if self.pong:
                    await self.ws.send_str(it.detail)
            elif it.kind == "subscribed" and self.req:
                for f in ws_snapshot(it.inst, self.channel):
                    await self.ws.send_str(f)
        return items

    async def until(self, cond: Callable[[], bool]) -> None:
        while not cond():
            await self.read()

    async def sync(self, v: HtxVenue, inst: str) -> None:
        """Read until our book for ``inst`` is valid and at the seqNum the simulator last sent."""
        def done() -> bool:
            b = self.books.get(inst)
            return b is not None and b.valid and b.book.seq == v.view_seq(inst, LEVELS[self.channel])

        await self.until(done)

    def assert_same(self, v: HtxVenue, inst: str) -> None:
        assert self.books[inst].book.top(10**6) == v.book(inst, LEVELS[self.channel])


async def subscribed_feed(session: aiohttp.ClientSession, cluster: SimCluster, *insts: str,
                          channel: str = "mbp.150") -> Feed:
    feed = Feed(await session.ws_connect(cluster.url("htx")), channel)
    for f in subscribe(list(insts), channel):
        await feed.ws.send_str(f)
    for inst in insts:
        await feed.sync(venue(cluster), inst)
    return feed


async def test_sub_req_then_chained_updates_equal_the_simulator(session: aiohttp.ClientSession,
                                                                 markets: Path) -> None:
    async with htx_cluster(markets) as cluster:
        v = venue(cluster)
        feed = await subscribed_feed(session, cluster, "btcusdt", "ethbtc")
        acks = [d for d in feed.raw if "subbed" in d]
        assert acks[0]["id"] == "sub.btcusdt" and acks[0]["status"] == "ok" and acks[0]["subbed"] == (
            "market.btcusdt.mbp.150") and isinstance(acks[0]["ts"], int)
        rep = next(d for d in feed.raw if "rep" in d)
        assert rep["id"] == "req.btcusdt" and rep["status"] == "ok" and set(rep["data"]) == {"seqNum", "bids", "asks"}
        assert len(rep["data"]["bids"]) == len(rep["data"]["asks"]) == 150
        assert all(isinstance(x, float) for lv in rep["data"]["bids"] for x in lv)  # JSON numbers, not strings
        for _ in range(25):
            cluster.step()
            for inst in ("btcusdt", "ethbtc"):
                await feed.sync(v, inst)
                feed.assert_same(v, inst)
        for inst in ("btcusdt", "ethbtc"):
            msgs = [m for m in feed.msgs if m.inst == inst]
            assert msgs[0].snapshot and not any(m.snapshot for m in msgs[1:])
            assert msgs[1].prev == msgs[0].seq
            for a, b in itertools.pairwise(msgs[1:]):
                assert b.prev == a.seq and b.seq > b.prev
            assert any(b.seq - b.prev > len(b.bids) + len(b.asks) for b in msgs[1:])  # seqNum jumps
        updates = [d for d in feed.raw if "ch" in d]
        assert all(set(d) == {"ch", "ts", "tick"} and set(d["tick"]) == {"seqNum", "prevSeqNum", "bids", "asks"}
                   for d in updates)
        assert any(lv[1] == 0 for d in updates for lv in d["tick"]["bids"] + d["tick"]["asks"])  # deletions


async def test_mbp400_full_book_and_tick_by_tick_mbp5(session: aiohttp.ClientSession, markets: Path) -> None:
    async with htx_cluster(markets) as cluster:
        v = venue(cluster)
        full = await subscribed_feed(session, cluster, "xrpusdt", channel="mbp.400")
        top5 = await subscribed_feed(session, cluster, "xrpusdt", channel="mbp.5")
        for _ in range(30):
            cluster.step()
            await full.sync(v, "xrpusdt")
            await top5.sync(v, "xrpusdt")
            full.assert_same(v, "xrpusdt")
            top5.assert_same(v, "xrpusdt")
            assert len(top5.books["xrpusdt"].book.bids) == 5
        assert len(full.books["xrpusdt"].book.bids) == 400
        ticks = [d["tick"] for d in top5.raw if "ch" in d]
        assert any(("bids" in t) != ("asks" in t) for t in ticks)  # a side that did not change is left out
        assert all("bids" in d["tick"] and "asks" in d["tick"] for d in full.raw if "ch" in d)


async def test_updates_buffered_before_the_image_bridge(session: aiohttp.ClientSession, markets: Path) -> None:
    async with htx_cluster(markets) as cluster:
        v = venue(cluster)
        feed = Feed(await session.ws_connect(cluster.url("htx")), req=False)
        await feed.ws.send_str(subscribe(["btcusdt"], "mbp.150")[0])
        await feed.until(lambda: any(c.kind == "subscribed" for c in feed.controls))
        for _ in range(3):
            cluster.step()
            await feed.until(lambda: len(feed.msgs) >= 1 and feed.msgs[-1].seq == v.view_seq("btcusdt", 150))
        book = feed.books["btcusdt"]
        assert not book.valid and book.buffered == 3
        await feed.ws.send_str(ws_snapshot("btcusdt", "mbp.150")[0])
        await feed.until(lambda: book.valid)
        assert feed.msgs[-1].snapshot and feed.msgs[-1].seq == feed.msgs[-2].seq  # the image is at the last update
        cluster.step()
        await feed.sync(v, "btcusdt")
        feed.assert_same(v, "btcusdt")


async def test_depth_step0_and_the_ws_path(session: aiohttp.ClientSession, markets: Path) -> None:
    async with htx_cluster(markets) as cluster:
        v = venue(cluster)
        feed = Feed(await session.ws_connect(f"{cluster.rest_url('htx').replace('http', 'ws')}/ws"), "depth.step0",
                    req=False)
        await feed.ws.send_str(subscribe(["ethbtc"], "depth.step0")[0])
        await feed.until(lambda: "ethbtc" in feed.books)  # pushed right after the ack
        assert "subbed" in feed.raw[0] and "ch" in feed.raw[1]
        for _ in range(5):
            cluster.step()
            await feed.until(lambda: feed.msgs[-1].seq == cluster.seq("htx", "ethbtc"))
            assert feed.msgs[-1].snapshot
            feed.assert_same(v, "ethbtc")
        await feed.ws.send_str(ws_snapshot("ethbtc", "depth.step0")[0])
        items = await feed.read()
        assert isinstance(items[0], BookMsg) and items[0].snapshot and "rep" in feed.raw[-1]
        assert [r.path for r in v.requests] == ["/ws"]


async def test_keepalive_answered_pings_keep_the_connection_two_missed_close_it(
    session: aiohttp.ClientSession, markets: Path
) -> None:
    async with htx_cluster(markets, HtxKnobs(ping_interval_s=0.05), housekeeping_s=0.01) as cluster:
        v = venue(cluster)
        alive = await subscribed_feed(session, cluster, "btcusdt")
        silent = Feed(await session.ws_connect(cluster.url("htx")), pong=False)
        v.stall(60)  # no book data: only the heartbeat is on the wire

        async def until_closed() -> aiohttp.WSMessage:
            while True:
                msg = await silent.frame()
                if msg.type is not aiohttp.WSMsgType.BINARY:
                    return msg
                silent.parser.parse(msg.data, 0)
                silent.pings += 1

        async def answer(n: int) -> None:
            await alive.until(lambda: alive.pings >= n)

        closed, _ = await asyncio.gather(until_closed(), answer(6))
        assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 1000
        assert silent.pings == 2  # closed at the third ping time, after two unanswered pings
        assert not alive.ws.closed and v.pongs >= 5
        raw_pings = [d for d in alive.raw if "ping" in d]
        assert all(isinstance(d["ping"], int) for d in raw_pings) and len({d["ping"] for d in raw_pings}) == 6
        await alive.ws.send_str('{"ping":1492420473027}')  # the client may ping too
        await alive.until(lambda: alive.controls[-1].kind == "pong")
        assert alive.raw[-1] == {"pong": 1492420473027}


async def test_errors_and_unsubscribe(session: aiohttp.ClientSession, markets: Path) -> None:
    async with htx_cluster(markets) as cluster:
        feed = await subscribed_feed(session, cluster, "btcusdt", "xrpusdt")

        async def reply(text: str) -> tuple[dict[str, Any], list[BookMsg | Control]]:
            await feed.ws.send_str(text)
            items = await feed.read()
            return feed.raw[-1], items

        d, items = await reply('{"sub":"market.nopeusdt.mbp.150","id":"sub.nopeusdt"}')
        assert d["status"] == "error" and d["err-code"] == "bad-request" and d["id"] == "sub.nopeusdt"
        assert d["err-msg"] == "invalid mbp.150.symbol nopeusdt"
        assert items == [Control("error", "nopeusdt", "bad-request invalid mbp.150.symbol nopeusdt")]
        d, items = await reply('{"req":"market.btcusdt.mbp.7","id":"req.btcusdt"}')
        assert d["err-msg"] == "invalid topic market.btcusdt.mbp.7"
        assert [c.kind for c in items if isinstance(c, Control)] == ["error", "resync"]
        assert (await reply("{not json"))[0]["err-msg"] == "invalid json"
        assert (await reply('{"hello":1}'))[0]["err-msg"] == "invalid request"
        assert (await reply('{"pong":"x"}'))[0]["err-msg"] == "invalid pong"
        d, items = await reply('{"unsub":"market.btcusdt.mbp.150","id":"unsub.btcusdt"}')
        assert d["unsubbed"] == "market.btcusdt.mbp.150" and items == [Control("unsubscribed", "btcusdt")]
        cluster.step()
        await feed.read()  # btcusdt would come first within a tick; it no longer comes at all
        assert feed.msgs[-1].inst == "xrpusdt"


async def test_skip_seq_makes_our_book_raise_a_gap_then_req_heals(session: aiohttp.ClientSession,
                                                                  markets: Path) -> None:
    async with htx_cluster(markets) as cluster:
        v = venue(cluster)
        feed = await subscribed_feed(session, cluster, "btcusdt")
        cluster.freeze()  # even with no change the lost update shows as a broken chain
        v.skip_seq("BTC/USDT")
        cluster.step()
        with pytest.raises(SequenceGap):
            await feed.until(lambda: False)
        assert not feed.books["btcusdt"].valid and feed.msgs[-1].prev != feed.msgs[-2].seq
        await feed.ws.send_str(ws_snapshot("btcusdt", "mbp.150")[0])
        await feed.sync(v, "btcusdt")
        cluster.freeze(False)
        cluster.step()
        await feed.sync(v, "btcusdt")
        feed.assert_same(v, "btcusdt")


async def test_corrupt_level_crossed_is_caught_size_goes_unnoticed(session: aiohttp.ClientSession,
                                                                   markets: Path) -> None:
    async with htx_cluster(markets) as cluster:
        v = venue(cluster)
        feed = await subscribed_feed(session, cluster, "btcusdt", "xrpusdt")
        v.corrupt_level("BTC/USDT", "size")  # no checksum on HTX: the book is silently wrong
        cluster.step()
        await feed.sync(v, "btcusdt")
        assert feed.books["btcusdt"].valid
        assert feed.books["btcusdt"].book.top(1)[0] != cluster.book("htx", "BTC/USDT", 1)[0]
        v.corrupt_level("XRP/USDT", "crossed")
        cluster.step()
        with pytest.raises(CrossedBook):
            await feed.until(lambda: False)


async def test_unsupported_faults(markets: Path) -> None:
    async with htx_cluster(markets) as cluster:
        v = venue(cluster)
        faults: list[Callable[[], None]] = [lambda: v.corrupt_checksum("BTC/USDT"), lambda: v.seq_reset("BTC/USDT"),
                                             lambda: v.snapshot_lag(3), v.notice, v.shutdown]
        for fault in faults:
            with pytest.raises(FaultUnsupported):
                fault()


async def test_garbage_and_drop(session: aiohttp.ClientSession, markets: Path) -> None:
    async with htx_cluster(markets) as cluster:
        v = venue(cluster)
        feed = await subscribed_feed(session, cluster, "btcusdt")
        n = len(v.garbage_frames())
        v.garbage(n)
        for _ in range(n):
            msg = await feed.frame()
            assert msg.type is aiohttp.WSMsgType.BINARY
            with pytest.raises(ParseError):
                feed.parser.parse(msg.data, 0)
        assert feed.books["btcusdt"].valid
        cluster.step()
        await feed.sync(v, "btcusdt")
        v.drop()
        end = await feed.frame()
        assert end.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR)


async def test_rest_symbols_served_unchanged(session: aiohttp.ClientSession, markets: Path) -> None:
    async with htx_cluster(markets) as cluster:
        async with session.get(f"{cluster.rest_url('htx')}/v1/common/symbols") as r:
            body = await r.read()
        assert body == (markets / "htx.json").read_bytes()
        assert sorted(m.symbol for m in parse_instruments(body)) == sorted(SYMBOLS)
        assert [(q.path, q.weight, q.status) for q in venue(cluster).requests] == [("/v1/common/symbols", 1, 200)]


async def test_set_book_goes_out_in_htx_number_text(session: aiohttp.ClientSession, markets: Path) -> None:
    async with htx_cluster(markets) as cluster:
        v = venue(cluster)
        feed = await subscribed_feed(session, cluster, "btcusdt")
        cluster.set_book("htx", "BTC/USDT", [["65000.10", "0.5"], ["64999", "0.0002"]], [["65100", "40000000"]])
        await feed.sync(v, "btcusdt")
        assert feed.books["btcusdt"].book.top(10) == ([("65000.1", "0.5"), ("64999.0", "2.0E-4")],
                                                      [("65100.0", "4.0E7")])
        feed.assert_same(v, "btcusdt")
        seq = cluster.seq("htx", "BTC/USDT")
        cluster.step(3)  # held: the walk leaves it alone
        assert cluster.seq("htx", "BTC/USDT") == seq
        v.release("BTC/USDT")
        cluster.step()
        await feed.sync(v, "btcusdt")
        assert len(feed.books["btcusdt"].book.bids) == 150
        feed.assert_same(v, "btcusdt")


async def test_live_clock(session: aiohttp.ClientSession, markets: Path) -> None:
    async with htx_cluster(markets, tick_ms=20) as cluster:
        v = venue(cluster)
        feed = await subscribed_feed(session, cluster, "btcusdt", "ethbtc")
        await feed.until(lambda: len(feed.msgs) >= 30)
        cluster.freeze()
        for inst in ("btcusdt", "ethbtc"):
            await feed.sync(v, inst)
            feed.assert_same(v, inst)


def test_same_seed_same_market(markets: Path) -> None:
    def run(seed: int) -> list[object]:
        c = SimCluster(venues=["htx"], symbols=SYMBOLS, seed=seed, tick_ms=0, markets_dir=markets)
        c.step(40)
        return [(c.seq("htx", s), c.book("htx", s)) for s in SYMBOLS]

    assert run(3) == run(3)
    assert run(3) != run(4)
