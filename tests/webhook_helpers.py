"""A real local webhook receiver (aiohttp) that verifies every Standard Webhooks signature with the
``standardwebhooks`` library, plus settings, outbox and worker helpers for the webhook tests.

Waiting is on events with deadlines (``wait_for``), never on sleeps."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from redis.asyncio import Redis
from standardwebhooks import Webhook

from scanner.config_webhooks import WebhookSettings, parse_webhooks
from scanner.sinks.metrics import Metrics
from scanner.webhooks.formats import sample_event
from scanner.webhooks.sender import TargetWorker

SECRET_ENV = "DESK_WEBHOOK_SECRET"

# (webhook-id, how many times this id arrived before, counting this one) → (status, headers) to answer
Plan = Callable[[str, int], tuple[int, dict[str, str]]]


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def reserved_port() -> socket.socket:
    """A socket bound to a free loopback port and not listening: connecting to it is refused at once,
    and nothing else (a simulator, a client's source port) can take the port while it is held. Close it
    just before a receiver starts on ``getsockname()[1]``."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    return s


@dataclass
class Arrival:
    msg_id: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival: data for the Retry-After check, never a speed assertion
    status: int  # what the receiver answered


class Receiver:
    def __init__(self, secret: str | None, port: int = 0, plan: Plan | None = None) -> None:
        self.secret, self.port = secret, port
        self.plan: Plan = plan or (lambda _id, _n: (200, {}))
        self.arrivals: list[Arrival] = []
        self.bad_signatures = 0
        self.hold: asyncio.Event | None = None  # when set to an unset Event, requests wait for it
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def ok_ids(self) -> set[str]:
        return {a.msg_id for a in self.arrivals if 200 <= a.status < 300}

    def times(self, msg_id: str) -> list[float]:
        return [a.at for a in self.arrivals if a.msg_id == msg_id]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        msg_id = headers.get("webhook-id", "")
        at = time.monotonic()
        if self.secret is not None:
            try:
                Webhook(self.secret).verify(body, headers)
            except Exception:
                self.bad_signatures += 1
                self._record(Arrival(msg_id, headers, body, at, 400))
                return web.Response(status=400, text="bad signature")
        n = sum(1 for a in self.arrivals if a.msg_id == msg_id) + 1
        status, extra = self.plan(msg_id, n)
        if self.hold is not None:
            self._record(Arrival(msg_id, headers, body, at, 0))  # arrived, not answered yet
            await self.hold.wait()
        self._record(Arrival(msg_id, headers, body, at, status))
        return web.Response(status=status, headers=extra, text="ok" if status < 300 else "no")

    def _record(self, a: Arrival) -> None:
        self.arrivals.append(a)
        self._changed.set()

    async def wait_for(self, cond: Callable[[], bool], within: float = 15.0) -> None:
        async def loop() -> None:
            while not cond():
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(loop(), within)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        if not self.port:
            self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if self._runner is not None:
            await self._runner.cleanup()


def webhook_settings(url: str, secret: str, claim_idle_s: float = 60, **target: Any) -> WebhookSettings:
    """One json target ``desk`` with fast test backoff (10-50 ms); ``target`` adds or replaces its keys."""
    return parse_webhooks({"targets": {"desk": {"url": url, "format": "json", "secret_env": SECRET_ENV,
                                                "backoff_base_s": 0.01, "backoff_max_s": 0.05, **target}},
                           "claim_idle_s": claim_idle_s}, {SECRET_ENV: secret})


def event(n: int, **over: Any) -> dict[str, Any]:
    ev = dict(sample_event())
    ev.update(over)
    ev.setdefault("detected_ns", time.time_ns())
    if "id" not in over:
        ev["id"] = f"{ev['symbol']}|{ev['buy_venue']}|{ev['sell_venue']}"
    ev["opened_ns"] = int(str(ev["opened_ns"])) + n  # distinct bodies
    return ev


async def append(r: Redis, ws: WebhookSettings, events: list[dict[str, Any]]) -> list[str]:
    """XADD each event to the outbox as the opportunity sink does; returns the entry ids."""
    out = []
    for e in events:
        eid = await r.xadd(ws.outbox_stream, {"data": orjson.dumps(e)})
        out.append(eid.decode() if isinstance(eid, bytes) else eid)
    return out


async def pending(r: Redis, ws: WebhookSettings, target: str = "desk") -> int:
    info = await r.xpending(ws.outbox_stream, f"webhook:{target}")
    return int(info["pending"])


@asynccontextmanager
async def worker_running(r: Redis, ws: WebhookSettings, metrics: Metrics | None = None,
                         consumer: str | None = None) -> AsyncIterator[TargetWorker]:
    """One target's worker, set up (its group exists) before the body appends events; stopped after."""
    w = TargetWorker(r, ws, ws.targets["desk"], metrics or Metrics(), consumer)
    await w.setup()
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        task = asyncio.create_task(w.run(stop, session))
        try:
            yield w
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
