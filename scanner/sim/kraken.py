"""Simulated Kraken spot WebSocket v2 (PROTOCOLS.md §6): WebSocket ``/v2`` with the ``book``
channel at depth 10/25/100/500/1000, REST ``/0/public/AssetPairs`` and ``/0/public/Depth``.

On connect the server sends ``status``; while a connection has subscriptions and nothing else
went out for :attr:`KrakenVenue.heartbeat_s` it gets ``{"channel":"heartbeat"}``;
``{"method":"ping"}`` is answered with ``pong`` (echoing ``req_id``). Each subscribed symbol
gets its own ack, then a snapshot of the subscribed depth. Updates are per depth: what changed
in the top N since the last push, with ``qty`` 0 only for levels that left the book, never for
levels merely pushed below the depth (a client must truncate). Prices and quantities are JSON
numbers written at the pair's precision (``65000.0``, ``0.50000000``); every snapshot and update
carries the unsigned CRC32 of the top 10 asks and bids. Kraken has no sequence numbers, so
``seq()`` is a per-symbol count of book changes, and ``skip_seq`` loses one update that changed
the top 10 (only the checksum can then tell). ``corrupt_level`` ``size`` sends a wrong best-bid
size under the true checksum; ``crossed`` sends a bid above the best ask under a checksum that
includes it (a consistent but crossed book). Not simulated, being undocumented or unverified:
the dynamic per-connection message-rate limit ("Exceeded msg rate") and the connection-attempt
limit; Kraken documents no idle disconnect and no connection lifetime.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
from aiohttp import web

from scanner.book.checksum import kraken_checksum
from scanner.markets import Market
from scanner.sim.base import SimConn, SimVenue, SymState
from scanner.sim.book import Grid, Level, Side, SimBook, fixed_rows
from scanner.sim.conn import WEIGHT
from scanner.sim.market import rng_for
from scanner.venues.kraken import DEPTHS, places, v2_code

View = dict[int, int]  # price ticks -> size lots, as last pushed to one depth's subscribers


@dataclass(eq=False)
class KrakenState(SymState):
    version: int = 0  # book changes so far (what seq() reports)
    subs: dict[int, set[SimConn]] = field(default_factory=dict)  # depth -> subscribers
    views: dict[int, tuple[View, View]] = field(default_factory=dict)  # depth -> (bids, asks) pushed
    crc: int = 0  # checksum of the last pushed top 10


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}000Z"


def diff(side: Side, view: View, depth: int) -> list[Level]:
    """Changes that bring ``view`` to the side's top ``depth`` (updating it): new or resized
    levels, and size 0 for levels gone from the book (not for those pushed out of range)."""
    top = side.top(depth)
    new = dict(top)
    out = [(p, q) for p, q in top if view.get(p) != q]
    levels, sign = side.levels, side.sign
    out += [(p, 0) for p in view if p not in new and p * sign not in levels]
    view.clear()
    view.update(new)
    return out


class KrakenVenue(SimVenue[KrakenState]):
    name = "kraken"
    ws_path = "/v2"
    heartbeat_s: ClassVar[float] = 1.0  # Kraken: about once a second while subscribed
    version_text: ClassVar[str] = "2.0.10"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._places: dict[str, int] = {}
        # REST pair names (result key or altname) -> result key, and result key -> v2 symbol
        self.pair_key: dict[str, str] = {}
        self.key_symbol: dict[str, str] = {}
        for key, r in orjson.loads(self.raw_markets)["result"].items():
            self.pair_key[key] = self.pair_key[str(r.get("altname", key))] = key
            if isinstance(r.get("wsname"), str):
                self.key_symbol[key] = "/".join(v2_code(c) for c in r["wsname"].split("/"))

    def new_state(self, market: Market, book: SimBook) -> KrakenState:
        return KrakenState(market.symbol, market.venue_id, book, rng_for(self.seed, "seq", self.name, market.symbol))

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(self.ws_path, self._h_ws),
            web.get("/0/public/AssetPairs", self._h_pairs),
            web.get("/0/public/Depth", self._h_depth),
        ]

    def seq(self, symbol: str) -> int:
        return self.state(symbol).version

    def fmt(self, grid: Grid, n: int) -> str:
        """Fixed-point at the pair's precision, as Kraken writes its JSON numbers."""
        d = self._places.get(grid.text)
        if d is None:
            d = self._places[grid.text] = places(grid.text)
        return grid.fixed(n, d)

    # ----- book data --------------------------------------------------------------------------
    def _grid_places(self, g: Grid) -> int:
        d = self._places.get(g.text)
        if d is None:
            d = self._places[g.text] = places(g.text)
        return d

    def _texts(self, st: KrakenState, rows: list[Level]) -> list[list[str]]:
        g, lot = st.book.price, st.book.lot
        return fixed_rows(g, lot, rows, self._grid_places(g), self._grid_places(lot))

    def _rows(self, st: KrakenState, rows: list[Level]) -> str:
        texts = self._texts(st, rows)
        return ",".join(f'{{"price":{t[0]},"qty":{t[1] if r[1] else 0}}}' for t, r in zip(texts, rows, strict=True))

    def _checksum(self, st: KrakenState, bad: Level | None = None) -> int:
        b = st.book
        bids = b.bids.top(10)
        if bad is not None:  # a crossed bogus bid on top, as if the venue itself published it
            bids = [bad, *bids[:9]]
        return kraken_checksum([(t[0], t[1]) for t in self._texts(st, bids)],
                               [(t[0], t[1]) for t in self._texts(st, b.asks.top(10))])

    def _frame(self, st: KrakenState, kind: str, bids: list[Level], asks: list[Level], crc: int,
               now_ms: int | None) -> bytes:
        ts = "" if now_ms is None else f',"timestamp":"{rfc3339(now_ms)}"'
        return (f'{{"channel":"book","type":"{kind}","data":[{{"symbol":{orjson.dumps(st.inst).decode()},'
                f'"bids":[{self._rows(st, bids)}],"asks":[{self._rows(st, asks)}],"checksum":{crc}{ts}}}]}}').encode()

    def emit(self, st: KrakenState, now_ms: int, mono: float) -> None:
        bch, ach, _, _ = st.book.collect()
        if bch or ach:
            st.version += 1
        bad = self.take_corrupt_bid(st) if st.corrupt else None
        crossed = bad is not None and bool(st.book.asks.levels) and bad[0] >= st.book.asks.top(1)[0][0]
        if not (bch or ach or bad) or not st.subs:
            return
        crc = self._checksum(st, bad if crossed else None)
        lost = st.skip and crc != st.crc  # skip_seq: lose this update, which changed the top 10
        if lost:
            st.skip = False
        st.crc = crc
        if st.bad_checksum:  # corrupt_checksum: the next update that goes out carries a wrong one
            crc ^= 0x5A5A5A5A
        sent = False
        for depth, subs in st.subs.items():
            vb, va = st.views[depth]
            bids, asks = diff(st.book.bids, vb, depth), diff(st.book.asks, va, depth)
            if bad is not None:
                bids = [(bad[0], bad[1]), *(r for r in bids if r[0] != bad[0])]
            if lost or not (bids or asks):
                continue
            frame = self._frame(st, "update", bids, asks, crc, now_ms)
            for c in subs:
                c.send(frame)
            sent = True
        st.bad_checksum = st.bad_checksum and not sent

    def snapshot_frame(self, st: KrakenState, depth: int) -> bytes:
        b = st.book
        if depth not in st.views:  # first subscriber at this depth: remember what it was sent
            st.views[depth] = (dict(b.bids.top(depth)), dict(b.asks.top(depth)))
            st.crc = self._checksum(st)
        return self._frame(st, "snapshot", b.bids.top(depth), b.asks.top(depth), self._checksum(st), None)

    # ----- WebSocket --------------------------------------------------------------------------
    async def _h_ws(self, request: web.Request) -> web.StreamResponse:
        ws, conn = await self.accept(request)
        conn.send(orjson.dumps({"channel": "status", "type": "update", "data": [{
            "api_version": "v2", "connection_id": int(conn.id, 16), "system": "online",
            "version": self.version_text}]}))
        await self.serve(ws, conn)
        return ws

    @staticmethod
    def _times() -> dict[str, str]:
        now = rfc3339(int(time.time() * 1000))
        return {"time_in": now, "time_out": now}

    def _reply(self, conn: SimConn, method: object, req_id: object, **body: object) -> None:
        out: dict[str, object] = {"method": method, **body}
        if req_id is not None:
            out["req_id"] = req_id
        conn.send(orjson.dumps({**out, **self._times()}))

    def _error(self, conn: SimConn, method: object, req_id: object, error: str, symbol: str | None = None) -> None:
        extra: dict[str, object] = {"symbol": symbol} if symbol is not None else {}
        self._reply(conn, method, req_id, error=error, success=False, **extra)

    def on_text(self, conn: SimConn, data: str) -> None:
        try:
            req = orjson.loads(data)
        except orjson.JSONDecodeError:
            req = None
        if type(req) is not dict:
            conn.send(orjson.dumps({"error": "Malformed request", "success": False, **self._times()}))
            return
        method, req_id, params = req.get("method"), req.get("req_id"), req.get("params", {})
        if method == "ping":
            self._reply(conn, "pong", req_id)
            return
        if method not in ("subscribe", "unsubscribe"):
            self._error(conn, method, req_id, "Method not found")
            return
        if type(params) is not dict or type(params.get("symbol")) is not list:
            self._error(conn, method, req_id, "Malformed request")
            return
        if params.get("channel") != "book":
            self._error(conn, method, req_id, f"Channel not supported: {params.get('channel')}")
            return
        depth = params.get("depth", 10)
        if depth not in DEPTHS:
            self._error(conn, method, req_id, "Invalid depth")
            return
        for sym in params["symbol"]:
            st = self.by_inst.get(sym) if type(sym) is str else None
            if st is None:
                self._error(conn, method, req_id, f"Currency pair not supported {sym}", str(sym))
                continue
            key = f"{st.inst}@{depth}"
            if method == "unsubscribe" and "depth" not in params:  # any depth of this symbol
                key = next((k for k in conn.subs if k.startswith(f"{st.inst}@")), key)
            if method == "subscribe":
                if any(k.startswith(f"{st.inst}@") for k in conn.subs):
                    self._error(conn, method, req_id, "Already subscribed", st.inst)
                    continue
                snapshot = params.get("snapshot", True) is not False
                self._reply(conn, method, req_id, success=True, result={
                    "channel": "book", "depth": depth, "snapshot": snapshot, "symbol": st.inst})
                frame = self.snapshot_frame(st, depth)
                if snapshot:
                    conn.send(frame)
                conn.subs.add(key)
                conn.subscribed_ever = True
                st.subs.setdefault(depth, set()).add(conn)
            elif key not in conn.subs:
                self._error(conn, method, req_id, "Subscription Not Found", st.inst)
            else:
                self._forget(conn, key)
                self._reply(conn, method, req_id, success=True,
                            result={"channel": "book", "depth": int(key.rpartition("@")[2]), "symbol": st.inst})

    def _forget(self, conn: SimConn, key: str) -> None:
        conn.subs.discard(key)
        inst, _, d = key.rpartition("@")
        st, depth = self.by_inst[inst], int(d)
        subs = st.subs.get(depth)
        if subs is not None:
            subs.discard(conn)
            if not subs:
                del st.subs[depth], st.views[depth]

    def on_close(self, conn: SimConn) -> None:
        for key in list(conn.subs):
            self._forget(conn, key)

    def housekeep(self, conn: SimConn, mono: float) -> None:
        if conn.subs and mono - conn.last_push >= self.heartbeat_s:
            conn.send(b'{"channel":"heartbeat"}')

    # ----- REST -------------------------------------------------------------------------------
    def _pair_keys(self, request: web.Request) -> list[str] | None:
        """Result keys named by ``?pair=`` (all when absent); None when a name is unknown."""
        q = request.query.get("pair")
        if q is None:
            return list(self.key_symbol)
        keys = [self.pair_key.get(p.strip(), "") for p in q.split(",")]
        return keys if all(keys) else None

    async def _h_pairs(self, request: web.Request) -> web.Response:
        request[WEIGHT] = 1
        keys = self._pair_keys(request)
        if keys is None:
            return self.json({"error": ["EQuery:Unknown asset pair"]})
        if "pair" not in request.query:
            return web.Response(body=self.raw_markets, content_type="application/json")
        result = orjson.loads(self.raw_markets)["result"]
        return self.json({"error": [], "result": {k: result[k] for k in keys}})

    async def _h_depth(self, request: web.Request) -> web.Response:
        """``GET /0/public/Depth?pair=XBTUSDT&count=N``: ``[price, volume, timestamp]`` rows."""
        request[WEIGHT] = 1
        keys = (self._pair_keys(request) if "pair" in request.query else None) or []
        st = self.by_inst.get(self.key_symbol.get(keys[0], "")) if len(keys) == 1 else None
        if st is None:
            return self.json({"error": ["EQuery:Unknown asset pair"]})
        try:
            count = min(max(int(request.query.get("count", "100")), 1), 500)
        except ValueError:
            return self.json({"error": ["EGeneral:Invalid arguments:count"]})
        now = int(time.time())
        bids, asks = self.book(st.symbol, count)
        return self.json({"error": [], "result": {keys[0]: {
            "asks": [[p, q, now] for p, q in asks], "bids": [[p, q, now] for p, q in bids]}}})

    # ----- faults -----------------------------------------------------------------------------
    def garbage_frames(self) -> list[str | bytes]:
        sym = next(iter(self.by_inst), "BTC/USD")
        head = f'{{"channel":"book","type":"update","data":[{{"symbol":"{sym}",'
        return [
            head + '"bids":[{"price":1',
            head + '"bids":"x","asks":5,"checksum":1}]}',
            '{"channel":"book","type":"delta","data":[]}',
            *[f for f in super().garbage_frames() if isinstance(f, bytes)],
        ]

    def corrupt_checksum(self, symbol: str) -> None:
        """The next update of ``symbol`` carries a wrong checksum."""
        self.state(symbol).bad_checksum = True
