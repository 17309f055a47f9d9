"""The live web view's HTTP side, served on the metrics endpoint (scanner/sinks/http.py):

``GET /``                 the page (static/index.html; static/app.js draws the table and the chart)
``GET /static/{name}``    the page's script and styles (a fixed list: nothing else is served)
``GET /api/state``        JSON snapshot: open opportunities, spread history of ``?symbol=``, feed health, refusals
``GET /api/stream``       Server-Sent Events: ``opportunity`` (one per stream entry, ``id:`` = the Redis stream id;
                          ``Last-Event-ID`` or ``?after=<id>`` resumes after that entry), ``health`` and ``spreads``
                          (of ``?symbol=``) every second

One task tails the opportunity stream (XREAD BLOCK on the view's own Redis client) and fans entries out to
the connected clients; another samples spreads and health every second. Redis going away: the tail logs
once, backs off and resumes from the last entry it read; the page shows "disconnected" while it is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from scanner.aio import wait_stop
from scanner.config import Settings
from scanner.sinks.metrics import Metrics
from scanner.store.schema import book_key
from scanner.web.state import FeedHealth, OpenOpportunities, SpreadHistory, net_spreads, parse_id, refusals, row_of

log = logging.getLogger("scanner.web")
STATIC = Path(__file__).parent / "static"
FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
HEADERS = {  # the page loads only its own files; no CORS header: other origins cannot read the API
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
QUEUE = 2_000  # chunks waiting per client; a client that falls this far behind is dropped (it resumes by id)
KEEPALIVE_S = 15.0
Entries = list[tuple[bytes, dict[bytes, bytes]]]
StreamId = tuple[int, int]
REPLAY_MAX = 20_000  # stream entries replayed to one resuming client at most
# the stream is read at most this often: the table refreshes 10 times a second, and each XREAD brings a
# tenth of a second's events instead of one (redis-py's call costs were ~4 % of the pipeline's CPU at
# 10 venues x 50 symbols when every event was read on its own)
TAIL_EVERY_S = 0.1
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(eq=False)
class Client:
    symbol: str
    queue: asyncio.Queue[tuple[StreamId | None, bytes]] = field(
        default_factory=lambda: asyncio.Queue(QUEUE))
    dropped: bool = False

    def put(self, sid: StreamId | None, chunk: bytes) -> None:
        try:
            self.queue.put_nowait((sid, chunk))
        except asyncio.QueueFull:
            self.dropped = True


def sse(event: str, data: Any, eid: str | None = None) -> bytes:
    head = f"id: {eid}\n" if eid else ""
    return f"{head}event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


class WebView:
    def __init__(self, settings: Settings, metrics: Metrics, feed_in_process: bool) -> None:
        self.settings, self.metrics, self.feed_in_process = settings, metrics, feed_in_process
        self.cfg = settings.web
        self.redis = Redis.from_url(settings.redis.url, socket_timeout=10, socket_connect_timeout=2)
        self.opps = OpenOpportunities(self.cfg.max_rows)
        self.history = SpreadHistory(self.cfg.history_s)
        venues = [*settings.venues, *settings.ccxt_venues]
        self.feed = FeedHealth(venues, settings.detector.max_book_age_ms)
        self.book_keys = [book_key(s, v) for v in venues for s in settings.symbols]
        self.health: list[dict[str, Any]] = []
        self.redis_ok = False
        self.loaded = asyncio.Event()  # the stream's recent entries have been read once
        self.clients: set[Client] = set()
        self.closing = asyncio.Event()
        self.bad_entries = 0

    # ---- routes

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._local(self._index))
        app.router.add_get("/static/{name}", self._local(self._static))
        app.router.add_get("/api/state", self._local(self._state))
        app.router.add_get("/api/stream", self._local(self._stream))
        app.on_shutdown.append(self._on_shutdown)

    def _local(self, handler: Handler) -> Handler:
        """``handler``, answering 421 to a request whose Host header is not a loopback name while the endpoint
        is bound to loopback: another web page cannot read the view through a DNS name rebound to 127.0.0.1.
        Bound beyond loopback (``metrics.host: 0.0.0.0``, the container image), any Host is served."""
        bind = self.settings.metrics.host

        async def checked(request: web.Request) -> web.StreamResponse:
            if _loopback(bind) and not _loopback(_host_name(request.host)) and _host_name(request.host) != bind:
                raise web.HTTPMisdirectedRequest(text="the web view answers loopback host names only "
                                                      "(metrics.host is loopback)\n")
            return await handler(request)
        return checked

    async def _on_shutdown(self, app: web.Application) -> None:
        self.close()

    def close(self) -> None:
        self.closing.set()
        for c in self.clients:
            c.put(None, b"")

    async def _index(self, request: web.Request) -> web.Response:
        return self._file("index.html")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in FILES:
            raise web.HTTPNotFound(text="no such file\n")
        return self._file(name)

    def _file(self, name: str) -> web.Response:
        return web.Response(body=(STATIC / name).read_bytes(), content_type=FILES[name], charset="utf-8",
                            headers=HEADERS)

    def _symbol(self, request: web.Request) -> str:
        symbol = request.query.get("symbol", "")
        known = self.settings.symbols
        if symbol and symbol not in known and symbol not in self.history.symbols():
            raise web.HTTPBadRequest(text=f"unknown symbol {symbol[:40]!r}; configured: {', '.join(known)}\n")
        return symbol or known[0]

    def snapshot(self, symbol: str) -> dict[str, Any]:
        return {
            "now_ms": time.time() * 1e3,
            "last_id": self.opps.last_id,
            "mode": "run" if self.feed_in_process else "detect",
            "redis": self.redis_ok,
            "symbols": sorted({*self.settings.symbols, *self.history.symbols()}),
            "history_s": self.cfg.history_s,
            "max_rows": self.cfg.max_rows,
            "opportunities": self.opps.newest_first(),
            "spreads": self.history.chart(symbol),
            "health": self.health,
            "refusals": refusals(self.metrics),
        }

    async def _state(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.snapshot(self._symbol(request))), content_type="application/json",
                            headers=HEADERS)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        symbol = self._symbol(request)
        after = request.headers.get("Last-Event-ID") or request.query.get("after") or ""
        try:
            resume = parse_id(after) if after else None
        except ValueError:
            raise web.HTTPBadRequest(text="Last-Event-ID / after: not a stream id like 1700000000000-0\n") from None
        if len(self.clients) >= self.cfg.max_clients:
            raise web.HTTPServiceUnavailable(text=f"at most {self.cfg.max_clients} live clients (web.max_clients)\n")
        if self.closing.is_set():
            raise web.HTTPServiceUnavailable(text="shutting down\n")
        client = Client(symbol)
        self.clients.add(client)  # before the replay: entries arriving meanwhile queue up, duplicates are skipped
        resp = web.StreamResponse(headers={**HEADERS, "Content-Type": "text/event-stream",
                                           "X-Accel-Buffering": "no"})
        try:
            await resp.prepare(request)
            sent: StreamId = resume or (0, 0)
            head = [b"retry: 2000\n\n", sse("health", self._health_data()), sse("spreads", self.history.chart(symbol))]
            await resp.write(b"".join(head))
            if resume is not None:
                for rid, entry in await self._replay(after):
                    await resp.write(entry)
                    sent = rid
            while not self.closing.is_set() and not client.dropped:
                item: tuple[StreamId | None, bytes] = (None, b": keepalive\n\n")
                with contextlib.suppress(TimeoutError):
                    item = await asyncio.wait_for(client.queue.get(), KEEPALIVE_S)
                sid, chunk = item
                if sid is not None:
                    if sid <= sent:
                        continue
                    sent = sid
                if chunk:
                    await resp.write(chunk)
        except (ConnectionError, RedisError) as exc:  # the client went away, or the replay could not be read
            log.debug("web: stream client ended: %s", exc)
        finally:
            self.clients.discard(client)
        return resp

    async def _replay(self, after: str) -> list[tuple[StreamId, bytes]]:
        entries = cast(Entries, await self.redis.xrange(self.settings.redis.stream, min=f"({after}", max="+",
                                                        count=REPLAY_MAX))
        out = []
        for eid, fields in entries:
            ev = self._decode(fields)
            if ev is not None:
                sid_s = eid.decode()
                out.append((parse_id(sid_s), sse("opportunity", row_of(sid_s, ev), sid_s)))
        return out

    # ---- tasks

    async def run(self, stop: asyncio.Event) -> None:
        """Tail the stream and sample every second until ``stop``; then end every client's stream."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_guarded(self._tail(stop), "stream tail"), name="web-tail")
                tg.create_task(_guarded(self._sample(stop), "sampler"), name="web-sample")
        finally:
            self.close()
            await self.redis.aclose()

    def _decode(self, fields: dict[bytes, bytes]) -> dict[str, Any] | None:
        try:
            ev = orjson.loads(fields[b"data"])
            if not isinstance(ev, dict):
                raise TypeError("not an object")
            return ev
        except (KeyError, TypeError, orjson.JSONDecodeError) as exc:
            self.bad_entries += 1
            if self.bad_entries == 1:
                log.warning("web: skipping a stream entry that is not an opportunity event: %s", exc)
            return None

    def _apply(self, eid: bytes, fields: dict[bytes, bytes]) -> None:
        ev = self._decode(fields)
        sid_s = eid.decode()
        if ev is None:
            self.opps.last_id = sid_s
            return
        row = self.opps.apply(sid_s, ev)
        if self.clients:
            chunk, sid = sse("opportunity", row, sid_s), parse_id(sid_s)
            for c in self.clients:
                c.put(sid, chunk)

    async def _load(self) -> None:
        """The open opportunities from the stream's most recent entries (a few times ``max_rows``)."""
        recent = cast(Entries, await self.redis.xrevrange(self.settings.redis.stream,
                                                          count=min(4 * self.cfg.max_rows, REPLAY_MAX)))
        for eid, fields in reversed(recent):
            self._apply(eid, fields)
        self.loaded.set()

    async def _tail(self, stop: asyncio.Event) -> None:
        backoff = 0.5
        stream = self.settings.redis.stream
        while not stop.is_set():
            try:
                if not self.loaded.is_set():
                    await self._load()
                got = cast(list[tuple[bytes, Entries]],
                           await self.redis.xread({stream: self.opps.last_id}, block=1000, count=500))
                if not self.redis_ok:
                    log.info("web: reading opportunity stream %s", stream)
                self.redis_ok, backoff = True, 0.5
                for _name, entries in got or []:
                    for eid, fields in entries:
                        self._apply(eid, fields)
                if got:
                    await wait_stop(stop, TAIL_EVERY_S)
            except (RedisError, OSError) as exc:
                if self.redis_ok or backoff == 0.5:
                    log.warning("web: opportunity stream unavailable (retrying every few seconds): %s", exc)
                self.redis_ok = False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, 5.0)

    def _health_data(self) -> dict[str, Any]:
        return {"redis": self.redis_ok, "venues": self.health, "refusals": refusals(self.metrics),
                "mode": "run" if self.feed_in_process else "detect"}

    async def _sample(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            self.history.add(time.time() * 1e3, await net_spreads(self.metrics))
            if self.feed_in_process:
                self.health = self.feed.from_metrics(self.metrics)
            else:
                try:
                    self.health = self.feed.from_redis(cast(list[bytes | None], await self.redis.mget(self.book_keys)))
                except (RedisError, OSError):
                    self.health = []  # the tail task reports the outage
            if self.clients:
                health = sse("health", self._health_data())
                charts = {s: sse("spreads", self.history.chart(s)) for s in {c.symbol for c in self.clients}}
                for c in self.clients:
                    c.put(None, health)
                    c.put(None, charts[c.symbol])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.05, 1.0 - (time.monotonic() - started)))


def _host_name(host: str) -> str:
    """The name in a Host header: ``[::1]:9108`` -> ``::1``, ``localhost:9108`` -> ``localhost``."""
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _loopback(name: str) -> bool:
    return name.lower() in ("localhost", "::1") or name.startswith("127.")


async def _guarded(body: Coroutine[Any, Any, None], what: str) -> None:
    """A fault in the web view stops that part of the view, never the scanner."""
    try:
        await body
    except Exception:
        log.exception("web: the %s stopped on an unexpected error; the scanner carries on", what)
