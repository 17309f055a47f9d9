"""The detector scaling bench in quick mode (counts, never timings), and the hot path's caches and metrics."""

from __future__ import annotations

import time
from decimal import Decimal

import orjson
import pytest

from scanner.bench.detector import book, measure, settings
from scanner.detect.detector import SpreadDetector
from scanner.detect.spread import walk
from scanner.sinks.metrics import Metrics
from scanner.store.schema import BookView, decode_book


@pytest.mark.parametrize("venues", [2, 5, 10])
@pytest.mark.parametrize("depth", [1, 5, 20])
def test_bench_evaluates_only_pairs_of_the_updated_venue_and_walks_the_intended_depth(venues: int,
                                                                                      depth: int) -> None:
    row = measure(venues, depth, symbols=3, updates=30, runs=1)
    assert row.evals_per_update == 2 * (venues - 1)  # linear in venues: only pairs with the updated venue
    assert (row.levels_buy, row.levels_sell) == (depth, depth)  # measure() raises unless every open walked these
    assert row.opened == 3 * venues * (venues - 1) // 2  # one opportunity per (symbol, venue pair), opened once


def test_metrics_from_the_hot_path_render_like_prometheus_client() -> None:
    m = Metrics()
    now = time.time_ns()
    d = SpreadDetector({"v0": Decimal("0.001"), "v1": Decimal("0.001")}, settings(), m)
    d.update(book(0, "S/USDT", 1, now), now)
    d.update(book(1, "S/USDT", 1, now), now)
    d.update(BookView("v2", "S/USDT", True, [], [], 0, now, 0.0, 0.0), now)  # venue without fees
    m.refusals.labels("bad_payload", "").inc()  # the runner's path: prometheus_client's child API
    text = m.render().decode()
    assert "# TYPE scanner_evaluations_total counter\nscanner_evaluations_total 2.0\n" in text
    assert 'scanner_refusals_total{reason="unknown_venue",venue="v2"} 1.0' in text
    assert 'scanner_refusals_total{reason="bad_payload",venue=""} 1.0' in text
    assert "# TYPE scanner_spread_net_bps gauge" in text and "_created" not in text
    gross = m.registry.get_sample_value("scanner_spread_gross_bps",
                                        {"symbol": "S/USDT", "buy_venue": "v0", "sell_venue": "v1"})
    assert gross is not None and 47.9 < gross < 48.1  # v1 is 50 bps dearer, less two 1 bp half-spreads
    m.spread_net.labels("S/USDT", "v0", "v1").set(-3.5)
    assert m.registry.get_sample_value("scanner_spread_net_bps",
                                       {"symbol": "S/USDT", "buy_venue": "v0", "sell_venue": "v1"}) == -3.5
    with pytest.raises(ValueError):
        m.refusals.labels("only_one_label")
    with pytest.raises(ValueError):
        m.evaluations.inc(-1)


def test_walk_caches_parsed_levels_and_gives_the_same_fill() -> None:
    asks = [("100", "1"), ("100.5", "2"), ("101", "5")]
    bids = [("101.2", "1.5"), ("101", "1"), ("100.6", "10")]
    fee = Decimal("0.001")
    ca: list[tuple[Decimal, Decimal]] = []
    cb: list[tuple[Decimal, Decimal]] = []
    first = walk(asks, bids, fee, fee, Decimal(10), None, False, ca, cb)
    assert ca == [(Decimal("100"), Decimal("1")), (Decimal("100.5"), Decimal("2"))]  # as far as the walk read
    assert len(cb) == 3
    again = walk(asks, bids, fee, fee, Decimal(10), None, False, ca, cb)
    base = walk(asks, bids, fee, fee, Decimal(10), None, True, ca, cb)
    assert first == again == walk(asks, bids, fee, fee, Decimal(10))
    assert base == walk(asks, bids, fee, fee, Decimal(10), buy_fee_in_base=True)


def test_notional_bound_of_the_ask_side() -> None:
    now = time.time_ns()
    v = BookView("a", "S/USDT", True, [("99", "1")], [("100", "2"), ("101", "1")], 0, now, 99.0, 100.0)
    assert v.asks_notional_bound() == 301.0
    for bad in (("0", "1"), ("nan", "1"), ("100", "-1"), ("x", "1")):
        assert BookView("a", "S/USDT", True, [], [bad], 0, now, 0.0, 0.0).asks_notional_bound() == float("inf")


def test_decode_book_keeps_strings_and_stringifies_other_scalars() -> None:
    payload = {"venue": "okx", "symbol": "BTC/USDT", "valid": True, "bids": [["99.5", "1"], [99.4, 2]],
               "asks": [["100.5", "3"]], "seq": 1, "exch_ms": 5, "recv_ns": 6, "pub_ns": 7}
    v = decode_book(orjson.dumps(payload))
    assert v.bids == [("99.5", "1"), ("99.4", "2")] and v.asks == [("100.5", "3")]
    assert (v.best_bid, v.best_ask, v.integrity) == (99.5, 100.5, "native")
    for bad in ({**payload, "bids": [["1", "2", "3"]]}, {**payload, "asks": None}, {**payload, "bids": [["x", "1"]]}):
        with pytest.raises(ValueError):
            decode_book(orjson.dumps(bad))
