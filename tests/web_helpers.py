"""Helpers of the live web view tests: a Server-Sent Events reader over aiohttp, and a running pipeline
against two simulators (okx, binance) with the view on a free port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from scanner.app import Pipeline
from scanner.config import Settings
from scanner.config_web import parse_web
from scanner.sim.server import SimCluster
from scanner.sinks.http import HttpEndpoint
from scanner.sinks.metrics import Metrics
from scanner.web import WebView
from tests.faults.infra_helpers import SYMBOL, WALKING, set_open
from tests.pipeline_helpers import running, settings_for


@dataclass
class Event:
    event: str
    data: Any
    id: str | None = None


@dataclass
class SseReader:
    """Reads ``text/event-stream`` events from one open response."""

    resp: aiohttp.ClientResponse
    comments: int = 0

    async def next(self, wait_s: float = 10.0) -> Event:
        async def read() -> Event:
            name, eid = "message", None
            data: list[str] = []
            while True:
                raw = await self.resp.content.readline()
                if not raw:
                    raise ConnectionError("the event stream ended")
                line = raw.decode().rstrip("\n")
                if not line:
                    if data:
                        return Event(name, orjson.loads("\n".join(data)), eid)
                    continue
                if line.startswith(":"):
                    self.comments += 1
                    continue
                key, _, value = line.partition(": ")
                if key == "event":
                    name = value
                elif key == "data":
                    data.append(value)
                elif key == "id":
                    eid = value
        try:
            return await asyncio.wait_for(read(), wait_s)
        except TimeoutError:
            pytest.fail(f"no server-sent event within {wait_s}s")

    async def until(self, event: str, wait_s: float = 15.0, **match: Any) -> Event:
        """The next ``event`` whose data has the ``match`` items; fail after ``wait_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            left = deadline - loop.time()
            if left <= 0:
                pytest.fail(f"no {event} event matching {match} within {wait_s}s")
            ev = await self.next(left)
            if ev.event == event and all(isinstance(ev.data, dict) and ev.data.get(k) == v for k, v in match.items()):
                return ev


@dataclass
class Running:
    sims: SimCluster
    pipeline: Pipeline
    base: str


@asynccontextmanager
async def web_pipeline(redis_url: str, cache: Path, web: dict[str, Any] | None = None) -> AsyncIterator[Running]:
    """okx + binance simulators (SYMBOL hand-set closed, WALKING walking) and the full pipeline, its
    web view at ``base``."""
    async with SimCluster(venues=["okx", "binance"], symbols=[SYMBOL, WALKING], tick_ms=50, seed=3) as sims:
        set_open(sims, False)
        settings = settings_for(sims, redis_url, cache)
        if web is not None:
            settings = replace(settings, web=parse_web(web))
        async with running(settings) as p:
            yield Running(sims, p, f"http://127.0.0.1:{p.http.port}")


@asynccontextmanager
async def view_alone(settings: Settings,
                     feed_in_process: bool) -> AsyncIterator[tuple[WebView, str, asyncio.Task[None]]]:
    """A web view of ``settings`` on its own HTTP endpoint (no pipeline in this process): the view, its base
    URL and its running task; stopped (within 10 s) and the endpoint closed after the block."""
    view = WebView(settings, Metrics(), feed_in_process=feed_in_process)
    http = HttpEndpoint(Metrics(), "127.0.0.1", 0)
    http.add_routes(view.routes)
    await http.start()
    stop = asyncio.Event()
    task = asyncio.create_task(view.run(stop))
    try:
        yield view, f"http://127.0.0.1:{http.port}", task
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await http.stop()
