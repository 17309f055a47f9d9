"""The detector scaling bench in quick mode (counts, never timings), and the hot path's caches and metrics."""

from __future__ import annotations

import dataclasses
import time
from decimal import Decimal

import orjson
import pytest

from scanner.bench.detector import book, measure, settings
from scanner.detect import spread
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
    net = m.registry.get_sample_value("scanner_spread_net_bps",
                                      {"symbol": "S/USDT", "buy_venue": "v0", "sell_venue": "v1"})
    assert net is not None and 27.9 < net < 28.1  # the same less two 10 bp taker fees
    reverse = m.registry.get_sample_value("scanner_spread_net_bps",
                                          {"symbol": "S/USDT", "buy_venue": "v1", "sell_venue": "v0"})
    assert reverse is not None and -72.1 < reverse < -67.9  # both gauges come from the detector at scrape time
    m.spread_net.labels("X/USDT", "v0", "v1").set(-3.5)  # the child API next to the detector's series
    assert m.registry.get_sample_value("scanner_spread_net_bps",
                                       {"symbol": "X/USDT", "buy_venue": "v0", "sell_venue": "v1"}) == -3.5
    with pytest.raises(ValueError):
        m.refusals.labels("only_one_label")
    with pytest.raises(ValueError):
        m.evaluations.inc(-1)


def test_walk_caches_parsed_levels_and_gives_the_same_fill(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spread, "compiled_walk", None)  # the caches are the Decimal loop's (compiled: text)
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


def test_an_open_pair_still_closes_after_the_fee_model_changes() -> None:
    """The pre-screen looks a pair up in the tracker only while it is armed (passed the screen since it last
    fell below it); specs rebuilt after a fee change must stay armed for a pair that is open."""
    m = Metrics()
    now = time.time_ns()
    d = SpreadDetector({"v0": Decimal("0.001"), "v1": Decimal("0.001")},
                       dataclasses.replace(settings(), min_duration_ms=0), m)
    d.update(book(0, "S/USDT", 1, now), now)
    opened = d.update(book(1, "S/USDT", 1, now), now + 1_000)
    assert [o.event for o in opened] == ["open"]
    d.fee_model.set_account("v0", {"S/USDT": (Decimal("0.001"), Decimal("0.001"))})  # same rates, new version
    flat = book(0, "S/USDT", 1, now)  # v1 now quotes what v0 quotes: no spread left
    flat = BookView("v1", "S/USDT", True, flat.bids, flat.asks, 0, now + 2_000, flat.best_bid, flat.best_ask)
    closed = d.update(flat, now + 3_000)
    assert [(o.event, o.buy_venue, o.sell_venue) for o in closed] == [("close", "v0", "v1")]
    assert len(d.tracker) == 0


def test_spread_gauges_follow_the_last_usable_books_and_below_fees_counts_every_evaluation() -> None:
    m = Metrics()
    now = time.time_ns()
    d = SpreadDetector({"v0": Decimal("0.004"), "v1": Decimal("0.004")}, settings(), m)  # 80 bp of fees
    labels = {"symbol": "S/USDT", "buy_venue": "v0", "sell_venue": "v1"}
    d.update(book(0, "S/USDT", 1, now), now)
    assert m.registry.get_sample_value("scanner_spread_net_bps", labels) is None  # one book: no pair yet
    for k in range(3):
        d.update(book(1, "S/USDT", 1, now + k), now + k)
    gross = m.registry.get_sample_value("scanner_spread_gross_bps", labels)
    net = m.registry.get_sample_value("scanner_spread_net_bps", labels)
    assert gross is not None and 47.9 < gross < 48.1
    assert net is not None and -32.2 < net < -31.8  # the 48 bp spread less two 40 bp fees
    # three evaluations of v0 -> v1 with a positive gross spread the fees eat; v1 -> v0 has none
    assert m.registry.get_sample_value("scanner_refusals_total", {"reason": "below_fees", "venue": "v0"}) == 3
    assert m.registry.get_sample_value("scanner_refusals_total", {"reason": "below_fees", "venue": "v1"}) is None
    d.update(BookView("v1", "S/USDT", False, [], [], 0, 0, 0.0, 0.0), now + 10)  # resyncing: not used
    assert m.registry.get_sample_value("scanner_spread_gross_bps", labels) == gross  # its last usable book
