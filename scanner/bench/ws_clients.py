"""Frame-receive overhead of candidate websocket clients against a local server.

A server process pushes N OKX-sized text frames, pre-encoded, as fast as the socket takes them; a separate client
process receives them with `websockets`, `aiohttp` or `picows` and reports its own CPU
time per frame (the server's work is not counted). This is how the collector's
websocket client was chosen; `make bench` reprints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import multiprocessing as mp
import re
import socket
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

FRAME = (
    '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":'
    '[["67010.5","0.25","0","3"],["67011.2","0","0","0"]],"bids":[["67010.4","1.2034","0","12"]],'
    '"ts":"1782450000123","checksum":0,"prevSeqId":123456788,"seqId":123456795}]}'
)


_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ws_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes([0x81, n])
    elif n < 65536:
        head = bytes([0x81, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x81, 127]) + n.to_bytes(8, "big")
    return head + payload


def _serve(port: int, frames: int, ready: Any) -> None:
    """A raw server: hand-made handshake, then pre-encoded frames in large writes, so the
    client, not the server, is the bottleneck."""

    blob = _ws_frame(FRAME.encode()) * 1000

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", head)
        assert key is not None
        accept = base64.b64encode(hashlib.sha1(key.group(1) + _GUID).digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        await reader.read(64)  # the client's masked "go"
        for _ in range(frames // 1000):
            writer.write(blob)
            await writer.drain()
        writer.write(_ws_frame(b"end"))
        await writer.drain()
        await reader.read(64)
        writer.close()

    async def main() -> None:
        await asyncio.start_server(handle, "127.0.0.1", port)
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


async def _client_websockets(url: str) -> int:
    import websockets

    n = 0
    async with websockets.connect(url, max_size=2**24, compression=None) as ws:
        await ws.send("go")
        async for msg in ws:
            if msg == "end":
                break
            n += 1
    return n


async def _client_aiohttp(url: str) -> int:
    import aiohttp

    n = 0
    async with aiohttp.ClientSession() as session, session.ws_connect(url, autoping=True) as ws:
        await ws.send_str("go")
        async for msg in ws:
            if msg.data == "end":
                break
            n += 1
    return n


async def _client_picows(url: str) -> int:
    import picows

    done = asyncio.get_running_loop().create_future()

    class Listener(picows.WSListener):
        n = 0

        def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
            if frame.msg_type != picows.WSMsgType.TEXT:
                return
            text = frame.get_payload_as_utf8_text()
            if text == "end":
                if not done.done():
                    done.set_result(self.n)
                return
            self.n += 1

    transport, _ = await picows.ws_connect(Listener, url)
    transport.send(picows.WSMsgType.TEXT, b"go")
    n: int = await done
    transport.disconnect()
    return n


CLIENTS: dict[str, Callable[[str], Coroutine[Any, Any, int]]] = {
    "websockets": _client_websockets,
    "aiohttp": _client_aiohttp,
    "picows": _client_picows,
}


def _run_client(name: str, url: str, out: Any) -> None:
    import uvloop

    uvloop.install()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    n = asyncio.run(CLIENTS[name](url))
    out.put((n, time.process_time() - cpu0, time.perf_counter() - wall0))


def measure(name: str, frames: int) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    port, ready, out = _free_port(), ctx.Event(), ctx.Queue()
    server = ctx.Process(target=_serve, args=(port, frames, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("bench server did not start")
        client = ctx.Process(target=_run_client, args=(name, f"ws://127.0.0.1:{port}/", out))
        client.start()
        n, cpu, wall = out.get(timeout=300)
        client.join()
    finally:
        server.kill()
    if n != frames:
        raise RuntimeError(f"{name}: received {n} of {frames} frames")
    return {"cpu_us_per_frame": cpu / n * 1e6, "wall_us_per_frame": wall / n * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print(f"{'client':<12}{'cpu us/frame':>14}{'wall us/frame':>15}   (median of {args.runs})")
    for name in CLIENTS:
        runs = [measure(name, args.frames) for _ in range(args.runs)]
        cpu = statistics.median(r["cpu_us_per_frame"] for r in runs)
        wall = statistics.median(r["wall_us_per_frame"] for r in runs)
        print(f"{name:<12}{cpu:>14.2f}{wall:>15.2f}")
        print(json.dumps({"bench": "ws_client", "client": name, "cpu_us_per_frame": round(cpu, 3),
                          "wall_us_per_frame": round(wall, 3)}))


if __name__ == "__main__":
    main()
