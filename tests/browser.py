"""A headless Chromium driven over the Chrome DevTools Protocol with aiohttp's websocket client (no
selenium or playwright): start it, open a page, evaluate a script that may return a promise, take a
screenshot, and always stop the browser process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any, cast

import aiohttp


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


DEVTOOLS_LINE = re.compile(r"DevTools listening on ws://[^:/]+:(\d+)/")


class CdpError(RuntimeError):
    pass


class Browser:
    """``async with Browser(tmp) as b``: one headless Chromium and a CDP session on its first page."""

    def __init__(self, profile: Path, width: int = 1280, height: int = 900) -> None:
        self.profile, self.width, self.height = profile, width, height
        self.proc: asyncio.subprocess.Process | None = None
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._calls: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._drain: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Browser:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self, deadline_s: float = 30.0) -> None:
        exe = chromium_path()
        if exe is None:
            raise CdpError("chromium not found")
        self.profile.mkdir(parents=True, exist_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--remote-debugging-port=0",
            f"--user-data-dir={self.profile}", f"--window-size={self.width},{self.height}", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            start_new_session=True)  # its own process group: close() ends the renderer and helpers with it
        port = await asyncio.wait_for(self._devtools_port(), deadline_s)
        self.http = aiohttp.ClientSession()
        async with self.http.get(f"http://127.0.0.1:{port}/json") as resp:
            targets = await resp.json()
        page = next((t for t in targets if t.get("type") == "page"), None)
        if page is None:
            raise CdpError(f"no page target among {targets}")
        self.ws = await self.http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        await self.call("Page.enable")
        await self.call("Emulation.setDeviceMetricsOverride",
                        {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})

    async def _devtools_port(self) -> int:
        """The port Chromium chose: it prints ``DevTools listening on ws://127.0.0.1:<port>/...`` on stderr.
        The rest of stderr is then drained (and dropped) so that the browser never blocks on a full pipe."""
        assert self.proc is not None and self.proc.stderr is not None
        err = self.proc.stderr
        seen: list[str] = []
        while line := (await err.readline()).decode(errors="replace"):
            m = DEVTOOLS_LINE.search(line)
            if m:
                self._drain = asyncio.create_task(_drain(err))
                return int(m.group(1))
            seen.append(line.strip())
        raise CdpError(f"chromium exited ({await self.proc.wait()}) before opening DevTools: {' | '.join(seen[-5:])}")

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = msg.json()
            fut = self._calls.pop(data["id"], None) if "id" in data else self._events.pop(data.get("method", ""), None)
            if fut is not None and not fut.done():
                fut.set_result(data)
        for fut in [*self._calls.values(), *self._events.values()]:
            if not fut.done():
                fut.set_exception(CdpError("the DevTools connection closed"))

    async def call(self, method: str, params: dict[str, Any] | None = None, wait_s: float = 30.0) -> dict[str, Any]:
        assert self.ws is not None
        cid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._calls[cid] = fut
        await self.ws.send_json({"id": cid, "method": method, "params": params or {}})
        reply = await asyncio.wait_for(fut, wait_s)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return cast(dict[str, Any], reply.get("result", {}))

    def expect(self, event: str) -> asyncio.Future[dict[str, Any]]:
        """A future for the next ``event`` (create it before the action that causes it)."""
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._events[event] = fut
        return fut

    async def open(self, url: str, wait_s: float = 30.0) -> None:
        loaded = self.expect("Page.loadEventFired")
        nav = await self.call("Page.navigate", {"url": url})
        if nav.get("errorText"):
            raise CdpError(f"cannot open {url}: {nav['errorText']}")
        await asyncio.wait_for(loaded, wait_s)

    async def evaluate(self, expression: str, wait_s: float = 30.0) -> Any:
        """The value of ``expression`` (awaited if it is a promise); a thrown error raises CdpError."""
        res = await self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                   "returnByValue": True}, wait_s)
        if "exceptionDetails" in res:
            d = res["exceptionDetails"]
            raise CdpError(d.get("exception", {}).get("description") or d.get("text", "script error"))
        return res["result"].get("value")

    async def screenshot(self, path: Path) -> bytes:
        shot = await self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        png = base64.b64decode(shot["data"])
        await asyncio.to_thread(_write, path, png)
        return png

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self.http is not None:
            await self.http.close()
        if self._drain is not None:
            self._drain.cancel()
        if self.proc is not None:
            self._signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self._signal(signal.SIGKILL)
                await self.proc.wait()
            self._signal(signal.SIGKILL)  # helpers still alive in the browser's own group

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
