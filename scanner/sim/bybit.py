"""Simulated Bybit v5 spot public market data (PROTOCOLS.md §4): WebSocket ``/v5/public/spot``
with ``orderbook.{1,50,200,1000}.{SYM}`` topics, JSON ``{"op":"ping"}`` keepalive and the idle
rule; REST ``/v5/market/orderbook`` and ``/v5/market/instruments-info``.

Each topic shows the top-``depth`` window of the symbol's book: a subscribe is acknowledged
(spot: ``ret_msg":"subscribe"``, at most 10 args per request, a topic at most once per
connection) and answered with a ``snapshot``; then every tick whose window changed sends one
``delta`` with the exact window diff and ``u`` = previous ``u`` + 1 (``u`` is counted per
topic, ``seq`` per symbol across depths). ``orderbook.1`` sends only snapshots and re-sends
an unchanged one (same ``u``) every 3 s. Now and then (:attr:`BybitKnobs.resnapshot_p`) a
topic pushes an unprompted snapshot; ``seq_reset`` is Bybit's service restart: the next push
of every topic of the symbol is a snapshot with ``u`` = 1. A connection with neither pings nor
data for 10 minutes is closed.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from scanner.markets import Market
from scanner.sim.base import SimConn, SimVenue, SymState
from scanner.sim.book import Grid, Level, SimBook, canonical_rows, view_update
from scanner.sim.conn import WEIGHT
from scanner.sim.market import rng_for

DEPTHS = (1, 50, 200, 1000)
TOPIC_RE = re.compile(r"^orderbook\.(\d+)\.([A-Z0-9]+)$")
MAX_ARGS = 10  # spot: args per subscribe request
REST_MAX_LIMIT = 200  # spot REST /v5/market/orderbook
View = tuple[dict[int, int], dict[int, int]]  # (bids, asks) as {price ticks: size lots}


@dataclass(frozen=True)
class BybitKnobs:
    """Bybit-only behaviour (set ``venue.knobs`` on a running simulator to change it)."""

    idle_s: float = 600.0  # neither a client message nor a push for this long: the server closes
    l1_resend_s: float = 3.0  # orderbook.1 re-sends its unchanged snapshot after this long
    resnapshot_p: float = 0.0005  # chance per delta that the topic sends a full snapshot instead


@dataclass(eq=False)
class BybitState(SymState):
    seq: int = 0  # cross sequence: grows (by random steps) with every book change
    u: dict[int, int] = field(default_factory=dict)  # depth -> update id of the topic's last push
    views: dict[int, View] = field(default_factory=dict)  # depth -> window as last pushed (subscribed only)
    l1_sent: float = 0.0  # monotonic time orderbook.1 last pushed
    snap_rng: random.Random = field(default_factory=random.Random)  # unprompted re-snapshots
    resnap: bool = False  # resnapshot(): every topic pushes a snapshot on the next tick


def rows(g: Grid, lot: Grid, levels: list[Level]) -> list[list[str]]:
    return canonical_rows(g, lot, levels)


class BybitVenue(SimVenue[BybitState]):
    name = "bybit"
    ws_path = "/v5/public/spot"
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.knobs = BybitKnobs()  # replace on a running simulator to change its behaviour
        self.subs: dict[str, set[SimConn]] = {}  # topic -> subscribers

    def new_state(self, market: Market, book: SimBook) -> BybitState:
        rng = rng_for(self.seed, "seq", self.name, market.symbol)
        st = BybitState(market.symbol, market.venue_id, book, rng, seq=rng.randint(10**10, 9 * 10**10))
        st.u = {d: rng.randint(10**6, 9 * 10**7) for d in DEPTHS}
        st.snap_rng = rng_for(self.seed, "resnapshot", self.name, market.symbol)
        return st

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(self.ws_path, self._h_ws),
            web.get("/v5/market/orderbook", self._h_orderbook),
            web.get("/v5/market/instruments-info", self._h_instruments),
        ]

    def seq(self, symbol: str) -> int:
        """The update id of the symbol's ``orderbook.1000`` topic (the whole simulated book)."""
        return self.state(symbol).u[1000]

    def topic_u(self, symbol: str, depth: int) -> int:
        """The update id of ``orderbook.{depth}.{symbol}``'s last push."""
        return self.state(symbol).u[depth]

    # ----- book data ------------------------------------------------------------------
    @staticmethod
    def window(st: BybitState, depth: int) -> View:
        b = st.book
        return b.bids.top_map(depth), b.asks.top_map(depth)

    def _frame(self, st: BybitState, depth: int, kind: str, bids: list[list[str]], asks: list[list[str]],
               now_ms: int) -> bytes:
        return orjson.dumps({
            "topic": f"orderbook.{depth}.{st.inst}", "ts": now_ms, "type": kind,
            "data": {"s": st.inst, "b": bids, "a": asks, "u": st.u[depth], "seq": st.seq}, "cts": now_ms - 1,
        })

    def snapshot_frame(self, st: BybitState, depth: int, now_ms: int) -> bytes:
        """The topic's snapshot of its current window (``views[depth]``)."""
        g, lot = st.book.price, st.book.lot
        vb, va = st.views[depth]
        return self._frame(st, depth, "snapshot", rows(g, lot, sorted(vb.items(), reverse=True)),
                           rows(g, lot, sorted(va.items())), now_ms)

    def emit(self, st: BybitState, now_ms: int, mono: float) -> None:
        bch, ach, _, _ = st.book.collect()
        changed = bool(bch or ach)
        if changed:
            st.seq += st.rng.randint(1, 60)
        live = [d for d in DEPTHS if self.subs.get(f"orderbook.{d}.{st.inst}")]
        if changed and 1000 not in live:
            st.u[1000] += 1  # the full-depth id moves with the book (REST reports it)
        if not live:
            return
        restart, st.reset = st.reset, False
        force, st.resnap = st.resnap, False
        bad = self.take_corrupt_bid(st) if any(d > 1 for d in live) else None
        skipped = False
        for depth in live:
            subs = self.subs[f"orderbook.{depth}.{st.inst}"]
            old = st.views[depth]
            if restart:  # service restart: every topic starts again at u = 1 with a snapshot
                st.u[depth], st.views[depth] = 1, self.window(st, depth)
                self._push(subs, self.snapshot_frame(st, depth, now_ms))
            elif depth == 1:  # snapshots only; an unchanged one is re-sent every l1_resend_s
                new = self.window(st, depth) if changed else old
                if new != old or force:
                    st.u[1] += 2 if st.skip else 1
                    skipped = skipped or st.skip
                    st.views[1] = new
                elif mono - st.l1_sent < self.knobs.l1_resend_s:
                    continue
                st.l1_sent = mono
                self._push(subs, self.snapshot_frame(st, 1, now_ms))
            else:
                skipped = self._delta(st, depth, subs, old, changed, bad, force, now_ms, bch, ach) or skipped
        if skipped:
            st.skip = False

    def _delta(self, st: BybitState, depth: int, subs: set[SimConn], view: View, changed: bool,
               bad: tuple[int, int] | None, force: bool, now_ms: int, bch: list[Level], ach: list[Level]) -> bool:
        """Bring the topic's window up to date and push its diff (if any); True when a pending
        skip_seq was used. ``view`` is the book's window as of the previous tick (every change
        goes through here), so :func:`view_update` needs only this tick's changes."""
        bdiff: list[Level] = []
        adiff: list[Level] = []
        if changed:
            bdiff = view_update(st.book.bids, view[0], depth, bch)
            adiff = view_update(st.book.asks, view[1], depth, ach)
            bdiff.sort(reverse=True)
            adiff.sort()
        if not (bdiff or adiff or bad is not None or force):
            return False
        st.u[depth] += 2 if st.skip else 1  # skip: as if one delta had been lost
        if force or (bad is None and st.snap_rng.random() < self.knobs.resnapshot_p):
            self._push(subs, self.snapshot_frame(st, depth, now_ms))
            return st.skip
        g, lot = st.book.price, st.book.lot
        b, a = rows(g, lot, bdiff), rows(g, lot, adiff)
        if bad is not None:
            px = g.canonical(bad[0])
            b = [r for r in b if r[0] != px]
            b.insert(0, [px, lot.canonical(bad[1])])
        self._push(subs, self._frame(st, depth, "delta", b, a, now_ms))
        return st.skip

    @staticmethod
    def _push(subs: set[SimConn], frame: bytes) -> None:
        for c in subs:
            c.send(frame)

    # ----- WebSocket ------------------------------------------------------------------
    async def _h_ws(self, request: web.Request) -> web.StreamResponse:
        ws, conn = await self.accept(request)
        await self.serve(ws, conn)
        return ws

    def _reply(self, conn: SimConn, ok: bool, msg: str, op: str, req_id: object) -> None:
        body: dict[str, object] = {"success": ok, "ret_msg": msg, "conn_id": conn.id}
        if req_id is not None:
            body["req_id"] = req_id
        body["op"] = op
        conn.send(orjson.dumps(body))

    def on_text(self, conn: SimConn, data: str) -> None:
        conn.last_ping = time.monotonic()  # any client message counts as activity
        try:
            req = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._reply(conn, False, f"error:request not json: {data[:100]}", "", None)
            return
        if type(req) is not dict:
            self._reply(conn, False, "error:request not json object", "", None)
            return
        op, req_id, args = req.get("op"), req.get("req_id"), req.get("args")
        if op == "ping":
            self._reply(conn, True, "pong", "ping", req_id)
            return
        if op not in ("subscribe", "unsubscribe"):
            self._reply(conn, False, f"error:handler not found,op:{op}", str(op), req_id)
            return
        if type(args) is not list or not args:
            self._reply(conn, False, "error:args is empty", op, req_id)
            return
        if len(args) > MAX_ARGS:
            self._reply(conn, False, f"error:args size >{MAX_ARGS}", op, req_id)
            return
        for topic in args:
            m = TOPIC_RE.match(topic) if type(topic) is str else None
            if m is None or int(m.group(1)) not in DEPTHS or m.group(2) not in self.by_inst:
                self._reply(conn, False, f"error:handler not found,topic:{topic}", op, req_id)
                return
            if op == "subscribe" and topic in conn.subs:
                self._reply(conn, False, f"error:already subscribed,topic:{topic}", op, req_id)
                return
        self._reply(conn, True, op, op, req_id)
        now_ms = int(time.time() * 1000)
        for topic in args:
            st, depth = self.by_inst[topic.rpartition(".")[2]], int(topic.split(".")[1])
            if op == "unsubscribe":
                self._drop(conn, topic, st, depth)
                continue
            conn.subs.add(topic)
            conn.subscribed_ever = True
            subs = self.subs.setdefault(topic, set())
            if not subs:
                st.views[depth] = self.window(st, depth)
            subs.add(conn)
            conn.send(self.snapshot_frame(st, depth, now_ms))

    def _drop(self, conn: SimConn, topic: str, st: BybitState, depth: int) -> None:
        conn.subs.discard(topic)
        subs = self.subs.get(topic)
        if subs is not None:
            subs.discard(conn)
            if not subs:
                del self.subs[topic]
                st.views.pop(depth, None)

    def on_close(self, conn: SimConn) -> None:
        for topic in list(conn.subs):
            self._drop(conn, topic, self.by_inst[topic.rpartition(".")[2]], int(topic.split(".")[1]))

    def housekeep(self, conn: SimConn, mono: float) -> None:
        if mono - max(conn.last_ping, conn.last_push) > self.knobs.idle_s:
            conn.close(1000, "idle: no ping and no data")

    # ----- REST -----------------------------------------------------------------------
    def _rest_error(self, code: int, msg: str) -> web.Response:
        return self.json({"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {},
                          "time": int(time.time() * 1000)})

    async def _h_orderbook(self, request: web.Request) -> web.Response:
        request[WEIGHT] = 1
        q = request.query
        if q.get("category") != "spot":
            return self._rest_error(10001, "params error: Category is invalid")
        st = self.by_inst.get(q.get("symbol", ""))
        if st is None:
            return self._rest_error(10001, "params error: Symbol Invalid")
        try:
            limit = min(max(int(q.get("limit", "1")), 1), REST_MAX_LIMIT)
        except ValueError:
            return self._rest_error(10001, "params error: limit")
        b, now_ms = st.book, int(time.time() * 1000)
        return self.json({"retCode": 0, "retMsg": "OK", "result": {
            "s": st.inst, "a": rows(b.price, b.lot, b.asks.top(limit)), "b": rows(b.price, b.lot, b.bids.top(limit)),
            "ts": now_ms, "u": st.u[1000], "seq": st.seq, "cts": now_ms - 1,
        }, "retExtInfo": {}, "time": now_ms})

    async def _h_instruments(self, request: web.Request) -> web.Response:
        request[WEIGHT] = 1
        category = request.query.get("category", "")
        if category not in ("spot", "linear", "inverse", "option"):
            return self._rest_error(10001, "params error: Category is invalid")
        if category != "spot":
            return self.json({"retCode": 0, "retMsg": "OK", "result": {"category": category, "list": []},
                              "retExtInfo": {}, "time": int(time.time() * 1000)})
        return web.Response(body=self.raw_markets, content_type="application/json")

    # ----- faults ---------------------------------------------------------------------
    def garbage_frames(self) -> list[str | bytes]:
        inst = next(iter(self.by_inst), "BTCUSDT")
        return [
            f'{{"topic":"orderbook.50.{inst}","ts":1,"type":"delta","data":{{"s":"{inst}","b":[["1',
            f'{{"topic":"orderbook.50.{inst}","ts":"x","type":"delta","data":{{"s":"{inst}","b":"no","a":7,"u":"q"}}}}',
            f'{{"topic":"nonsense.{inst}","ts":1,"type":"snapshot","data":{{}}}}',
            *[f for f in super().garbage_frames() if isinstance(f, bytes)],
        ]

    def seq_reset(self, symbol: str) -> None:
        """Service restart: the next push of every topic of ``symbol`` is a snapshot with ``u`` = 1."""
        self.state(symbol).reset = True

    def resnapshot(self, symbol: str) -> None:
        """Every topic of ``symbol`` pushes a full snapshot of its window on the next tick (once)."""
        self.state(symbol).resnap = True
