"""The Bitget simulator through our own Bitget parser and SyncedBook (snapshot + seq-chained,
checksummed updates equal the simulator's exact book; keepalive and connection rules; every
fault), end to end through the real pipeline and Redis, and ccxt.pro's ``bitget`` pointed at
it. The market is stepped by hand (``tick_ms=0``) unless a live clock is the point; waiting is
on frames or simulator ticks with deadlines, never on bare sleeps."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import ccxt.pro
import orjson
import pytest
from redis.asyncio import Redis

from scanner.app import Pipeline
from scanner.book.errors import BookError, ChecksumMismatch, CrossedBook, ParseError, SequenceGap
from scanner.book.sync import SyncedBook
from scanner.model import BookMsg, Control
from scanner.sim.base import FaultUnsupported
from scanner.sim.bitget import BitgetKnobs, BitgetVenue
from scanner.sim.server import SimCluster, SimConfig
from scanner.venues.bitget import BitgetParser, make_book, parse_instruments
from tests.pipeline_helpers import as_floats, ccxt_market, metric, redis_equals_sim, running, settings_for, until

TIMEOUT = 5.0
SYMBOLS = ["BTC/USDT", "ETH/BTC", "XRP/USDT"]
# (symbol, base, quote, pricePrecision, quantityPrecision) as in configs/markets/bitget.json; the tests keep
# their own copy so that they do not depend on the cache file, which the app may refresh.
INSTRUMENTS = [("BTCUSDT", "BTC", "USDT", "2", "6"), ("ETHBTC", "ETH", "BTC", "6", "4"),
               ("XRPUSDT", "XRP", "USDT", "4", "2")]


@pytest.fixture
def markets(tmp_path: Path) -> Path:
    rows = [{"symbol": s, "baseCoin": b, "quoteCoin": q, "minTradeAmount": "0", "pricePrecision": pp,
             "quantityPrecision": qp, "status": "online"} for s, b, q, pp, qp in INSTRUMENTS]
    (tmp_path / "bitget.json").write_bytes(orjson.dumps({"code": "00000", "msg": "success", "data": rows}))
    return tmp_path


def bg_cluster(markets: Path, tick_ms: int = 0, **cfg: Any) -> SimCluster:
    return SimCluster(venues=["bitget"], symbols=SYMBOLS, seed=7, tick_ms=tick_ms, config=SimConfig(**cfg),
                      markets_dir=markets)


def sim(cluster: SimCluster) -> BitgetVenue:
    v = cluster.venue("bitget")
    assert isinstance(v, BitgetVenue)
    return v


class Feed:
    """One socket's frames → BitgetParser → one SyncedBook per instrument."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, channel: str = "books") -> None:
        self.ws, self.parser, self.channel = ws, BitgetParser(channel), channel
        self.books: dict[str, SyncedBook] = {}
        self.msgs: list[BookMsg] = []
        self.controls: list[Control] = []
        self.raw: list[Any] = []

    async def frame(self) -> aiohttp.WSMessage:
        return await asyncio.wait_for(self.ws.receive(), TIMEOUT)

    async def read(self) -> None:
        msg = await self.frame()
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        self.raw.append(msg.data if msg.data == "pong" else orjson.loads(msg.data))
        for it in self.parser.parse(msg.data, time.time_ns()):
            if isinstance(it, BookMsg):
                self.msgs.append(it)
                self.books.setdefault(it.inst, make_book(self.channel)).on_message(it)
            else:
                self.controls.append(it)

    async def until(self, cond: Callable[[], bool]) -> None:
        while not cond():
            await self.read()

    async def sync(self, venue: BitgetVenue, inst: str) -> None:
        def done() -> bool:
            b = self.books.get(inst)
            return b is not None and b.valid and b.book.seq == venue.seq(inst)

        await self.until(done)

    def assert_same(self, venue: BitgetVenue, inst: str) -> None:
        assert self.books[inst].book.top(10**6) == venue.book(inst)


async def send(ws: aiohttp.ClientWebSocketResponse, op: str, *insts: str, channel: str = "books") -> None:
    args = [{"instType": "SPOT", "channel": channel, "instId": i} for i in insts]
    await ws.send_str(orjson.dumps({"op": op, "args": args}).decode())


async def subscribed(session: aiohttp.ClientSession, cluster: SimCluster, *insts: str) -> Feed:
    feed = Feed(await session.ws_connect(cluster.url("bitget")))
    await send(feed.ws, "subscribe", *insts)
    for inst in insts:
        await feed.sync(sim(cluster), inst)
    return feed


async def test_snapshot_then_seq_chained_checksummed_updates(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bg_cluster(markets) as cluster:
        venue = sim(cluster)
        assert cluster.url("bitget").endswith("/v2/ws/public")
        feed = await subscribed(session, cluster, "BTCUSDT", "ETHBTC")
        acks = [d for d in feed.raw if d.get("event") == "subscribe"]
        assert [a["arg"] for a in acks] == [{"instType": "SPOT", "channel": "books", "instId": i}
                                           for i in ("BTCUSDT", "ETHBTC")]
        snap = next(d for d in feed.raw if d.get("action") == "snapshot")
        assert len(snap["data"][0]["bids"]) == 400 and snap["data"][0]["checksum"] != 0
        for _ in range(25):
            cluster.step()
            for inst in ("BTCUSDT", "ETHBTC"):
                await feed.sync(venue, inst)  # the SyncedBook verifies every seq and checksum
                feed.assert_same(venue, inst)
        for inst in ("BTCUSDT", "ETHBTC"):
            msgs = [m for m in feed.msgs if m.inst == inst]
            assert msgs[0].snapshot and not any(m.snapshot for m in msgs[1:])
            assert all(b.seq == a.seq + 1 for a, b in itertools.pairwise(msgs))
        assert all(m.checksum != 0 for m in feed.msgs) and len(feed.msgs) >= 50
        updates = [d for d in feed.raw if d.get("action") == "update"]
        assert all(set(d["data"][0]) == {"asks", "bids", "checksum", "seq", "ts"} for d in updates)
        btc = [lv for d in updates if d["arg"]["instId"] == "BTCUSDT" for lv in d["data"][0]["bids"]]
        assert all(len(px.split(".")[1]) == 2 and len(sz.split(".")[1]) == 6 for px, sz in btc)  # fixed decimals
        assert sorted({sz for _, sz in btc if float(sz) == 0}) == ["0.000000"]  # deletions as the venue writes them


async def test_books1_5_15_push_full_tops(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bg_cluster(markets) as cluster:
        ws = await session.ws_connect(cluster.url("bitget"))
        for ch, n in (("books1", 1), ("books5", 5), ("books15", 15)):
            await send(ws, "subscribe", "XRPUSDT", channel=ch)
            ack = orjson.loads((await asyncio.wait_for(ws.receive(), TIMEOUT)).data)
            assert ack == {"event": "subscribe", "arg": {"instType": "SPOT", "channel": ch, "instId": "XRPUSDT"}}
            d = orjson.loads((await asyncio.wait_for(ws.receive(), TIMEOUT)).data)
            (msg,) = BitgetParser(ch).parse(orjson.dumps(d), 0)
            assert isinstance(msg, BookMsg) and msg.snapshot and msg.seq == cluster.seq("bitget", "XRP/USDT")
            assert [tuple(lv) for lv in d["data"][0]["bids"]] == cluster.book("bitget", "XRP/USDT", n)[0]
            assert [tuple(lv) for lv in d["data"][0]["asks"]] == cluster.book("bitget", "XRP/USDT", n)[1]


async def test_ping_errors_and_unsubscribe(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bg_cluster(markets) as cluster:
        ws = await session.ws_connect(cluster.url("bitget"))

        async def reply() -> Any:
            msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
            return msg.data if msg.data == "pong" else orjson.loads(msg.data)

        await ws.send_str("ping")
        assert await reply() == "pong"
        for bad, code in (("{not json", 30002), ('{"op":"login","args":[]}', 30003), ('{"op":"subscribe"}', 30016)):
            await ws.send_str(bad)
            assert (await reply())["code"] == code
        await send(ws, "subscribe", "NOPEUSDT")
        err = await reply()
        assert err["event"] == "error" and err["code"] == 30001 and err["arg"]["instId"] == "NOPEUSDT"
        (ctl,) = BitgetParser().parse(orjson.dumps(err), 0)
        assert isinstance(ctl, Control) and ctl.kind == "error"
        await send(ws, "subscribe", "BTCUSDT", "XRPUSDT")
        frames = [await reply() for _ in range(4)]
        assert [f.get("event", f.get("action")) for f in frames] == ["subscribe", "snapshot", "subscribe", "snapshot"]
        await send(ws, "unsubscribe", "BTCUSDT")
        assert await reply() == {"event": "unsubscribe",
                                 "arg": {"instType": "SPOT", "channel": "books", "instId": "BTCUSDT"}}
        cluster.step()
        nxt = await reply()  # BTCUSDT would come first within a tick; it no longer comes at all
        assert nxt["arg"]["instId"] == "XRPUSDT" and nxt["action"] == "update"


async def test_connection_rules(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bg_cluster(markets, housekeeping_s=0.02) as cluster:
        venue = sim(cluster)
        venue.knobs = BitgetKnobs(no_sub_s=0.3, ping_timeout_s=0.6, max_subs_per_hour=3, max_msgs_per_s=10**6)
        never = await session.ws_connect(cluster.url("bitget"))
        assert (await asyncio.wait_for(never.receive(), TIMEOUT)).type is aiohttp.WSMsgType.CLOSE
        silent = await subscribed(session, cluster, "BTCUSDT")
        pinging = await subscribed(session, cluster, "XRPUSDT")
        while True:  # data flows on both; only the one that sends "ping" stays
            cluster.step()
            await pinging.ws.send_str("ping")
            await pinging.until(lambda: pinging.raw[-1] == "pong")
            try:
                msg = await asyncio.wait_for(silent.ws.receive(), 0.05)
            except TimeoutError:
                continue
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
        assert msg.type is aiohttp.WSMsgType.CLOSE and not pinging.ws.closed
        for op in ("unsubscribe", "subscribe", "subscribe"):  # with the first subscribe: 4 > 3 per hour
            await send(pinging.ws, op, "XRPUSDT")
        await pinging.until(lambda: any(c.kind == "error" and c.detail.startswith("30006") for c in pinging.controls))
        venue.knobs = BitgetKnobs(max_msgs_per_s=10)
        for _ in range(11):  # the 11th message within a second cuts the connection
            await pinging.ws.send_str("ping")
        await pinging.until(lambda: any(c.detail.startswith("30007") for c in pinging.controls))
        assert (await pinging.frame()).type is aiohttp.WSMsgType.CLOSE


async def test_sequence_faults_break_our_book_and_resubscribe_heals(session: aiohttp.ClientSession,
                                                                    markets: Path) -> None:
    async with bg_cluster(markets) as cluster:
        venue = sim(cluster)
        feed = await subscribed(session, cluster, "BTCUSDT")
        for fault in (venue.skip_seq, venue.seq_reset):
            fault("BTC/USDT")
            cluster.step()
            with pytest.raises(SequenceGap):
                await feed.until(lambda: False)
            assert not feed.books["BTCUSDT"].valid
            await send(feed.ws, "unsubscribe", "BTCUSDT")
            await send(feed.ws, "subscribe", "BTCUSDT")
            await feed.sync(venue, "BTCUSDT")
            cluster.step()
            await feed.sync(venue, "BTCUSDT")
            feed.assert_same(venue, "BTCUSDT")


async def test_checksum_and_level_faults(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bg_cluster(markets) as cluster:
        venue = sim(cluster)
        faults: list[tuple[Callable[[str], None], type[BookError]]] = [
            (venue.corrupt_checksum, ChecksumMismatch),
            (lambda s: venue.corrupt_level(s, "size"), ChecksumMismatch),
            (lambda s: venue.corrupt_level(s, "crossed"), CrossedBook),
        ]
        for fault, error in faults:
            feed = await subscribed(session, cluster, "XRPUSDT")
            cluster.freeze()  # a pending fault goes out even when nothing changed
            fault("XRP/USDT")
            cluster.step()
            with pytest.raises(error):
                await feed.until(lambda: False)
            assert feed.msgs[-1].seq == feed.msgs[-2].seq + 1  # the sequence itself was intact
            cluster.freeze(False)
            await feed.ws.close()
        for name in ("snapshot_lag", "notice", "shutdown"):
            with pytest.raises(FaultUnsupported):
                venue.apply_fault({"fault": name, "symbol": "XRP/USDT"})


async def test_garbage_stall_drop_and_rest(session: aiohttp.ClientSession, markets: Path) -> None:
    async with bg_cluster(markets) as cluster:
        venue = sim(cluster)
        feed = await subscribed(session, cluster, "BTCUSDT")
        venue.garbage(5)
        for _ in range(5):
            with pytest.raises(ParseError):
                feed.parser.parse((await feed.frame()).data, 0)
        venue.stall(60)
        cluster.step(3)
        seq, n = venue.seq("BTCUSDT"), len(feed.msgs)
        await feed.ws.send_str("ping")
        await feed.until(lambda: feed.raw[-1] == "pong")  # answered while stalled
        assert venue.seq("BTCUSDT") == seq and len(feed.msgs) == n and feed.books["BTCUSDT"].valid
        venue.drop()
        assert (await feed.frame()).type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE,
                                             aiohttp.WSMsgType.ERROR)
        rest = cluster.rest_url("bitget")
        async with session.get(f"{rest}/api/v2/spot/public/symbols") as r:
            assert sorted(m.symbol for m in parse_instruments(await r.read())) == sorted(SYMBOLS)
        async with session.get(f"{rest}/api/v2/spot/public/symbols?symbol=XRPUSDT") as r:
            assert [m.venue_id for m in parse_instruments(await r.read())] == ["XRPUSDT"]
        async with session.get(f"{rest}/api/v2/spot/public/symbols?symbol=NOPE") as r:
            assert r.status == 400 and (await r.json())["code"] == "40034"
        async with session.get(f"{rest}/api/v2/spot/market/orderbook?symbol=BTCUSDT&limit=5") as r:
            data = (await r.json())["data"]
        assert [tuple(lv) for lv in data["bids"]] == cluster.book("bitget", "BTC/USDT", 5)[0]


# ------------------------------------------------------------------ end to end and ccxt.pro


def resynced(p: Pipeline, reason: str) -> Callable[[], bool]:
    return lambda: metric(p, "scanner_resyncs_total", {"venue": "bitget", "reason": reason}) >= 1


async def test_end_to_end_books_in_redis_and_resyncs(redis_url: str, market_cache: Path) -> None:
    async with SimCluster(venues=["bitget"], symbols=["BTC/USDT", "ETH/USDT"], tick_ms=50, seed=5) as sims:
        venue, r = sim(sims), Redis.from_url(redis_url, socket_timeout=30)
        async with running(settings_for(sims, redis_url, market_cache, venue={"ping_idle_s": 0.5})) as p:
            col = p.collectors["bitget"]
            await until(lambda: all(b.valid for b in col.books.values()), sims, "both books to sync")
            pings = venue.pings  # pinged on schedule although book data never stops flowing (tick 50 ms)
            await until(lambda: venue.pings >= pings + 3, sims, "periodic pings")
            await redis_equals_sim(r, sims, "bitget", "BTC/USDT")
            for fault, symbol, reason in ((venue.skip_seq, "BTC/USDT", "seq_gap"),
                                          (venue.corrupt_checksum, "ETH/USDT", "checksum")):
                other = col.books["ETHUSDT" if symbol == "BTC/USDT" else "BTCUSDT"]
                fault(symbol)
                await until(resynced(p, reason), sims, f"the {reason} resync")
                await until(lambda: all(b.valid for b in col.books.values()), sims, f"{symbol} to resync")
                assert other.valid and metric(p, "scanner_resyncs_total", {"venue": "bitget", "reason": reason}) == 1
                await redis_equals_sim(r, sims, "bitget", symbol)
            venue.drop()
            reconnects = {"venue": "bitget", "reason": "reconnect"}
            await until(lambda: metric(p, "scanner_resyncs_total", reconnects) >= 2, sims,
                        "the reconnect to invalidate both books")
            await until(lambda: all(b.valid for b in col.books.values()), sims, "the books after reconnecting")
            await redis_equals_sim(r, sims, "bitget", "ETH/USDT")
        await r.aclose()


async def test_ccxt_pro_bitget_keeps_the_simulators_book() -> None:
    async with SimCluster(venues=["bitget"], symbols=["BTC/USDT"], seed=3, tick_ms=25) as cluster:
        ex = ccxt.pro.bitget({"urls": {"api": {"ws": {"public": cluster.url("bitget")}}}})
        try:
            ex.set_markets([ccxt_market(m, active=True, limits={"amount": {"min": float(m.min_size), "max": None}})
                            for m in sim(cluster).markets])
            stamps: set[int] = set()
            for _ in range(6):
                ob = await asyncio.wait_for(ex.watch_order_book("BTC/USDT"), 10)
                stamps.add(ob["timestamp"])
            assert len(stamps) > 1  # it followed updates (each checked against its checksum), not just the snapshot
            cluster.freeze()

            def same() -> bool:
                bids, asks = cluster.book("bitget", "BTC/USDT")
                # ccxt keeps [price, amount, the raw level] per row (the raw strings feed its checksum)
                return bool([lv[:2] for lv in ob["bids"]] == as_floats(bids)
                            and [lv[:2] for lv in ob["asks"]] == as_floats(asks))

            while not same():  # frozen: every pending update is on its way, then nothing moves
                async with asyncio.timeout(10):
                    ob = await ex.watch_order_book("BTC/USDT")
            assert len(ob["bids"]) == 400
        finally:
            await ex.close()
