"""Simulated OKX v5 public market data (PROTOCOLS.md §2): WebSocket ``/ws/v5/public`` with
the ``books`` (snapshot + prevSeqId-chained updates), ``books5`` and ``bbo-tbt`` channels,
text ``ping``/``pong`` keepalive and the 30 s idle rule; REST ``/api/v5/market/books`` and
``/api/v5/public/instruments``.

``seqId`` grows by random jumps (never assume +1); an unchanged book gets an empty
keep-alive update with ``prevSeqId == seqId``; ``checksum`` is 0 (OKX since 2026-06-23)
or, with ``okx_checksum``, the signed CRC32 of the top 25 levels after the update.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from scanner.book.checksum import okx_checksum
from scanner.markets import Market
from scanner.sim.base import FaultUnsupported, SimConn, SimVenue, SymState
from scanner.sim.book import Grid, SimBook
from scanner.sim.conn import WEIGHT
from scanner.sim.market import rng_for

CHANNELS = {"books": 400, "books5": 5, "bbo-tbt": 1}
NOTICE = "The connection will soon be closed for a service upgrade. Please reconnect."
HOUR = 3600.0


@dataclass(eq=False)
class OkxState(SymState):
    seq: int = 0  # seqId of the current state
    version: int = 0  # bumps on every book change (snapshot cache key)
    last_emit: float = 0.0
    snap: tuple[tuple[int, int], bytes] | None = None
    tops: dict[str, bytes] = field(default_factory=dict)  # last books5 / bbo-tbt levels pushed


def level(price: Grid, lot: Grid, p: int, q: int) -> list[str]:
    """``[px, sz, "0", orderCount]``; a deletion is ``[px, "0", "0", "0"]``."""
    if not q:
        return [price.canonical(p), "0", "0", "0"]
    return [price.canonical(p), lot.canonical(q), "0", str(1 + (p * 7 + q) % 29)]


class OkxVenue(SimVenue[OkxState]):
    name = "okx"
    ws_path = "/ws/v5/public"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subs: dict[str, set[SimConn]] = {}  # "channel:instId" -> subscribers

    def new_state(self, market: Market, book: SimBook) -> OkxState:
        rng = rng_for(self.seed, "seq", self.name, market.symbol)
        return OkxState(market.symbol, market.venue_id, book, rng, seq=rng.randint(10**10, 2 * 10**10))

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(self.ws_path, self._h_ws),
            web.get("/api/v5/market/books", self._h_books),
            web.get("/api/v5/public/instruments", self._h_instruments),
        ]

    def seq(self, symbol: str) -> int:
        return self.state(symbol).seq

    # ----- book data ------------------------------------------------------------------
    def _checksum(self, st: OkxState) -> int:
        b = st.book
        bids = [(b.price.canonical(p), b.lot.canonical(q)) for p, q in b.bids.top(25)]
        asks = [(b.price.canonical(p), b.lot.canonical(q)) for p, q in b.asks.top(25)]
        return okx_checksum(bids, asks)

    def emit(self, st: OkxState, now_ms: int, mono: float) -> None:
        bch, ach, _, _ = st.book.collect()
        changed = bool(bch or ach)
        forced = st.skip or st.reset or st.bad_checksum or bool(st.corrupt)
        if not (changed or forced) and mono - st.last_emit < self.cfg.okx_keepalive_s:
            return
        rng = st.rng
        if st.skip:  # as if an update with this seqId had been lost
            st.seq += rng.randint(1, 40)
            st.skip = False
        prev = st.seq
        bad = self.take_corrupt_bid(st)
        if changed or bad is not None:
            st.seq = prev + len(bch) + len(ach) + rng.randint(1, 40)
        if st.reset:  # maintenance reset: seqId below prevSeqId, still chained
            st.seq = max(1, prev - rng.randint(1000, 100_000))
            st.reset = False
        if changed:
            st.version += 1
        st.last_emit = mono
        bad_checksum, st.bad_checksum = st.bad_checksum, False
        subs = self.subs.get(f"books:{st.inst}")
        if subs:
            g, lot = st.book.price, st.book.lot
            bids = [level(g, lot, p, q) for p, q in bch]
            asks = [level(g, lot, p, q) for p, q in ach]
            if bad is not None:
                px = g.canonical(bad[0])
                bids = [r for r in bids if r[0] != px]
                bids.insert(0, level(g, lot, *bad))
            checksum = self._checksum(st) if self.cfg.okx_checksum else 0
            if bad_checksum:
                checksum = (checksum ^ 0x2F5A) or 1
            frame = orjson.dumps({
                "arg": {"channel": "books", "instId": st.inst}, "action": "update",
                "data": [{"asks": asks, "bids": bids, "ts": str(now_ms), "checksum": checksum,
                          "prevSeqId": prev, "seqId": st.seq}],
            })
            for c in subs:
                c.send(frame)
        if changed:
            for ch in ("books5", "bbo-tbt"):
                subs = self.subs.get(f"{ch}:{st.inst}")
                if subs:
                    self._push_top(st, ch, subs, now_ms, only_if_changed=True)

    def _push_top(self, st: OkxState, ch: str, subs: set[SimConn], now_ms: int, only_if_changed: bool) -> None:
        n, b = CHANNELS[ch], st.book
        asks = [level(b.price, b.lot, p, q) for p, q in b.asks.top(n)]
        bids = [level(b.price, b.lot, p, q) for p, q in b.bids.top(n)]
        levels = orjson.dumps([asks, bids])
        if only_if_changed and st.tops.get(ch) == levels:
            return
        st.tops[ch] = levels
        frame = orjson.dumps({
            "arg": {"channel": ch, "instId": st.inst},
            "data": [{"asks": asks, "bids": bids, "instId": st.inst, "ts": str(now_ms), "seqId": st.seq}],
        })
        for c in subs:
            c.send(frame)

    def snapshot_frame(self, st: OkxState) -> bytes:
        """The ``books`` snapshot of the current state (rendered once per state)."""
        key = (st.version, st.seq)
        if st.snap is not None and st.snap[0] == key:
            return st.snap[1]
        b = st.book
        frame = orjson.dumps({
            "arg": {"channel": "books", "instId": st.inst}, "action": "snapshot",
            "data": [{
                "asks": [level(b.price, b.lot, p, q) for p, q in b.asks.top(CHANNELS["books"])],
                "bids": [level(b.price, b.lot, p, q) for p, q in b.bids.top(CHANNELS["books"])],
                "ts": str(int(time.time() * 1000)),
                "checksum": self._checksum(st) if self.cfg.okx_checksum else 0,
                "prevSeqId": -1, "seqId": st.seq,
            }],
        })
        st.snap = (key, frame)
        return frame

    # ----- WebSocket ------------------------------------------------------------------
    async def _h_ws(self, request: web.Request) -> web.StreamResponse:
        ws, conn = await self.accept(request)
        await self.serve(ws, conn)
        return ws

    def _error(self, conn: SimConn, code: str, msg: str, req_id: object = None) -> None:
        body: dict[str, object] = {"event": "error", "code": code, "msg": msg, "connId": conn.id}
        if req_id is not None:
            body = {"id": req_id, **body}
        conn.send(orjson.dumps(body))

    def on_text(self, conn: SimConn, data: str) -> None:
        if data == "ping":
            conn.send("pong")
            return
        try:
            req = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._error(conn, "60012", f"Illegal request: {data[:200]}")
            return
        op = req.get("op") if type(req) is dict else None
        if op not in ("subscribe", "unsubscribe"):
            self._error(conn, "60012", f"Illegal request: {data[:200]}")
            return
        assert type(req) is dict
        req_id, args = req.get("id"), req.get("args")
        if type(args) is not list or not args:
            self._error(conn, "60013", "Invalid args", req_id)
            return
        now = time.monotonic()
        ops = conn.incoming
        while ops and now - ops[0] > HOUR:
            ops.popleft()
        if len(ops) >= self.cfg.okx_max_ops_per_hour:
            self._error(conn, "60014", "Requests too frequent.", req_id)
            return
        ops.append(now)
        for arg in args:
            ch = arg.get("channel") if type(arg) is dict else None
            inst = arg.get("instId") if type(arg) is dict else None
            st = self.by_inst.get(inst) if type(inst) is str else None
            if ch not in CHANNELS or st is None:
                self._error(conn, "60018", f"Wrong URL or channel:{ch},instId:{inst} doesn't exist.", req_id)
                continue
            assert type(ch) is str
            ack: dict[str, object] = {"event": op, "arg": {"channel": ch, "instId": st.inst}, "connId": conn.id}
            if req_id is not None:
                ack = {"id": req_id, **ack}
            conn.send(orjson.dumps(ack))
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
        for key in conn.subs:
            s = self.subs.get(key)
            if s is not None:
                s.discard(conn)
                if not s:
                    del self.subs[key]

    def housekeep(self, conn: SimConn, mono: float) -> None:
        idle = self.cfg.okx_idle_s
        if not conn.subscribed_ever and mono - conn.connected_at > idle:
            conn.close(4004, "No subscription within 30s.")
        elif mono - conn.last_push > idle:
            conn.close(4004, "No data pushed within 30s.")

    # ----- REST -----------------------------------------------------------------------
    async def _h_books(self, request: web.Request) -> web.Response:
        request[WEIGHT] = 1
        st = self.by_inst.get(request.query.get("instId", ""))
        if st is None:
            return self.json({"code": "51001", "msg": "Instrument ID does not exist.", "data": []})
        try:
            sz = min(max(int(request.query.get("sz", "1")), 1), CHANNELS["books"])
        except ValueError:
            return self.json({"code": "51000", "msg": "Parameter sz error", "data": []})
        b = st.book
        return self.json({"code": "0", "msg": "", "data": [{
            "asks": [level(b.price, b.lot, p, q) for p, q in b.asks.top(sz)],
            "bids": [level(b.price, b.lot, p, q) for p, q in b.bids.top(sz)],
            "ts": str(int(time.time() * 1000)),
            "seqId": st.seq,
        }]})

    async def _h_instruments(self, request: web.Request) -> web.Response:
        request[WEIGHT] = 1
        kind = request.query.get("instType", "")
        if not kind:
            return self.json({"code": "50014", "msg": "Parameter instType can not be empty.", "data": []})
        if kind != "SPOT":
            return self.json({"code": "0", "msg": "", "data": []})
        return web.Response(body=self.raw_markets, content_type="application/json")

    # ----- faults ---------------------------------------------------------------------
    def garbage_frames(self) -> list[str | bytes]:
        inst = next(iter(self.by_inst), "BTC-USDT")
        arg = f'{{"channel":"books","instId":"{inst}"}}'
        return [
            f'{{"arg":{arg},"action":"update","data":[{{"asks":[["1',
            f'{{"arg":{arg},"action":"update","data":[{{"asks":"x","bids":5,"ts":"z","seqId":"q"}}]}}',
            f'{{"arg":{{"channel":"nonsense-channel","instId":"{inst}"}},"data":[{{}}]}}',
            *[f for f in super().garbage_frames() if isinstance(f, bytes)],
        ]

    def corrupt_checksum(self, symbol: str) -> None:
        """The next ``books`` update of ``symbol`` carries a wrong non-zero checksum."""
        if not self.cfg.okx_checksum:
            raise FaultUnsupported("corrupt_checksum needs checksum mode (okx_checksum=True)")
        self.state(symbol).bad_checksum = True

    def seq_reset(self, symbol: str) -> None:
        """The next update of ``symbol`` has ``seqId < prevSeqId`` (still chained)."""
        self.state(symbol).reset = True

    def notice(self, delay: float = 1.0) -> None:
        """Send the 64008 service-upgrade notice to every client, close them ``delay`` s later."""
        conns = list(self.clients)
        for c in conns:
            c.send(orjson.dumps({"event": "notice", "code": "64008", "msg": NOTICE, "connId": c.id}))

        def close_all() -> None:
            for c in conns:
                c.close(1012, "service upgrade")

        self.later(delay, close_all)
