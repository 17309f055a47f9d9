"""Simulated Bitget v2 spot public market data (PROTOCOLS.md §9): WebSocket ``/v2/ws/public`` with
the ``books`` channel (a snapshot, then updates whose ``seq`` grows by exactly 1 and whose
``checksum`` is the signed CRC32 of the top 25 levels after the update) and the ``books1``/
``books5``/``books15`` full-snapshot channels; text ``ping``/``pong``; REST
``/api/v2/spot/public/symbols`` (the market file, unchanged) and ``/api/v2/spot/market/orderbook``.

Prices and sizes are written with the instrument's fixed decimals (``"2.4400"``, deletions
``"0.0000"``), as Bitget does, so the checksum depends on the exact text. The connection rules
(:class:`BitgetKnobs`): closed when nothing is subscribed within 30 s, when no ``ping`` came for
2 minutes, after 24 h, and at the 11th client message within one second; more than 240
subscribe/unsubscribe requests in an hour are refused with error 30006.

Faults: ``skip_seq`` (the next update's seq jumps by 2), ``seq_reset`` (a maintenance restart:
seq starts again low), ``corrupt_checksum``, ``corrupt_level`` (``size``: a wrong best-bid size
that only the checksum reveals; ``crossed``: a bid above the best ask whose checksum matches,
so only the crossing check reveals it), ``drop``, ``garbage``, ``stall``. A pending fault goes
out at the next tick even when the book did not change (as an update with no levels).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from scanner.book.checksum import okx_checksum
from scanner.markets import Market
from scanner.sim.base import SimConn, SimVenue, SymState
from scanner.sim.book import Grid, Level, SimBook, fixed_rows
from scanner.sim.conn import WEIGHT
from scanner.sim.market import rng_for

CHANNELS = {"books": 0, "books1": 1, "books5": 5, "books15": 15}  # levels per side; 0 = every level
HOUR = 3600.0


@dataclass(frozen=True)
class BitgetKnobs:
    """Bitget's connection rules (documented values); tests shrink them."""

    no_sub_s: float = 30.0  # close a connection that subscribed to nothing within this long
    ping_timeout_s: float = 120.0  # close a connection that sent no "ping" for this long
    max_msgs_per_s: int = 10  # client frames (pings included) per second before the connection is cut
    max_subs_per_hour: int = 240  # subscribe + unsubscribe requests per connection
    max_age_s: float = 24 * 3600.0


@dataclass(eq=False)
class BitgetState(SymState):
    seq: int = 0  # seq of the last update (or of the initial state)
    tops: dict[str, bytes] = field(default_factory=dict)  # last books1/5/15 levels pushed


def places(grid: Grid) -> int:
    return len(grid.text.partition(".")[2])


class BitgetVenue(SimVenue[BitgetState]):
    name = "bitget"
    ws_path = "/v2/ws/public"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.knobs = BitgetKnobs()
        self.subs: dict[str, set[SimConn]] = {}  # "channel:instId" -> subscribers
        self.sub_requests: dict[SimConn, deque[float]] = {}  # subscription requests in the last hour
        self.pings = 0  # "ping" frames received, all connections

    def new_state(self, market: Market, book: SimBook) -> BitgetState:
        rng = rng_for(self.seed, "seq", self.name, market.symbol)
        return BitgetState(market.symbol, market.venue_id, book, rng, seq=rng.randint(10**6, 10**9))

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(self.ws_path, self._h_ws),
            web.get("/api/v2/spot/public/symbols", self._h_symbols),
            web.get("/api/v2/spot/market/orderbook", self._h_orderbook),
        ]

    def fmt(self, grid: Grid, n: int) -> str:
        return grid.fixed(n, places(grid))

    def seq(self, symbol: str) -> int:
        return self.state(symbol).seq

    # ----- book data ------------------------------------------------------------------
    def _rows(self, st: BitgetState, levels: list[Level]) -> list[list[str]]:
        g, lot = st.book.price, st.book.lot
        pp, qp = places(g), places(lot)
        return fixed_rows(g, lot, levels, pp, qp)

    def _checksum(self, st: BitgetState, extra_bid: Level | None = None) -> int:
        b = st.book
        bids = b.bids.top(25)
        if extra_bid is not None:  # the top 25 as a client holding the extra bid sees it
            bids = sorted([lv for lv in bids if lv[0] != extra_bid[0]] + [extra_bid], reverse=True)[:25]
        return okx_checksum([(r[0], r[1]) for r in self._rows(st, bids)],
                            [(r[0], r[1]) for r in self._rows(st, b.asks.top(25))])

    def _arg(self, channel: str, inst: str) -> dict[str, str]:
        return {"instType": "SPOT", "channel": channel, "instId": inst}

    def emit(self, st: BitgetState, now_ms: int, mono: float) -> None:
        bch, ach, _, _ = st.book.collect()
        changed = bool(bch or ach)
        if not (changed or st.skip or st.reset or st.bad_checksum or st.corrupt):
            return
        if st.skip:  # as if the update with the next seq had been lost
            st.seq += 1
            st.skip = False
        if st.reset:  # symbol maintenance: the sequence starts again
            st.seq = st.rng.randint(0, 100)
            st.reset = False
        mode = st.corrupt
        bad = self.take_corrupt_bid(st)
        st.seq += 1
        bad_checksum, st.bad_checksum = st.bad_checksum, False
        subs = self.subs.get(f"books:{st.inst}")
        if subs:
            bids, asks = self._rows(st, bch), self._rows(st, ach)
            checksum = self._checksum(st)
            if bad is not None:
                row = self._rows(st, [bad])[0]
                bids = [row, *(r for r in bids if r[0] != row[0])]
                if mode == "crossed":  # a consistent venue-side error: only the crossing shows it
                    checksum = self._checksum(st, bad)
            if bad_checksum:
                checksum = (checksum ^ 0x2F5A) or 1
            frame = orjson.dumps({
                "action": "update", "arg": self._arg("books", st.inst),
                "data": [{"asks": asks, "bids": bids, "checksum": checksum, "seq": st.seq, "ts": str(now_ms)}],
                "ts": now_ms,
            })
            for c in subs:
                c.send(frame)
        if changed:
            for ch in ("books1", "books5", "books15"):
                tsubs = self.subs.get(f"{ch}:{st.inst}")
                if tsubs:
                    self._push_top(st, ch, tsubs, now_ms, only_if_changed=True)

    def _push_top(self, st: BitgetState, ch: str, subs: set[SimConn], now_ms: int, only_if_changed: bool) -> None:
        n, b = CHANNELS[ch], st.book
        asks, bids = self._rows(st, b.asks.top(n)), self._rows(st, b.bids.top(n))
        levels = orjson.dumps([asks, bids])
        if only_if_changed and st.tops.get(ch) == levels:
            return
        st.tops[ch] = levels
        frame = orjson.dumps({
            "action": "snapshot", "arg": self._arg(ch, st.inst),
            "data": [{"asks": asks, "bids": bids, "seq": st.seq, "ts": str(now_ms)}], "ts": now_ms,
        })
        for c in subs:
            c.send(frame)

    def snapshot_frame(self, st: BitgetState) -> bytes:
        b, now_ms = st.book, int(time.time() * 1000)
        depth = self.cfg.depth
        return orjson.dumps({
            "action": "snapshot", "arg": self._arg("books", st.inst),
            "data": [{"asks": self._rows(st, b.asks.top(depth)), "bids": self._rows(st, b.bids.top(depth)),
                      "checksum": self._checksum(st), "seq": st.seq, "ts": str(now_ms)}],
            "ts": now_ms,
        })

    # ----- WebSocket ------------------------------------------------------------------
    async def _h_ws(self, request: web.Request) -> web.StreamResponse:
        ws, conn = await self.accept(request)
        self.sub_requests[conn] = deque()
        await self.serve(ws, conn)
        return ws

    def _error(self, conn: SimConn, code: int, msg: str, op: object = None, arg: object = None) -> None:
        body: dict[str, object] = {"event": "error", "code": code, "msg": msg}
        if arg is not None:
            body = {"event": "error", "arg": arg, "code": code, "msg": msg}
        if op is not None:
            body["op"] = op
        conn.send(orjson.dumps(body))

    def _count(self, conn: SimConn) -> bool:
        """Count one client frame against the per-second limit; False when the connection is cut."""
        now, q = time.monotonic(), conn.incoming
        q.append(now)
        while now - q[0] >= 1.0:
            q.popleft()
        if len(q) > self.knobs.max_msgs_per_s:
            self._error(conn, 30007, "Request over limit,connection close")
            conn.close(1008, "request over limit")
            return False
        return True

    def on_text(self, conn: SimConn, data: str) -> None:
        if conn.closed or not self._count(conn):
            return
        if data == "ping":
            self.pings += 1
            conn.last_ping = time.monotonic()
            conn.send("pong")
            return
        try:
            req = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._error(conn, 30002, f"Illegal request: {data[:200]}")
            return
        op = req.get("op") if type(req) is dict else None
        if op not in ("subscribe", "unsubscribe"):
            self._error(conn, 30003, "Invalid op", op)
            return
        assert type(req) is dict
        args = req.get("args")
        if type(args) is not list or not args:
            self._error(conn, 30016, "Param error", op)
            return
        now, reqs = time.monotonic(), self.sub_requests.setdefault(conn, deque())
        while reqs and now - reqs[0] > HOUR:
            reqs.popleft()
        if len(reqs) >= self.knobs.max_subs_per_hour:
            self._error(conn, 30006, "Request too many", op)
            return
        reqs.append(now)
        for arg in args:
            d = arg if type(arg) is dict else {}
            ch, inst, kind = d.get("channel"), d.get("instId"), d.get("instType")
            st = self.by_inst.get(inst) if type(inst) is str else None
            if kind != "SPOT" or ch not in CHANNELS or st is None:
                self._error(conn, 30001, f"instType:{kind},channel:{ch},instId:{inst} doesn't exist", op, arg)
                continue
            assert type(ch) is str
            conn.send(orjson.dumps({"event": op, "arg": self._arg(ch, st.inst)}))
            key = f"{ch}:{st.inst}"
            if op == "unsubscribe":
                conn.subs.discard(key)
                self.subs.get(key, set()).discard(conn)
                continue
            conn.subs.add(key)
            conn.subscribed_ever = True
            self.subs.setdefault(key, set()).add(conn)
            if ch == "books":
                conn.send(self.snapshot_frame(st))
            else:
                self._push_top(st, ch, {conn}, int(time.time() * 1000), only_if_changed=False)

    def on_close(self, conn: SimConn) -> None:
        self.sub_requests.pop(conn, None)
        for key in conn.subs:
            s = self.subs.get(key)
            if s is not None:
                s.discard(conn)
                if not s:
                    del self.subs[key]

    def housekeep(self, conn: SimConn, mono: float) -> None:
        k = self.knobs
        if mono - conn.connected_at > k.max_age_s:
            conn.close(1000, "connection lifetime exceeded")
        elif not conn.subscribed_ever and mono - conn.connected_at > k.no_sub_s:
            conn.close(1000, "no subscription")
        elif mono - conn.last_ping > k.ping_timeout_s:
            conn.close(1000, "no ping")

    # ----- REST -----------------------------------------------------------------------
    def _rest_error(self, code: str, msg: str) -> web.Response:
        return self.json({"code": code, "msg": msg, "requestTime": int(time.time() * 1000), "data": None}, 400)

    async def _h_symbols(self, request: web.Request) -> web.Response:
        request[WEIGHT] = 1
        sym = request.query.get("symbol")
        if not sym:
            return web.Response(body=self.raw_markets, content_type="application/json")
        body = orjson.loads(self.raw_markets)
        rows = [r for r in body["data"] if r["symbol"] == sym]
        if not rows:
            return self._rest_error("40034", f"Parameter {sym} does not exist")
        return self.json({**body, "data": rows})

    async def _h_orderbook(self, request: web.Request) -> web.Response:
        request[WEIGHT] = 1
        st = self.by_inst.get(request.query.get("symbol", ""))
        if st is None:
            return self._rest_error("40034", f"Parameter {request.query.get('symbol')} does not exist")
        try:
            limit = min(max(int(request.query.get("limit", "150")), 1), 150)
        except ValueError:
            return self._rest_error("40020", "Parameter limit error")
        b = st.book
        return self.json({"code": "00000", "msg": "success", "requestTime": int(time.time() * 1000), "data": {
            "asks": self._rows(st, b.asks.top(limit)), "bids": self._rows(st, b.bids.top(limit)),
            "ts": str(int(time.time() * 1000)),
        }})

    # ----- faults ---------------------------------------------------------------------
    def garbage_frames(self) -> list[str | bytes]:
        inst = next(iter(self.by_inst), "BTCUSDT")
        arg = f'{{"instType":"SPOT","channel":"books","instId":"{inst}"}}'
        return [
            f'{{"action":"update","arg":{arg},"data":[{{"asks":[["1',
            f'{{"action":"update","arg":{arg},"data":[{{"asks":"x","bids":5,"ts":"z","seq":"q"}}]}}',
            f'{{"action":"update","arg":{arg},"data":[{{"asks":[],"bids":[],"ts":"z","seq":1}}]}}',
            *[f for f in super().garbage_frames() if isinstance(f, bytes)],
        ]

    def corrupt_checksum(self, symbol: str) -> None:
        """The next ``books`` update of ``symbol`` carries a wrong checksum."""
        self.state(symbol).bad_checksum = True

    def seq_reset(self, symbol: str) -> None:
        """Symbol maintenance: the next update's ``seq`` starts again low (clients see a break)."""
        self.state(symbol).reset = True
