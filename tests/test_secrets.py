"""Secrets never leak (issue 8, security): planted API keys (environment and file), a webhook signing
secret (file) and a webhook URL holding a token (environment) go into a real ``scanner demo`` process
at DEBUG against the simulators, with a webhook receiver; then everything it produced is grepped for
them, as text, base64 and hex: stdout, stderr, /metrics, /readyz, every Redis key and value, and
every webhook request's headers and body. Also: a key the venue rejects is a warning naming the venue
and where the key came from, never the key."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import ClientSession, web
from redis.asyncio import Redis

from scanner.config import from_dict
from scanner.fee_auto import apply_keys

OFFLINE = """import socket
_real = socket.getaddrinfo
def _loopback_only(host, *args, **kwargs):
    if host not in ("127.0.0.1", "localhost", "::1", None):
        raise socket.gaierror(socket.EAI_NONAME, "test_secrets: no network beyond loopback")
    return _real(host, *args, **kwargs)
socket.getaddrinfo = _loopback_only
"""

ROOT = Path(__file__).resolve().parents[1]
OKX_KEY, OKX_SECRET, OKX_PASS = "PLANTED-okx-key-c0ffee11", "PLANTED-okx-secret-d00d22", "PLANTED-okx-pass-beef33"
BIN_KEY, BIN_SECRET = "PLANTED-binance-key-abba44", "PLANTED-binance-secret-feed55"
HOOK_RAW = b"PLANTED-hook-key-0123456789-cafe66"
HOOK_SECRET = "whsec_" + base64.b64encode(HOOK_RAW).decode()
URL_TOKEN = "PLANTED-url-token-fade77"
URL_TOKEN2 = "PLANTED-url-token-ace88"  # a target that is down


def forms(value: str | bytes) -> list[bytes]:
    """The value as bytes, base64 (both alphabets, padded or not) and hex (both cases)."""
    raw = value.encode() if isinstance(value, str) else value
    b64 = base64.b64encode(raw)
    return [raw, b64, b64.rstrip(b"="), base64.urlsafe_b64encode(raw).rstrip(b"="), raw.hex().encode(),
            raw.hex().upper().encode()]


PLANTED: list[str | bytes] = [OKX_KEY, OKX_SECRET, OKX_PASS, BIN_KEY, BIN_SECRET, HOOK_SECRET,
                              HOOK_SECRET.removeprefix("whsec_"), HOOK_RAW, URL_TOKEN, URL_TOKEN2]


def leaks(blob: bytes) -> list[str]:
    return [f"{p!r} as {f!r}" for p in PLANTED for f in forms(p) if f in blob]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def redis_dump(url: str) -> bytes:
    """Every key in the database and its whole value, whatever the type."""
    r = Redis.from_url(url)
    out: list[bytes] = []
    try:
        async for key in r.scan_iter(count=1000):
            kind_raw: bytes | str = await r.type(key)
            kind = kind_raw.decode() if isinstance(kind_raw, bytes) else kind_raw
            value: Any
            if kind == "string":
                value = await r.get(key)
            elif kind == "hash":
                value = await r.hgetall(key)
            elif kind == "stream":
                value = await r.xrange(key)
            elif kind == "list":
                value = await r.lrange(key, 0, -1)
            elif kind == "set":
                value = await r.smembers(key)
            elif kind == "zset":
                value = await r.zrange(key, 0, -1, withscores=True)
            else:
                value = kind
            out.append(key + b" " + repr(value).encode())
    finally:
        await r.aclose()
    return b"\n".join(out)


async def test_planted_secrets_appear_nowhere(tmp_path: Path, redis_url: str) -> None:
    hooks: list[bytes] = []

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        headers = "\n".join(f"{k}: {v}" for k, v in request.headers.items()).encode()
        hooks.append(headers + b"\n\n" + body)
        return web.Response(status=500 if len(hooks) == 1 else 200, text="ok")  # one retry logged

    app = web.Application()
    app.router.add_post("/hook/{token}", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()

    venues = ("okx", "binance", "bybit")
    demo = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    cfg: dict[str, Any] = {k: v for k, v in demo.items() if k not in ("venues", "webhooks", "fees")}
    ports = {v: free_port() for v in venues}
    cfg["venues"] = {v: {"ws_url": demo["venues"][v]["ws_url"].replace(str(_port(demo["venues"][v]["ws_url"])),
                                                                        str(ports[v])),
                         "rest_url": f"http://127.0.0.1:{ports[v]}"} for v in venues}
    cfg["symbols"] = ["BTC/USDT", "ETH/USDT"]
    for v in venues:  # no fees and a threshold below zero: events (hence webhooks) within seconds
        cfg["venues"][v]["taker_fee"] = 0
    cfg["detector"] = {**cfg.get("detector", {}), "min_net_bps": -30, "min_profit_quote": -1000000}
    cfg["log_level"] = "DEBUG"
    metrics_port = free_port()
    cfg["metrics"] = {"host": "127.0.0.1", "port": metrics_port}
    cfg["fees"] = {"mode": "auto", "timeout_s": 3}  # the keys are used: permission check and fee fetch
    (tmp_path / "hook.secret").write_text(HOOK_SECRET + "\n")
    cfg["webhooks"] = {"targets": {"ops": {"url_env": "EDGES_HOOK_URL", "format": "json",
                                           "secret_file": str(tmp_path / "hook.secret"),
                                           "backoff_base_s": 0.1, "timeout_s": 2},
                                   "down": {"url_file": str(tmp_path / "down.url"), "format": "slack",
                                            "max_attempts": 2, "backoff_base_s": 0.1, "timeout_s": 2}}}
    (tmp_path / "down.url").write_text(f"http://127.0.0.1:{free_port()}/hook/{URL_TOKEN2}\n")  # nothing listens
    config = tmp_path / "secrets.yaml"
    config.write_text(yaml.safe_dump(cfg))
    (tmp_path / "binance.key").write_text(BIN_KEY + "\n")

    env = {k: v for k, v in os.environ.items() if not k.startswith("SCANNER_") and "_API_" not in k}
    # the planted keys go to the venues' real REST hosts (fees.mode auto): keep them on this machine, whether
    # or not it has internet, by making every name but loopback fail to resolve in the demo process
    offline = tmp_path / "offline"
    offline.mkdir()
    (offline / "sitecustomize.py").write_text(OFFLINE)
    env["PYTHONPATH"] = os.pathsep.join([str(offline), *filter(None, [env.get("PYTHONPATH")])])
    env.update({"SCANNER_REDIS_URL": redis_url, "OKX_API_KEY": OKX_KEY, "OKX_API_SECRET": OKX_SECRET,
                "OKX_API_PASSPHRASE": OKX_PASS, "BINANCE_API_SECRET": BIN_SECRET,
                "BINANCE_API_KEY_FILE": str(tmp_path / "binance.key"),
                "EDGES_HOOK_URL": f"http://127.0.0.1:{hook_port}/hook/{URL_TOKEN}"})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scanner", "demo", "--config", str(config), "--duration", "40", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    pages: list[bytes] = []
    try:
        async with ClientSession() as http:
            async def scraped() -> None:
                while True:
                    try:
                        async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
                            text = await resp.read()
                            if resp.status == 200 and len(hooks) > 1 and b"scanner_opportunities" in text \
                                    and b'scanner_webhook_dead_letters_total{target="down"}' in text:
                                pages.append(text)
                                return
                    except OSError:
                        pass
                    await asyncio.sleep(0.2)  # polling an external process: no event to wait on

            try:
                await asyncio.wait_for(scraped(), 30)
            except TimeoutError:
                pass  # reported below, with the process's output
            else:
                async with http.get(f"http://127.0.0.1:{metrics_port}/readyz") as resp:
                    pages.append(await resp.read())
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
        await runner.cleanup()
    assert pages, f"no webhook delivery and /metrics page within 30 s ({len(hooks)} hooks):\n" + \
        stderr.decode()[-4000:] + stdout.decode()[-2000:]
    assert proc.returncode == 0, stderr.decode()[-3000:]
    stored = await redis_dump(redis_url)

    # the run did use every secret: keys were tried against the venues, events were signed and delivered
    assert b" DEBUG " in stderr
    assert b"okx: could not read the API key's permissions (key from env OKX_API_KEY)" in stderr, stderr[-3000:]
    assert f"binance: fees: auto failed, keeping the configured rates (key from file {tmp_path}".encode() in stderr
    assert hooks and all(b"webhook-signature: v1," in h.lower() for h in hooks)
    assert b"webhook ops: event " in stderr and b"attempt 1/8 failed (500)" in stderr  # the retry path ran
    assert b"webhook down: event " in stderr and b"dead-lettered after 2 attempts" in stderr
    assert b"opportunities" in stored and b"webhook_outbox" in stored and b"webhook_dead_letters" in stored
    assert leaks(b"x" + base64.b64encode(OKX_PASS.encode()) + b"x") and leaks(HOOK_RAW.hex().encode())  # it can see
    for name, blob in {"stdout": stdout, "stderr": stderr, "/metrics and /readyz": b"\n".join(pages),
                       "redis": stored, "webhook requests": b"\n".join(hooks)}.items():
        assert leaks(blob) == [], name


def _port(url: str) -> int:
    return int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


class RejectingOkx:
    """OKX REST that refuses every key, echoing it back in the error (as a careless venue might)."""

    def __init__(self) -> None:
        self.app = web.Application()
        self.app.router.add_get("/api/v5/account/config", self.reject)
        self.app.router.add_get("/api/v5/account/trade-fee", self.reject)

    async def reject(self, req: web.Request) -> web.Response:
        key = req.headers.get("OK-ACCESS-KEY", "")
        return web.json_response({"code": "50111", "msg": f"Invalid OK-ACCESS-KEY {key}", "data": []}, status=401)


async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("source", ["env", "file"])
async def test_a_rejected_key_names_venue_and_source_never_the_key(tmp_path: Path, source: str,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    env = {"OKX_API_SECRET": OKX_SECRET, "OKX_API_PASSPHRASE": OKX_PASS}
    if source == "env":
        env["OKX_API_KEY"] = OKX_KEY
        origin = "env OKX_API_KEY"
    else:
        (tmp_path / "okx.key").write_text(OKX_KEY + "\n")
        env["OKX_API_KEY_FILE"] = str(tmp_path / "okx.key")
        origin = f"file {tmp_path / 'okx.key'} (OKX_API_KEY_FILE)"
    s = from_dict({"symbols": ["BTC/USDT"], "venues": {"okx": {}}, "fees": {"mode": "auto", "timeout_s": 5}}, env)
    caplog.set_level(logging.DEBUG)
    model = s.fees.model()
    async for url in serve(RejectingOkx().app):
        await apply_keys(s.fees, model, {"okx": ["BTC/USDT"]}, {"okx": {"rest": url}})
    assert model.rates("okx", "BTC/USDT").source == "default"  # the configured rates stay
    assert f"okx: could not read the API key's permissions (key from {origin}): AuthenticationError" in caplog.text
    assert f"okx: fees: auto failed, keeping the configured rates (key from {origin})" in caplog.text
    assert "Invalid OK-ACCESS-KEY ***" in caplog.text  # the venue echoed the key; the log does not
    assert leaks(caplog.text.encode()) == []
