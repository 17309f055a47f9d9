"""Simulated MEXC spot market data (PROTOCOLS.md §11): WebSocket ``/ws`` taking JSON
``SUBSCRIPTION``/``UNSUBSCRIPTION``/``PING`` and pushing BINARY protobuf frames (built with
:mod:`scanner.venues.mexc_pb`) on ``spot@public.aggre.depth.v3.api.pb@(10ms|100ms)@SYM`` (diffs
numbered ``fromVersion``..``toVersion``) and ``spot@public.limit.depth.v3.api.pb@SYM@(5|10|20)``
(top-N books); JSON acks and ``PONG``; at most 30 subscriptions per connection; the close after
30 s without a subscription, after 60 s without traffic either way, and after 24 h. REST
``/api/v3/depth`` (``lastUpdateId``, default 100 levels, at most 5000) and
``/api/v3/exchangeInfo``, each endpoint limited to 500 requests per 10 s.

Versions advance by at least the number of level changes in a frame (the engine's own updates
inside one aggregation interval), so ``fromVersion`` is always the previous ``toVersion + 1``.
Every simulator tick is one aggregation interval for both the 10 ms and the 100 ms stream.
Venue-specific knobs live in :class:`MexcKnobs` (``venue.knobs = MexcKnobs(idle_s=1)``).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from scanner.markets import Market
from scanner.sim.base import SimConn, SimVenue, SymState
from scanner.sim.book import Grid, Level, SimBook, canonical_rows
from scanner.sim.conn import WEIGHT
from scanner.sim.market import rng_for
from scanner.venues import mexc_pb as pb

AGGRE_RE = re.compile(r"^spot@public\.aggre\.depth\.v3\.api\.pb@(10ms|100ms)@([A-Za-z0-9]+)$")
LIMIT_RE = re.compile(r"^spot@public\.limit\.depth\.v3\.api\.pb@([A-Za-z0-9]+)@(5|10|20)$")
INTERVALS = ("100ms", "10ms")
LIMIT_DEPTHS = (5, 10, 20)
MAX_DEPTH_LIMIT = 5000
EXCHANGE_INFO_WEIGHT = 10


@dataclass(frozen=True)
class MexcKnobs:
    """MEXC behaviour; the defaults are the documented values."""

    no_sub_s: float = 30.0  # close a connection with no valid subscription after this long
    idle_s: float = 60.0  # close when nothing went either way (data or PING) for this long
    max_age_s: float = 24 * 3600.0
    max_subs: int = 30  # subscriptions per connection
    rest_per_10s: int = 500  # requests per endpoint per 10 s


@dataclass(eq=False)
class MexcState(SymState):
    version: int = 0  # toVersion of the current state
    from_version: int = 0  # fromVersion of the last diff
    tops: dict[int, bytes] = field(default_factory=dict)  # limit depth -> last levels pushed


def rows(g: Grid, lot: Grid, levels: list[Level]) -> list[list[str]]:
    return canonical_rows(g, lot, levels)


_FIELD1: dict[str, bytes] = {}  # price text -> its encoded ``price = 1`` field
_FIELD2: dict[str, bytes] = {}  # quantity text -> its encoded ``quantity = 2`` field


def _string_field(cache: dict[str, bytes], field: int, text: str) -> bytes:
    data = cache.get(text)
    if data is None:
        if len(cache) >= 100_000:
            cache.clear()
        data = cache[text] = pb.string_field(field, text)
    return data


def encode_levels(field: int, levels: list[list[str]]) -> bytes:
    """``pb.encode_levels`` (the same bytes) with each price and quantity field encoded once."""
    out = []
    f1, f2 = _FIELD1, _FIELD2
    for p, q in levels:
        item = (f1.get(p) or _string_field(f1, 1, p)) + (f2.get(q) or _string_field(f2, 2, q))
        out.append(pb.length_delimited(field, item) if len(item) >= 0x80 else bytes((field << 3 | 2, len(item))) + item)
    return b"".join(out)


def encode_aggre_depths(asks: list[list[str]], bids: list[list[str]], event_type: str, from_version: str,
                        to_version: str) -> bytes:
    """``pb.encode_aggre_depths`` with the cached level encoder."""
    return (encode_levels(1, asks) + encode_levels(2, bids) + pb.string_field(3, event_type)
            + pb.string_field(4, from_version) + pb.string_field(5, to_version))


def encode_limit_depths(asks: list[list[str]], bids: list[list[str]], event_type: str, version: str) -> bytes:
    """``pb.encode_limit_depths`` with the cached level encoder."""
    return (encode_levels(1, asks) + encode_levels(2, bids) + pb.string_field(3, event_type)
            + pb.string_field(4, version))


def ack(msg: str, rid: object = 0) -> bytes:
    return orjson.dumps({"id": rid if type(rid) is int else 0, "code": 0, "msg": msg})


class MexcVenue(SimVenue[MexcState]):
    name = "mexc"
    ws_path = "/ws"
    knobs = MexcKnobs()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subs: dict[str, set[SimConn]] = {}  # topic -> subscribers
        self._windows: dict[str, tuple[int, int]] = {}  # REST path -> (10 s window index, requests)
        self._t0 = time.monotonic()

    def new_state(self, market: Market, book: SimBook) -> MexcState:
        rng = rng_for(self.seed, "seq", self.name, market.symbol)
        return MexcState(market.symbol, market.venue_id, book, rng, version=rng.randint(10**10, 5 * 10**10))

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(self.ws_path, self._h_ws),
            web.get("/api/v3/depth", self._h_depth),
            web.get("/api/v3/exchangeInfo", self._h_exchange_info),
        ]

    def seq(self, symbol: str) -> int:
        return self.state(symbol).version

    # ----- book data ------------------------------------------------------------------
    def emit(self, st: MexcState, now_ms: int, mono: float) -> None:
        bch, ach, _, _ = st.book.collect()
        if st.skip:  # versions that never reach the client: the next fromVersion > toVersion + 1
            st.version += st.rng.randint(2, 20)
            st.skip = False
        bad = self.take_corrupt_bid(st)
        n = len(bch) + len(ach)
        if not n and bad is None:
            return
        first = st.from_version = st.version + 1
        st.version += max(n, 1) + st.rng.randint(0, 3)
        inst, g, lot = st.inst, st.book.price, st.book.lot
        streams = [(iv, subs) for iv in INTERVALS
                   if (subs := self.subs.get(f"spot@public.aggre.depth.v3.api.pb@{iv}@{inst}"))]
        if streams:
            bids, asks = rows(g, lot, bch), rows(g, lot, ach)
            if bad is not None:
                bad_px = g.canonical(bad[0])
                bids = [r for r in bids if r[0] != bad_px]
                bids.insert(0, [bad_px, lot.canonical(bad[1])])
            for iv, conns in streams:
                event = f"spot@public.aggre.depth.v3.api.pb@{iv}"
                body = encode_aggre_depths(asks, bids, event, str(first), str(st.version))
                frame = pb.encode_push(f"{event}@{inst}", pb.AGGRE_DEPTHS, body, symbol=inst, send_time=now_ms)
                for c in conns:
                    c.send_bytes(frame)
        if n:
            for depth in LIMIT_DEPTHS:
                limit_subs = self.subs.get(f"spot@public.limit.depth.v3.api.pb@{inst}@{depth}")
                if limit_subs:
                    self._push_limit(st, depth, limit_subs, now_ms, only_if_changed=True)

    def _push_limit(self, st: MexcState, depth: int, subs: set[SimConn], now_ms: int,
                    only_if_changed: bool) -> None:
        b = st.book
        asks, bids = rows(b.price, b.lot, b.asks.top(depth)), rows(b.price, b.lot, b.bids.top(depth))
        levels = encode_levels(1, asks) + encode_levels(2, bids)
        if only_if_changed and st.tops.get(depth) == levels:
            return
        st.tops[depth] = levels
        event = "spot@public.limit.depth.v3.api.pb"
        body = encode_limit_depths(asks, bids, event, str(st.version))
        frame = pb.encode_push(f"{event}@{st.inst}@{depth}", pb.LIMIT_DEPTHS, body, symbol=st.inst,
                               send_time=now_ms)
        for c in subs:
            c.send_bytes(frame)

    # ----- WebSocket ------------------------------------------------------------------
    async def _h_ws(self, request: web.Request) -> web.StreamResponse:
        ws, conn = await self.accept(request)
        await self.serve(ws, conn)
        return ws

    def _check_topic(self, t: object) -> str:
        """Why ``t`` cannot be subscribed ("" when it can)."""
        if type(t) is not str:
            return "Invalid topic"
        m = AGGRE_RE.match(t)
        sym = m.group(2) if m else (lm.group(1) if (lm := LIMIT_RE.match(t)) else None)
        if sym is None:
            return "Blocked! " if t.startswith("spot@") else "Invalid topic"
        if sym not in self.by_inst:
            return "Symbol not found"
        return ""

    def on_text(self, conn: SimConn, data: str) -> None:
        try:
            req = orjson.loads(data)
        except orjson.JSONDecodeError:
            conn.send(ack("Invalid JSON"))
            return
        method = str(req.get("method", "")).upper() if type(req) is dict else ""
        rid = req.get("id", 0) if type(req) is dict else 0
        if method == "PING":
            conn.last_ping = time.monotonic()
            conn.send(ack("PONG", rid))
            return
        params = req.get("params") if type(req) is dict else None
        if method not in ("SUBSCRIPTION", "UNSUBSCRIPTION") or type(params) is not list:
            conn.send(ack("Invalid request", rid))
            return
        done: list[str] = []
        for t in params:
            reason = self._check_topic(t)
            if method == "SUBSCRIPTION" and not reason and t not in conn.subs and len(conn.subs) >= self.knobs.max_subs:
                reason = f"Exceeded the maximum of {self.knobs.max_subs} subscriptions"
            if reason:
                conn.send(ack(f"Not Subscribed successfully! [{t}].  Reason: {reason}", rid))
                continue
            assert type(t) is str
            done.append(t)
            if method == "UNSUBSCRIPTION":
                conn.subs.discard(t)
                self._forget(t, conn)
                continue
            conn.subs.add(t)
            conn.subscribed_ever = True
            self.subs.setdefault(t, set()).add(conn)
        if done:
            conn.send(ack(",".join(done), rid))
        if method == "SUBSCRIPTION":
            for t in done:
                if (lm := LIMIT_RE.match(t)) is not None:
                    self._push_limit(self.by_inst[lm.group(1)], int(lm.group(2)), {conn}, int(time.time() * 1000),
                                     only_if_changed=False)

    def _forget(self, t: str, conn: SimConn) -> None:
        s = self.subs.get(t)
        if s is not None:
            s.discard(conn)
            if not s:
                del self.subs[t]

    def on_close(self, conn: SimConn) -> None:
        for t in conn.subs:
            self._forget(t, conn)

    def housekeep(self, conn: SimConn, mono: float) -> None:
        k = self.knobs
        if mono - conn.connected_at > k.max_age_s:
            conn.close(1000, "connection lifetime exceeded")
        elif not conn.subscribed_ever:
            if mono - conn.connected_at > k.no_sub_s:
                conn.close(1000, "no valid subscription")
        elif mono - max(conn.last_push, conn.last_ping) > k.idle_s:
            conn.close(1000, "no data")

    # ----- REST -----------------------------------------------------------------------
    def _charge(self, request: web.Request, weight: int) -> web.Response | None:
        """Count one request against its endpoint's 10 s window; a 429 when over the limit."""
        now = time.monotonic() - self._t0
        win = int(now // 10)
        w, used = self._windows.get(request.path, (win, 0))
        if w != win:
            used = 0
        if used >= self.knobs.rest_per_10s:
            return self.json({"code": 429, "msg": "Too Many Requests"}, 429,
                             {"Retry-After": str(max(1, math.ceil((win + 1) * 10 - now)))})
        self._windows[request.path] = (win, used + 1)
        request[WEIGHT] = weight
        return None

    async def _h_depth(self, request: web.Request) -> web.Response:
        refused = self._charge(request, 1)
        if refused is not None:
            return refused
        try:
            limit = min(max(int(request.query.get("limit", "100")), 1), MAX_DEPTH_LIMIT)
        except ValueError:
            return self.json({"code": -1100, "msg": "Illegal characters found in parameter 'limit'."}, 400)
        st = self.by_inst.get(request.query.get("symbol", ""))
        if st is None:
            return self.json({"code": -1121, "msg": "Invalid symbol."}, 400)
        b = st.book
        return self.json({"lastUpdateId": st.version, "bids": rows(b.price, b.lot, b.bids.top(limit)),
                          "asks": rows(b.price, b.lot, b.asks.top(limit)), "timestamp": int(time.time() * 1000)})

    async def _h_exchange_info(self, request: web.Request) -> web.Response:
        refused = self._charge(request, EXCHANGE_INFO_WEIGHT)
        if refused is not None:
            return refused
        return web.Response(body=self.raw_markets, content_type="application/json")

    # ----- faults ---------------------------------------------------------------------
    def garbage_frames(self) -> list[str | bytes]:
        """A push cut short, a push with an invalid wire type, a legacy JSON data frame (not a
        book we keep), and noise that is not protobuf."""
        inst = next(iter(self.by_inst), "BTCUSDT")
        channel = f"spot@public.aggre.depth.v3.api.pb@100ms@{inst}"
        body = pb.encode_aggre_depths([["1.5", "2"]], [["1.4", "3"]], channel, "10", "11")
        whole = pb.encode_push(channel, pb.AGGRE_DEPTHS, body, symbol=inst, send_time=1)
        noise = bytes(rng_for(self.seed, "noise", self.name).getrandbits(8) for _ in range(47))
        return [
            whole[: len(whole) - 5],
            pb.string_field(1, channel) + b"\x1f\x01",  # field 3, wire type 7
            orjson.dumps({"c": f"spot@public.increase.depth.v3.api@{inst}", "d": {}, "s": inst, "t": 1}).decode(),
            b"\x07" + noise,  # field 0, wire type 7
        ]
