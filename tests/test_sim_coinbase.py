"""Protocol tests for the Coinbase Advanced Trade simulator through our own parser and books (the
market is stepped by hand, ``tick_ms=0``, except in the live-clock tests); then end to end
(simulator → collector → real Redis, with the USDC alias, a sequence gap, a crossed level and a
disconnect) and ccxt.pro's ``coinbase`` pointed at the simulator. Waiting is on frames, sim ticks
and futures with deadlines, never on sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import ccxt.pro
import orjson
import pytest
from redis.asyncio import Redis

from scanner.book.errors import CrossedBook, ParseError
from scanner.book.sync import SyncedBook
from scanner.model import BookMsg, Control
from scanner.sim.base import FaultUnsupported
from scanner.sim.coinbase import BOOK_PATH, PRODUCTS_PATH, CoinbaseKnobs, CoinbaseVenue
from scanner.sim.server import SimCluster, SimConfig
from scanner.venues.coinbase import CoinbaseParser, make_book, parse_instruments, resubscribe, subscribe
from tests.pipeline_helpers import as_floats, ccxt_markets, metric, redis_equals_sim, running, settings_for, until

TIMEOUT = 5.0
SYMBOLS = ["BTC/USD", "BTC/USDC", "ETH/USDT", "XRP/USDC"]
# (product_id, alias, price_increment, base_increment) as in configs/markets/coinbase.json; the tests keep
# their own copy so that they do not depend on the cache file, which the app may refresh.
PRODUCTS = [("BTC-USD", "", "0.01", "0.00000001"), ("BTC-USDC", "BTC-USD", "0.01", "0.00000001"),
            ("ETH-USDT", "", "0.01", "0.00000001"), ("XRP-USDC", "XRP-USD", "0.0001", "0.000001")]


@pytest.fixture
def markets(tmp_path: Path) -> Path:
    rows = [{"product_id": p, "base_currency_id": p.split("-")[0], "quote_currency_id": p.split("-")[1],
             "price_increment": t, "base_increment": lot, "base_min_size": lot, "quote_min_size": "1",
             "status": "online", "trading_disabled": False, "is_disabled": False, "cancel_only": False,
             "product_type": "SPOT", "alias": a, "alias_to": []} for p, a, t, lot in PRODUCTS]
    (tmp_path / "coinbase.json").write_bytes(orjson.dumps({"products": rows, "num_products": len(rows)}))
    return tmp_path


def cb_cluster(markets: Path | None, knobs: CoinbaseKnobs | None = None, symbols: list[str] | None = None,
               **cfg: Any) -> SimCluster:
    cluster = SimCluster(venues=["coinbase"], symbols=symbols or SYMBOLS, seed=9,
                         tick_ms=int(cfg.pop("tick_ms", 0)), config=SimConfig(**cfg), markets_dir=markets)
    sim(cluster).knobs = knobs or CoinbaseKnobs(heartbeat_s=3600.0)  # heartbeats only where a test wants them
    return cluster


def sim(cluster: SimCluster) -> CoinbaseVenue:
    v = cluster.venue("coinbase")
    assert isinstance(v, CoinbaseVenue)
    return v


class Feed:
    """One socket's frames → CoinbaseParser → one SyncedBook per streamed product id."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.parser = CoinbaseParser()
        self.books: dict[str, SyncedBook] = {}
        self.msgs: list[BookMsg] = []
        self.controls: list[Control] = []
        self.raw: list[dict[str, Any]] = []

    async def frame(self) -> aiohttp.WSMessage:
        return await asyncio.wait_for(self.ws.receive(), TIMEOUT)

    async def read(self) -> None:
        msg = await self.frame()
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        self.raw.append(orjson.loads(msg.data))
        for it in self.parser.parse(msg.data, time.time_ns()):
            if isinstance(it, BookMsg):
                self.msgs.append(it)
                self.books.setdefault(it.inst, make_book("level2")).on_message(it)
            else:
                self.controls.append(it)
                if it.kind == "resync":  # as the collector does: every book of the socket is suspect
                    for book in self.books.values():
                        book.invalidate()

    async def until(self, cond: Callable[[], bool]) -> None:
        while not cond():
            await self.read()

    def same(self, venue: CoinbaseVenue, stream: str, symbol: str) -> bool:
        b = self.books.get(stream)
        return b is not None and b.valid and b.book.top(10**6) == venue.book(symbol)

    async def sync(self, venue: CoinbaseVenue, stream: str, symbol: str) -> None:
        await self.until(lambda: self.same(venue, stream, symbol))


async def feed_for(session: aiohttp.ClientSession, cluster: SimCluster, *insts: str) -> Feed:
    feed = Feed(await session.ws_connect(cluster.url("coinbase")))
    for f in subscribe(list(insts), "level2"):
        await feed.ws.send_str(f)
    await feed.until(lambda: sum(1 for d in feed.raw if d.get("channel") == "subscriptions") == 2)
    return feed


async def test_snapshot_then_updates_equal_the_simulator_through_the_alias(session: aiohttp.ClientSession,
                                                                          markets: Path) -> None:
    async with cb_cluster(markets) as cluster:
        v = sim(cluster)
        feed = await feed_for(session, cluster, "BTC-USDC", "ETH-USDT")
        snaps = [d for d in feed.raw if d["channel"] == "l2_data"]
        assert [s["events"][0]["product_id"] for s in snaps] == ["BTC-USD", "ETH-USDT"]  # USDC → USD book
        assert all(s["events"][0]["type"] == "snapshot" and "client_id" not in s for s in snaps)
        assert feed.raw[-1]["events"] == [{"subscriptions": {"heartbeats": ["heartbeats"],
                                                             "level2": ["BTC-USDC", "ETH-USDT"]}}]
        assert feed.same(v, "BTC-USD", "BTC/USDC") and feed.same(v, "ETH-USDT", "ETH/USDT")
        for _ in range(25):
            before = len(feed.msgs)
            cluster.step()
            await feed.sync(v, "BTC-USD", "BTC/USDC")
            await feed.sync(v, "ETH-USDT", "ETH/USDT")
            assert len(feed.msgs) - before <= 2  # one update frame per changed book and tick
        assert [d["sequence_num"] for d in feed.raw] == list(range(len(feed.raw)))
        assert feed.parser.gaps == 0 and feed.parser.checked == len(feed.raw) - 1
        ups = [u for d in feed.raw if d["channel"] == "l2_data" for e in d["events"] if e["type"] == "update"
               for u in e["updates"]]
        assert {u["side"] for u in ups} == {"bid", "offer"} and any(u["new_quantity"] == "0" for u in ups)
        assert all(u["event_time"].startswith("20") and u["event_time"].endswith("Z") for u in ups)
        assert all(len(d["timestamp"]) == 30 for d in feed.raw)  # nanoseconds, as Coinbase writes them
        assert v.book("BTC/USDC") == v.book("BTC/USD") and v.seq("BTC-USDC") == v.seq("BTC/USD") > 0


async def test_usd_and_usdc_subscriptions_share_one_stream(session: aiohttp.ClientSession, markets: Path) -> None:
    async with cb_cluster(markets, symbols=["XRP/USDC", "BTC/USD"]) as cluster:
        v = sim(cluster)
        usd = await feed_for(session, cluster, "XRP-USD")  # the -USD product exists only as the alias target
        usdc = await feed_for(session, cluster, "XRP-USDC")
        cluster.step(3)
        for f in (usd, usdc):
            await f.sync(v, "XRP-USD", "XRP/USDC")
            assert set(f.books) == {"XRP-USD"}
        cluster.set_book("coinbase", "XRP/USDC", [["0.6", "10"], ["0.5999", "2.5"]], [["0.6001", "5.000000"]])
        for f in (usd, usdc):  # the hand-set book goes out at once, as one update on the USD stream
            await f.sync(v, "XRP-USD", "XRP/USDC")
            assert f.books["XRP-USD"].book.top(5) == ([("0.6", "10"), ("0.5999", "2.5")], [("0.6001", "5")])
        async with session.get(f"{cluster.rest_url('coinbase')}{BOOK_PATH}?product_id=XRP-USDC&limit=3") as r:
            book = (await r.json())["pricebook"]
        assert [(b["price"], b["size"]) for b in book["bids"]] == v.book("XRP/USDC", 3)[0]
        assert book["product_id"] == "XRP-USDC" and book["asks"] == [{"price": "0.6001", "size": "5"}]


async def test_heartbeats_idle_and_subscribe_timeout(session: aiohttp.ClientSession, markets: Path) -> None:
    knobs = CoinbaseKnobs(subscribe_timeout_s=0.2, idle_s=0.4, heartbeat_s=0.05)
    async with cb_cluster(markets, knobs, housekeeping_s=0.02) as cluster:
        never = await session.ws_connect(cluster.url("coinbase"))
        msg = await asyncio.wait_for(never.receive(), TIMEOUT)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008
        beating = await feed_for(session, cluster, "ETH-USDT")
        quiet = Feed(await session.ws_connect(cluster.url("coinbase")))
        await quiet.ws.send_str(subscribe(["BTC-USD"], "level2")[0])  # level2 only: no heartbeats
        await quiet.until(lambda: bool(quiet.controls))
        while True:  # the book never moves (no steps): only heartbeats keep a socket open
            await beating.read()
            try:
                end = await asyncio.wait_for(quiet.ws.receive(), 0.01)
                break
            except TimeoutError:
                continue
        assert end.type is aiohttp.WSMsgType.CLOSE and end.data == 1000
        hbs = [d for d in beating.raw if d["channel"] == "heartbeats"]
        assert len(hbs) >= 2 and not beating.ws.closed and beating.parser.gaps == 0
        counters = [d["events"][0]["heartbeat_counter"] for d in hbs]
        assert counters == sorted(counters) and " +0000 UTC m=+" in hbs[0]["events"][0]["current_time"]
        assert all(c == Control("info", "", "heartbeats") for c in beating.controls[2:])


async def test_protocol_ping_errors_rate_limit_and_unsubscribe(session: aiohttp.ClientSession,
                                                               markets: Path) -> None:
    knobs = CoinbaseKnobs(heartbeat_s=3600.0, max_msgs_per_s=7, rate_window_s=60.0)
    async with cb_cluster(markets, knobs) as cluster:
        ws = await session.ws_connect(cluster.url("coinbase"), autoping=False)

        async def reply() -> Any:
            msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
            return msg if msg.type is aiohttp.WSMsgType.PONG else orjson.loads(msg.data)

        await ws.ping(b"hi")
        assert (await reply()).data == b"hi"
        for bad in ("{nope", '{"type":"login"}', '{"type":"subscribe","channel":"level2"}',
                    '{"type":"subscribe","channel":"level2","product_ids":["NOPE-USD"]}',
                    '{"type":"subscribe","channel":"ticker","product_ids":["BTC-USD"]}',
                    '{"type":"subscribe","channel":"level2","product_ids":"BTC-USD"}'):
            await ws.send_str(bad)
            err = await reply()
            assert err["type"] == "error" and "sequence_num" not in err, err
        assert err["reason"] == "product_ids must be a list of product ids"
        await ws.send_str(subscribe(["BTC-USD", "ETH-USDT"], "level2")[0])  # the 7th message in the window
        assert (await reply())["sequence_num"] == 0  # errors used no sequence numbers
        await ws.send_str(subscribe(["ETH-USDT"], "level2")[0])
        while "type" not in (last := await reply()):  # the snapshots and the ack come first
            pass
        assert last["message"] == "rate limit exceeded"
    async with cb_cluster(markets) as cluster:
        feed = await feed_for(session, cluster, "BTC-USD", "ETH-USDT")
        acks = len(feed.raw)
        await feed.ws.send_str(resubscribe("BTC-USD", "level2")[0])
        await feed.until(lambda: len(feed.raw) > acks)
        assert feed.raw[-1]["channel"] == "subscriptions"
        assert feed.raw[-1]["events"][0]["subscriptions"]["level2"] == ["ETH-USDT"]
        n, eth, btc = len(feed.raw), cluster.seq("coinbase", "ETH/USDT"), cluster.seq("coinbase", "BTC/USD")
        while cluster.seq("coinbase", "ETH/USDT") == eth:
            cluster.step()
        await feed.read()
        assert cluster.seq("coinbase", "BTC/USD") > btc  # BTC-USD moved too but is no longer sent
        assert [d["events"][0]["product_id"] for d in feed.raw[n:]] == ["ETH-USDT"]


async def test_skip_seq_is_a_connection_gap_and_resubscribing_heals(session: aiohttp.ClientSession,
                                                                    markets: Path) -> None:
    async with cb_cluster(markets) as cluster:
        v = sim(cluster)
        feed = await feed_for(session, cluster, "BTC-USDC", "ETH-USDT")
        v.skip_seq("ETH/USDT")
        while Control("resync", "", "seq_gap") not in feed.controls:
            cluster.step()
            await feed.until(lambda: feed.same(v, "BTC-USD", "BTC/USDC") or feed.controls[-1].kind == "resync")
        assert feed.parser.gaps == 1 and not any(b.valid for b in feed.books.values())
        for inst in ("BTC-USDC", "ETH-USDT"):  # what the collector does on a connection gap
            for f in resubscribe(inst, "level2"):
                await feed.ws.send_str(f)
        await feed.sync(v, "ETH-USDT", "ETH/USDT")
        await feed.sync(v, "BTC-USD", "BTC/USDC")
        cluster.step()
        await feed.sync(v, "ETH-USDT", "ETH/USDT")
        assert feed.parser.gaps == 1


async def test_corrupt_level_and_unsupported_faults(session: aiohttp.ClientSession, markets: Path) -> None:
    async with cb_cluster(markets) as cluster:
        v = sim(cluster)
        for fault in ({"fault": "corrupt_checksum", "symbol": "BTC/USD"}, {"fault": "seq_reset", "symbol": "BTC/USD"},
                      {"fault": "snapshot_lag"}, {"fault": "notice"}, {"fault": "shutdown"}):
            with pytest.raises(FaultUnsupported):
                v.apply_fault(fault)
        feed = await feed_for(session, cluster, "BTC-USD", "ETH-USDT")
        v.corrupt_level("ETH/USDT", "size")  # no checksum: it goes unnoticed, the book is wrong
        cluster.freeze()
        cluster.step()
        await feed.until(lambda: feed.msgs[-1].inst == "ETH-USDT" and not feed.msgs[-1].snapshot)
        assert feed.books["ETH-USDT"].valid and not feed.same(v, "ETH-USDT", "ETH/USDT")
        v.corrupt_level("BTC/USD", "crossed")
        cluster.step()
        with pytest.raises(CrossedBook):
            await feed.until(lambda: False)


async def test_garbage_stall_and_drop(session: aiohttp.ClientSession, markets: Path) -> None:
    knobs = CoinbaseKnobs(heartbeat_s=0.05)
    async with cb_cluster(markets, knobs, housekeeping_s=0.02) as cluster:
        v = sim(cluster)
        feed = await feed_for(session, cluster, "ETH-USDT")
        v.garbage(5)
        errors = 0
        while errors < 5:
            msg = await feed.frame()
            data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
            if b'"heartbeats"' in data and b"seven" not in data:
                feed.parser.parse(data, 0)
                continue
            with pytest.raises(ParseError):
                feed.parser.parse(data, 0)
            errors += 1
        v.stall(60)
        cluster.step(3)
        n = len(feed.msgs)
        await feed.until(lambda: len(feed.controls) >= 6)  # heartbeats keep coming, book data does not
        assert len(feed.msgs) == n and feed.parser.gaps == 0  # garbage used no sequence numbers
        v.stall_until = 0.0
        cluster.step()
        await feed.sync(v, "ETH-USDT", "ETH/USDT")
        v.drop()
        while True:
            end = await feed.frame()
            if end.type is not aiohttp.WSMsgType.TEXT:
                break
        assert end.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR)


async def test_rest_products_and_request_log(session: aiohttp.ClientSession, markets: Path) -> None:
    async with cb_cluster(markets) as cluster:
        rest = cluster.rest_url("coinbase")
        async with session.get(f"{rest}{PRODUCTS_PATH}?product_type=SPOT") as r:
            body = await r.read()
        assert body == (markets / "coinbase.json").read_bytes()
        assert sorted(m.symbol for m in parse_instruments(body)) == sorted(SYMBOLS)
        async with session.get(f"{rest}{BOOK_PATH}?product_id=NOPE-USD") as r:
            assert r.status == 404 and (await r.json())["error"] == "NOT_FOUND"
        async with session.get(f"{rest}{BOOK_PATH}?product_id=BTC-USD&limit=x") as r:
            assert r.status == 400
        assert [q.path.split("?")[0] for q in sim(cluster).requests] == [PRODUCTS_PATH, BOOK_PATH, BOOK_PATH]


# ------------------------------------------------------------------ end to end, through real Redis


async def test_end_to_end_alias_gap_crossed_and_disconnect(redis_url: str, market_cache: Path) -> None:
    async with SimCluster(venues=["coinbase"], symbols=["BTC/USD", "BTC/USDC", "ETH/USDT"], tick_ms=50,
                          seed=11) as sims:
        # BTC/USDC only: its book streams as BTC-USD
        settings = settings_for(sims, redis_url, market_cache, symbols=["BTC/USDC", "ETH/USDT"])
        r = Redis.from_url(redis_url, socket_timeout=30)
        async with running(settings) as p:
            cb = p.collectors["coinbase"]
            assert cb.aliases == {"BTC-USD": ["BTC-USDC"]} and sorted(cb.books) == ["BTC-USDC", "ETH-USDT"]
            await until(lambda: all(b.valid for b in cb.books.values()), sims, "both books to sync", seconds=20)
            assert sims.book("coinbase", "BTC/USDC") == sims.book("coinbase", "BTC/USD")
            await redis_equals_sim(r, sims, "coinbase", "BTC/USDC", seconds=20)
            await redis_equals_sim(r, sims, "coinbase", "ETH/USDT", seconds=20)

            def resyncs(reason: str, name: str = "scanner_resyncs_total") -> float:
                return metric(p, name, {"venue": "coinbase", "reason": reason})

            sims.venue("coinbase").skip_seq("ETH/USDT")  # one lost frame: every book on the socket resyncs
            await until(lambda: resyncs("seq_gap") >= 2, sims, "the connection's sequence gap", seconds=20)
            await until(lambda: all(b.valid for b in cb.books.values()), sims, "resync after the gap", seconds=20)
            assert resyncs("seq_gap") == 2
            await redis_equals_sim(r, sims, "coinbase", "ETH/USDT", seconds=20)
            await redis_equals_sim(r, sims, "coinbase", "BTC/USDC", seconds=20)

            sims.venue("coinbase").corrupt_level("BTC/USDC", "crossed")
            await until(lambda: resyncs("crossed") >= 1, sims, "the crossed book", seconds=20)
            await until(lambda: cb.books["BTC-USDC"].valid, sims, "BTC-USDC to resync", seconds=20)
            assert resyncs("crossed") == 1 and resyncs("seq_gap") == 2
            await redis_equals_sim(r, sims, "coinbase", "BTC/USDC", seconds=20)

            sims.venue("coinbase").drop()
            await until(lambda: resyncs("reconnect") >= 2, sims, "the disconnect", seconds=20)
            await until(lambda: all(b.valid for b in cb.books.values()), sims, "resync after reconnecting", seconds=20)
            assert resyncs("closed_by_venue", "scanner_reconnects_total") >= 1
            await redis_equals_sim(r, sims, "coinbase", "BTC/USDC", seconds=20)
            await redis_equals_sim(r, sims, "coinbase", "ETH/USDT", seconds=20)
            assert resyncs("malformed", "scanner_parse_errors_total") == 0
        await r.aclose()


# ------------------------------------------------------------------ ccxt.pro against the simulator


async def test_ccxt_pro_coinbase_keeps_the_simulators_book() -> None:
    async with SimCluster(venues=["coinbase"], symbols=["BTC/USD", "BTC/USDC"], seed=3, tick_ms=25) as cluster:
        ex = ccxt.pro.coinbase({"urls": {"api": {"ws": cluster.url("coinbase")}}})
        try:
            ex.set_markets(ccxt_markets(sim(cluster).markets))
            stamps = set()
            for _ in range(6):  # BTC/USDC: ccxt subscribes BTC-USDC and resolves it from the BTC-USD frames
                ob = await asyncio.wait_for(ex.watch_order_book("BTC/USDC"), 10)
                stamps.add(ob["timestamp"])
            assert len(stamps) > 1  # it followed live updates, not just the snapshot
            cluster.freeze()

            def same() -> bool:
                bids, asks = cluster.book("coinbase", "BTC/USDC")
                return bool(ob["bids"] == as_floats(bids) and ob["asks"] == as_floats(asks))

            await until(same, cluster, "ccxt.pro's book to equal the simulator's", seconds=20)
            assert len(ob["bids"]) == 400 and ob["symbol"] == "BTC/USD"
            assert [q.path for q in sim(cluster).requests] == ["/"]  # no REST at all
        finally:
            await ex.close()
