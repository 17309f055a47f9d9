"""``fees: auto`` and the key permission check against a small local HTTP server that answers OKX's
REST endpoints (ccxt's own client pointed at it: signing, parsing and all), and a planted key grepped
for in the captured logs and in ``scanner check-config`` output."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from scanner import cli
from scanner.app import DETECT, Pipeline
from scanner.config import Settings, from_dict
from scanner.fee_auto import KeyPermissionError, apply_keys

KEY, SECRET, PASS = "PLANTED-okx-key-5a4b3c", "PLANTED-okx-secret-1d2e3f", "PLANTED-okx-pass-77"
PLANTED = (KEY, SECRET, PASS)
ENV = {"OKX_API_KEY": KEY, "OKX_API_SECRET": SECRET, "OKX_API_PASSPHRASE": PASS}
INSTRUMENTS = orjson.loads(Path("configs/markets/okx.json").read_bytes())


class FakeOkx:
    """OKX v5 REST, the four endpoints ccxt calls here. ``perm`` is the key's permission string;
    ``fee_error`` makes the fee endpoint fail with a body that echoes the key (as a careless
    venue might), to show the scanner scrubs it."""

    def __init__(self, perm: str, fee_error: bool = False) -> None:
        self.perm, self.fee_error = perm, fee_error
        self.keys_seen: list[str] = []
        self.app = web.Application()
        self.app.router.add_get("/api/v5/account/config", self.config)
        self.app.router.add_get("/api/v5/account/trade-fee", self.trade_fee)
        self.app.router.add_get("/api/v5/public/instruments", self.instruments)
        self.app.router.add_get("/api/v5/asset/currencies", self.currencies)

    def _auth(self, req: web.Request) -> None:
        self.keys_seen.append(req.headers.get("OK-ACCESS-KEY", ""))

    async def config(self, req: web.Request) -> web.Response:
        self._auth(req)
        return web.json_response({"code": "0", "msg": "", "data": [{"uid": "1", "perm": self.perm, "level": "Lv1"}]})

    async def trade_fee(self, req: web.Request) -> web.Response:
        self._auth(req)
        if self.fee_error:
            return web.json_response({"code": "50113", "msg": f"Invalid sign for key {KEY}", "data": []}, status=401)
        assert req.query["instType"] == "SPOT"
        # OKX reports fees charged as negative numbers (a rebate is positive): Lv2 rates for this account
        return web.json_response({"code": "0", "msg": "", "data": [
            {"category": "1", "instType": "SPOT", "level": "Lv2", "maker": "-0.00067", "taker": "-0.00085",
             "ts": "1700000000000"}]})

    async def instruments(self, req: web.Request) -> web.Response:
        return web.json_response(INSTRUMENTS)

    async def currencies(self, req: web.Request) -> web.Response:
        self._auth(req)
        return web.json_response({"code": "0", "msg": "", "data": []})


async def serve(fake: FakeOkx) -> AsyncIterator[str]:
    runner = web.AppRunner(fake.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def settings(**fees: Any) -> Settings:
    return from_dict({"symbols": ["BTC/USDT"], "venues": {"okx": {}, "binance": {}}, "fees": fees}, ENV)


async def run_keys(fake: FakeOkx, s: Settings) -> Any:
    model = s.fees.model()
    async for url in serve(fake):
        await apply_keys(s.fees, model, {"okx": ["BTC/USDT"]}, {"okx": {"rest": url}})
    return model


def no_secret_in(text: str) -> None:
    for v in PLANTED:
        assert v not in text


async def test_fees_auto_installs_the_account_rates(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeOkx("read_only")
    model = await run_keys(fake, settings(mode="auto"))
    r = model.rates("okx", "BTC/USDT")
    assert (r.taker, r.maker, r.source) == (Decimal("0.00085"), Decimal("0.00067"), "account")
    assert model.rates("binance", "BTC/USDT").source == "default"  # no keys: defaults kept
    assert set(fake.keys_seen) == {KEY}  # ccxt signed with the key from the environment
    assert "account fees taker=0.00085 maker=0.00067" in caplog.text
    no_secret_in(caplog.text)


async def test_static_mode_checks_permissions_but_keeps_configured_rates(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeOkx("read_only,trade")
    model = await run_keys(fake, settings())
    assert model.rates("okx", "BTC/USDT").source == "default"
    assert "THE API KEY CAN TRADE" in caplog.text and "perm=read_only,trade" in caplog.text
    no_secret_in(caplog.text)


async def test_withdraw_key_refuses_to_start_unless_allowed(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(KeyPermissionError) as e:
        await run_keys(FakeOkx("read_only,trade,withdraw"), settings(mode="auto"))
    assert "withdraw permission" in str(e.value) and "fees.allow_withdraw_keys" in str(e.value)
    no_secret_in(str(e.value))
    model = await run_keys(FakeOkx("read_only,withdraw"), settings(mode="auto", allow_withdraw_keys=True))
    assert model.rates("okx", "BTC/USDT").source == "account"
    assert "AND WITHDRAW" in caplog.text


async def test_fee_fetch_failure_warns_keeps_defaults_and_scrubs_the_key(caplog: pytest.LogCaptureFixture) -> None:
    model = await run_keys(FakeOkx("read_only", fee_error=True), settings(mode="auto"))
    assert model.rates("okx", "BTC/USDT").source == "default"
    assert "okx: fees: auto failed, keeping the configured rates" in caplog.text
    assert "Invalid sign for key ***" in caplog.text  # the venue echoed the key; the log does not
    no_secret_in(caplog.text)


async def test_pipeline_start_refuses_a_withdraw_key(redis_url: str) -> None:
    s = from_dict({"symbols": ["BTC/USDT"], "venues": {"okx": {}}, "redis": {"url": redis_url}}, ENV)
    p = Pipeline(s, {DETECT})
    async for url in serve(FakeOkx("withdraw")):
        p.fee_urls["okx"] = {"rest": url}
        with pytest.raises(KeyPermissionError):
            await p.apply_keys()
    await p.redis.aclose()


def test_check_config_never_prints_a_planted_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pass").write_text(PASS + "\n")
    monkeypatch.setenv("OKX_API_KEY", KEY)
    monkeypatch.setenv("OKX_API_SECRET", SECRET)
    monkeypatch.setenv("OKX_API_PASSPHRASE_FILE", str(tmp_path / "pass"))
    f = tmp_path / "c.yaml"
    f.write_text("symbols: [BTC/USDT]\nfees: auto\nvenues:\n  okx:\n    fees: {symbols: {BTC/USDT: {taker: 0.0009}}}\n")
    assert cli.main(["check-config", "--config", str(f)]) == 0
    out = capsys.readouterr()
    assert "api key: set (env OKX_API_KEY), secret (env OKX_API_SECRET), passphrase (file" in out.out
    assert "fees: mode=auto" in out.out and "BTC/USDT taker=0.0009" in out.out
    no_secret_in(out.out + out.err)
