"""Simulated Gate spot v4 public market data (PROTOCOLS.md §7): WebSocket ``/ws/v4/`` with the
``spot.obu`` streams ``ob.{PAIR}.50`` / ``ob.{PAIR}.400`` and the legacy ``spot.order_book_update``
diffs, ``spot.ping``/``spot.pong``; REST ``/api/v4/spot/order_book`` (``with_id``) and
``/api/v4/spot/currency_pairs``.

``spot.obu``: the subscribe ack is followed by a ``full:true`` push of the stream's window;
each tick whose window changed sends a diff with ``U`` = previous ``u`` + 1 and ``u`` advanced
by the number of changed levels (ids are counted per stream). Now and then
(:attr:`GateKnobs.resnapshot_p`) a stream pushes a full book unprompted. A stream may be
subscribed once per connection: a duplicate gets error code 2 (``Alert sub ob.X.50``).

Legacy ``spot.order_book_update`` (``[PAIR, "100ms"]`` → top 100, ``"20ms"`` → top 20): each
tick the book changed sends the window diff with ``U``/``u`` from the pair's global order-book
id, which advances by the number of changed levels and is the REST snapshot's ``id``; the
client bridges the stream to REST. ``snapshot_lag`` makes REST serve an older state.

Gate documents no idle rule: :attr:`GateKnobs.idle_s` (0 = off) closes a connection that
neither sent a message nor received a push for that long.
"""

from __future__ import annotations

import random
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from scanner.markets import Market
from scanner.sim.base import SimConn, SimVenue, SymState
from scanner.sim.book import Level, SimBook, view_update
from scanner.sim.bybit import View, rows
from scanner.sim.conn import WEIGHT
from scanner.sim.market import rng_for

OBU_LEVELS = (50, 400)
LEGACY_LEVELS = {"100ms": 100, "20ms": 20}
REST_MAX_LIMIT = 100
Undo = tuple[int, dict[int, int], dict[int, int]]  # (id before the change, bid undo, ask undo)


@dataclass(frozen=True)
class GateKnobs:
    """Gate-only behaviour (replace ``venue.knobs`` on a running simulator to change it)."""

    idle_s: float = 0.0  # undocumented by Gate: 0 = never close idle connections
    resnapshot_p: float = 0.0005  # chance per obu diff that the stream pushes a full book instead


@dataclass(eq=False)
class GateState(SymState):
    ident: int = 0  # global order-book id (legacy U/u, REST id)
    u: dict[int, int] = field(default_factory=dict)  # obu level -> u of the stream's last push
    views: dict[str, View] = field(default_factory=dict)  # stream key -> window as last pushed
    history: deque[Undo] = field(default_factory=deque)
    snap_rng: random.Random = field(default_factory=random.Random)
    resnap: bool = False


def stream_key(channel: str, payload: list[Any], by_inst: dict[str, GateState]) -> tuple[str, str, int] | str:
    """(key, pair, window) of a subscription request, or the error message."""
    if channel == "spot.obu":
        if len(payload) != 1 or type(payload[0]) is not str:
            return "invalid argument: payload must be one ob.PAIR.LEVEL"
        parts = payload[0].split(".")
        if len(parts) != 3 or parts[0] != "ob" or parts[2] not in ("50", "400"):
            return f"invalid argument: {payload[0]}"
        pair, level = parts[1], int(parts[2])
        key = payload[0]
    else:
        if len(payload) != 2 or type(payload[0]) is not str or payload[1] not in LEGACY_LEVELS:
            return f"invalid argument: {payload}"
        pair, level = payload[0], LEGACY_LEVELS[payload[1]]
        key = f"legacy.{pair}.{level}"
    if pair not in by_inst:
        return f"unknown currency pair {pair}"
    return key, pair, level


class GateVenue(SimVenue[GateState]):
    name = "gate"
    ws_path = "/ws/v4/"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.knobs = GateKnobs()
        self.subs: dict[str, set[SimConn]] = {}  # "ob.BTC_USDT.50" / "legacy.BTC_USDT.100" -> subscribers
        self.lag = 0  # snapshot_lag: REST serves the state this many book changes back

    def new_state(self, market: Market, book: SimBook) -> GateState:
        rng = rng_for(self.seed, "seq", self.name, market.symbol)
        st = GateState(market.symbol, market.venue_id, book, rng, ident=rng.randint(10**8, 9 * 10**9))
        st.u = {lv: rng.randint(10**7, 9 * 10**9) for lv in OBU_LEVELS}
        st.history = deque(maxlen=self.cfg.history)
        st.snap_rng = rng_for(self.seed, "resnapshot", self.name, market.symbol)
        return st

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(self.ws_path, self._h_ws),
            web.get("/api/v4/spot/order_book", self._h_order_book),
            web.get("/api/v4/spot/currency_pairs", self._h_pairs),
        ]

    def seq(self, symbol: str) -> int:
        """The pair's global order-book id (legacy ``u``, REST ``id``)."""
        return self.state(symbol).ident

    def obu_u(self, symbol: str, level: int) -> int:
        """``u`` of the last push of ``ob.{PAIR}.{level}``."""
        return self.state(symbol).u[level]

    # ----- book data ------------------------------------------------------------------
    @staticmethod
    def window(st: GateState, depth: int) -> View:
        return dict(st.book.bids.top(depth)), dict(st.book.asks.top(depth))

    def _full(self, st: GateState, key: str, level: int, now_ms: int) -> bytes:
        g, lot = st.book.price, st.book.lot
        vb, va = st.views[key]
        return orjson.dumps({"channel": "spot.obu", "event": "update", "time_ms": now_ms, "result": {
            "t": now_ms, "full": True, "s": key, "u": st.u[level],
            "b": rows(g, lot, sorted(vb.items(), reverse=True)), "a": rows(g, lot, sorted(va.items()))}})

    def emit(self, st: GateState, now_ms: int, mono: float) -> None:
        bch, ach, bundo, aundo = st.book.collect()
        n = len(bch) + len(ach)
        live = [k for k in (f"ob.{st.inst}.50", f"ob.{st.inst}.400", f"legacy.{st.inst}.100",
                            f"legacy.{st.inst}.20") if self.subs.get(k)]
        bad = self.take_corrupt_bid(st) if live else None
        skip, used = st.skip, False  # skip_seq: ids that never reach the client, so the next U > local + 1
        if skip and (n or bad is not None):
            st.ident += st.rng.randint(2, 20)
            used = any(k.startswith("legacy.") for k in live)
        first = st.ident + 1
        if n or bad is not None:
            st.ident += max(n, 1)
            st.history.append((first - 1, bundo, aundo))
        force, st.resnap = st.resnap, False
        for key in live:
            _, _, depth = key.rpartition(".")
            view = st.views[key]  # the window as of the previous tick: only this tick's changes can move it
            bdiff: list[Level] = []
            adiff: list[Level] = []
            if n:
                bdiff = view_update(st.book.bids, view[0], int(depth), bch)
                adiff = view_update(st.book.asks, view[1], int(depth), ach)
                bdiff.sort(reverse=True)
                adiff.sort()
            g, lot = st.book.price, st.book.lot
            b, a = rows(g, lot, bdiff), rows(g, lot, adiff)
            if bad is not None:
                px = g.canonical(bad[0])
                b = [r for r in b if r[0] != px]
                b.insert(0, [px, lot.canonical(bad[1])])
            if key.startswith("legacy."):
                if n or bad is not None:
                    self._push(key, orjson.dumps({
                        "time": now_ms // 1000, "time_ms": now_ms, "channel": "spot.order_book_update",
                        "event": "update", "result": {"t": now_ms, "e": "depthUpdate", "E": now_ms // 1000,
                                                      "s": st.inst, "U": first, "u": st.ident, "b": b, "a": a}}))
                continue
            level = int(depth)
            if not (b or a or force):
                continue
            start = st.u[level] + (2 if skip else 1)
            used = used or skip
            st.u[level] = start + max(len(b) + len(a), 1) - 1
            if force or (bad is None and st.snap_rng.random() < self.knobs.resnapshot_p):
                self._push(key, self._full(st, key, level, now_ms))
                continue
            self._push(key, orjson.dumps({"channel": "spot.obu", "event": "update", "time_ms": now_ms, "result": {
                "t": now_ms, "s": key, "U": start, "u": st.u[level], "b": b, "a": a}}))
        if used:
            st.skip = False

    def _push(self, key: str, frame: bytes) -> None:
        for c in self.subs.get(key, ()):
            c.send(frame)

    # ----- WebSocket ------------------------------------------------------------------
    async def _h_ws(self, request: web.Request) -> web.StreamResponse:
        ws, conn = await self.accept(request)
        await self.serve(ws, conn)
        return ws

    def _reply(self, conn: SimConn, req: dict[str, Any], error: tuple[int, str] | None = None) -> None:
        now = time.time()
        trace = f"{zlib.crc32(f'{conn.id}:{now}'.encode()):08x}" * 4
        body: dict[str, Any] = {"time": int(now), "time_ms": int(now * 1000)}
        if req.get("id") is not None:
            body["id"] = req["id"]
        body |= {"conn_id": conn.id, "trace_id": trace, "channel": req.get("channel", ""),
                 "event": req.get("event", ""), "payload": req.get("payload")}
        if error is not None:
            body |= {"error": {"code": error[0], "message": error[1]}, "result": {"status": "fail"}}
        else:
            body["result"] = {"status": "success"}
        body["requestId"] = trace
        conn.send(orjson.dumps(body))

    def on_text(self, conn: SimConn, data: str) -> None:
        conn.last_ping = time.monotonic()  # any client message counts as activity
        try:
            req = orjson.loads(data)
        except orjson.JSONDecodeError:
            req = None
        if type(req) is not dict:
            self._reply(conn, {}, (1, "invalid request body format"))
            return
        channel, event, payload = req.get("channel"), req.get("event"), req.get("payload")
        if channel == "spot.ping":
            now = time.time()
            conn.send(orjson.dumps({"time": int(now), "time_ms": int(now * 1000), **(
                {"id": req["id"]} if req.get("id") is not None else {}),
                "conn_id": conn.id, "channel": "spot.pong", "event": "", "result": None}))
            return
        if channel not in ("spot.obu", "spot.order_book_update") or event not in ("subscribe", "unsubscribe"):
            self._reply(conn, req, (2, f"unsupported channel or event: {channel} {event}"))
            return
        found = stream_key(channel, payload if type(payload) is list else [], self.by_inst)
        if isinstance(found, str):
            self._reply(conn, req, (2, found))
            return
        key, pair, depth = found
        st = self.by_inst[pair]
        if event == "unsubscribe":
            self._reply(conn, req)
            self._drop(conn, key, st)
            return
        if key in conn.subs:
            self._reply(conn, req, (2, f"Alert sub {key if channel == 'spot.obu' else pair}"))
            return
        self._reply(conn, req)
        conn.subs.add(key)
        conn.subscribed_ever = True
        subs = self.subs.setdefault(key, set())
        if not subs:
            st.views[key] = self.window(st, depth)
        subs.add(conn)
        if channel == "spot.obu":
            conn.send(self._full(st, key, depth, int(time.time() * 1000)))

    def _drop(self, conn: SimConn, key: str, st: GateState) -> None:
        conn.subs.discard(key)
        subs = self.subs.get(key)
        if subs is not None:
            subs.discard(conn)
            if not subs:
                del self.subs[key]
                st.views.pop(key, None)

    def on_close(self, conn: SimConn) -> None:
        for key in list(conn.subs):
            self._drop(conn, key, self.by_inst[key.split(".")[1]])

    def housekeep(self, conn: SimConn, mono: float) -> None:
        idle = self.knobs.idle_s
        if idle and mono - max(conn.last_ping, conn.last_push) > idle:
            conn.close(1000, "idle")

    # ----- REST -----------------------------------------------------------------------
    def snapshot(self, st: GateState, limit: int) -> tuple[int, list[tuple[int, int]], list[tuple[int, int]]]:
        """(id, bids, asks) of the current state, or of the state ``self.lag`` changes back."""
        b = st.book
        if self.lag <= 0 or not st.history:
            return st.ident, b.bids.top(limit), b.asks.top(limit)
        bl, al, ident = dict(b.bids.levels), dict(b.asks.levels), st.ident
        for before, bundo, aundo in list(st.history)[-self.lag:][::-1]:
            for lv, undo in ((bl, bundo), (al, aundo)):
                for r, old in undo.items():
                    if old:
                        lv[r] = old
                    else:
                        lv.pop(r, None)
            ident = before
        return ident, [(-r, bl[r]) for r in sorted(bl)[:limit]], [(r, al[r]) for r in sorted(al)[:limit]]

    async def _h_order_book(self, request: web.Request) -> web.Response:
        request[WEIGHT] = 1
        q = request.query
        st = self.by_inst.get(q.get("currency_pair", ""))
        if st is None:
            return self.json({"label": "INVALID_CURRENCY_PAIR",
                              "message": f"Invalid currency pair {q.get('currency_pair', '')}"}, 400)
        try:
            limit = min(max(int(q.get("limit", "10")), 1), REST_MAX_LIMIT)
        except ValueError:
            return self.json({"label": "INVALID_PARAM_VALUE", "message": "Invalid limit"}, 400)
        ident, bids, asks = self.snapshot(st, limit)
        g, lot, now_ms = st.book.price, st.book.lot, int(time.time() * 1000)
        body: dict[str, Any] = {"id": ident} if q.get("with_id") == "true" else {}
        body |= {"current": now_ms, "update": now_ms, "asks": rows(g, lot, asks), "bids": rows(g, lot, bids)}
        return self.json(body)

    async def _h_pairs(self, request: web.Request) -> web.Response:
        request[WEIGHT] = 1
        return web.Response(body=self.raw_markets, content_type="application/json")

    # ----- faults ---------------------------------------------------------------------
    def garbage_frames(self) -> list[str | bytes]:
        inst = next(iter(self.by_inst), "BTC_USDT")
        return [
            f'{{"channel":"spot.obu","event":"update","time_ms":1,"result":{{"t":1,"s":"ob.{inst}.50","U":1,"u":',
            f'{{"channel":"spot.obu","event":"update","time_ms":1,"result":{{"t":"x","s":"ob.{inst}.50","U":"a",'
            '"u":"b","b":"no","a":7}}',
            f'{{"channel":"spot.nonsense","event":"update","result":{{"s":"{inst}"}}}}',
            *[f for f in super().garbage_frames() if isinstance(f, bytes)],
        ]

    def snapshot_lag(self, ticks: int) -> None:
        """REST ``order_book`` serves the state ``ticks`` book changes old (0 = current)."""
        self.lag = max(0, ticks)

    def resnapshot(self, symbol: str) -> None:
        """Every obu stream of ``symbol`` pushes a full book on the next tick (once)."""
        self.state(symbol).resnap = True
