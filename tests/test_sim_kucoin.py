"""Protocol tests for the KuCoin simulator through our own KuCoin parser and books: the bullet-public
token flow, welcome, subscribe/ack and its errors and limits, per-change sequences bridged to the
REST level2_100 snapshot, JSON ping/pong and the silence and lifetime rules, REST endpoints and
weights, every fault switch, and the connect handshake (:mod:`scanner.feed.handshake`) against it.
The market is stepped by hand (``tick_ms=0``)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from scanner.book.errors import CrossedBook, ParseError, SequenceGap
from scanner.config import from_dict
from scanner.feed.handshake import HandshakeFailed, connect_resolver
from scanner.model import BookMsg, Control
from scanner.sim.kucoin import KucoinVenue
from scanner.sim.server import FaultUnsupported, SimCluster, SimConfig
from scanner.venues.kucoin import VENUE, KucoinBook, KucoinParser, parse_snapshot

TIMEOUT = 5.0
SYMBOLS = ["SOL/USDT", "XRP/USDT", "ETH/BTC"]
ROOT = Path(__file__).resolve().parent.parent


def kc_cluster(**cfg: Any) -> SimCluster:
    return SimCluster(venues=["kucoin"], symbols=SYMBOLS, seed=9, tick_ms=0, config=SimConfig(**cfg))


def kucoin(cluster: SimCluster) -> KucoinVenue:
    v = cluster.venue("kucoin")
    assert isinstance(v, KucoinVenue)
    return v


def tune(cluster: SimCluster, **knobs: Any) -> KucoinVenue:
    v = kucoin(cluster)
    v.knobs = dataclasses.replace(v.knobs, **knobs)
    return v


class Feed:
    """One socket's frames → KucoinParser → one KucoinBook per symbol (bridged from REST)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.parser = KucoinParser()
        self.books: dict[str, KucoinBook] = {}
        self.events: dict[str, list[BookMsg]] = {}
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
                self.events.setdefault(it.inst, []).append(it)
                self.books.setdefault(it.inst, KucoinBook()).on_message(it)
            else:
                self.controls.append(it)

    async def until(self, cond: Callable[[], bool]) -> None:
        while not cond():
            await self.read()

    async def call(self, body: dict[str, Any]) -> Any:
        """Send one request and return the next frame that is not market data."""
        n = len(self.raw)
        await self.ws.send_str(orjson.dumps(body).decode())

        def reply() -> Any:
            return next((d for d in self.raw[n:] if d.get("type") != "message"), None)

        await self.until(lambda: reply() is not None)
        return reply()

    async def sync(self, venue: KucoinVenue, inst: str) -> None:
        def done() -> bool:
            b = self.books.get(inst)
            return b is not None and b.valid and b.book.seq == venue.seq(inst)

        await self.until(done)

    def assert_same(self, venue: KucoinVenue, inst: str, depth: int = 80) -> None:
        assert self.books[inst].book.top(depth) == venue.book(inst, depth)


async def bullet(session: aiohttp.ClientSession, cluster: SimCluster) -> dict[str, Any]:
    async with session.post(f"{cluster.rest_url('kucoin')}/api/v1/bullet-public") as r:
        assert r.status == 200
        body = await r.json()
    assert body["code"] == "200000"
    data: dict[str, Any] = body["data"]
    return data


async def connect(session: aiohttp.ClientSession, cluster: SimCluster, connect_id: str = "c1") -> Feed:
    data = await bullet(session, cluster)
    server = data["instanceServers"][0]
    ws = await session.ws_connect(server["endpoint"], params={"token": data["token"], "connectId": connect_id})
    feed = Feed(ws)
    await feed.read()
    assert feed.raw == [{"id": connect_id, "type": "welcome"}] and feed.controls == [Control("ready", "", connect_id)]
    return feed


async def rest_book(session: aiohttp.ClientSession, cluster: SimCluster, inst: str, depth: int = 100) -> BookMsg:
    url = f"{cluster.rest_url('kucoin')}/api/v1/market/orderbook/level2_{depth}?symbol={inst}"
    async with session.get(url) as r:
        assert r.status == 200
        return parse_snapshot(inst, await r.read(), 0)


async def bridged_feed(session: aiohttp.ClientSession, cluster: SimCluster, *insts: str) -> Feed:
    """Subscribe, buffer a few messages, seed each book from REST level2_100, bridge."""
    feed = await connect(session, cluster)
    assert await feed.call({"id": "s1", "type": "subscribe", "topic": f"/market/level2:{','.join(insts)}",
                            "privateChannel": False, "response": True}) == {"id": "s1", "type": "ack"}
    cluster.step(2)
    await feed.until(lambda: all(len(feed.events.get(i, [])) >= 2 for i in insts))
    for inst in insts:
        assert not feed.books[inst].valid and feed.books[inst].buffered >= 2
        assert feed.books[inst].on_snapshot(await rest_book(session, cluster, inst))
    cluster.step()
    for inst in insts:
        await feed.sync(kucoin(cluster), inst)
    return feed


async def test_token_welcome_and_per_change_sequences_keep_the_simulators_book(
        session: aiohttp.ClientSession) -> None:
    async with kc_cluster() as cluster:
        venue = tune(cluster, noop_p=0.5)
        data = await bullet(session, cluster)
        server = data["instanceServers"][0]
        assert server == {"endpoint": cluster.url("kucoin"), "encrypt": True, "protocol": "websocket",
                          "pingInterval": 18000, "pingTimeout": 10000}
        assert any(c in data["token"] for c in "+/=") and data["token"] in venue.tokens
        feed = await bridged_feed(session, cluster, "SOL-USDT", "XRP-USDT")
        for _ in range(25):
            cluster.step()
            for inst in ("SOL-USDT", "XRP-USDT"):
                await feed.sync(venue, inst)
                feed.assert_same(venue, inst)
        msgs = [d for d in feed.raw if d.get("subject") == "trade.l2update"]
        assert {d["topic"] for d in msgs} == {"/market/level2:SOL-USDT", "/market/level2:XRP-USDT"}
        zero_steps = 0
        for d in msgs:
            ch = d["data"]["changes"]
            seqs = sorted(int(r[2]) for r in ch["bids"] + ch["asks"])
            assert seqs == list(range(d["data"]["sequenceStart"], d["data"]["sequenceEnd"] + 1))
            zero_steps += sum(r[0] == "0" for r in ch["bids"] + ch["asks"])
            assert d["data"]["time"] > 0 and set(d) == {"topic", "type", "subject", "data"}
        assert zero_steps > 0  # legacy price-"0" sequence steps were sent and skipped
        for evs in feed.events.values():
            for a, b in itertools.pairwise(evs):
                assert b.prev == a.seq + 1
        # the REST snapshot is depth-limited: the book knows the top 100 and what diffs touched since
        book = feed.books["SOL-USDT"]
        assert len(venue.book("SOL-USDT")[0]) == 400 and 100 <= len(book.book.bids) < 400
        assert book.horizon[0] != float("inf")


async def test_tokens_unknown_and_expired(session: aiohttp.ClientSession) -> None:
    async with kc_cluster() as cluster:
        venue = tune(cluster, token_ttl_s=0.0)
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await session.ws_connect(cluster.url("kucoin"), params={"token": "forged", "connectId": "x"})
        assert exc.value.status == 401
        data = await bullet(session, cluster)
        ws = await session.ws_connect(cluster.url("kucoin"), params={"token": data["token"], "connectId": "old"})
        first = await asyncio.wait_for(ws.receive(), TIMEOUT)
        assert orjson.loads(first.data) == {"id": "old", "type": "error", "code": 401, "data": "token is expired"}
        assert KucoinParser().parse(first.data, 0) == [Control("error", "", "401 token is expired")]
        close = await asyncio.wait_for(ws.receive(), TIMEOUT)
        assert close.type is aiohttp.WSMsgType.CLOSE
        assert [(r.path.split("?")[0], r.status) for r in venue.requests] == [
            ("/", 401), ("/api/v1/bullet-public", 200), ("/", 101)]


async def test_ping_pong_and_the_silence_rule(session: aiohttp.ClientSession) -> None:
    async with kc_cluster(housekeeping_s=0.02) as cluster:
        venue = tune(cluster, ping_interval_ms=150, ping_timeout_ms=150)
        mute = await connect(session, cluster, "mute")
        polite = await connect(session, cluster, "polite")
        assert await polite.call({"id": "p0", "type": "ping"}) == {"id": "p0", "type": "pong"}
        assert polite.controls[-1] == Control("pong", "", "p0")
        pongs: list[Any] = []

        async def keep_pinging() -> None:
            for n in itertools.count(1):
                await polite.ws.send_str(f'{{"id":"p{n}","type":"ping"}}')
                pongs.append(orjson.loads((await polite.frame()).data))
                await asyncio.sleep(0.05)  # the client's ping period, not a wait for the server

        pinger = asyncio.create_task(keep_pinging())
        close = await mute.frame()
        assert close.type is aiohttp.WSMsgType.CLOSE and close.extra == "ping timeout"
        assert not pinger.done() and not polite.ws.closed
        pinger.cancel()
        assert pongs and all(p == {"id": f"p{n}", "type": "pong"} for n, p in enumerate(pongs, start=1))
        (client,) = venue.meta.values()  # the mute one is gone
        assert client.connect_id == "polite" and client.pings >= len(pongs) + 1


async def test_connection_lifetime(session: aiohttp.ClientSession) -> None:
    async with kc_cluster(housekeeping_s=0.02) as cluster:
        tune(cluster, max_age_s=0.1)
        feed = await connect(session, cluster)
        close = await feed.frame()
        assert close.type is aiohttp.WSMsgType.CLOSE and close.extra == "connection lifetime exceeded"


async def test_subscription_errors_and_limits(session: aiohttp.ClientSession) -> None:
    async with kc_cluster() as cluster:
        venue = tune(cluster, max_topics=2)
        feed = await connect(session, cluster)

        def sub(topic: str, rid: str = "1", kind: str = "subscribe", response: bool = True) -> dict[str, Any]:
            return {"id": rid, "type": kind, "topic": topic, "privateChannel": False, "response": response}

        nope = await feed.call(sub("/market/level2:NOPE-USDT"))
        assert nope == {"id": "1", "type": "error", "code": 404, "data": "topic /market/level2:NOPE-USDT is not found"}
        assert feed.controls[-1] == Control("error", "", "404 topic /market/level2:NOPE-USDT is not found")
        assert (await feed.call(sub("/market/ticker:SOL-USDT")))["code"] == 404
        many = ",".join(f"X{i}-USDT" for i in range(101))
        assert (await feed.call(sub(f"/market/level2:{many}")))["code"] == 400
        assert (await feed.call(sub("/market/level2:SOL-USDT,XRP-USDT,ETH-BTC")))["code"] == 509
        assert (await feed.call({"id": "9", "type": "fly"})) == {
            "id": "9", "type": "error", "code": 415, "data": "type is not supported"}
        await feed.ws.send_str("{oops")
        await feed.until(lambda: feed.raw[-1].get("code") == 400)
        # response:false: no ack (the next frame answers the ping)
        await feed.ws.send_str(orjson.dumps(sub("/market/level2:SOL-USDT,XRP-USDT", "q", response=False)).decode())
        assert await feed.call({"id": "after", "type": "ping"}) == {"id": "after", "type": "pong"}
        cluster.step()
        await feed.until(lambda: {"SOL-USDT", "XRP-USDT"} <= set(feed.events))
        assert await feed.call(sub("/market/level2:SOL-USDT", "u", "unsubscribe")) == {"id": "u", "type": "ack"}
        n = len(feed.raw)
        cluster.step(3)
        assert await feed.call({"id": "end", "type": "ping"}) == {"id": "end", "type": "pong"}
        assert {d["data"]["symbol"] for d in feed.raw[n:] if d.get("type") == "message"} == {"XRP-USDT"}
        assert venue.subs == {"XRP-USDT": {next(iter(venue.clients))}}
        # more than the allowed client messages in 10 s: error 509, the message is not served
        venue.knobs = dataclasses.replace(venue.knobs, max_msgs_per_10s=3)
        fast = await connect(session, cluster, "fast")
        replies = [await fast.call({"id": str(i), "type": "ping"}) for i in range(4)]
        assert replies[:3] == [{"id": str(i), "type": "pong"} for i in range(3)]
        assert replies[3] == {"id": "", "type": "error", "code": 509, "data": "exceed max permits per 10 seconds"}


async def test_rest_endpoints_weights_and_429(session: aiohttp.ClientSession) -> None:
    async with kc_cluster() as cluster:
        venue = tune(cluster, rest_weight_per_30s=25)
        rest = cluster.rest_url("kucoin")
        await bullet(session, cluster)
        async with session.get(f"{rest}/api/v2/symbols") as r:
            assert await r.read() == (ROOT / "configs" / "markets" / "kucoin.json").read_bytes()
        for depth in (20, 100):
            snap = await rest_book(session, cluster, "SOL-USDT", depth)
            assert len(snap.bids) == len(snap.asks) == depth and snap.seq == venue.seq("SOL-USDT")
            assert ([tuple(x) for x in snap.bids], [tuple(x) for x in snap.asks]) == venue.book("SOL-USDT", depth)
        async with session.get(f"{rest}/api/v1/market/orderbook/level2_100?symbol=NOPE-USDT") as r:
            assert r.status == 400 and (await r.json())["code"] == "900001"
        async with session.get(f"{rest}/api/v3/market/orderbook/level2?symbol=SOL-USDT") as r:
            assert r.status == 401 and (await r.json())["code"] == "400001"
        async with session.get(f"{rest}/api/v1/market/orderbook/level2_20?symbol=SOL-USDT") as r:
            assert r.status == 429 and (await r.json()) == {"code": "429000", "msg": "Too Many Requests"}
            assert r.headers["gw-ratelimit-remaining"] == "0" and int(r.headers["Retry-After"]) >= 1
        log = [(q.path.split("?")[0], q.weight, q.status) for q in venue.requests]
        assert log == [("/api/v1/bullet-public", 10, 200), ("/api/v2/symbols", 4, 200),
                       ("/api/v1/market/orderbook/level2_20", 2, 200), ("/api/v1/market/orderbook/level2_100", 4, 200),
                       ("/api/v1/market/orderbook/level2_100", 4, 400), ("/api/v3/market/orderbook/level2", 0, 401),
                       ("/api/v1/market/orderbook/level2_20", 0, 429)]


async def test_faults(session: aiohttp.ClientSession) -> None:
    async with kc_cluster() as cluster:
        venue = kucoin(cluster)
        feed = await bridged_feed(session, cluster, "SOL-USDT", "XRP-USDT")
        venue.skip_seq("SOL-USDT")
        cluster.step()
        with pytest.raises(SequenceGap):
            await feed.until(lambda: False)
        venue.corrupt_level("XRP/USDT", "size")  # no checksum on KuCoin: goes unnoticed
        cluster.step()
        await feed.sync(venue, "XRP-USDT")
        assert feed.books["XRP-USDT"].book.top(1)[0] != venue.book("XRP-USDT", 1)[0]
        venue.corrupt_level("XRP/USDT", "crossed")
        cluster.step()
        with pytest.raises(CrossedBook):
            await feed.until(lambda: not feed.books["XRP-USDT"].valid)
        for fault in (venue.corrupt_checksum, venue.seq_reset):
            with pytest.raises(FaultUnsupported):
                fault("SOL-USDT")
        for other in (venue.snapshot_lag, venue.notice, venue.shutdown):
            with pytest.raises(FaultUnsupported):
                other(1)
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
        seq = venue.seq("SOL-USDT")
        cluster.step(3)
        assert venue.seq("SOL-USDT") == seq
        assert await feed.call({"id": "s", "type": "ping"}) == {"id": "s", "type": "pong"}  # pings still answered
        venue.stall(0)
        venue.drop()
        end = await feed.frame()
        assert end.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR)


async def test_http_fault_switches(session: aiohttp.ClientSession) -> None:
    async with kc_cluster() as cluster:
        rest = cluster.rest_url("kucoin")
        async with session.post(f"{rest}/sim/fault", json={"fault": "skip_seq", "symbol": "SOL-USDT"}) as r:
            assert r.status == 200
        seq = cluster.seq("kucoin", "SOL/USDT")
        cluster.step()
        assert cluster.seq("kucoin", "SOL/USDT") > seq + 2
        for bad in ({"fault": "corrupt_checksum", "symbol": "SOL-USDT"}, {"fault": "seq_reset", "symbol": "SOL-USDT"},
                    {"fault": "notice"}, {"fault": "snapshot_lag"}):
            async with session.post(f"{rest}/sim/fault", json=bad) as r:
                assert r.status == 400
        async with session.post(f"{rest}/sim/book", json={"symbol": "XRP-USDT", "bids": [["0.5", "10"]],
                                                          "asks": [["0.6", "20.5"]]}) as r:
            assert r.status == 200 and (await r.json())["seq"] == cluster.seq("kucoin", "XRP/USDT")
        assert cluster.book("kucoin", "XRP/USDT") == ([("0.5", "10")], [("0.6", "20.5")])


async def test_connect_handshake_against_the_simulator() -> None:
    async with kc_cluster() as cluster:
        venue = kucoin(cluster)
        settings = from_dict({"symbols": ["SOL/USDT"], "venues": {"kucoin": {
            "ws_url": cluster.url("kucoin"), "rest_url": cluster.rest_url("kucoin")}}}, {}).venues["kucoin"]
        info = await connect_resolver(VENUE, settings)()
        assert info.url.startswith(cluster.url("kucoin") + "?token=") and info.ping_interval_s == 18.0
        assert list(venue.tokens) == parse_qs(urlsplit(info.url).query)["token"]
        refused = dataclasses.replace(VENUE, connect_path="/api/v3/market/orderbook/level2")
        with pytest.raises(HandshakeFailed, match="answered HTTP 405"):  # a GET-only path
            await connect_resolver(refused, settings)()
        port = cluster.venue("kucoin").port
    closed = dataclasses.replace(settings, rest_url=f"http://127.0.0.1:{port}")
    with pytest.raises(HandshakeFailed, match="failed"):
        await connect_resolver(VENUE, closed)()
    # a venue answering 200 without an instance server, then an HTTP 503
    answers = [web.json_response({"code": "200000", "data": {"token": "t", "instanceServers": []}}),
               web.json_response({"code": "503000", "msg": "busy"}, status=503)]

    async def bullet_public(request: web.Request) -> web.Response:
        return answers.pop(0)

    app = web.Application()
    app.router.add_post("/api/v1/bullet-public", bullet_public)
    async with TestServer(app, host="127.0.0.1") as server:
        odd = dataclasses.replace(settings, rest_url=str(server.make_url("")).rstrip("/"))
        with pytest.raises(HandshakeFailed, match="unusable connect response"):
            await connect_resolver(VENUE, odd)()
        with pytest.raises(HandshakeFailed, match="answered HTTP 503"):
            await connect_resolver(VENUE, odd)()


async def test_bullet_endpoint_names_the_host_the_client_used(session: aiohttp.ClientSession) -> None:
    """In compose the simulator binds 0.0.0.0 and clients reach it as ``simulators:8707``: the token
    answer must send them back to that name, not to the bind address."""
    async with kc_cluster() as cluster:
        url = f"{cluster.rest_url('kucoin')}/api/v1/bullet-public"
        async with session.post(url, headers={"Host": "simulators:8707"}) as r:
            body = await r.json()
        assert body["data"]["instanceServers"][0]["endpoint"] == "ws://simulators:8707/"
        data = await bullet(session, cluster)
        assert data["instanceServers"][0]["endpoint"] == cluster.url("kucoin")
