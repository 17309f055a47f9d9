"""Simulated KuCoin spot market data, classic API (PROTOCOLS.md §8).

REST ``POST /api/v1/bullet-public`` hands out a token and this simulator's own websocket
endpoint with ``pingInterval``/``pingTimeout``. The socket at ``/`` takes ``?token=&connectId=``:
an unknown token is refused with HTTP 401, an expired one gets ``{"type":"error","code":401,
"data":"token is expired"}`` and a close. A good one is greeted with ``{"id":<connectId>,
"type":"welcome"}``. Then come ``subscribe``/``unsubscribe`` of ``/market/level2:SYM,...``
(at most 100 symbols a request and 300 topics a session), answered with ``ack`` when
``response`` is true, and JSON ``ping`` → ``pong``. A client that sends nothing for
``pingInterval + pingTimeout`` is closed, and so is any connection older than 24 h. More than
100 client messages in 10 s get error 509. Book data is ``trade.l2update`` with one sequence
per change, ``sequenceStart``/``sequenceEnd``, and now and then a legacy price ``"0"`` change
(a sequence step with no level). There is no websocket snapshot and no checksum. REST serves
``/api/v1/market/orderbook/level2_20`` and ``level2_100`` (the best 20/100 levels and their
``sequence``), refuses the keyed ``/api/v3/market/orderbook/level2`` with 401, and serves
``/api/v2/symbols`` (and ``/api/v1/symbols``). REST weight comes from a 30 s public pool,
with 429000 when it runs out.

Venue-specific knobs live in :class:`KucoinKnobs` (``venue.knobs``), not in the shared SimConfig.
"""

from __future__ import annotations

import base64
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from scanner.markets import Market
from scanner.sim.base import SimConn, SimVenue, SymState
from scanner.sim.book import SimBook, canonical_rows
from scanner.sim.conn import WEIGHT
from scanner.sim.market import rng_for

TOPIC = "/market/level2"
OK = "200000"
DEPTHS = {"/api/v1/market/orderbook/level2_20": (20, 2), "/api/v1/market/orderbook/level2_100": (100, 4)}
BULLET_WEIGHT = 10
SYMBOLS_WEIGHT = 4


@dataclass(frozen=True)
class KucoinKnobs:
    """KuCoin behaviour; defaults as documented (limits marked [U] in PROTOCOLS.md)."""

    ping_interval_ms: int = 18_000
    ping_timeout_ms: int = 10_000
    token_ttl_s: float = 24 * 3600.0
    max_age_s: float = 24 * 3600.0  # connection lifetime
    max_batch: int = 100  # symbols per subscribe request
    max_topics: int = 300  # per session
    max_msgs_per_10s: int = 100  # client messages
    noop_p: float = 0.05  # chance a message also carries a price "0" sequence step
    rest_weight_per_30s: int = 2000  # public resource pool


@dataclass(eq=False)
class KucoinState(SymState):
    seq: int = 0  # sequence of the last change (the state book() describes)


@dataclass(eq=False)
class Client:
    """What the venue remembers about one socket."""

    connect_id: str
    last_heard: float  # monotonic time of the client's last frame
    sent: deque[float]  # times of recent client frames (rate limit)
    pings: int = 0


class KucoinVenue(SimVenue[KucoinState]):
    name = "kucoin"
    ws_path = "/"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.knobs = KucoinKnobs()
        self.subs: dict[str, set[SimConn]] = {}  # instrument -> subscribers
        self.tokens: dict[str, float] = {}  # token -> monotonic issue time
        self.meta: dict[SimConn, Client] = {}
        self._token_rng = rng_for(self.seed, "token", self.name)
        self._pool_start = -1e9
        self._pool_used = 0

    def new_state(self, market: Market, book: SimBook) -> KucoinState:
        rng = rng_for(self.seed, "seq", self.name, market.symbol)
        return KucoinState(market.symbol, market.venue_id, book, rng, seq=rng.randint(10**10, 2 * 10**13))

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(self.ws_path, self._h_ws),
            web.post("/api/v1/bullet-public", self._h_bullet),
            *[web.get(path, self._h_orderbook) for path in DEPTHS],
            web.get("/api/v3/market/orderbook/level2", self._h_full_orderbook),
            web.get("/api/v2/symbols", self._h_symbols),
            web.get("/api/v1/symbols", self._h_symbols),
        ]

    def seq(self, symbol: str) -> int:
        return self.state(symbol).seq

    # ----- book data ------------------------------------------------------------------
    def emit(self, st: KucoinState, now_ms: int, mono: float) -> None:
        bch, ach, _, _ = st.book.collect()
        if st.skip:  # sequences consumed by changes the client never sees
            st.seq += st.rng.randint(2, 20)
            st.skip = False
        bad = self.take_corrupt_bid(st)
        noop = st.rng.random() < self.knobs.noop_p
        if not (bch or ach or bad is not None):
            return
        g, lot = st.book.price, st.book.lot
        start = st.seq + 1
        bids = canonical_rows(g, lot, bch)
        if bad is not None:
            bad_px = g.canonical(bad[0])
            bids = [r for r in bids if r[0] != bad_px]
            bids.insert(0, [bad_px, lot.canonical(bad[1])])
        asks = canonical_rows(g, lot, ach)
        if noop:
            (bids if st.rng.random() < 0.5 else asks).append(["0", "0"])
        for row in bids + asks:  # one sequence per change, bids first
            st.seq += 1
            row.append(str(st.seq))
        subs = self.subs.get(st.inst)
        if not subs:
            return
        frame = orjson.dumps({
            "topic": f"{TOPIC}:{st.inst}", "type": "message", "subject": "trade.l2update",
            "data": {"changes": {"asks": asks, "bids": bids}, "sequenceEnd": st.seq, "sequenceStart": start,
                     "symbol": st.inst, "time": now_ms},
        })
        for c in subs:
            c.send(frame)

    # ----- WebSocket ------------------------------------------------------------------
    async def _h_ws(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("token", "")
        issued = self.tokens.get(token)
        if issued is None:
            request[WEIGHT] = 0
            return self.json({"code": "401", "msg": "token is invalid"}, 401)
        ws, conn = await self.accept(request)
        connect_id = request.query.get("connectId") or conn.id
        if time.monotonic() - issued > self.knobs.token_ttl_s:
            conn.send(orjson.dumps({"id": connect_id, "type": "error", "code": 401, "data": "token is expired"}))
            conn.close(1000, "token is expired")
        else:
            self.meta[conn] = Client(connect_id, time.monotonic(), deque())
            conn.send(orjson.dumps({"id": connect_id, "type": "welcome"}))
        await self.serve(ws, conn)
        return ws

    def _error(self, conn: SimConn, rid: object, code: int, data: str) -> None:
        conn.send(orjson.dumps({"id": rid, "type": "error", "code": code, "data": data}))

    def on_text(self, conn: SimConn, data: str) -> None:
        client = self.meta.get(conn)
        if client is None:
            return
        now = time.monotonic()
        client.last_heard = now
        sent = client.sent
        sent.append(now)
        while now - sent[0] >= 10.0:
            sent.popleft()
        if len(sent) > self.knobs.max_msgs_per_10s:
            self._error(conn, "", 509, "exceed max permits per 10 seconds")
            return
        try:
            req = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._error(conn, "", 400, "request is not valid json")
            return
        if type(req) is not dict:
            self._error(conn, "", 400, "request is not valid json")
            return
        rid, kind = req.get("id", ""), req.get("type")
        if kind == "ping":
            client.pings += 1
            conn.send(orjson.dumps({"id": rid, "type": "pong"}))
        elif kind in ("subscribe", "unsubscribe"):
            self._subscription(conn, req, rid, kind == "subscribe")
        else:
            self._error(conn, rid, 415, "type is not supported")

    def _subscription(self, conn: SimConn, req: dict[str, Any], rid: object, sub: bool) -> None:
        topic = req.get("topic")
        prefix, _, rest = topic.partition(":") if type(topic) is str else ("", "", "")
        insts = [s for s in rest.split(",") if s]
        if prefix != TOPIC or not insts:
            self._error(conn, rid, 404, f"topic {topic} is not found")
            return
        if len(insts) > self.knobs.max_batch:
            self._error(conn, rid, 400, f"exceed max symbols limitation of {self.knobs.max_batch} per request")
            return
        unknown = [s for s in insts if s not in self.by_inst]
        if unknown:
            self._error(conn, rid, 404, f"topic {TOPIC}:{unknown[0]} is not found")
            return
        if sub and len(conn.subs | set(insts)) > self.knobs.max_topics:
            self._error(conn, rid, 509, f"exceed max subscription count limitation of {self.knobs.max_topics} "
                        "per session")
            return
        for inst in insts:
            if sub:
                conn.subs.add(inst)
                self.subs.setdefault(inst, set()).add(conn)
            else:
                conn.subs.discard(inst)
                subs = self.subs.get(inst)
                if subs is not None:
                    subs.discard(conn)
                    if not subs:
                        del self.subs[inst]
        conn.subscribed_ever = conn.subscribed_ever or sub
        if req.get("response") is True:
            conn.send(orjson.dumps({"id": rid, "type": "ack"}))

    def on_close(self, conn: SimConn) -> None:
        self.meta.pop(conn, None)
        for inst in conn.subs:
            s = self.subs.get(inst)
            if s is not None:
                s.discard(conn)
                if not s:
                    del self.subs[inst]

    def housekeep(self, conn: SimConn, mono: float) -> None:
        client, k = self.meta.get(conn), self.knobs
        if client is None:
            return
        if mono - conn.connected_at > k.max_age_s:
            conn.close(1000, "connection lifetime exceeded")
        elif mono - client.last_heard > (k.ping_interval_ms + k.ping_timeout_ms) / 1000.0:
            conn.close(1000, "ping timeout")

    # ----- REST -----------------------------------------------------------------------
    def _charge(self, request: web.Request, weight: int) -> web.Response | None:
        """Take ``weight`` from the 30 s public pool, or answer 429000."""
        now, k = time.monotonic(), self.knobs
        if now - self._pool_start >= 30.0:
            self._pool_start, self._pool_used = now, 0
        reset_ms = str(max(0, int((self._pool_start + 30.0 - now) * 1000)))
        if self._pool_used + weight > k.rest_weight_per_30s:
            return self.json({"code": "429000", "msg": "Too Many Requests"}, 429, {
                "gw-ratelimit-limit": str(k.rest_weight_per_30s), "gw-ratelimit-remaining": "0",
                "gw-ratelimit-reset": reset_ms, "Retry-After": str(max(1, int(reset_ms) // 1000))})
        self._pool_used += weight
        request[WEIGHT] = weight
        return None

    def _token(self) -> str:
        rng = self._token_rng
        raw = base64.b64encode(rng.randbytes(72)).decode()  # "+", "/" and "=" must survive the URL
        return f"{raw}.{base64.b64encode(rng.randbytes(16)).decode()}"

    async def _h_bullet(self, request: web.Request) -> web.Response:
        refused = self._charge(request, BULLET_WEIGHT)
        if refused is not None:
            return refused
        token = self._token()
        self.tokens[token] = time.monotonic()
        k = self.knobs
        return self.json({"code": OK, "data": {"token": token, "instanceServers": [{
            # the host the client reached us by (a container name, not our 0.0.0.0 bind address)
            "endpoint": f"ws://{request.host}{self.ws_path}", "encrypt": True, "protocol": "websocket",
            "pingInterval": k.ping_interval_ms, "pingTimeout": k.ping_timeout_ms}]}})

    async def _h_orderbook(self, request: web.Request) -> web.Response:
        depth, weight = DEPTHS[request.path]
        refused = self._charge(request, weight)
        if refused is not None:
            return refused
        symbol = request.query.get("symbol", "")
        if not symbol:
            return self.json({"code": "400100", "msg": "symbol is required"}, 400)
        st = self.by_inst.get(symbol)
        if st is None:
            return self.json({"code": "900001", "msg": "symbol not exists"}, 400)
        b = st.book
        return self.json({"code": OK, "data": {
            "time": int(time.time() * 1000), "sequence": str(st.seq),
            "bids": [[self.fmt(b.price, p), self.fmt(b.lot, q)] for p, q in b.bids.top(depth)],
            "asks": [[self.fmt(b.price, p), self.fmt(b.lot, q)] for p, q in b.asks.top(depth)],
        }})

    async def _h_full_orderbook(self, request: web.Request) -> web.Response:
        request[WEIGHT] = 0
        return self.json({"code": "400001", "msg": "Please check the header of your request for KC-API-KEY"}, 401)

    async def _h_symbols(self, request: web.Request) -> web.Response:
        refused = self._charge(request, SYMBOLS_WEIGHT)
        if refused is not None:
            return refused
        return web.Response(body=self.raw_markets, content_type="application/json")

    # ----- faults ---------------------------------------------------------------------
    def garbage_frames(self) -> list[str | bytes]:
        inst = next(iter(self.by_inst), "BTC-USDT")
        head = f'{{"topic":"{TOPIC}:{inst}","type":"message","subject":"trade.l2update","data":'
        return [
            head + '{"changes":{"asks":[["1',
            head + '{"changes":"x","sequenceStart":"a","sequenceEnd":[],"symbol":7}}',
            f'{{"topic":"/market/nonsense:{inst}","type":"message","subject":"nonsense","data":{{}}}}',
            *[f for f in super().garbage_frames() if isinstance(f, bytes)],
        ]
