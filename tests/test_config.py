"""Config loading: defaults, environment overrides, and errors that name the bad key."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from scanner import cli
from scanner.config import ConfigError, from_dict, load
from scanner.venues import VENUES

ROOT = Path(__file__).resolve().parent.parent


def base() -> dict[str, Any]:
    return {"symbols": ["BTC/USDT"], "venues": {"okx": {}, "binance": {}}}


def test_shipped_configs_are_valid() -> None:
    for name in ("default.yaml", "demo.yaml"):
        s = load(ROOT / "configs" / name, env={})
        assert set(s.venues) == set(VENUES)  # every native venue, live and simulated
        assert s.venues["okx"].taker_fee == Decimal("0.001")
    demo = load(ROOT / "configs" / "demo.yaml", env={})
    assert all(v.ws_url.startswith("ws://127.0.0.1:") for v in demo.venues.values())  # never the internet


def test_environment_overrides() -> None:
    s = from_dict(base(), {"SCANNER_REDIS_URL": "redis://10.1.2.3:7000/1", "SCANNER_METRICS_PORT": "9999",
                           "SCANNER_SYMBOLS": "ETH/USDT, SOL/USDT"})
    assert s.redis.url == "redis://10.1.2.3:7000/1"
    assert s.metrics.port == 9999
    assert s.symbols == ("ETH/USDT", "SOL/USDT")
    assert s.venues["okx"].symbols == ("ETH/USDT", "SOL/USDT")


@pytest.mark.parametrize(("patch", "key"), [
    ({"venues": {"okx": {"channel": "trades"}}}, "venues.okx.channel"),
    ({"venues": {"okx": {"chanel": "books"}}}, "venues.okx.chanel"),
    ({"venues": {"kraken2": {}}}, "venues.kraken2"),
    ({"venues": {"okx": {"taker_fee": 0.1}}}, "venues.okx.taker_fee"),
    ({"venues": {"okx": {"ws_url": "http://x"}}}, "venues.okx.ws_url"),
    ({"symbols": ["BTCUSDT"]}, "symbols[0]"),
    ({"symbols": []}, "symbols"),
    ({"detector": {"min_net_bps": "lots"}}, "detector.min_net_bps"),
    ({"detector": {"max_book_age_ms": 0}}, "detector.max_book_age_ms"),
    ({"detector": {"min_duration_ms": -1}}, "detector.min_duration_ms"),
    ({"detector": {"min_duration_ms": 2.5}}, "detector.min_duration_ms"),
    ({"redis": {"history_maxlen": 1}}, "redis.history_maxlen"),
    ({"redis": {"history": ""}}, "redis.history"),
    ({"redis": {"url": "localhost:6379"}}, "redis.url"),
    ({"metrics": {"port": 70000}}, "metrics.port"),
    ({"frobnicate": 1}, "frobnicate"),
])
def test_errors_name_the_bad_key(patch: dict[str, Any], key: str) -> None:
    raw = base()
    for k, v in patch.items():
        raw[k] = v
    with pytest.raises(ConfigError) as err:
        from_dict(raw, {})
    assert str(err.value).startswith(key + ":"), str(err.value)


def test_check_config_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("symbols: [BTC/USDT]\nvenues: {okx: {}}\nredis: {url: 'redis://u:hunter2@h:6379/0'}\n")
    assert cli.main(["check-config", "--config", str(good)]) == 0
    out = capsys.readouterr().out
    assert "config" in out and "venue okx" in out
    assert "hunter2" not in out  # the Redis password is never echoed
    bad = tmp_path / "bad.yaml"
    bad.write_text("symbols: [BTC/USDT]\nvenues: {okx: {channel: nope}}\n")
    assert cli.main(["check-config", "--config", str(bad)]) == 2
    assert "venues.okx.channel" in capsys.readouterr().err
    assert cli.main(["check-config", "--config", str(tmp_path / "missing.yaml")]) == 2
