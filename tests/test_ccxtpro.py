"""The generic ccxt.pro adapter (``ccxtpro:<id>`` venues), without a network: config validation,
the float → exact string conversion, real recorded frames through a real ccxt.pro instance and
our conversion, and the collector's reaction to bad books and ccxt errors. The adapter against
the simulators, through the whole pipeline, is in ``test_ccxtpro_sim.py``.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt.pro
import orjson
import pytest

from scanner import cli
from scanner.app import describe
from scanner.book.l2 import L2Book
from scanner.config import ConfigError, from_dict
from scanner.feed.ccxtpro import CcxtProCollector, fmt_float, load_book
from scanner.fees import CCXT_DEFAULT_TAKER
from scanner.sinks.metrics import Metrics


def spot(venue_id: str, symbol: str) -> dict[str, Any]:
    """A minimal ccxt unified spot market dict (what ``set_markets`` needs)."""
    base_, quote = symbol.split("/")
    return {"id": venue_id, "symbol": symbol, "base": base_, "quote": quote, "baseId": base_, "quoteId": quote,
            "type": "spot", "spot": True, "margin": False, "swap": False, "future": False, "option": False,
            "contract": False, "active": True, "precision": {"amount": 1e-8, "price": 0.1},
            "limits": {"amount": {"min": 1e-5}}}

# ----- config ------------------------------------------------------------------------------------
def base(venues: dict[str, Any]) -> dict[str, Any]:
    return {"symbols": ["BTC/USDT"], "venues": venues}


def test_config_reads_a_ccxt_venue_next_to_native_ones() -> None:
    s = from_dict(base({"okx": {}, "ccxtpro:kraken": {"options": {"apiKey": "k3y", "timeout": 5000},
                                                       "depth": 25, "limit": 100}}), {})
    assert set(s.venues) == {"okx"} and set(s.ccxt_venues) == {"ccxtpro:kraken"}
    c = s.ccxt_venues["ccxtpro:kraken"]
    assert (c.exchange_id, c.depth, c.limit, c.symbols) == ("kraken", 25, 100, ("BTC/USDT",))
    assert c.taker_fee == CCXT_DEFAULT_TAKER  # not ccxt's (often stale) market metadata
    assert dict(c.options) == {"apiKey": "k3y", "timeout": 5000}
    assert "k3y" not in repr(c) and "k3y" not in describe(s)
    only = from_dict(base({"ccxtpro:okx": {"taker_fee": "0.0008", "symbols": ["ETH/USDC"]}}), {})
    assert not only.venues and only.ccxt_venues["ccxtpro:okx"].taker_fee == Decimal("0.0008")
    assert only.ccxt_venues["ccxtpro:okx"].limit is None and only.ccxt_venues["ccxtpro:okx"].depth == 20
    assert not from_dict(base({"okx": {}, "ccxtpro:okx": {"enabled": False}}), {}).ccxt_venues


@pytest.mark.parametrize(("venue", "key", "hint"), [
    ({"ccxtpro:okxx": {}}, "venues.ccxtpro:okxx", "ccxtpro:okx"),
    ({"ccxtpro:binanse": {}}, "venues.ccxtpro:binanse", "ccxtpro:binance"),
    ({"ccxtpro:zzzzqqq": {}}, "venues.ccxtpro:zzzzqqq", "ccxt.pro.exchanges"),
    ({"ccxtpro:okx": {"channel": "books"}}, "venues.ccxtpro:okx.channel", "options"),
    ({"ccxtpro:okx": {"options": ["urls"]}}, "venues.ccxtpro:okx.options", "mapping"),
    ({"ccxtpro:okx": {"options": {"url": {"api": {}}}}}, "venues.ccxtpro:okx.options.url", "urls"),
    ({"ccxtpro:okx": {"options": {"urls": "wss://x"}}}, "venues.ccxtpro:okx.options.urls", "mapping"),
    ({"ccxtpro:okx": {"options": {"markets": {}}}}, "venues.ccxtpro:okx.options.markets", "ccxtpro:okx.markets"),
    ({"ccxtpro:okx": {"markets": [{"symbol": "BTC/USDT"}]}}, "venues.ccxtpro:okx.markets[0]", "id"),
    ({"ccxtpro:okx": {"depth": 0}}, "venues.ccxtpro:okx.depth", "between"),
    ({"ccxtpro:okx": {"limit": 2.5}}, "venues.ccxtpro:okx.limit", "whole"),
    ({"ccxtpro:okx": {"taker_fee": 0.5}}, "venues.ccxtpro:okx.taker_fee", "fraction"),
    ({"ccxtpro:okx": {"symbols": ["BTCUSDT"]}}, "venues.ccxtpro:okx.symbols[0]", "unified"),
])
def test_config_errors_name_the_ccxt_key(venue: dict[str, Any], key: str, hint: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_dict(base(venue), {})
    msg = str(err.value)
    assert msg.startswith(key + ":"), msg
    assert hint in msg, msg


def test_check_config_describes_a_ccxt_venue_without_option_values(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("symbols: [BTC/USDT]\nvenues:\n  ccxtpro:okx:\n    options: {apiKey: hunter2, secret: s3cr3t}\n")
    assert cli.main(["check-config", "--config", str(f)]) == 0
    out = capsys.readouterr().out
    assert "venue ccxtpro:okx: ccxt.pro okx (integrity ccxt)" in out
    assert "options=[apiKey, secret]" in out and f"taker_fee={CCXT_DEFAULT_TAKER}" in out
    assert "hunter2" not in out and "s3cr3t" not in out


# ----- conversion --------------------------------------------------------------------------------
@pytest.mark.parametrize(("x", "s"), [(65000.0, "65000"), (65021.7, "65021.7"), (1e-05, "0.00001"),
                                      (1.5e-08, "0.000000015"), (1e16, "10000000000000000"), (0.1, "0.1"),
                                      (3401.05, "3401.05"), (123456789.12345, "123456789.12345")])
def test_fmt_float_is_the_shortest_repr_without_exponent(x: float, s: str) -> None:
    assert fmt_float(x) == s
    assert float(s) == x


class FakeSink:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, bool]] = []
        self.labels: dict[str, str] = {}

    def mark(self, venue: str, symbol: str, book: L2Book) -> None:
        self.events.append((venue, symbol, True))

    def mark_invalid(self, venue: str, symbol: str) -> None:
        self.events.append((venue, symbol, False))

    def set_integrity(self, venue: str, integrity: str) -> None:
        self.labels[venue] = integrity


def test_load_book_converts_floats_to_exact_strings_best_first() -> None:
    book = L2Book()
    ob = {"symbol": "BTC/USDT", "bids": [[65000.1, 0.5], [64999.0, 1e-05], [64990.0, 0.0]],
          "asks": [[65001.25, 2.0], [65002.0, 3.0]], "nonce": 42, "timestamp": 1_795_000_000_123}
    load_book(book, ob, 2, 77)
    assert book.top(5) == ([("65000.1", "0.5"), ("64999", "0.00001")], [("65001.25", "2"), ("65002", "3")])
    assert (book.seq, book.exch_ms, book.recv_ns) == (42, 1_795_000_000_123, 77)
    load_book(book, {"bids": [[1.0, 1.0]], "asks": [], "nonce": None, "timestamp": None}, 5, 78)
    assert (book.seq, book.exch_ms, book.top(5)) == (0, 0, ([("1", "1")], []))
    with pytest.raises(ValueError):
        load_book(book, {"bids": [[float("nan"), 1.0]], "asks": []}, 5, 79)
    with pytest.raises(ValueError):
        load_book(book, {"bids": [[-1.0, 1.0]], "asks": []}, 5, 79)


RECORDED_MARKETS: dict[str, dict[str, Any]] = {
    "okx": spot("BTC-USDT", "BTC/USDT"),
    "hyperliquid": {"id": "0", "symbol": "BTC/USDC:USDC", "base": "BTC", "quote": "USDC", "settle": "USDC",
                    "baseId": "0", "quoteId": "USDC", "baseName": "BTC", "type": "swap", "spot": False,
                    "margin": False, "swap": True, "future": False, "option": False, "contract": True, "linear": True,
                    "inverse": False, "contractSize": 1, "active": True, "precision": {"amount": 1e-5, "price": 1},
                    "limits": {"amount": {"min": None}}, "info": {}},
}


@pytest.mark.parametrize(("venue", "case"), [("okx", 1), ("hyperliquid", 0)])
async def test_recorded_frames_through_ccxt_convert_to_the_venues_exact_levels(recorded_dir: Path, venue: str,
                                                                               case: int) -> None:
    """Real frames (ccxt's own recorded fixtures: OKX spot ``books5``, Hyperliquid ``l2Book``) go
    through a real ccxt.pro instance and then our conversion: every level must come out as the
    venue's own decimal string (Hyperliquid's ``"64093.0"`` reads ``"64093"``: same value)."""
    extract = orjson.loads((recorded_dir / "ccxt" / f"{venue}.watchOrderBook.extract.json").read_bytes())
    rec = extract["methods"]["watchOrderBook"][case]
    market = RECORDED_MARKETS[venue]
    sym = market["symbol"]
    s = from_dict(base({f"ccxtpro:{venue}": {"symbols": [sym], "markets": [market], "depth": 100}}),
                  {}).ccxt_venues[f"ccxtpro:{venue}"]
    sink = FakeSink()
    c = CcxtProCollector(s, sink, Metrics())
    try:
        await c._load_markets()
        client = c.exchange.client(rec["url"])  # never connected: frames are handed over directly
        if venue == "okx":
            client.subscriptions["books5:BTC/USDT"] = True
        checked = 0
        for msg in rec["messages"]:
            c.exchange.handle_message(client, msg)
            if venue == "okx" and "data" in msg:
                d = msg["data"][0]
                want = ([(p, q) for p, q, *_ in d["bids"]], [(p, q) for p, q, *_ in d["asks"]], int(d["ts"]))
            elif venue == "hyperliquid" and msg.get("channel") == "l2Book":
                lv = msg["data"]["levels"]
                want = ([(x["px"], x["sz"]) for x in lv[0]], [(x["px"], x["sz"]) for x in lv[1]], msg["data"]["time"])
            else:
                continue
            c.on_book(c.exchange.orderbooks[sym], 1)
            book = c.books[sym]
            bids, asks = book.top(100)
            assert [(Decimal(p), Decimal(q)) for p, q in bids] == [(Decimal(p), Decimal(q)) for p, q in want[0]]
            assert [(Decimal(p), Decimal(q)) for p, q in asks] == [(Decimal(p), Decimal(q)) for p, q in want[1]]
            if venue == "okx":  # OKX writes no trailing zeros: the strings themselves match
                assert (bids, asks) == (want[0], want[1])
            assert book.exch_ms == want[2] and c.valid[sym]
            checked += 1
        assert checked == 2 and len(sink.events) == 2
    finally:
        await c.exchange.close()


async def test_collector_marks_invalid_on_crossed_bad_or_failing_books() -> None:
    s = from_dict(base({"ccxtpro:okx": {"symbols": ["BTC/USDT", "ETH/USDT"], "markets": [
        spot("BTC-USDT", "BTC/USDT"), spot("ETH-USDT", "ETH/USDT")]}}), {}).ccxt_venues["ccxtpro:okx"]
    sink, metrics = FakeSink(), Metrics()
    c = CcxtProCollector(s, sink, metrics)
    try:
        assert sink.labels == {"ccxtpro:okx": "ccxt"}
        await c._load_markets()  # pre-seeded: set_markets, no REST
        assert c.symbols == ["BTC/USDT", "ETH/USDT"]
        good = {"symbol": "BTC/USDT", "bids": [[100.0, 1.0]], "asks": [[101.0, 1.0]], "nonce": 1, "timestamp": 5}
        c.on_book(good, 10)
        c.on_book({**good, "symbol": "ETH/USDT"}, 10)
        c.on_book({**good, "asks": [[99.0, 1.0]]}, 11)  # crossed
        c.on_book({**good, "bids": [["x", 1.0]]}, 12)  # unparsable
        c.on_book({**good, "symbol": "DOGE/USDT"}, 13)  # not ours
        c.on_book(None, 13)  # not a book at all
        assert sink.events == [("ccxtpro:okx", "BTC/USDT", True), ("ccxtpro:okx", "ETH/USDT", True),
                               ("ccxtpro:okx", "BTC/USDT", False), ("ccxtpro:okx", "BTC/USDT", False)]
        c.on_book(good, 14)
        # a nonce error naming one symbol invalidates that one; a network error every symbol of the watch
        c.on_error(ccxt.InvalidNonce("okx ETH/USDT nonce gap"), ["BTC/USDT", "ETH/USDT"], 0.1)
        assert c.valid == {"BTC/USDT": True, "ETH/USDT": False}
        c.on_error(ccxt.NetworkError("closed 1006"), ["BTC/USDT", "ETH/USDT"], 0.1)
        assert c.valid == {"BTC/USDT": False, "ETH/USDT": False}

        def m(name: str, **labels: str) -> float:
            return metrics.registry.get_sample_value(name, {"venue": "ccxtpro:okx", **labels}) or 0.0
        assert m("scanner_resyncs_total", reason="crossed") == 1
        assert m("scanner_resyncs_total", reason="seq_gap") == 1
        assert m("scanner_resyncs_total", reason="reconnect") == 1  # ETH was already invalid
        assert m("scanner_reconnects_total", reason="network") == 1
        assert m("scanner_parse_errors_total", reason="bad_level") == 1
        assert m("scanner_parse_errors_total", reason="unknown_instrument") == 1
        assert m("scanner_parse_errors_total", reason="malformed") == 1
    finally:
        await c.exchange.close()


async def test_unusable_markets_leave_the_venue_out_without_raising() -> None:
    s = from_dict(base({"ccxtpro:okx": {"markets": [{"id": "BTC-USDT", "symbol": "BTC/USDT"}]}}),
                  {}).ccxt_venues["ccxtpro:okx"]
    metrics = Metrics()
    c = CcxtProCollector(s, FakeSink(), metrics)
    try:
        await asyncio.wait_for(c._main(), 10)  # returns (the venue left out) instead of raising
        assert c.symbols == [] and not c.ready.is_set() and c.watch_loops == 0
        assert metrics.registry.get_sample_value("scanner_venue_errors_total", {"venue": "ccxtpro:okx"}) == 1
    finally:
        await c.exchange.close()
