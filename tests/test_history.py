"""``scanner history`` on a Redis holding a few closed opportunities, and the demo's event printer."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import redis

from scanner import cli
from scanner.demo import format_opportunity


def event(symbol: str, buy: str, sell: str, duration_ms: float, peak_profit: str, kind: str = "close") -> bytes:
    return orjson.dumps({"id": f"{symbol}|{buy}|{sell}", "event": kind, "symbol": symbol, "buy_venue": buy,
                         "sell_venue": sell, "duration_ms": duration_ms, "profit_quote": "0.1",
                         "peak_profit_quote": peak_profit})


def test_history_prints_top_symbols_and_pairs(redis_url: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    r = redis.Redis.from_url(redis_url)
    try:
        for data in (event("BTC/USDT", "okx", "binance", 1000, "10.5"),
                     event("BTC/USDT", "okx", "binance", 3000, "2"),
                     event("BTC/USDT", "binance", "okx", 2000, "1.25"),
                     event("ETH/USDT", "okx", "binance", 500, "0.75"),
                     event("ETH/USDT", "okx", "binance", 9999, "1000", kind="open")):  # not a close: ignored
            r.xadd("closed_opps", {"data": data})
    finally:
        r.close()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"symbols: [BTC/USDT]\nvenues: {{okx: {{}}}}\nredis: {{url: '{redis_url}', history: closed_opps}}\n")
    assert cli.main(["history", "--config", str(cfg), "--top", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # durations 0.5, 1, 2, 3 s → median 1.5 s; profit 10.5 + 2 + 1.25 + 0.75
    assert lines[0] == ("4 closed opportunities in closed_opps: median duration 1.500 s, "
                        "total theoretical profit 14.5000 USDT")
    symbol_rows = lines[lines.index(next(x for x in lines if x.startswith("symbol"))) + 1:]
    assert symbol_rows[0].split() == ["BTC/USDT", "3", "2.000", "13.7500", "USDT"]
    assert symbol_rows[1] == ""  # --top 1: ETH/USDT left out
    pair = lines[-1].split()
    assert pair == ["okx", "→", "binance", "3", "1.000", "13.2500", "USDT"]


def test_history_with_nothing_closed(redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"symbols: [BTC/USDT]\nvenues: {{okx: {{}}}}\nredis: {{url: '{redis_url}'}}\n")
    assert cli.main(["history", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out.strip() == "no closed opportunities in opportunity_history"


def test_demo_printer_shows_the_event_kind() -> None:
    base = {"symbol": "BTC/USDT", "buy_venue": "okx", "sell_venue": "binance", "buy_vwap": "65000",
            "sell_vwap": "65180", "size": "0.5", "net_bps": "7.65", "profit_quote": "24.91",
            "buy_book_age_ms": 3.0, "sell_book_age_ms": 4.0}
    assert format_opportunity({**base, "event": "open"}).startswith("OPEN   BTC/USDT buy okx 65,000.000000")
    close = format_opportunity({**base, "event": "close", "duration_ms": 1234.0, "peak_net_bps": "18.3"})
    assert close.startswith("CLOSE  BTC/USDT") and close.endswith("lasted 1.2 s, peak +18.30 bps")
