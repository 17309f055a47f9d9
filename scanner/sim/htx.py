"""Simulated HTX (Huobi) spot market data (PROTOCOLS.md §10): WebSocket ``/feed`` and ``/ws``
carrying ``market.<sym>.mbp.<5|10|20|150|400>`` (updates chained by ``prevSeqNum``, ``seqNum``
jumping, the book image by ``req`` on the same connection) and ``market.<sym>.depth.step0``
(a full 150-level push on every change); ``sub``/``unsub``/``req`` with HTX's ack and error
frames; every server frame gzip-compressed in a binary frame; a ``{"ping": ms}`` every 5 s and
the disconnect after two unanswered pings; REST ``/v1/common/symbols``.

Each (symbol, levels) topic keeps the top-``levels`` view it last sent, so an update is the
exact diff between two views: changed sizes, inserts, and size 0 for a level that was deleted
or fell out of the view. Tick-by-tick topics (5/10/20) leave out a side that did not change;
150/400 always carry both. Numbers are written as HTX writes them (Java ``Double.toString``:
``65000.0``, ``9.121E-7``, ``4.0E7``); a deletion is ``0``.
"""

from __future__ import annotations

import gzip
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from scanner.markets import Market
from scanner.sim.base import SimConn, SimVenue, SymState
from scanner.sim.book import Grid, Level, SimBook, view_update
from scanner.sim.conn import WEIGHT
from scanner.sim.market import rng_for

MBP_LEVELS = (5, 10, 20, 150, 400)
TICK_BY_TICK = frozenset({5, 10, 20})
DEPTH = "depth.step0"
DEPTH_LEVELS = 150


@dataclass(frozen=True)
class HtxKnobs:
    """HTX-only behaviour (the shared :class:`SimConfig` stays venue-neutral)."""

    ping_interval_s: float = 5.0  # server {"ping": ms} cadence
    max_missed_pings: int = 2  # unanswered pings after which the connection is closed
    gzip_level: int = 6


def java_number(text: str) -> str:
    """An exact decimal as Java's ``Double.toString`` writes it: plain with at least one
    decimal between 1e-3 and 1e7 (``710.0``, ``0.001``), else ``d.dddE<exp>`` (``9.121E-7``)."""
    d = Decimal(text)
    if not d:
        return "0.0"
    sign, digits, exp = d.normalize().as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, digits))
    e = len(ds) + exp - 1  # exponent in scientific notation
    if -3 <= e < 7:
        if exp >= 0:
            s = ds + "0" * exp + ".0"
        elif len(ds) + exp > 0:
            s = ds[: len(ds) + exp] + "." + ds[len(ds) + exp :]
        else:
            s = "0." + "0" * -(len(ds) + exp) + ds
    else:
        s = f"{ds[0]}.{ds[1:] or '0'}E{e}"
    return "-" + s if sign else s


def pack(text: str, level: int = 6) -> bytes:
    """One server frame: gzip-compressed JSON."""
    return gzip.compress(text.encode(), compresslevel=level, mtime=0)


@dataclass(eq=False)
class View:
    """What one ``mbp.<levels>`` topic of one symbol last told its subscribers."""

    levels: int
    seq: int  # seqNum of the state the view holds
    bids: dict[int, int]  # price ticks -> size lots (unordered: updated in place by view_update)
    asks: dict[int, int]
    subs: set[SimConn] = field(default_factory=set)
    skip: bool = False  # skip_seq pending: the next update's prevSeqNum points past a lost one


@dataclass(eq=False)
class HtxState(SymState):
    seq: int = 0  # seqNum of the current book
    views: dict[int, View] = field(default_factory=dict)
    depth_subs: set[SimConn] = field(default_factory=set)


class HtxVenue(SimVenue[HtxState]):
    name = "htx"
    ws_path = "/feed"
    knobs = HtxKnobs()  # a test may replace it on the instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pings: dict[SimConn, list[int]] = {}  # unanswered ping values per connection
        self.pongs = 0  # pongs that answered a ping
        self._last_ping = 0
        self._text: dict[tuple[str, int], str] = {}

    def new_state(self, market: Market, book: SimBook) -> HtxState:
        rng = rng_for(self.seed, "seq", self.name, market.symbol)
        return HtxState(market.symbol, market.venue_id, book, rng, seq=rng.randint(10**11, 2 * 10**11))

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/feed", self._h_ws),
            web.get("/ws", self._h_ws),
            web.get("/v1/common/symbols", self._h_symbols),
        ]

    def fmt(self, grid: Grid, n: int) -> str:
        key = (grid.text, n)
        text = self._text.get(key)
        if text is None:
            if len(self._text) >= 200_000:
                self._text.clear()
            text = self._text[key] = java_number(grid.canonical(n))
        return text

    def seq(self, symbol: str) -> int:
        return self.state(symbol).seq

    def view_seq(self, symbol: str, levels: int) -> int:
        """The ``seqNum`` of what ``mbp.<levels>`` subscribers of ``symbol`` were last sent."""
        st = self.state(symbol)
        view = st.views.get(levels)
        return st.seq if view is None else view.seq

    # ----- book data ------------------------------------------------------------------
    def _rows(self, st: HtxState, levels: list[Level] | dict[int, int]) -> str:
        g, lot = st.book.price, st.book.lot
        items = levels.items() if isinstance(levels, dict) else levels
        return "[" + ",".join(f"[{self.fmt(g, p)},{self.fmt(lot, q) if q else '0'}]" for p, q in items) + "]"

    def _send(self, subs: set[SimConn], text: str) -> None:
        frame = pack(text, self.knobs.gzip_level)
        for c in subs:
            c.send_bytes(frame)

    def emit(self, st: HtxState, now_ms: int, mono: float) -> None:
        bch, ach, _, _ = st.book.collect()
        changed = bool(bch or ach)
        if st.skip:
            for v in st.views.values():
                v.skip = True
            st.skip = False
        bad = self.take_corrupt_bid(st)
        skipping = any(v.skip for v in st.views.values())
        if not (changed or bad is not None or skipping):
            return
        lost = 0
        if skipping:  # an update with this seqNum never reaches the subscribers
            lost = st.seq = st.seq + st.rng.randint(1, 40)
        st.seq += len(bch) + len(ach) + st.rng.randint(1, 50)
        for n, view in list(st.views.items()):
            if not view.subs:
                del st.views[n]  # nobody follows it: a later sub/req starts a fresh view
                continue
            self._push_view(st, view, now_ms, bad, lost, bch, ach)
        if changed and st.depth_subs:
            self._send(st.depth_subs, self._depth_text(st, now_ms, None))

    def _push_view(self, st: HtxState, view: View, now_ms: int, bad: Level | None, lost: int,
                   bch: list[Level], ach: list[Level]) -> None:
        """Send the diff between the view and the book's top ``levels`` now. The view holds the
        book as of the previous ``collect`` (it is updated on every push, and created between
        ticks), so only levels in ``bch``/``ach`` can have changed size inside it."""
        b, n = st.book, view.levels
        db, da = view_update(b.bids, view.bids, n, bch), view_update(b.asks, view.asks, n, ach)
        db.sort(reverse=True)
        da.sort()
        if bad is not None:
            db = [r for r in db if r[0] != bad[0]]
            db.insert(0, bad)
        if not (db or da or view.skip):
            return
        prev = lost if view.skip else view.seq
        view.skip = False
        view.seq = st.seq
        sides = []
        if db or n not in TICK_BY_TICK or not da:
            sides.append(f'"bids":{self._rows(st, db)}')
        if da or n not in TICK_BY_TICK or not db:
            sides.append(f'"asks":{self._rows(st, da)}')
        self._send(view.subs, f'{{"ch":"market.{st.inst}.mbp.{n}","ts":{now_ms},"tick":{{"seqNum":{st.seq},'
                              f'"prevSeqNum":{prev},{",".join(sides)}}}}}')

    def _view(self, st: HtxState, levels: int) -> View:
        view = st.views.get(levels)
        if view is None:
            b = st.book
            view = st.views[levels] = View(levels, st.seq, dict(b.bids.top(levels)), dict(b.asks.top(levels)))
        return view

    def _depth_tick(self, st: HtxState, now_ms: int) -> str:
        bids, asks = st.book.bids.top(DEPTH_LEVELS), st.book.asks.top(DEPTH_LEVELS)
        return f'{{"bids":{self._rows(st, bids)},"asks":{self._rows(st, asks)},"version":{st.seq},"ts":{now_ms}}}'

    def _depth_text(self, st: HtxState, now_ms: int, rid: str | None) -> str:
        if rid is None:
            return f'{{"ch":"market.{st.inst}.{DEPTH}","ts":{now_ms},"tick":{self._depth_tick(st, now_ms)}}}'
        return (f'{{"id":{rid},"rep":"market.{st.inst}.{DEPTH}","status":"ok","ts":{now_ms},'
                f'"data":{self._depth_tick(st, now_ms)}}}')

    # ----- WebSocket ------------------------------------------------------------------
    async def _h_ws(self, request: web.Request) -> web.StreamResponse:
        ws, conn = await self.accept(request)
        self.pings[conn] = []
        await self.serve(ws, conn)
        return ws

    def _reply(self, conn: SimConn, body: dict[str, object]) -> None:
        conn.send_bytes(pack(orjson.dumps(body).decode(), self.knobs.gzip_level))

    def _error(self, conn: SimConn, msg: str, rid: object = None) -> None:
        body: dict[str, object] = {"status": "error", "err-code": "bad-request", "err-msg": msg}
        if rid is not None:
            body["id"] = rid
        body["ts"] = int(time.time() * 1000)
        self._reply(conn, body)

    def _topic(self, name: object) -> tuple[HtxState, int] | str:
        """(state, levels; 0 for depth.step0) of a served topic, or the error message."""
        if type(name) is not str:
            return f"invalid topic {name}"
        parts = name.split(".", 2)
        if len(parts) != 3 or parts[0] != "market":
            return f"invalid topic {name}"
        sym, rest = parts[1], parts[2]
        if rest == DEPTH:
            levels = 0
        elif rest.startswith("mbp.") and rest[4:].isdigit() and int(rest[4:]) in MBP_LEVELS:
            levels = int(rest[4:])
        else:
            return f"invalid topic {name}"
        st = self.by_inst.get(sym)
        if st is None:
            return f"invalid {rest}.symbol {sym}"
        return st, levels

    def on_text(self, conn: SimConn, data: str) -> None:
        try:
            req = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._error(conn, "invalid json")
            return
        if type(req) is not dict:
            self._error(conn, "invalid request")
            return
        rid = req.get("id")
        if "pong" in req:
            self._on_pong(conn, req["pong"])
        elif "ping" in req:
            ping = req["ping"]
            if type(ping) is not int:
                self._error(conn, "invalid ping", rid)
            else:
                self._reply(conn, {"pong": ping})
        elif "sub" in req or "unsub" in req or "req" in req:
            op = "sub" if "sub" in req else "unsub" if "unsub" in req else "req"
            name = req[op]
            found = self._topic(name)
            if isinstance(found, str):
                self._error(conn, found, rid)
                return
            st, levels = found
            now_ms = int(time.time() * 1000)
            if op == "req":
                self._answer_req(conn, st, levels, name, rid, now_ms)
                return
            ack: dict[str, object] = {} if rid is None else {"id": rid}
            ack.update({"status": "ok", ("subbed" if op == "sub" else "unsubbed"): name, "ts": now_ms})
            self._reply(conn, ack)
            subs = st.depth_subs if levels == 0 else self._view(st, levels).subs
            if op == "unsub":
                subs.discard(conn)
                conn.subs.discard(name)
                return
            subs.add(conn)
            conn.subs.add(name)
            conn.subscribed_ever = True
            if levels == 0:  # the aggregated book is pushed right away
                conn.send_bytes(pack(self._depth_text(st, now_ms, None), self.knobs.gzip_level))
        else:
            self._error(conn, "invalid request", rid)

    def _answer_req(self, conn: SimConn, st: HtxState, levels: int, name: str, rid: object, now_ms: int) -> None:
        rid_json = orjson.dumps(rid).decode()
        if levels == 0:
            text = self._depth_text(st, now_ms, rid_json)
        else:
            view = self._view(st, levels)
            text = (f'{{"id":{rid_json},"rep":"{name}","status":"ok","ts":{now_ms},"data":{{"seqNum":{view.seq},'
                    f'"bids":{self._rows(st, sorted(view.bids.items(), reverse=True))},'
                    f'"asks":{self._rows(st, sorted(view.asks.items()))}}}}}')
        conn.send_bytes(pack(text, self.knobs.gzip_level))

    def _on_pong(self, conn: SimConn, value: object) -> None:
        if type(value) is not int:
            self._error(conn, "invalid pong")
            return
        outstanding = self.pings.get(conn)
        if outstanding and value in outstanding:
            outstanding.clear()  # answering the latest ping answers the earlier ones too
            self.pongs += 1

    def on_close(self, conn: SimConn) -> None:
        self.pings.pop(conn, None)
        for name in conn.subs:
            found = self._topic(name)
            if isinstance(found, str):
                continue
            st, levels = found
            if levels == 0:
                st.depth_subs.discard(conn)
            elif levels in st.views:
                st.views[levels].subs.discard(conn)

    def housekeep(self, conn: SimConn, mono: float) -> None:
        k = self.knobs
        if mono - conn.last_ping < k.ping_interval_s:
            return
        outstanding = self.pings.setdefault(conn, [])
        if len(outstanding) >= k.max_missed_pings:
            conn.close(1000, "heartbeat timeout")
            return
        conn.last_ping = mono
        value = self._last_ping = max(int(time.time() * 1000), self._last_ping + 1)
        outstanding.append(value)
        conn.send_bytes(pack(f'{{"ping":{value}}}', k.gzip_level))

    # ----- REST -----------------------------------------------------------------------
    async def _h_symbols(self, request: web.Request) -> web.Response:
        request[WEIGHT] = 1
        return web.Response(body=self.raw_markets, content_type="application/json")

    # ----- faults ---------------------------------------------------------------------
    def garbage_frames(self) -> list[str | bytes]:
        inst = next(iter(self.by_inst), "btcusdt")
        truncated = pack(f'{{"ch":"market.{inst}.mbp.150","ts":1,"tick":{{"seqNum":12,"bids":[[1.5,')
        return [
            truncated,
            pack(f'{{"ch":"market.{inst}","ts":1,"tick":{{}}}}'),  # no channel in the topic
            pack('{"ch":"market.x.mbp.150","ts":"soon","tick":{"seqNum":"a","prevSeqNum":[],"bids":5}}'),
            pack("[1,2,3]"),
            truncated[: len(truncated) // 2],  # a cut gzip stream
            *[f for f in super().garbage_frames() if isinstance(f, bytes)],
        ]
