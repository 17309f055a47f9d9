"""The HTTP endpoint: ``/metrics`` (Prometheus text format), ``/healthz`` (liveness: the process
answers) and ``/readyz`` (readiness: 200 or 503 with a short JSON reason, scanner/sinks/readiness.py).
Other sinks add their routes with :meth:`HttpEndpoint.add_routes` (the live web view, scanner/web/)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from scanner.sinks.metrics import Metrics
from scanner.sinks.readiness import ReadyCheck


class HttpEndpoint:
    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self.metrics, self.host, self.port = metrics, host, port
        self._runner: web.AppRunner | None = None
        self.ready: ReadyCheck | None = None  # set by the Pipeline; None: /readyz answers 503
        self._extra: list[Callable[[web.Application], None]] = []

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        for register in self._extra:
            register(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            self.port = int(sockets[0].getsockname()[1])

    def add_routes(self, register: Callable[[web.Application], None]) -> None:
        """Have ``register(app)`` add routes (and start-up/shutdown hooks) when the endpoint starts."""
        self._extra.append(register)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        # Rendered on a worker thread: at 10 venues x 50 symbols the exposition (~10k series) takes tens of
        # ms of Python, which on the event loop would hold every frame that long at each scrape; on a thread
        # the loop keeps running between the interpreter's switches (5 ms). Every collector reads snapshots.
        body = await asyncio.to_thread(self.metrics.render)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        ok, reason = (False, "starting") if self.ready is None else await self.ready()
        return web.Response(body=orjson.dumps({"ready": ok, "reason": reason}), status=200 if ok else 503,
                            content_type="application/json")
