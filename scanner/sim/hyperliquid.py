"""Simulated Hyperliquid spot market data (PROTOCOLS.md §12): WebSocket ``/ws`` with ``l2Book``
subscriptions (acknowledged by ``subscriptionResponse``, answered at once with the current book, then
a full book of up to 20 levels per side whenever those levels change), ``{"method":"ping"}`` →
``{"channel":"pong"}``, the close after 60 s without a client message (:class:`HlKnobs`); and
``POST /info`` for ``{"type":"spotMeta"}`` (the market file, unchanged) and ``{"type":"l2Book"}``.

Prices follow the venue's tick rule: each book's grid is the coarser of ``8 - szDecimals`` decimals
and 5 significant figures at its starting price (0.001 for HYPE near 30), and numbers are written
the way Hyperliquid writes them (``"64094.0"``, ``"0.19502"``). Bridged tokens without a starting
price of their own (UBTC, UETH, USOL, USDT0) start at their underlying's price; they are still
separate markets.

Faults: ``corrupt_level`` (``crossed``: one book with a bid above the best ask, which a client must
refuse; ``size``: a wrong best-bid size, which nothing can reveal: there is no checksum), ``drop``,
``garbage``, ``stall``. ``skip_seq`` and ``corrupt_checksum`` do not exist here: every message is a
full book with nothing to sequence or checksum.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from scanner.markets import Market
from scanner.sim.base import FaultUnsupported, SimConn, SimVenue, SymState
from scanner.sim.book import BookShape, Grid, Level, SimBook
from scanner.sim.conn import WEIGHT
from scanner.sim.market import BASE_PRICES

DEPTH = 20  # levels per side in every l2Book
SIM_DEPTH = 100  # levels per side kept in the simulated book (the top 20 are shown)
SIG_FIGS = 5
UNDERLYING = {"UBTC": "BTC", "UETH": "ETH", "USOL": "SOL", "USDT0": "USDT"}  # for starting prices only
BAD_BODY = "Failed to deserialize the JSON body into the target type"


@dataclass(frozen=True)
class HlKnobs:
    """Hyperliquid's connection rule (documented value); tests shrink it."""

    idle_s: float = 60.0  # close a connection that has sent nothing for this long


@dataclass(eq=False)
class HlState(SymState):
    time: int = 0  # "time" of the last book pushed (ms, strictly increasing): the seq
    last: bytes = b""  # levels of the last push


class ScaledBook(SimBook):
    """A book that follows the shared walk scaled to its own starting price."""

    __slots__ = ("scale",)

    def __init__(self, *args: Any, scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scale = scale

    def step(self, mid: float) -> None:
        super().step(mid * self.scale)


def sig_fig_step(tick: str, price: float) -> str:
    """The coarser of ``tick`` and the 5-significant-figure step at ``price``."""
    fig = Decimal(10) ** (math.floor(math.log10(price)) - (SIG_FIGS - 1))
    return tick if fig <= Decimal(tick) else format(fig, "f")


class HyperliquidVenue(SimVenue[HlState]):
    name = "hyperliquid"
    ws_path = "/ws"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.knobs = HlKnobs()
        self.subs: dict[str, set[SimConn]] = {}  # coin -> subscribers
        self.pings = 0  # {"method":"ping"} messages received, all connections

    def new_state(self, market: Market, book: SimBook) -> HlState:
        sym, mid = market.symbol, self.walk.venue_mid(self.name, market.symbol)
        scale = 1.0
        hint = BASE_PRICES.get(f"{UNDERLYING.get(market.base, market.base)}/{market.quote}")
        if sym not in BASE_PRICES and hint and self.walk.mid[sym] == 1.0:  # no price of its own
            scale = hint / self.walk.mid[sym]
        shape = BookShape(**{**book.shape.__dict__, "depth": min(SIM_DEPTH, book.shape.depth)})
        grid = Grid(sig_fig_step(market.tick, mid * scale))
        nb = ScaledBook(grid, book.lot, book.rng, shape, book.quote_usd, scale=scale)
        nb.step(mid)
        nb.collect()
        return HlState(sym, market.venue_id, nb, book.rng, time=int(time.time() * 1000))

    def routes(self) -> list[web.RouteDef]:
        return [web.get(self.ws_path, self._h_ws), web.post("/info", self._h_info)]

    def fmt(self, grid: Grid, n: int) -> str:
        text = grid.canonical(n)
        return text if "." in text else text + ".0"

    def seq(self, symbol: str) -> int:
        return self.state(symbol).time

    # ----- book data ------------------------------------------------------------------
    def levels(self, st: HlState, bad: Level | None = None) -> list[list[dict[str, object]]]:
        b = st.book
        bids = b.bids.top(DEPTH)
        if bad is not None:
            bids = sorted([lv for lv in bids if lv[0] != bad[0]] + [bad], reverse=True)[:DEPTH]
        g, lot = b.price, b.lot
        return [[{"px": self.fmt(g, p), "sz": self.fmt(lot, q), "n": 1 + (p * 7 + q) % 29} for p, q in side]
                for side in (bids, b.asks.top(DEPTH))]

    def book_frame(self, st: HlState, levels: object) -> bytes:
        return orjson.dumps({"channel": "l2Book", "data": {"coin": st.inst, "time": st.time, "levels": levels}})

    def emit(self, st: HlState, now_ms: int, mono: float) -> None:
        st.book.collect()  # diffs are not needed: every push is the whole top 20
        levels = self.levels(st, self.take_corrupt_bid(st))
        raw = orjson.dumps(levels)
        if raw == st.last:
            return
        st.last = raw
        st.time = max(now_ms, st.time + 1)
        subs = self.subs.get(st.inst)
        if subs:
            frame = self.book_frame(st, levels)
            for c in subs:
                c.send(frame)

    # ----- WebSocket ------------------------------------------------------------------
    async def _h_ws(self, request: web.Request) -> web.StreamResponse:
        ws, conn = await self.accept(request)
        await self.serve(ws, conn)
        return ws

    def _error(self, conn: SimConn, text: str) -> None:
        conn.send(orjson.dumps({"channel": "error", "data": text}))

    def on_text(self, conn: SimConn, data: str) -> None:
        conn.last_ping = time.monotonic()  # any client message keeps the connection alive
        try:
            req = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._error(conn, f"Error parsing JSON into valid websocket request: {data[:200]}")
            return
        method = req.get("method") if type(req) is dict else None
        if method == "ping":
            self.pings += 1
            conn.send(b'{"channel":"pong"}')
            return
        sub = req.get("subscription") if type(req) is dict else None
        if method not in ("subscribe", "unsubscribe") or type(sub) is not dict:
            self._error(conn, f"Error parsing JSON into valid websocket request: {data[:200]}")
            return
        coin = sub.get("coin")
        st = self.by_inst.get(coin) if type(coin) is str else None
        if sub.get("type") != "l2Book" or st is None:
            self._error(conn, f"Invalid subscription {orjson.dumps(sub).decode()}")
            return
        if sub.get("nSigFigs") is not None or sub.get("mantissa") is not None:
            self._error(conn, "nSigFigs/mantissa aggregation is not simulated")
            return
        echo = {"type": "l2Book", "coin": st.inst, "nSigFigs": None, "mantissa": None, "fast": False}
        text = orjson.dumps({"type": "l2Book", "coin": st.inst}).decode()
        if method == "subscribe":
            if st.inst in conn.subs:
                self._error(conn, f"Already subscribed: {text}")
                return
            conn.subs.add(st.inst)
            conn.subscribed_ever = True
            self.subs.setdefault(st.inst, set()).add(conn)
        else:
            if st.inst not in conn.subs:
                self._error(conn, f"Already unsubscribed: {text}")
                return
            conn.subs.discard(st.inst)
            self.subs.get(st.inst, set()).discard(conn)
        conn.send(orjson.dumps({"channel": "subscriptionResponse", "data": {"method": method, "subscription": echo}}))
        if method == "subscribe":
            conn.send(self.book_frame(st, self.levels(st)))

    def on_close(self, conn: SimConn) -> None:
        for coin in conn.subs:
            s = self.subs.get(coin)
            if s is not None:
                s.discard(conn)
                if not s:
                    del self.subs[coin]

    def housekeep(self, conn: SimConn, mono: float) -> None:
        if mono - conn.last_ping > self.knobs.idle_s:
            conn.close(1000, "no message from the client")

    # ----- REST -----------------------------------------------------------------------
    async def _h_info(self, request: web.Request) -> web.Response:
        try:
            body = await request.json(loads=orjson.loads)
        except ValueError:
            body = None
        kind = body.get("type") if type(body) is dict else None
        if kind == "spotMeta":
            request[WEIGHT] = 20
            return web.Response(body=self.raw_markets, content_type="application/json")
        if kind == "l2Book" and type(body) is dict:
            request[WEIGHT] = 2
            st = self.by_inst.get(str(body.get("coin")))
            if st is None:
                return self.json(None)
            return self.json({"coin": st.inst, "time": st.time, "levels": self.levels(st)})
        return web.Response(status=422, text=BAD_BODY)

    # ----- faults ---------------------------------------------------------------------
    def garbage_frames(self) -> list[str | bytes]:
        coin = next(iter(self.by_inst), "@107")
        head = f'{{"channel":"l2Book","data":{{"coin":"{coin}"'
        return [
            f'{head},"time":1,"levels":[[{{"px":"1',
            f'{head},"time":"soon","levels":[[],[]]}}}}',
            f'{head},"time":1,"levels":[[{{"px":1.5,"sz":"1","n":1}}],[]]}}}}',
            f'{head},"time":1,"levels":[[]]}}}}',
            *[f for f in super().garbage_frames() if isinstance(f, bytes)],
        ]

    def skip_seq(self, symbol: str) -> None:
        raise FaultUnsupported("hyperliquid pushes whole books: there is no sequence to break")
