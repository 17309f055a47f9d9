"""Simulated Coinbase Advanced Trade market data (PROTOCOLS.md §5): WebSocket at ``/`` with the
``level2`` channel (frames on ``l2_data``: one ``snapshot`` event per product on subscribe, then
``update`` events with ``side`` bid/offer and absolute ``new_quantity``) and ``heartbeats``
(one frame a second with ``heartbeat_counter``); ``subscriptions`` acks carrying the connection's
whole subscription state; ``{"type":"error","message","reason"}`` for bad requests.

Every frame a connection receives (acks, heartbeats, book data) carries ``sequence_num``, one
counter per connection from 0, so a frame is rendered once and the number spliced in per
connection. ``skip_seq`` loses one update frame on every subscribed connection (its number is
used up, the frame never sent). ``-USDC`` products are served as their ``alias`` (``BTC-USDC``
subscribes the ``BTC-USD`` book and gets frames with ``product_id`` ``BTC-USD``); a symbol and
its alias share one book. Rules: no subscription within 5 s closes the socket; a socket with no
frame for 60 s (no heartbeats subscribed and a quiet book) is closed; more than 8 client messages
a second are refused with an error. Websocket protocol pings are answered. REST:
``/api/v3/brokerage/market/products`` (the market file as is) and ``.../market/product_book``.
Close codes and error texts are not documented: the ones used here are this simulator's choice.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from scanner.markets import Market
from scanner.sim.base import SimConn, SimVenue, SymState
from scanner.sim.book import SimBook
from scanner.sim.conn import WEIGHT
from scanner.sim.market import rng_for

PRODUCTS_PATH = "/api/v3/brokerage/market/products"
BOOK_PATH = "/api/v3/brokerage/market/product_book"


@dataclass(frozen=True)
class CoinbaseKnobs:
    """Coinbase-only behaviour (documented values; tests shorten them)."""

    subscribe_timeout_s: float = 5.0  # close a socket that has not subscribed by then
    idle_s: float = 60.0  # close a socket that got no frame for this long (docs: 60-90 s)
    heartbeat_s: float = 1.0
    max_msgs_per_s: int = 8  # unauthenticated client messages (documented per IP) ...
    rate_window_s: float = 1.0  # ... per this many seconds


@dataclass(eq=False)
class CoinbaseState(SymState):
    stream: str = ""  # product id the book streams under (the alias target of a -USDC product)
    version: int = 0  # bumps on every update sent (the simulator's own sequence for ``seq``)
    snap: tuple[int, bytes] | None = None  # (version, rendered snapshot events)


@dataclass(eq=False)
class Client:
    """Per-connection protocol state."""

    seq: int = 0  # the next sequence_num
    heartbeats: bool = False
    last_hb: float = 0.0
    incoming: deque[float] = field(default_factory=deque)


def ts_nanos(ns: int) -> str:
    """RFC 3339 with nanoseconds, as ``timestamp`` is written: ``2026-08-09T21:05:48.483587501Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


def ts_micros(ns: int) -> str:
    """``event_time``: microseconds, trailing zeros dropped (``2026-08-09T21:05:48.35161Z``)."""
    frac = f"{ns // 1000 % 1_000_000:06d}".rstrip("0")
    head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000))
    return f"{head}.{frac}Z" if frac else f"{head}Z"


class CoinbaseVenue(SimVenue[CoinbaseState]):
    name = "coinbase"
    ws_path = "/"
    default_knobs = CoinbaseKnobs()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.knobs = self.default_knobs
        self.subs: dict[str, set[SimConn]] = {}  # stream product id -> subscribed connections
        self.conns: dict[SimConn, Client] = {}
        self._t0 = time.monotonic()
        # One book per stream: a -USDC symbol whose -USD book is simulated too shares it.
        self.aliases: dict[str, CoinbaseState] = {}  # symbol -> the state holding its book
        owner: dict[str, CoinbaseState] = {}
        for st in sorted(self.states.values(), key=lambda s: s.inst != s.stream):
            first = owner.setdefault(st.stream, st)
            if first is not st:
                del self.states[st.symbol]
                self.aliases[st.symbol] = self.by_inst[st.inst] = first
        for stream, st in owner.items():
            self.by_inst.setdefault(stream, st)

    def new_state(self, market: Market, book: SimBook) -> CoinbaseState:
        rng = rng_for(self.seed, "seq", self.name, market.symbol)
        return CoinbaseState(market.symbol, market.venue_id, book, rng, stream=market.stream_id or market.venue_id)

    def state(self, symbol: str) -> CoinbaseState:
        st = self.aliases.get(symbol)
        return st if st is not None else super().state(symbol)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(self.ws_path, self._h_ws),
            web.get(PRODUCTS_PATH, self._h_products),
            web.get(BOOK_PATH, self._h_product_book),
        ]

    def seq(self, symbol: str) -> int:
        return self.state(symbol).version

    # ----- framing --------------------------------------------------------------------
    def _send(self, conn: SimConn, channel: bytes, events: bytes, ns: int = 0) -> None:
        """One frame with this connection's next ``sequence_num``."""
        cl = self.conns.get(conn)
        if cl is None:
            return
        ts = ts_nanos(ns or time.time_ns()).encode()
        conn.send(b'{"channel":"%s","timestamp":"%s","sequence_num":%d,"events":%s}' % (channel, ts, cl.seq, events))
        cl.seq += 1

    def _error(self, conn: SimConn, message: str, reason: str) -> None:
        conn.send(orjson.dumps({"type": "error", "message": message, "reason": reason}))

    # ----- book data ------------------------------------------------------------------
    def emit(self, st: CoinbaseState, now_ms: int, mono: float) -> None:
        bch, ach, _, _ = st.book.collect()
        bad = self.take_corrupt_bid(st)
        if not (bch or ach) and bad is None:
            return
        st.version += 1
        skip, st.skip = st.skip, False
        subs = self.subs.get(st.stream)
        if not subs:
            return
        ns = time.time_ns()
        et = ts_micros(ns)
        g, lot = st.book.price, st.book.lot
        bids = [{"side": "bid", "event_time": et, "price_level": g.canonical(p), "new_quantity": lot.canonical(q)}
                for p, q in bch]
        if bad is not None:
            px = g.canonical(bad[0])
            bids = [u for u in bids if u["price_level"] != px]
            bids.insert(0, {"side": "bid", "event_time": et, "price_level": px, "new_quantity": lot.canonical(bad[1])})
        asks = [{"side": "offer", "event_time": et, "price_level": g.canonical(p), "new_quantity": lot.canonical(q)}
                for p, q in ach]
        events = orjson.dumps([{"type": "update", "product_id": st.stream, "updates": bids + asks}])
        for c in subs:
            if skip:  # lost in transit: the number is used up, the frame never arrives
                cl = self.conns.get(c)
                if cl is not None:
                    cl.seq += 1
            else:
                self._send(c, b"l2_data", events, ns)

    def snapshot_events(self, st: CoinbaseState) -> bytes:
        """The ``snapshot`` event of the current book (rendered once per state)."""
        if st.snap is not None and st.snap[0] == st.version:
            return st.snap[1]
        b, et = st.book, ts_micros(time.time_ns())
        g, lot = b.price, b.lot
        ups = [{"side": "bid", "event_time": et, "price_level": g.canonical(p), "new_quantity": lot.canonical(q)}
               for p, q in b.bids.top(1 << 30)]
        ups += [{"side": "offer", "event_time": et, "price_level": g.canonical(p), "new_quantity": lot.canonical(q)}
                for p, q in b.asks.top(1 << 30)]
        events = orjson.dumps([{"type": "snapshot", "product_id": st.stream, "updates": ups}])
        st.snap = (st.version, events)
        return events

    # ----- WebSocket ------------------------------------------------------------------
    async def _h_ws(self, request: web.Request) -> web.StreamResponse:
        ws, conn = await self.accept(request)
        self.conns[conn] = Client()
        await self.serve(ws, conn)
        return ws

    def _count(self, conn: SimConn, cl: Client) -> bool:
        q, now = cl.incoming, time.monotonic()
        q.append(now)
        while now - q[0] >= self.knobs.rate_window_s:
            q.popleft()
        return len(q) <= self.knobs.max_msgs_per_s

    def on_text(self, conn: SimConn, data: str) -> None:
        cl = self.conns.get(conn)
        if cl is None:
            return
        if not self._count(conn, cl):
            self._error(conn, "rate limit exceeded", "too many messages per second")
            return
        try:
            req = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._error(conn, "Failed to parse message", data[:200])
            return
        kind = req.get("type") if type(req) is dict else None
        if kind not in ("subscribe", "unsubscribe"):
            self._error(conn, "Failed to subscribe", f"unknown message type {kind!r}")
            return
        assert type(req) is dict
        channel, ids = req.get("channel"), req.get("product_ids", [])
        if type(ids) is not list or any(type(i) is not str for i in ids):
            self._error(conn, "Failed to subscribe", "product_ids must be a list of product ids")
            return
        if channel == "heartbeats":
            cl.heartbeats = kind == "subscribe"
            cl.last_hb = time.monotonic()  # the first heartbeat comes one interval later
        elif channel == "level2":
            if not ids:
                self._error(conn, "Failed to subscribe", "level2 needs at least one product id")
                return
            unknown = [i for i in ids if i not in self.by_inst]
            if unknown:
                self._error(conn, "Failed to subscribe", f"{unknown[0]} is not a valid product")
                return
            for i in ids:
                (self._subscribe if kind == "subscribe" else self._unsubscribe)(conn, i)
        else:
            self._error(conn, "Failed to subscribe", f"channel {channel!r} is not simulated")
            return
        if kind == "subscribe":
            conn.subscribed_ever = True
        subs: dict[str, list[str]] = {}
        if cl.heartbeats:
            subs["heartbeats"] = ["heartbeats"]
        if conn.subs:
            subs["level2"] = sorted(conn.subs)
        self._send(conn, b"subscriptions", orjson.dumps([{"subscriptions": subs}]))

    def _subscribe(self, conn: SimConn, inst: str) -> None:
        st = self.by_inst[inst]
        conn.subs.add(inst)
        self.subs.setdefault(st.stream, set()).add(conn)
        self._send(conn, b"l2_data", self.snapshot_events(st))

    def _unsubscribe(self, conn: SimConn, inst: str) -> None:
        st = self.by_inst[inst]
        conn.subs.discard(inst)
        if not any(self.by_inst[i].stream == st.stream for i in conn.subs):
            self.subs.get(st.stream, set()).discard(conn)

    def on_close(self, conn: SimConn) -> None:
        self.conns.pop(conn, None)
        for s in self.subs.values():
            s.discard(conn)

    def housekeep(self, conn: SimConn, mono: float) -> None:
        cl, k = self.conns.get(conn), self.knobs
        if cl is None:
            return
        if not conn.subscribed_ever:
            if mono - conn.connected_at > k.subscribe_timeout_s:
                conn.close(1008, "no subscription within 5s")
            return
        if cl.heartbeats and mono - cl.last_hb >= k.heartbeat_s:
            cl.last_hb = mono
            ns, up = time.time_ns(), mono - self._t0
            now = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ns // 1_000_000_000))
            self._send(conn, b"heartbeats", orjson.dumps([{
                "current_time": f"{now}.{ns % 1_000_000_000:09d} +0000 UTC m=+{up:.9f}",
                "heartbeat_counter": int(up)}]), ns)
        if mono - conn.last_push > k.idle_s:
            conn.close(1000, "idle: no messages")

    # ----- REST -----------------------------------------------------------------------
    async def _h_products(self, request: web.Request) -> web.Response:
        request[WEIGHT] = 1
        return web.Response(body=self.raw_markets, content_type="application/json")

    async def _h_product_book(self, request: web.Request) -> web.Response:
        request[WEIGHT] = 1
        inst = request.query.get("product_id", "")
        st = self.by_inst.get(inst)
        if st is None:
            return self.json({"error": "NOT_FOUND", "error_details": "ProductID is invalid",
                              "message": "ProductID is invalid"}, 404)
        try:
            limit = int(request.query.get("limit", "0")) or 1 << 30
        except ValueError:
            return self.json({"error": "INVALID_ARGUMENT", "error_details": "limit is not a number",
                              "message": "limit is not a number"}, 400)
        g, lot = st.book.price, st.book.lot
        return self.json({"pricebook": {
            "product_id": inst,
            "bids": [{"price": g.canonical(p), "size": lot.canonical(q)} for p, q in st.book.bids.top(limit)],
            "asks": [{"price": g.canonical(p), "size": lot.canonical(q)} for p, q in st.book.asks.top(limit)],
            "time": ts_micros(time.time_ns()),
        }})

    # ----- faults ---------------------------------------------------------------------
    def garbage_frames(self) -> list[str | bytes]:
        stream = next(iter(self.subs), "BTC-USD")
        return [
            '{"channel":"l2_data","timestamp":"2026-08-09T21:05:48.4Z","sequence_num":',
            f'{{"channel":"l2_data","events":[{{"type":"update","product_id":"{stream}","updates":"x"}}]}}',
            '{"channel":"heartbeats","sequence_num":"seven","events":[]}',
            *[f for f in super().garbage_frames() if isinstance(f, bytes)],
        ]
