"""What every simulated venue shares (:class:`SimVenue`): its aiohttp app (WebSocket + REST
on one port), the per-symbol books, connected clients, the request log, the HTTP control
endpoints (``/sim/*``) and the venue-neutral fault switches.

Frames are rendered once per (symbol, channel) and tick by the venue subclass and the same
string is queued on every subscriber's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import orjson
from aiohttp import WSMsgType, web

from scanner.markets import Market, UnknownSymbol
from scanner.sim.book import BookShape, Grid, SimBook
from scanner.sim.conn import IS_WS, WEIGHT, FaultUnsupported, RequestRecord, SimConfig, SimConn, SymState
from scanner.sim.market import BASE_PRICES, MarketWalk, load_markets, rng_for

__all__ = ["FaultUnsupported", "RequestRecord", "SimConfig", "SimConn", "SimVenue", "SymState"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

S = TypeVar("S", bound=SymState)


class SimVenue(Generic[S]):
    """One venue: app, port, books, clients, request log and fault switches.

    Subclasses set ``name``/``ws_paths``, create their :class:`SymState` subclass, and
    implement ``emit`` (turn a book change into frames), the WS message handlers and REST."""

    name: ClassVar[str] = ""
    ws_path: ClassVar[str] = ""  # the default public WebSocket path
    autoping: ClassVar[bool] = True

    def __init__(
        self,
        walk: MarketWalk,
        symbols: Sequence[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 1,
        config: SimConfig | None = None,
        markets_dir: Path | None = None,
    ) -> None:
        self.walk = walk
        self.host = host
        self.port = port
        self.seed = seed
        self.cfg = cfg = config or SimConfig()
        shape = cfg.shape if cfg.shape.depth == cfg.depth else BookShape(**{**cfg.shape.__dict__, "depth": cfg.depth})
        # The instruments endpoint serves the market file as is (not just the simulated symbols), so
        # a client that refreshes its market cache from the simulator writes back what it read.
        markets, self.raw_markets = load_markets(self.name, markets_dir)
        by_symbol = {m.symbol: m for m in markets}
        self.states: dict[str, S] = {}
        self._slots_cache: dict[int, list[list[S]]] = {}
        self.by_inst: dict[str, S] = {}
        for sym in symbols:
            m = by_symbol.get(sym)
            if m is None or not m.active or sym not in walk.mid:
                continue
            quote_usd = walk.mid.get(f"{m.quote}/USDT") or BASE_PRICES.get(f"{m.quote}/USDT", 1.0)
            book = SimBook(Grid.shared(m.tick), Grid.shared(m.lot), rng_for(seed, "book", self.name, sym), shape,
                           quote_usd)
            book.step(walk.venue_mid(self.name, sym))
            book.collect()
            st = self.new_state(m, book)
            self.states[sym] = self.by_inst[m.venue_id] = st
        self.markets: list[Market] = [by_symbol[s] for s in self.states]
        self.requests: deque[RequestRecord] = deque(maxlen=100_000)  # oldest dropped first
        self.clients: set[SimConn] = set()
        self.stall_until = 0.0
        self._conn_n = 0
        self._tasks: set[asyncio.Future[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._no_clients = asyncio.Event()
        self.app = web.Application(middlewares=[self._log_mw])
        self.app.add_routes([
            web.post("/sim/fault", self._h_fault),
            web.post("/sim/book", self._h_set_book),
            web.get("/sim/book", self._h_get_book),
            web.post("/sim/release", self._h_release),
            web.post("/sim/freeze", self._h_freeze),
            web.get("/sim/requests", self._h_requests),
        ])
        self.app.add_routes(self.routes())

    # ----- subclass hooks -------------------------------------------------------------
    def new_state(self, market: Market, book: SimBook) -> S:
        raise NotImplementedError

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def emit(self, st: S, now_ms: int, mono: float) -> None:
        """Collect the symbol's book change since the last call and push it to subscribers."""
        raise NotImplementedError

    def housekeep(self, conn: SimConn, mono: float) -> None:
        """Per-connection timers (pings, idle and lifetime limits)."""

    def fmt(self, grid: Grid, n: int) -> str:
        """A price or size as this venue writes it."""
        return grid.canonical(n)

    def seq(self, symbol: str) -> int:
        """The sequence id of the state :meth:`book` currently describes."""
        raise NotImplementedError

    # ----- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        runner = web.AppRunner(self.app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        for conn in list(self.clients):
            conn.close(1001, "simulator stopping")
        if self.clients:
            self._no_clients.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._no_clients.wait(), 0.5)
        for conn in list(self.clients):
            conn.abort()
        for t in list(self._tasks):
            t.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.ws_path}"

    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def later(self, delay: float, fn: Callable[[], None]) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            fn()

        t = asyncio.ensure_future(run())
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # ----- the market -----------------------------------------------------------------
    def tick(self, now_ms: int, mono: float, slot: int = 0, slots: int = 1) -> None:
        """Move and push the books of ``slot`` (of ``slots`` per market tick; all books when 1)."""
        if mono < self.stall_until:
            return
        frozen, mid = self.walk.frozen, self.walk.venue_mid
        for st in self.states.values() if slots == 1 else self._slot_states(slots)[slot]:
            if not frozen and not st.held:
                st.book.step(mid(self.name, st.symbol))
            self.emit(st, now_ms, mono)

    def _slot_states(self, slots: int) -> list[list[S]]:
        """Books spread over ``slots`` phases of a tick: book i of this venue goes out in phase
        (i + a per-venue offset) mod slots, so venues and symbols do not all push at once."""
        cached = self._slots_cache.get(slots)
        if cached is None:
            offset = zlib.crc32(self.name.encode()) % slots
            cached = [[] for _ in range(slots)]
            for i, st in enumerate(self.states.values()):
                cached[(i + offset) % slots].append(st)
            self._slots_cache[slots] = cached
        return cached

    def housekeeping(self, mono: float) -> None:
        for conn in list(self.clients):
            if not conn.closed:
                self.housekeep(conn, mono)

    def state(self, symbol: str) -> S:
        st = self.states.get(symbol) or self.by_inst.get(symbol)
        if st is None:
            raise UnknownSymbol(f"{self.name} simulator does not serve {symbol!r}")
        return st

    def book(self, symbol: str, depth: int | None = None) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The simulator's own book as the venue's exact strings, best levels first."""
        st = self.state(symbol)
        b, n = st.book, depth or 1 << 30
        g, lot = b.price, b.lot
        bids = [(self.fmt(g, p), self.fmt(lot, q)) for p, q in b.bids.top(n)]
        asks = [(self.fmt(g, p), self.fmt(lot, q)) for p, q in b.asks.top(n)]
        return bids, asks

    def set_book(self, symbol: str, bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]],
                 hold: bool = True) -> None:
        """Replace one book with exact levels (``[[price, size], ...]`` on the tick/lot grid);
        the change goes out at once as the next update. ``hold`` keeps the walk from
        regenerating it until :meth:`release`."""
        st = self.state(symbol)
        g, lot = st.book.price, st.book.lot
        nb = [(g.units(r[0]), lot.units(r[1])) for r in bids]
        na = [(g.units(r[0]), lot.units(r[1])) for r in asks]
        st.book.set_levels(nb, na)
        st.held = hold
        self.emit(st, int(time.time() * 1000), time.monotonic())

    def release(self, symbol: str) -> None:
        self.state(symbol).held = False

    # ----- faults ---------------------------------------------------------------------
    def drop(self, clean: bool = False) -> None:
        """Close every client connection now: abruptly (no close frame) or with code 1001."""
        for conn in list(self.clients):
            if clean:
                conn.close(1001, "dropped")
            else:
                conn.abort()

    def garbage(self, count: int = 4, huge_bytes: int = 0) -> None:
        """Send ``count`` malformed frames to every client (cycling through the kinds), then, with
        ``huge_bytes`` > 0, one :meth:`huge_frame` of that size."""
        frames = self.garbage_frames()
        if huge_bytes > 0:
            frames = [*(frames[i % len(frames)] for i in range(count)), self.huge_frame(huge_bytes)]
            count = len(frames)
        for conn in list(self.clients):
            for i in range(count):
                f = frames[i % len(frames)]
                if isinstance(f, bytes):
                    conn.send_bytes(f)
                else:
                    conn.send(f)

    def huge_frame(self, size: int) -> str:
        """A book-shaped JSON text frame of ``size`` bytes, cut short: a flood of levels a client
        must neither keep nor choke on."""
        head, row = '{"data":[{"bids":[', '["1.5","2"],'
        return (head + row * (max(0, size - len(head)) // len(row) + 1))[:size]

    def garbage_frames(self) -> list[str | bytes]:
        noise = bytes(rng_for(self.seed, "noise", self.name).getrandbits(8) for _ in range(48))
        return ['{"truncated": [1, 2', "[1,2,3]", noise]

    def stall(self, seconds: float) -> None:
        """Stop book data for ``seconds`` (the books do not move); pings are still answered."""
        self.stall_until = time.monotonic() + seconds

    def skip_seq(self, symbol: str) -> None:
        """Break the sequence of one symbol once (as if one update were lost)."""
        self.state(symbol).skip = True

    def corrupt_level(self, symbol: str, mode: str = "size") -> None:
        """Next update of ``symbol`` carries a wrong level while the sequence stays intact:
        ``size`` (best bid with a wrong size: only a checksum reveals it), ``crossed``
        (a bid above the best ask) or ``spike`` (a bid 5 % above the best bid, as large as it:
        below the best ask only when the book's spread is wider than that, and then only a
        checksum reveals it)."""
        if mode not in ("size", "crossed", "spike"):
            raise ValueError(f"corrupt_level mode must be 'size', 'crossed' or 'spike', not {mode!r}")
        self.state(symbol).corrupt = mode

    @staticmethod
    def take_corrupt_bid(st: SymState) -> tuple[int, int] | None:
        """The bogus bid (price ticks, size lots) a pending ``corrupt_level`` asks for, once."""
        mode, st.corrupt = st.corrupt, ""
        b = st.book
        if mode == "size" and b.bids.levels:
            p, q = b.bids.top(1)[0]
            return p, q * 3 + 7
        if mode == "crossed" and b.asks.levels:
            return b.asks.top(1)[0][0] + 2, 1000
        if mode == "spike" and b.bids.levels:
            p, q = b.bids.top(1)[0]
            return p + p // 20, q
        return None

    def corrupt_checksum(self, symbol: str) -> None:
        raise FaultUnsupported(f"{self.name} has no checksum")

    def seq_reset(self, symbol: str) -> None:
        raise FaultUnsupported(f"{self.name} has no sequence reset")

    def snapshot_lag(self, ticks: int) -> None:
        raise FaultUnsupported(f"{self.name} has no lagging REST snapshot")

    def notice(self, delay: float = 1.0) -> None:
        raise FaultUnsupported(f"{self.name} sends no service notice")

    def shutdown(self, delay: float = 1.0) -> None:
        raise FaultUnsupported(f"{self.name} sends no serverShutdown")

    def apply_fault(self, spec: Mapping[str, Any]) -> None:
        """Dispatch ``{"fault": name, ...params}`` (the body of ``POST /sim/fault``)."""
        name, sym = spec.get("fault"), str(spec.get("symbol", ""))
        if name == "drop":
            self.drop(bool(spec.get("clean", False)))
        elif name == "garbage":
            self.garbage(int(spec.get("count", 4)), int(spec.get("huge_bytes", 0)))
        elif name == "skip_seq":
            self.skip_seq(sym)
        elif name == "corrupt_checksum":
            self.corrupt_checksum(sym)
        elif name == "corrupt_level":
            self.corrupt_level(sym, str(spec.get("mode", "size")))
        elif name == "stall":
            self.stall(float(spec.get("seconds", 5.0)))
        elif name == "snapshot_lag":
            self.snapshot_lag(int(spec.get("ticks", 10)))
        elif name == "notice":
            self.notice(float(spec.get("delay", 1.0)))
        elif name == "shutdown":
            self.shutdown(float(spec.get("delay", 1.0)))
        elif name == "seq_reset":
            self.seq_reset(sym)
        else:
            raise ValueError(f"unknown fault {name!r}")

    # ----- HTTP plumbing --------------------------------------------------------------
    def log(self, request: web.Request, weight: int, status: int) -> None:
        self.requests.append(RequestRecord(time.monotonic(), request.path_qs, weight, status))

    @web.middleware
    async def _log_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/sim/"):
            return await handler(request)
        try:
            resp = await handler(request)
        except web.HTTPException as exc:
            self.log(request, request.get(WEIGHT, 0), exc.status)
            raise
        if not request.get(IS_WS, False):
            self.log(request, request.get(WEIGHT, 0), resp.status)
        return resp

    async def accept(self, request: web.Request) -> tuple[web.WebSocketResponse, SimConn]:
        ws = web.WebSocketResponse(autoping=self.autoping, max_msg_size=1 << 20, timeout=2.0)
        await ws.prepare(request)
        request[IS_WS] = True
        self.log(request, 0, 101)
        self._conn_n += 1
        conn = SimConn(ws, request, f"{zlib.crc32(f'{self.seed}:{self._conn_n}'.encode()):08x}", self.cfg.max_queue)
        self.clients.add(conn)
        return ws, conn

    async def serve(self, ws: web.WebSocketResponse, conn: SimConn) -> None:
        """Read the client's frames until it goes away."""
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self.on_text(conn, msg.data)
                elif msg.type in (WSMsgType.BINARY, WSMsgType.PING, WSMsgType.PONG):
                    self.on_other(conn, msg.type, msg.data)
                elif msg.type is WSMsgType.ERROR:
                    break
        finally:
            self.clients.discard(conn)
            if not self.clients:
                self._no_clients.set()
            self.on_close(conn)
            conn.stop()

    def on_text(self, conn: SimConn, data: str) -> None:
        raise NotImplementedError

    def on_other(self, conn: SimConn, kind: WSMsgType, data: bytes) -> None:
        """Binary frames (ignored) and, without autoping, ping/pong control frames."""

    def on_close(self, conn: SimConn) -> None:
        """Forget the connection's subscriptions."""

    @staticmethod
    def json(body: object, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
        return web.Response(body=orjson.dumps(body), status=status, content_type="application/json",
                            headers=headers)

    async def _h_fault(self, request: web.Request) -> web.Response:
        try:
            self.apply_fault(await request.json())
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return self.json({"ok": False, "error": str(exc)}, 400)
        return self.json({"ok": True})

    async def _h_set_book(self, request: web.Request) -> web.Response:
        try:
            d = await request.json()
            self.set_book(str(d["symbol"]), d.get("bids", []), d.get("asks", []), bool(d.get("hold", True)))
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            return self.json({"ok": False, "error": str(exc)}, 400)
        return self.json({"ok": True, "seq": self.seq(str(d["symbol"]))})

    async def _h_get_book(self, request: web.Request) -> web.Response:
        sym = request.query.get("symbol", "")
        try:
            bids, asks = self.book(sym, int(request.query.get("depth", "0")) or None)
        except (KeyError, ValueError) as exc:
            return self.json({"ok": False, "error": str(exc)}, 400)
        return self.json({"symbol": self.state(sym).symbol, "seq": self.seq(sym), "bids": bids, "asks": asks})

    async def _h_release(self, request: web.Request) -> web.Response:
        try:
            self.release(str((await request.json())["symbol"]))
        except (ValueError, KeyError, TypeError) as exc:
            return self.json({"ok": False, "error": str(exc)}, 400)
        return self.json({"ok": True})

    async def _h_freeze(self, request: web.Request) -> web.Response:
        try:
            self.walk.frozen = bool((await request.json()).get("frozen", True))
        except (ValueError, AttributeError) as exc:
            return self.json({"ok": False, "error": str(exc)}, 400)
        return self.json({"ok": True, "frozen": self.walk.frozen})

    async def _h_requests(self, request: web.Request) -> web.Response:
        return self.json([r._asdict() for r in self.requests])
