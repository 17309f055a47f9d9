"""Protocol tests for the OKX simulator: a plain aiohttp client feeds what the simulator sends
through our own OKX parser and SyncedBook and checks the result against the simulator's
book; every fault switch is driven and observed. The market is stepped by hand
(``tick_ms=0``) except in the live-clock test, so nothing depends on timing."""

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

from scanner.book.checksum import okx_checksum
from scanner.book.errors import ChecksumMismatch, CrossedBook, ParseError, SequenceGap
from scanner.book.sync import SyncedBook
from scanner.model import BookMsg, Control
from scanner.sim.base import FaultUnsupported
from scanner.sim.okx import OkxVenue
from scanner.sim.server import SimCluster, SimConfig
from scanner.venues.okx import OkxParser, make_book, parse_instruments, parse_snapshot

TIMEOUT = 5.0
SYMBOLS = ["BTC/USDT", "ETH/BTC", "XRP/USDT"]
# (instId, tickSz, lotSz, minSz) as in configs/markets/okx.json; the tests keep their own copy so
# that they do not depend on the cache file, which the app may refresh.
INSTRUMENTS = [
    ("BTC-USDT", "0.1", "0.00000001", "0.00001"),
    ("ETH-BTC", "0.00001", "0.000001", "0.0001"),
    ("XRP-USDT", "0.0001", "0.000001", "0.1"),
]


@pytest.fixture
def markets(tmp_path: Path) -> Path:
    """A market folder holding okx.json for the test instruments."""
    rows = [{"instType": "SPOT", "instId": i, "baseCcy": i.split("-")[0], "quoteCcy": i.split("-")[1],
             "tickSz": t, "lotSz": lot, "minSz": m, "state": "live"} for i, t, lot, m in INSTRUMENTS]
    (tmp_path / "okx.json").write_bytes(orjson.dumps({"code": "0", "msg": "", "data": rows}))
    return tmp_path


def okx_cluster(markets: Path, **cfg: Any) -> SimCluster:
    checksum = bool(cfg.pop("checksum", False))
    return SimCluster(venues=["okx"], symbols=SYMBOLS, seed=7, tick_ms=int(cfg.pop("tick_ms", 0)),
                      okx_checksum=checksum, config=SimConfig(**cfg), markets_dir=markets)


class Feed:
    """One socket's frames → OkxParser → one SyncedBook per instrument."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, channel: str = "books") -> None:
        self.ws = ws
        self.parser = OkxParser(channel)
        self.books: dict[str, SyncedBook] = {}
        self.msgs: list[BookMsg] = []
        self.controls: list[Control] = []
        self.raw: list[dict[str, Any]] = []

    async def frame(self) -> aiohttp.WSMessage:
        return await asyncio.wait_for(self.ws.receive(), TIMEOUT)

    async def read(self) -> list[BookMsg | Control]:
        msg = await self.frame()
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        if msg.data != "pong":
            self.raw.append(orjson.loads(msg.data))
        items = self.parser.parse(msg.data, time.time_ns())
        for it in items:
            if isinstance(it, BookMsg):
                self.msgs.append(it)
                self.books.setdefault(it.inst, make_book("books")).on_message(it)
            else:
                self.controls.append(it)
        return items

    async def until(self, cond: Callable[[], bool]) -> None:
        while not cond():
            await self.read()

    async def sync(self, venue: OkxVenue, inst: str) -> None:
        """Read until our book for ``inst`` is valid and at the simulator's current seqId."""
        def done() -> bool:
            b = self.books.get(inst)
            return b is not None and b.valid and b.book.seq == venue.seq(inst)

        await self.until(done)

    def assert_same(self, venue: OkxVenue, inst: str) -> None:
        bids, asks = self.books[inst].book.top(10**6)
        assert (bids, asks) == venue.book(inst)


async def send(ws: aiohttp.ClientWebSocketResponse, op: str, *args: tuple[str, str], **extra: object) -> None:
    body = {**extra, "op": op, "args": [{"channel": c, "instId": i} for c, i in args]}
    await ws.send_str(orjson.dumps(body).decode())


async def subscribed_feed(session: aiohttp.ClientSession, cluster: SimCluster, *insts: str) -> Feed:
    feed = Feed(await session.ws_connect(cluster.url("okx")))
    await send(feed.ws, "subscribe", *[("books", i) for i in insts])
    for inst in insts:
        await feed.sync(cluster.okx, inst)
    return feed


async def test_snapshot_then_chained_updates_equal_the_simulator(session: aiohttp.ClientSession, markets: Path) -> None:
    async with okx_cluster(markets) as cluster:
        venue = cluster.okx
        feed = Feed(await session.ws_connect(cluster.url("okx")))
        await send(feed.ws, "subscribe", ("books", "BTC-USDT"), ("books", "ETH-BTC"), id="s1")
        await feed.sync(venue, "BTC-USDT")
        await feed.sync(venue, "ETH-BTC")
        acks = [d for d in feed.raw if d.get("event") == "subscribe"]
        assert [a["arg"]["instId"] for a in acks] == ["BTC-USDT", "ETH-BTC"]
        assert all(a["id"] == "s1" and a["connId"] for a in acks)
        snap = next(d for d in feed.raw if d.get("action") == "snapshot")
        item = snap["data"][0]
        assert item["prevSeqId"] == -1 and item["checksum"] == 0 and isinstance(item["ts"], str)
        assert len(item["bids"]) == len(item["asks"]) == 400
        assert all(len(lv) == 4 and lv[2] == "0" for lv in item["bids"] + item["asks"])
        assert all(not (("." in s) and s.endswith("0")) for lv in item["bids"] for s in lv[:2])  # canonical text
        for _ in range(25):
            cluster.step()
            for inst in ("BTC-USDT", "ETH-BTC"):
                await feed.sync(venue, inst)
                feed.assert_same(venue, inst)
        for inst in ("BTC-USDT", "ETH-BTC"):
            msgs = [m for m in feed.msgs if m.inst == inst]
            assert msgs[0].snapshot and not any(m.snapshot for m in msgs[1:])
            for a, b in itertools.pairwise(msgs):
                assert b.prev == a.seq and b.seq > b.prev
            assert any(b.seq - b.prev > len(b.bids) + len(b.asks) for b in msgs[1:])  # random jumps
            assert all(m.checksum == 0 for m in msgs)
        updates = [d for d in feed.raw if d.get("action") == "update"]
        assert all(set(d["data"][0]) == {"asks", "bids", "ts", "checksum", "prevSeqId", "seqId"} for d in updates)
        assert any(lv[1] == "0" for d in updates for lv in d["data"][0]["bids"] + d["data"][0]["asks"])  # deletions


async def test_checksum_mode_every_checksum_verifies(session: aiohttp.ClientSession, markets: Path) -> None:
    async with okx_cluster(markets, checksum=True) as cluster:
        feed = await subscribed_feed(session, cluster, "BTC-USDT", "XRP-USDT")
        for _ in range(20):
            cluster.step()
            for inst in ("BTC-USDT", "XRP-USDT"):
                await feed.sync(cluster.okx, inst)  # SyncedBook raises ChecksumMismatch on any mismatch
                book = feed.books[inst].book
                assert okx_checksum(book.bids.top(25), book.asks.top(25)) == next(
                    m.checksum for m in reversed(feed.msgs) if m.inst == inst)
        assert sum(1 for m in feed.msgs if m.checksum != 0) == len(feed.msgs)


async def test_keepalive_update_when_nothing_changes(session: aiohttp.ClientSession, markets: Path) -> None:
    async with okx_cluster(markets, okx_keepalive_s=0.0) as cluster:
        feed = await subscribed_feed(session, cluster, "BTC-USDT")
        cluster.freeze()
        seq = cluster.seq("okx", "BTC/USDT")
        cluster.step()
        await feed.until(lambda: len(feed.msgs) >= 2)
        ka = feed.msgs[-1]
        assert not ka.snapshot and ka.bids == [] and ka.asks == [] and ka.prev == ka.seq == seq
        assert feed.books["BTC-USDT"].valid
        feed.assert_same(cluster.okx, "BTC-USDT")


async def test_books5_and_bbo_tbt_push_full_tops(session: aiohttp.ClientSession, markets: Path) -> None:
    async with okx_cluster(markets) as cluster:
        ws = await session.ws_connect(cluster.url("okx"))
        await send(ws, "subscribe", ("books5", "ETH-BTC"), ("bbo-tbt", "ETH-BTC"))
        frames: list[dict[str, Any]] = []

        async def pushes(n: int) -> list[dict[str, Any]]:
            got: list[dict[str, Any]] = []
            while len(got) < n:
                d = orjson.loads((await asyncio.wait_for(ws.receive(), TIMEOUT)).data)
                frames.append(d)
                if "data" in d:
                    got.append(d)
            return got

        for _ in range(3):
            for d in await pushes(2):
                ch, item = d["arg"]["channel"], d["data"][0]
                assert "action" not in d and "prevSeqId" not in item and item["instId"] == "ETH-BTC"
                bids, asks = cluster.book("okx", "ETH/BTC", 5 if ch == "books5" else 1)
                assert [(lv[0], lv[1]) for lv in item["bids"]] == bids
                assert [(lv[0], lv[1]) for lv in item["asks"]] == asks
                assert item["seqId"] == cluster.seq("okx", "ETH/BTC")
            while True:  # step until the top of book changes (both channels then push)
                before = cluster.book("okx", "ETH/BTC", 1)
                cluster.step()
                if cluster.book("okx", "ETH/BTC", 1) != before:
                    break
        parsed = OkxParser("books5").parse(orjson.dumps(frames[-2]), 0) + OkxParser("bbo-tbt").parse(
            orjson.dumps(frames[-1]), 0)
        assert all(isinstance(m, BookMsg) and m.snapshot for m in parsed)


async def test_ping_errors_and_unsubscribe(session: aiohttp.ClientSession, markets: Path) -> None:
    async with okx_cluster(markets) as cluster:
        ws = await session.ws_connect(cluster.url("okx"))

        async def reply() -> Any:
            msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
            return msg.data if msg.data == "pong" else orjson.loads(msg.data)

        await ws.send_str("ping")
        assert await reply() == "pong"
        await ws.send_str("{not json")
        assert (await reply())["code"] == "60012"
        await ws.send_str('{"op":"login","args":[]}')
        assert (await reply())["code"] == "60012"
        await ws.send_str('{"op":"subscribe","args":"books"}')
        assert (await reply())["code"] == "60013"
        await send(ws, "subscribe", ("books", "NOPE-USDT"))
        err = await reply()
        assert err["event"] == "error" and err["code"] == "60018" and err["connId"]
        await send(ws, "subscribe", ("trades", "BTC-USDT"))
        assert (await reply())["code"] == "60018"
        await send(ws, "subscribe", ("books", "BTC-USDT"), ("books", "XRP-USDT"))
        frames = [await reply() for _ in range(4)]
        assert [f.get("event", f.get("action")) for f in frames] == ["subscribe", "snapshot", "subscribe", "snapshot"]
        await send(ws, "unsubscribe", ("books", "BTC-USDT"))
        assert (await reply()) == {"event": "unsubscribe", "arg": {"channel": "books", "instId": "BTC-USDT"},
                                   "connId": frames[0]["connId"]}
        cluster.step()
        nxt = await reply()  # BTC-USDT would come first within a tick; it no longer comes at all
        assert nxt["arg"]["instId"] == "XRP-USDT" and nxt["action"] == "update"


async def test_idle_connections_are_closed(session: aiohttp.ClientSession, markets: Path) -> None:
    async with okx_cluster(markets, okx_idle_s=0.3, housekeeping_s=0.02) as cluster:
        never = await session.ws_connect(cluster.url("okx"))
        msg = await asyncio.wait_for(never.receive(), TIMEOUT)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 4004
        silent = await subscribed_feed(session, cluster, "BTC-USDT")
        pinging = await subscribed_feed(session, cluster, "XRP-USDT")
        cluster.okx.stall(60)  # no book data: only pongs keep a connection alive
        while True:
            await pinging.ws.send_str("ping")
            assert (await pinging.frame()).data == "pong"
            try:
                msg = await asyncio.wait_for(silent.ws.receive(), 0.05)
                break
            except TimeoutError:
                continue
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 4004
        assert not pinging.ws.closed
        await pinging.ws.send_str("ping")
        assert (await pinging.frame()).data == "pong"


async def test_skip_seq_makes_our_book_raise_a_gap_then_resubscribe_heals(
    session: aiohttp.ClientSession, markets: Path
) -> None:
    async with okx_cluster(markets) as cluster:
        feed = await subscribed_feed(session, cluster, "BTC-USDT")
        cluster.step()
        await feed.sync(cluster.okx, "BTC-USDT")
        cluster.okx.skip_seq("BTC/USDT")
        cluster.step()
        with pytest.raises(SequenceGap):
            await feed.until(lambda: False)
        assert not feed.books["BTC-USDT"].valid
        await send(feed.ws, "unsubscribe", ("books", "BTC-USDT"))
        await send(feed.ws, "subscribe", ("books", "BTC-USDT"))
        await feed.sync(cluster.okx, "BTC-USDT")
        cluster.step()
        await feed.sync(cluster.okx, "BTC-USDT")
        feed.assert_same(cluster.okx, "BTC-USDT")


async def test_corrupt_checksum_is_caught(session: aiohttp.ClientSession, markets: Path) -> None:
    async with okx_cluster(markets) as plain:
        with pytest.raises(FaultUnsupported):
            plain.okx.corrupt_checksum("BTC/USDT")
    async with okx_cluster(markets, checksum=True) as cluster:
        feed = await subscribed_feed(session, cluster, "BTC-USDT")
        cluster.freeze()  # even an empty keep-alive carries the bad checksum
        cluster.okx.corrupt_checksum("BTC/USDT")
        cluster.step()
        with pytest.raises(ChecksumMismatch):
            await feed.until(lambda: False)
        assert feed.msgs[-1].checksum != 0 and feed.msgs[-1].prev == feed.msgs[-2].seq


async def test_corrupt_level_only_a_checksum_or_crossing_reveals(session: aiohttp.ClientSession, markets: Path) -> None:
    async with okx_cluster(markets, checksum=True) as cluster:
        feed = await subscribed_feed(session, cluster, "BTC-USDT")
        cluster.okx.corrupt_level("BTC/USDT", "size")
        cluster.step()
        with pytest.raises(ChecksumMismatch):
            await feed.until(lambda: False)
    async with okx_cluster(markets) as cluster:
        feed = await subscribed_feed(session, cluster, "BTC-USDT", "XRP-USDT")
        cluster.okx.corrupt_level("BTC/USDT", "size")  # no checksum: goes unnoticed, the book is wrong
        cluster.step()
        await feed.sync(cluster.okx, "BTC-USDT")
        assert feed.books["BTC-USDT"].valid
        assert feed.books["BTC-USDT"].book.top(1)[0] != cluster.book("okx", "BTC/USDT", 1)[0]
        cluster.okx.corrupt_level("XRP/USDT", "crossed")
        cluster.step()
        with pytest.raises(CrossedBook):
            await feed.until(lambda: False)


async def test_maintenance_seq_reset_still_chains(session: aiohttp.ClientSession, markets: Path) -> None:
    async with okx_cluster(markets) as cluster:
        feed = await subscribed_feed(session, cluster, "BTC-USDT")
        cluster.okx.seq_reset("BTC/USDT")
        cluster.step()
        await feed.sync(cluster.okx, "BTC-USDT")
        reset = feed.msgs[-1]
        assert reset.seq < reset.prev == feed.msgs[-2].seq
        cluster.step()
        await feed.sync(cluster.okx, "BTC-USDT")
        feed.assert_same(cluster.okx, "BTC-USDT")


async def test_rest_books_bridge_and_instruments(session: aiohttp.ClientSession, markets: Path) -> None:
    async with okx_cluster(markets) as cluster:
        rest = cluster.rest_url("okx")
        async with session.get(f"{rest}/api/v5/market/books?instId=BTC-USDT&sz=400") as r:
            snap = parse_snapshot("BTC-USDT", await r.read(), 0)
        assert snap.seq == cluster.seq("okx", "BTC/USDT")
        assert [tuple(lv[:2]) for lv in snap.bids] == cluster.book("okx", "BTC/USDT")[0]
        async with session.get(f"{rest}/api/v5/market/books?instId=BTC-USDT&sz=5") as r:
            assert len((await r.json())["data"][0]["asks"]) == 5
        async with session.get(f"{rest}/api/v5/market/books?instId=NOPE") as r:
            assert (await r.json())["code"] == "51001"
        async with session.get(f"{rest}/api/v5/public/instruments?instType=SPOT") as r:
            assert sorted(m.symbol for m in parse_instruments(await r.read())) == sorted(SYMBOLS)
        async with session.get(f"{rest}/api/v5/public/instruments") as r:
            assert (await r.json())["code"] == "50014"
        # Seed from REST instead of the WS snapshot: buffer updates, fetch, bridge.
        feed = Feed(await session.ws_connect(cluster.url("okx")))
        await send(feed.ws, "subscribe", ("books", "BTC-USDT"))
        await feed.until(lambda: any(d.get("action") == "snapshot" for d in feed.raw))
        book = make_book("books")
        for _ in range(3):
            cluster.step()
            msg = next(m for m in await feed.read() if isinstance(m, BookMsg))
            book.on_message(msg)
        assert not book.valid and book.buffered == 3
        async with session.get(f"{rest}/api/v5/market/books?instId=BTC-USDT&sz=400") as r:
            book.on_snapshot(parse_snapshot("BTC-USDT", await r.read(), 0))
        assert book.valid and book.book.top(10**6) == cluster.book("okx", "BTC/USDT")
        assert [r.path for r in cluster.okx.requests].count("/ws/v5/public") == 1
        assert all(r.weight == 1 for r in cluster.okx.requests if r.path.startswith("/api/"))


async def test_set_book_hold_release_and_freeze(session: aiohttp.ClientSession, markets: Path) -> None:
    async with okx_cluster(markets) as cluster:
        feed = await subscribed_feed(session, cluster, "BTC-USDT")
        with pytest.raises(ValueError):
            cluster.set_book("okx", "BTC/USDT", [["65000.05", "1"]], [])
        cluster.set_book("okx", "BTC/USDT", [["65000.10", "0.5"], ["64999", "2"]], [["65100.0", "1.25000000"]])
        await feed.sync(cluster.okx, "BTC-USDT")
        assert feed.books["BTC-USDT"].book.top(10) == ([("65000.1", "0.5"), ("64999", "2")], [("65100", "1.25")])
        feed.assert_same(cluster.okx, "BTC-USDT")
        seq = cluster.seq("okx", "BTC/USDT")
        cluster.step(3)  # held: the walk leaves it alone
        assert cluster.seq("okx", "BTC/USDT") == seq
        cluster.okx.release("BTC/USDT")
        cluster.freeze()
        cluster.step()
        assert cluster.seq("okx", "BTC/USDT") == seq  # frozen
        cluster.freeze(False)
        cluster.step()
        await feed.sync(cluster.okx, "BTC-USDT")
        assert len(feed.books["BTC-USDT"].book.bids) == 400
        feed.assert_same(cluster.okx, "BTC-USDT")


async def test_garbage_notice_and_drop(session: aiohttp.ClientSession, markets: Path) -> None:
    async with okx_cluster(markets) as cluster:
        feed = await subscribed_feed(session, cluster, "BTC-USDT")
        cluster.okx.garbage(4)
        errors = 0
        for _ in range(4):
            msg = await feed.frame()
            with pytest.raises(ParseError):
                feed.parser.parse(msg.data, 0)
            errors += 1
        assert errors == 4 and feed.books["BTC-USDT"].valid
        cluster.step()
        await feed.sync(cluster.okx, "BTC-USDT")
        cluster.okx.notice(delay=0.01)
        items = await feed.read()
        assert [c.kind for c in items if isinstance(c, Control)] == ["reconnect"]
        close = await feed.frame()
        assert close.type is aiohttp.WSMsgType.CLOSE and close.data == 1012
        other = await subscribed_feed(session, cluster, "XRP-USDT")
        cluster.okx.drop()
        end = await other.frame()
        assert end.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR)


async def test_http_control_endpoints(session: aiohttp.ClientSession, markets: Path) -> None:
    async with okx_cluster(markets, checksum=True) as cluster:
        rest = cluster.rest_url("okx")
        feed = await subscribed_feed(session, cluster, "BTC-USDT")
        async with session.post(f"{rest}/sim/freeze", json={"frozen": True}) as r:
            assert r.status == 200 and cluster.frozen
        body = {"symbol": "BTC/USDT", "bids": [["64000", "1"]], "asks": [["64000.1", "2"]]}
        async with session.post(f"{rest}/sim/book", json=body) as r:
            assert (await r.json())["seq"] == cluster.seq("okx", "BTC/USDT")
        await feed.sync(cluster.okx, "BTC-USDT")
        async with session.get(f"{rest}/sim/book?symbol=BTC/USDT") as r:
            assert (await r.json())["bids"] == [["64000", "1"]]
        async with session.post(f"{rest}/sim/fault", json={"fault": "corrupt_checksum", "symbol": "BTC-USDT"}) as r:
            assert r.status == 200
        cluster.step()
        with pytest.raises(ChecksumMismatch):
            await feed.until(lambda: False)
        for bad in ({"fault": "nope"}, {"fault": "skip_seq", "symbol": "DOGE/EUR"}, {"fault": "snapshot_lag"}):
            async with session.post(f"{rest}/sim/fault", json=bad) as r:
                assert r.status == 400
        async with session.get(f"{rest}/sim/requests") as r:
            assert [e["path"] for e in await r.json()] == ["/ws/v5/public"]


async def test_live_clock_updates_every_tick(session: aiohttp.ClientSession, markets: Path) -> None:
    async with okx_cluster(markets, tick_ms=20) as cluster:
        feed = await subscribed_feed(session, cluster, "BTC-USDT", "ETH-BTC")
        await feed.until(lambda: len(feed.msgs) >= 30)
        cluster.freeze()
        for inst in ("BTC-USDT", "ETH-BTC"):
            await feed.sync(cluster.okx, inst)
            feed.assert_same(cluster.okx, inst)


def test_same_seed_same_market(markets: Path) -> None:
    def run(seed: int) -> list[object]:
        c = SimCluster(venues=["okx"], symbols=SYMBOLS, seed=seed, tick_ms=0, markets_dir=markets)
        c.step(40)
        return [(c.seq("okx", s), c.book("okx", s)) for s in SYMBOLS]

    assert run(3) == run(3)
    assert run(3) != run(4)
