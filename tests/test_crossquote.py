"""Quotes: books of different quotes are never compared unless ``detector.quote_groups`` joins them;
then the sale proceeds are converted back on the sell venue's live stable-pair book, walking its
levels and paying its taker fee (scanner/detect/crossquote.py). Figures are worked by hand."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from scanner.config import ConfigError, DetectorSettings, from_dict
from scanner.detect.crossquote import convert, top_rate
from scanner.detect.detector import SpreadDetector
from scanner.model import Opportunity
from scanner.sinks.metrics import Metrics
from scanner.store.schema import BookView

FEE = Decimal("0.001")
NOW = time.time_ns()
BUY_ASKS = [("100", "1"), ("100.5", "1")]  # BTC/USDC on okx
SELL_BIDS = [("101.5", "1"), ("101", "1")]  # BTC/USDT on binance


def view(venue: str, symbol: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> BookView:
    return BookView(venue, symbol, True, bids, asks, NOW // 1_000_000, NOW, float(bids[0][0]), float(asks[0][0]))


def detector(groups: tuple[tuple[str, ...], ...] = ()) -> tuple[SpreadDetector, Metrics]:
    m = Metrics()
    s = DetectorSettings(min_net_bps=Decimal(10), min_profit_quote=Decimal(0), max_book_age_ms=1000,
                         quote_groups=groups)
    return SpreadDetector({"okx": FEE, "binance": FEE}, s, m), m


def sample(m: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    return m.registry.get_sample_value(name, labels or {}) or 0.0


def feed(d: SpreadDetector, conv_asks: list[tuple[str, str]]) -> list[Opportunity]:
    out = d.update(view("binance", "USDC/USDT", [("0.9999", "1000")], conv_asks), NOW)
    out += d.update(view("okx", "BTC/USDC", [("99", "1")], BUY_ASKS), NOW)
    out += d.update(view("binance", "BTC/USDT", SELL_BIDS, [("102", "1")]), NOW)
    return out


def test_different_quotes_are_never_compared_without_quote_groups() -> None:
    d, m = detector()
    # 150 bps apart across quotes: a "spread" only if USDC and USDT are silently taken as equal
    assert d.update(view("okx", "BTC/USDC", [("99", "1")], BUY_ASKS), NOW) == []
    assert d.update(view("binance", "BTC/USDT", SELL_BIDS, [("102", "1")]), NOW) == []
    assert sample(m, "scanner_evaluations_total") == 0
    assert sample(m, "scanner_refusals_total", {"reason": "no_conversion_book", "venue": "binance"}) == 0


def test_convert_walks_the_stable_book_on_either_side() -> None:
    # USDT → USDC on USDC/USDT: buy USDC at the asks. 50 USDC cost 50.005 USDT, the other 49.995 USDT buy
    # 49.995 / 1.008 USDC; the fee is taken from what is received
    c = convert(Decimal(100), "USDC/USDT", "USDT", [("0.9999", "1000")], [("1.0001", "50"), ("1.0080", "1000")], FEE)
    assert c is not None and (c.side, c.levels) == ("buy", 2)
    assert c.gross_out == 50 + Decimal("49.995") / Decimal("1.008")
    assert c.amount_out == c.gross_out * Decimal("0.999")
    # USDT → USDC on USDT/USDC: sell USDT into the bids. 60 * 0.9998 + 40 * 0.999 = 99.948, less 0.1 %
    c = convert(Decimal(100), "USDT/USDC", "USDT", [("0.9998", "60"), ("0.9990", "100")], [("1.0002", "9")], FEE)
    assert c is not None and (c.side, c.levels, c.gross_out) == ("sell", 2, Decimal("99.948"))
    assert c.amount_out == Decimal("99.848052") and c.vwap == Decimal("0.99948")
    # not enough depth for the whole amount: no conversion
    assert convert(Decimal(100), "USDT/USDC", "USDT", [("0.9998", "60")], [("1.0002", "9")], FEE) is None
    assert top_rate("USDC/USDT", "USDT", [], [("1.0001", "1")], FEE) == Decimal("0.999") / Decimal("1.0001")


def test_a_cross_quote_conversion_reported_with_its_exact_figures() -> None:
    d, m = detector((("USDT", "USDC"),))
    opps = feed(d, [("1.0001", "1000")])
    # walk at the stable book's best rate 0.999 / 1.0001: both BTC levels pass 10 bps, size 2, cost 200.5 USDC
    # (200.7005 with the fee). Proceeds 101.5 + 101 = 202.5 USDT, 202.2975 after the sell fee, converted
    # at 1.0001 → 202.2975 / 1.0001 USDC, 0.1 % conversion fee: 202.074995000499950004999500 USDC.
    # Profit 202.0749950004999500049995001 - 200.7005 = 1.3744950005 USDC, 68.4849 bps.
    assert len(opps) == 1
    o = opps[0]
    assert (o.id, o.symbol, o.buy_symbol, o.sell_symbol) == (
        "BTC/USDC>BTC/USDT|okx|binance", "BTC/USDC", "BTC/USDC", "BTC/USDT")
    assert (o.size, o.buy_vwap, o.profit_quote, o.net_bps) == ("2", "100.25", "1.374495", "68.4849")
    assert (o.conversion_symbol, o.conversion_side, o.conversion_levels) == ("USDC/USDT", "buy", 1)
    assert (o.conversion_in, o.conversion_out, o.conversion_vwap) == ("202.2975", "202.0749950005", "1.0001")
    body = o.to_dict()
    assert body["conversion"] == {"symbol": "USDC/USDT", "venue": "binance", "side": "buy", "amount_in": "202.2975",
                                  "amount_out": "202.0749950005", "vwap": "1.0001", "fee": "0.001", "levels": 1}
    assert sample(m, "scanner_refusals_total", {"reason": "below_fees", "venue": "okx"}) == 0


def test_conversion_spread_and_fee_flip_the_result() -> None:
    d, m = detector((("USDT", "USDC"),))
    # same BTC books; the stable book's best level holds only 50 USDC, the rest costs 1.0080:
    # 50 USDC for 50.005 USDT, 152.2925 / 1.008 = 151.0838293650... more; 201.0838293650... less 0.1 %
    # = 200.8827455357 USDC for 200.7005 spent: 9.08 bps < 10. The best level alone said 68 bps.
    assert feed(d, [("1.0001", "50"), ("1.0080", "1000")]) == []
    assert sample(m, "scanner_refusals_total", {"reason": "below_fees", "venue": "okx"}) == 1


def test_no_stable_book_on_the_sell_venue_refuses_the_cross_pair() -> None:
    d, m = detector((("USDT", "USDC"),))
    # a stable book on the buy venue does not count: the rule converts on the sell venue
    d.update(view("okx", "USDC/USDT", [("0.9999", "1000")], [("1.0001", "1000")]), NOW)
    assert d.update(view("okx", "BTC/USDC", [("99", "1")], BUY_ASKS), NOW) == []
    assert d.update(view("binance", "BTC/USDT", SELL_BIDS, [("102", "1")]), NOW) == []
    assert sample(m, "scanner_refusals_total", {"reason": "no_conversion_book", "venue": "binance"}) >= 1
    # the stable book arrives on binance: the pair is re-checked at once and reported
    opps = d.update(view("binance", "USDT/USDC", [("0.9999", "1000")], [("1.0001", "1000")]), NOW)
    assert [o.id for o in opps] == ["BTC/USDC>BTC/USDT|okx|binance"]
    assert opps[0].conversion_side == "sell"


BASE_CFG = {"symbols": ["BTC/USDT", "BTC/USDC", "USDC/USDT"], "venues": {"okx": {}, "binance": {}}}


def cfg(groups: object, symbols: list[str] | None = None) -> DetectorSettings:
    raw = {**BASE_CFG, "detector": {"quote_groups": groups}}
    if symbols is not None:
        raw["symbols"] = symbols
    return from_dict(raw, {}).detector


def test_quote_groups_config() -> None:
    assert cfg([["usdt", "USDC"]]).quote_groups == (("USDT", "USDC"),)
    assert from_dict(BASE_CFG, {}).detector.quote_groups == ()
    bad: list[tuple[object, str]] = [
        ("USDT", "must be a list"), ([["USDT"]], "at least two"), ([["USDT", "XYZ"]], "'XYZ' is not a known quote"),
        ([["USDT", "USDC"], ["USDC", "USD"]], "USDC is already in detector.quote_groups[0]"),
        ([["USDT", "USDT"]], "lists USDT twice"),
    ]
    for groups, msg in bad:
        with pytest.raises(ConfigError, match=r"^detector\.quote_groups") as exc:
            cfg(groups)
        assert msg in str(exc.value)
    with pytest.raises(ConfigError, match=r"^detector\.quote_groups\[0\]: .*add USDC/USDT or USDT/USDC to symbols"):
        cfg([["USDT", "USDC"]], ["BTC/USDT", "BTC/USDC"])
