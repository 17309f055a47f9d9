"""``scanner markets show`` over the shipped snapshots, and ``scanner markets refresh`` against the
simulators' real instruments endpoints (and against a venue that cannot be reached)."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest
import yaml

from scanner import markets_cli
from scanner.cli import build_parser
from scanner.sim.server import SimCluster
from scanner.venues import VENUES

ROOT = Path(__file__).resolve().parent.parent


def parse(argv: list[str]) -> argparse.Namespace:
    return build_parser("markets").parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_every_native_venue_ships_a_snapshot_that_parses() -> None:
    maps = markets_cli.load_cached(ROOT / "configs" / "markets")
    assert sorted(maps) == sorted(VENUES)
    for name, mm in maps.items():
        assert len(mm) > 0, name
        for m in mm.by_symbol.values():
            assert m.venue == name and m.symbol.count("/") == 1


def test_show_lists_venues_and_native_ids(capsys: pytest.CaptureFixture[str]) -> None:
    rc = markets_cli.main(parse(["markets", "show", "BTC/USDT", "--cache-dir", str(ROOT / "configs" / "markets")]))
    out = capsys.readouterr().out
    assert rc == 0
    lines = {line.split()[0]: line.split()[1] for line in out.splitlines() if not line.startswith("not listed")}
    assert lines["okx"] == "BTC-USDT" and lines["binance"] == "BTCUSDT"


def test_show_unknown_symbol_and_venue(capsys: pytest.CaptureFixture[str]) -> None:
    cache = str(ROOT / "configs" / "markets")
    assert markets_cli.main(parse(["markets", "show", "NOPE/USDT", "--cache-dir", cache])) == 1
    assert "not listed" in capsys.readouterr().out
    assert markets_cli.main(parse(["markets", "show", "BTC/USDT", "--venue", "nosuch", "--cache-dir", cache])) == 2
    assert "unknown venue" in capsys.readouterr().err


async def test_refresh_downloads_from_the_venues_and_keeps_what_failed(tmp_path: Path) -> None:
    cache = tmp_path / "markets"
    cache.mkdir()
    (cache / "binance.json").write_bytes(b'{"symbols": []}')  # stale copy, must survive the failure below
    dead = free_port()
    async with SimCluster(venues=["okx", "binance"], symbols=["BTC/USDT"], tick_ms=0) as sims:
        cfg = tmp_path / "cfg.yaml"
        cfg.write_text(yaml.safe_dump({
            "symbols": ["BTC/USDT"],
            "venues": {"okx": {"rest_url": sims.rest_url("okx")},
                       "binance": {"rest_url": f"http://127.0.0.1:{dead}"}},
        }))
        rc = await markets_cli.refresh(parse(["markets", "refresh", "--venues", "okx,binance", "--config", str(cfg),
                                              "--cache-dir", str(cache)]))
        served = sims.okx.raw_markets
        paths = [r.path for r in sims.okx.requests]
    assert rc == 1  # binance could not be reached
    assert (cache / "okx.json").read_bytes() == served
    assert (cache / "binance.json").read_bytes() == b'{"symbols": []}'
    assert "/api/v5/public/instruments?instType=SPOT" in paths


def test_shipped_snapshots_found_from_a_checkout_or_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scanner import markets

    assert markets.shipped_markets_dir() == ROOT / "configs" / "markets"  # source checkout
    (tmp_path / "configs" / "markets").mkdir(parents=True)
    monkeypatch.setattr(markets, "__file__", str(tmp_path / "site-packages" / "scanner" / "markets.py"))
    monkeypatch.chdir(tmp_path)  # an installed package run from its app directory (the container's /app)
    assert markets.shipped_markets_dir() == tmp_path / "configs" / "markets"
