"""Simulated Binance spot market data (PROTOCOLS.md §3): WebSocket ``/ws``, ``/ws/<streams>``,
``/stream`` and ``/stream?streams=a/b`` (raw vs combined framing) carrying ``<sym>@depth@100ms``,
``<sym>@depth`` (1 s) and partial ``<sym>@depth<5|10|20>[@100ms]`` streams; live
SUBSCRIBE/UNSUBSCRIBE/LIST_SUBSCRIPTIONS/SET_PROPERTY/GET_PROPERTY; a server ping frame every
20 s with a 60 s pong deadline; the 5 messages/s client limit; REST ``/api/v3/depth``
(weights, ``X-MBX-USED-WEIGHT-1M``, 429 + ``Retry-After``) and ``/api/v3/exchangeInfo``.

Update ids advance by the number of level changes: an event's ``U`` is the previous ``u`` + 1.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from scanner.markets import Market
from scanner.sim.base import SimConn, SimVenue, SymState
from scanner.sim.book import Grid, Level, SimBook, fixed_rows
from scanner.sim.conn import WEIGHT
from scanner.sim.market import rng_for
from scanner.venues.binance import depth_weight

STREAM_RE = re.compile(r"^([a-z0-9]+)@(depth(?:5|10|20)?)(@100ms|@1000ms)?$")
MAX_STREAMS = 1024
MAX_LIMIT = 5000
EXCHANGE_INFO_WEIGHT = 20
Undo = tuple[int, dict[int, int], dict[int, int]]  # (update id before the change, bid undo, ask undo)


@dataclass(eq=False)
class BinanceState(SymState):
    u: int = 0  # last update id (the id of the current state)
    history: deque[Undo] = field(default_factory=deque)
    acc: dict[tuple[int, int], int] = field(default_factory=dict)  # 1 s stream: (side, ticks) -> size
    acc_first: int = 0  # U of the pending 1 s event
    acc_last: int = 0


def px(g: Grid, n: int) -> str:
    return g.fixed(n, 8)


def rows(g: Grid, lot: Grid, levels: list[Level]) -> list[list[str]]:
    return fixed_rows(g, lot, levels)


class BinanceVenue(SimVenue[BinanceState]):
    name = "binance"
    ws_path = "/stream"
    autoping = False  # pings and pongs count against the 5 messages/s limit

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subs: dict[str, set[SimConn]] = {}
        self.lag = 0  # snapshot_lag: REST serves the state this many changes back
        self._win = -1  # current weight window (minute index) and weight used in it
        self._used = 0
        self._t0 = time.monotonic()
        self._next_slow = 0.0

    def new_state(self, market: Market, book: SimBook) -> BinanceState:
        rng = rng_for(self.seed, "seq", self.name, market.symbol)
        st = BinanceState(market.symbol, market.venue_id, book, rng, u=rng.randint(10**9, 6 * 10**10))
        st.history = deque(maxlen=self.cfg.history)
        return st

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/ws", self._h_ws),
            web.get("/ws/{streams:.+}", self._h_ws),
            web.get("/stream", self._h_ws),
            web.get("/api/v3/depth", self._h_depth),
            web.get("/api/v3/exchangeInfo", self._h_exchange_info),
        ]

    def fmt(self, grid: Grid, n: int) -> str:
        return grid.fixed(n, 8)

    def seq(self, symbol: str) -> int:
        return self.state(symbol).u

    # ----- book data ------------------------------------------------------------------
    def _send(self, name: str, subs: set[SimConn], raw: bytes) -> None:
        wrapped = b""
        for c in subs:
            if c.combined:
                wrapped = wrapped or b'{"stream":"%s","data":%s}' % (name.encode(), raw)
                c.send(wrapped)
            else:
                c.send(raw)

    def emit(self, st: BinanceState, now_ms: int, mono: float) -> None:
        bch, ach, bundo, aundo = st.book.collect()
        if st.skip:  # ids that never reach the client: the next U > last u + 1
            st.u += st.rng.randint(2, 20)
            st.skip = False
        bad = self.take_corrupt_bid(st)
        n = len(bch) + len(ach)
        if not n and bad is None:
            return
        first = st.u + 1
        st.u += max(n, 1)
        st.history.append((first - 1, bundo, aundo))
        g, lot, low = st.book.price, st.book.lot, st.inst.lower()
        name = f"{low}@depth@100ms"
        subs = self.subs.get(name)
        if subs:
            b, a = rows(g, lot, bch), rows(g, lot, ach)
            if bad is not None:
                bad_px = px(g, bad[0])
                b = [r for r in b if r[0] != bad_px]
                b.insert(0, [bad_px, px(lot, bad[1])])
            raw = orjson.dumps({"e": "depthUpdate", "E": now_ms, "s": st.inst, "U": first, "u": st.u,
                                "b": b, "a": a})
            self._send(name, subs, raw)
        if f"{low}@depth" in self.subs:
            st.acc_first = st.acc_first or first
            st.acc_last = st.u
            for side, changes in ((0, bch), (1, ach)):
                for p, q in changes:
                    st.acc[side, p] = q
        if n:
            for depth in (5, 10, 20):
                name = f"{low}@depth{depth}@100ms"
                subs = self.subs.get(name)
                if subs:
                    self._send(name, subs, self._partial(st, depth))

    def _partial(self, st: BinanceState, depth: int) -> bytes:
        b = st.book
        return orjson.dumps({"lastUpdateId": st.u, "bids": rows(b.price, b.lot, b.bids.top(depth)),
                             "asks": rows(b.price, b.lot, b.asks.top(depth))})

    def tick(self, now_ms: int, mono: float, slot: int = 0, slots: int = 1) -> None:
        super().tick(now_ms, mono, slot, slots)
        if mono < self.stall_until or mono < self._next_slow:
            return
        self._next_slow = mono + 1.0
        for st in self.states.values():
            low = st.inst.lower()
            name = f"{low}@depth"
            subs = self.subs.get(name)
            if subs and st.acc:
                g, lot = st.book.price, st.book.lot
                b = [[px(g, p), px(lot, q)] for (side, p), q in sorted(st.acc.items(), key=lambda kv: -kv[0][1])
                     if side == 0]
                a = [[px(g, p), px(lot, q)] for (side, p), q in sorted(st.acc.items()) if side == 1]
                raw = orjson.dumps({"e": "depthUpdate", "E": now_ms, "s": st.inst, "U": st.acc_first,
                                    "u": st.acc_last, "b": b, "a": a})
                self._send(name, subs, raw)
            st.acc, st.acc_first = {}, 0
            for depth in (5, 10, 20):
                for name in (f"{low}@depth{depth}", f"{low}@depth{depth}@1000ms"):
                    subs = self.subs.get(name)
                    if subs:
                        self._send(name, subs, self._partial(st, depth))

    # ----- WebSocket ------------------------------------------------------------------
    def _stream(self, name: object) -> str | None:
        """The canonical stream name, or None when it is not a known symbol's book stream."""
        if type(name) is not str:
            return None
        m = STREAM_RE.match(name)
        if m is None or m.group(1).upper() not in self.by_inst:
            return None
        return name

    async def _h_ws(self, request: web.Request) -> web.StreamResponse:
        combined = request.path.startswith("/stream")
        raw = request.match_info.get("streams") or request.query.get("streams", "")
        names = [s for s in raw.split("/") if s]
        if any(self._stream(s) is None for s in names):
            request[WEIGHT] = 0
            return self.json({"code": 2, "msg": "Invalid request: unknown symbol"}, 400)
        ws, conn = await self.accept(request)
        conn.combined = combined
        for s in names:
            self._subscribe(conn, s)
        await self.serve(ws, conn)
        return ws

    def _subscribe(self, conn: SimConn, name: str) -> None:
        conn.subs.add(name)
        self.subs.setdefault(name, set()).add(conn)

    def _reply(self, conn: SimConn, body: dict[str, object]) -> None:
        conn.send(orjson.dumps(body))

    def _count(self, conn: SimConn) -> bool:
        """Count one client message; False (and the connection closing) over the limit."""
        q, now = conn.incoming, time.monotonic()
        q.append(now)
        while now - q[0] >= 1.0:
            q.popleft()
        if len(q) > self.cfg.binance_max_msgs_per_s:
            conn.close(1008, "Too many messages")
            return False
        return True

    def on_other(self, conn: SimConn, kind: WSMsgType, data: bytes) -> None:
        if not self._count(conn):
            return
        if kind is WSMsgType.PING:
            conn.pong(data)
        elif kind is WSMsgType.PONG:
            conn.ping_outstanding = 0.0

    def on_text(self, conn: SimConn, data: str) -> None:
        if not self._count(conn):
            return
        try:
            req = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            self._reply(conn, {"code": 3, "msg": f"Invalid JSON: {exc}", "id": None})
            return
        if type(req) is not dict or "method" not in req:
            self._reply(conn, {"code": 2, "msg": "Invalid request: missing field `method`", "id": None})
            return
        rid, method, params = req.get("id"), req.get("method"), req.get("params", [])
        if not (rid is None or (type(rid) is int and rid >= 0) or (type(rid) is str and len(rid) <= 36)):
            self._reply(conn, {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer", "id": None})
            return
        if type(params) is not list:
            self._reply(conn, {"code": 1, "msg": "Invalid value type: expected an array", "id": rid})
        elif method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            names = [self._stream(p) for p in params]
            if any(n is None for n in names):
                self._reply(conn, {"code": 2, "msg": "Invalid request: unknown symbol", "id": rid})
            elif method == "SUBSCRIBE" and len(conn.subs | {n for n in names if n}) > MAX_STREAMS:
                self._reply(conn, {"code": 2, "msg": "Invalid request: too many streams", "id": rid})
            else:
                for n in names:
                    assert n is not None
                    if method == "SUBSCRIBE":
                        self._subscribe(conn, n)
                    else:
                        conn.subs.discard(n)
                        self.subs.get(n, set()).discard(conn)
                self._reply(conn, {"result": None, "id": rid})
        elif method == "LIST_SUBSCRIPTIONS":
            self._reply(conn, {"result": sorted(conn.subs), "id": rid})
        elif method in ("SET_PROPERTY", "GET_PROPERTY"):
            if not params or params[0] != "combined":
                self._reply(conn, {"code": 0, "msg": "Unknown property", "id": rid})
            elif method == "GET_PROPERTY":
                self._reply(conn, {"result": conn.combined, "id": rid})
            elif len(params) != 2 or type(params[1]) is not bool:
                self._reply(conn, {"code": 1, "msg": "Invalid value type: expected Boolean", "id": rid})
            else:
                conn.combined = params[1]
                self._reply(conn, {"result": None, "id": rid})
        else:
            self._reply(conn, {"code": 2, "msg": f"Invalid request: unknown variant {method}", "id": rid})

    def on_close(self, conn: SimConn) -> None:
        for name in conn.subs:
            s = self.subs.get(name)
            if s is not None:
                s.discard(conn)
                if not s:
                    del self.subs[name]

    def housekeep(self, conn: SimConn, mono: float) -> None:
        cfg = self.cfg
        if mono - conn.connected_at > cfg.binance_max_age_s:
            conn.close(1000, "connection lifetime exceeded")
        elif conn.ping_outstanding and mono - conn.ping_outstanding > cfg.binance_pong_timeout_s:
            conn.close(1008, "pong timeout")
        elif mono - conn.last_ping >= cfg.binance_ping_interval_s:
            conn.last_ping = mono
            conn.ping_outstanding = conn.ping_outstanding or mono
            conn.ping(str(int(time.time() * 1000)).encode())

    # ----- REST -----------------------------------------------------------------------
    def _charge(self, request: web.Request, weight: int) -> dict[str, str] | int:
        """Count ``weight`` against the per-minute limit: the weight headers, or the
        Retry-After seconds when the request is refused."""
        now = time.monotonic() - self._t0
        win = int(now // 60)
        if win != self._win:
            self._win, self._used = win, 0
        if self._used + weight > self.cfg.binance_weight_limit:
            return max(1, math.ceil((win + 1) * 60 - now))
        self._used += weight
        request[WEIGHT] = weight
        return {"X-MBX-USED-WEIGHT-1M": str(self._used)}

    def _too_many(self, retry_after: int) -> web.Response:
        return self.json({"code": -1003, "msg": "Too much request weight used; please use WebSocket Streams for "
                          f"live updates to avoid polling the API. Current limit is {self.cfg.binance_weight_limit}"
                          " request weight per 1 MINUTE."}, 429,
                         {"Retry-After": str(retry_after), "X-MBX-USED-WEIGHT-1M": str(self._used)})

    def snapshot(self, st: BinanceState, limit: int, lag: int = 0) -> tuple[int, list[Level], list[Level]]:
        """(lastUpdateId, bids, asks) of the current state, or of the state ``lag`` changes back."""
        b = st.book
        if lag <= 0 or not st.history:
            return st.u, b.bids.top(limit), b.asks.top(limit)
        bl, al, u = dict(b.bids.levels), dict(b.asks.levels), st.u
        for before, bundo, aundo in list(st.history)[-lag:][::-1]:
            for lv, undo in ((bl, bundo), (al, aundo)):
                for r, old in undo.items():
                    if old:
                        lv[r] = old
                    else:
                        lv.pop(r, None)
            u = before
        return u, [(-r, bl[r]) for r in sorted(bl)[:limit]], [(r, al[r]) for r in sorted(al)[:limit]]

    async def _h_depth(self, request: web.Request) -> web.Response:
        try:
            limit = min(max(int(request.query.get("limit", "100")), 1), MAX_LIMIT)
        except ValueError:
            return self.json({"code": -1100, "msg": "Illegal characters found in parameter 'limit'."}, 400)
        charged = self._charge(request, depth_weight(limit))
        if isinstance(charged, int):
            return self._too_many(charged)
        symbol = request.query.get("symbol", "")
        if not symbol:
            return self.json({"code": -1102, "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, "
                              "or malformed."}, 400, charged)
        st = self.by_inst.get(symbol)
        if st is None:
            return self.json({"code": -1121, "msg": "Invalid symbol."}, 400, charged)
        u, bids, asks = self.snapshot(st, limit, self.lag)
        g, lot = st.book.price, st.book.lot
        return self.json({"lastUpdateId": u, "bids": rows(g, lot, bids), "asks": rows(g, lot, asks)},
                         headers=charged)

    async def _h_exchange_info(self, request: web.Request) -> web.Response:
        charged = self._charge(request, EXCHANGE_INFO_WEIGHT)
        if isinstance(charged, int):
            return self._too_many(charged)
        return web.Response(body=self.raw_markets, content_type="application/json", headers=charged)

    # ----- faults ---------------------------------------------------------------------
    def garbage_frames(self) -> list[str | bytes]:
        inst = next(iter(self.by_inst), "BTCUSDT")
        return [
            f'{{"e":"depthUpdate","E":1,"s":"{inst}","U":5,"u":',
            f'{{"e":"depthUpdate","E":"x","s":"{inst}","U":"a","u":"b","b":"nope","a":7}}',
            f'{{"stream":"{inst.lower()}@nonsense","data":{{"e":"nonsense","E":1}}}}',
            *[f for f in super().garbage_frames() if isinstance(f, bytes)],
        ]

    def snapshot_lag(self, ticks: int) -> None:
        """REST ``/api/v3/depth`` serves the state ``ticks`` book changes old (0 = current)."""
        self.lag = max(0, ticks)

    def shutdown(self, delay: float = 1.0) -> None:
        """Send ``serverShutdown`` to every client and close them ``delay`` s later."""
        conns = list(self.clients)
        event = orjson.dumps({"e": "serverShutdown", "E": int(time.time() * 1000)})
        for c in conns:
            c.send(b'{"stream":"!serverShutdown","data":%s}' % event if c.combined else event)

        def close_all() -> None:
            for c in conns:
                c.close(1001, "server shutdown")

        self.later(delay, close_all)
