"""Detector math against hand-computed cases (Decimal arithmetic worked out in the comments)."""

from __future__ import annotations

import random
import time
from decimal import Decimal

from scanner.config import DetectorSettings
from scanner.detect.detector import SpreadDetector
from scanner.detect.spread import fmt, walk
from scanner.sinks.metrics import Metrics
from scanner.store.schema import BookView

FEE = Decimal("0.001")
ASKS = [("100", "1"), ("100.5", "2"), ("101", "5")]
BIDS = [("101.2", "1.5"), ("101", "1"), ("100.6", "10")]


def view(venue: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]], *, valid: bool = True,
         age_ms: float = 0.0, now_ns: int | None = None) -> BookView:
    now_ns = time.time_ns() if now_ns is None else now_ns
    recv = now_ns - int(age_ms * 1e6)
    return BookView(venue, "BTC/USDT", valid, bids, asks, recv // 1_000_000, recv,
                    float(bids[0][0]) if bids else 0.0, float(asks[0][0]) if asks else 0.0)


def test_single_level() -> None:
    # cost 100 * 1.001 = 100.1; proceeds 101 * 0.999 = 100.899; profit 0.799
    f = walk([("100", "1")], [("101", "2")], FEE, FEE, Decimal(0))
    assert f is not None
    assert (f.size, f.buy_vwap, f.sell_vwap) == (Decimal(1), Decimal(100), Decimal(101))
    assert f.gross_bps == Decimal(100)
    assert f.profit == Decimal("0.799")
    assert f.net_bps.quantize(Decimal("0.0001")) == Decimal("79.8202")  # 0.799 / 100.1 * 1e4


def test_multi_level_walk_stops_where_marginal_edge_falls_below_threshold() -> None:
    # marginal edges: 1@100 vs 101.2 → 99.78 bps; 0.5@100.5 vs 101.2 → 49.53; 1@100.5 vs 101 → 29.67;
    # then 100.5 vs 100.6 → negative: stop. size 2.5, cost 250.75, proceeds 252.8
    f = walk(ASKS, BIDS, FEE, FEE, Decimal(10))
    assert f is not None
    assert f.size == Decimal("2.5")
    assert f.buy_vwap == Decimal("100.3") and f.sell_vwap == Decimal("101.12")
    assert f.net_cost == Decimal("251.00075") and f.net_proceeds == Decimal("252.5472")
    assert f.profit == Decimal("1.54645")
    assert (f.levels_buy, f.levels_sell) == (2, 2)
    # a 40 bps threshold stops before the third step (29.67 bps): 1.5 taken
    g = walk(ASKS, BIDS, FEE, FEE, Decimal(40))
    assert g is not None and g.size == Decimal("1.5")
    assert g.cost == Decimal("150.25") and g.proceeds == Decimal("151.8")


def test_fees_turn_a_positive_gross_spread_negative() -> None:
    # gross 15 bps; 100.15 * 0.999 = 100.04985 < 100.1: nothing survives the fees
    assert walk([("100", "1")], [("100.15", "1")], FEE, FEE, Decimal(0)) is None
    assert walk([("100", "1")], [("100.15", "1")], Decimal(0), Decimal(0), Decimal(0)) is not None


def test_notional_cap() -> None:
    f = walk(ASKS, BIDS, FEE, FEE, Decimal(10), max_notional=Decimal("120"))
    assert f is not None
    # 1 @ 100 = 100 spent, then (120 - 100) / 100.5 more at 100.5
    assert f.cost == Decimal("120")
    assert f.size == 1 + Decimal(20) / Decimal("100.5")


def detector(**kw: object) -> tuple[SpreadDetector, Metrics]:
    m = Metrics()
    settings = DetectorSettings(**{"min_net_bps": Decimal(10), "min_profit_quote": Decimal("0.5"),
                                   "max_book_age_ms": 1000, "emit_interval_ms": 1000, **kw})  # type: ignore[arg-type]
    return SpreadDetector({"okx": FEE, "binance": FEE}, settings, m), m


def refusals(m: Metrics, reason: str, venue: str) -> float:
    v = m.registry.get_sample_value("scanner_refusals_total", {"reason": reason, "venue": venue})
    return v or 0.0


def test_detector_reports_both_directions_correctly() -> None:
    d, m = detector()
    now = time.time_ns()
    assert d.update(view("okx", [("99", "1")], ASKS, now_ns=now), now) == []
    opps = d.update(view("binance", BIDS, [("102", "1")], now_ns=now), now)
    assert len(opps) == 1
    o = opps[0]
    assert (o.buy_venue, o.sell_venue, o.size, o.buy_vwap, o.sell_vwap) == ("okx", "binance", "2.5", "100.3", "101.12")
    assert o.profit_quote == "1.54645" and o.net_bps == "61.6114"  # 1.54645 / 251.00075 * 1e4
    assert o.gross_bps == "81.7547"
    # the reverse direction (buy binance at 102, sell okx at 99) is evaluated too and is deeply negative
    reverse = m.registry.get_sample_value("scanner_spread_net_bps",
                                          {"symbol": "BTC/USDT", "buy_venue": "binance", "sell_venue": "okx"})
    assert reverse is not None and reverse < -200


def test_detector_throttles_an_open_opportunity_and_reopens_after_close() -> None:
    d, _ = detector(max_book_age_ms=5000)
    now = time.time_ns()
    d.update(view("okx", [("99", "1")], ASKS, now_ns=now), now)
    [opened] = d.update(view("binance", BIDS, [("102", "1")], now_ns=now), now)
    assert (opened.event, opened.id, opened.opened_ns) == ("open", "BTC/USDT|okx|binance", now)
    assert d.update(view("binance", BIDS, [("102", "1")], now_ns=now + 1000), now + 1000) == []  # within interval
    later = now + 1_100_000_000
    [update] = d.update(view("binance", BIDS, [("102", "1")], now_ns=later), later)
    assert (update.event, update.id, update.opened_ns) == ("update", opened.id, now)
    closed = later + 1
    [close] = d.update(view("binance", [("99.5", "1")], [("102", "1")], now_ns=closed), closed)
    assert (close.event, close.id, close.duration_ms) == ("close", opened.id, (closed - now) / 1e6)
    assert (close.peak_net_bps, close.peak_size, close.peak_profit_quote) == ("61.6114", "2.5", "1.54645")
    again = closed + 1
    [reopened] = d.update(view("binance", BIDS, [("102", "1")], now_ns=again), again)
    assert (reopened.event, reopened.opened_ns) == ("open", again)


def test_invalid_book_closes_the_open_opportunity() -> None:
    d, _ = detector(max_book_age_ms=5000)
    now = time.time_ns()
    d.update(view("okx", [("99", "1")], ASKS, now_ns=now), now)
    [opened] = d.update(view("binance", BIDS, [("102", "1")], now_ns=now), now)
    later = now + 2_000_000
    [close] = d.update(view("okx", [], [], valid=False, now_ns=later), later)
    assert (close.event, close.id, close.duration_ms, close.size) == ("close", opened.id, 2.0, "2.5")


def test_a_silent_book_going_stale_closes_on_poll() -> None:
    d, _ = detector(max_book_age_ms=1000)
    now = time.time_ns()
    d.update(view("okx", [("99", "1")], ASKS, now_ns=now), now)
    [opened] = d.update(view("binance", BIDS, [("102", "1")], now_ns=now), now)
    assert d.poll(now + 500_000_000) == []  # both books still fresh
    [close] = d.poll(now + 1_500_000_000)
    assert (close.event, close.id, close.duration_ms) == ("close", opened.id, 1500.0)
    assert d.poll(now + 1_700_000_000) == [] and len(d.tracker) == 0


def test_flicker_shorter_than_min_duration_is_counted_too_short() -> None:
    d, m = detector(min_duration_ms=300)
    now = time.time_ns()
    d.update(view("okx", [("99", "1")], ASKS, now_ns=now), now)
    assert d.update(view("binance", BIDS, [("102", "1")], now_ns=now), now) == []  # pending
    gone = now + 100_000_000
    assert d.update(view("binance", [("99.5", "1")], [("102", "1")], now_ns=gone), gone) == []
    assert refusals(m, "too_short", "okx") == 1
    # a candidate that persists opens on the evaluation after min_duration_ms
    t = gone + 1
    assert d.update(view("binance", BIDS, [("102", "1")], now_ns=t), t) == []
    t2 = t + 300_000_000
    [opened] = d.update(view("binance", BIDS, [("102", "1")], now_ns=t2), t2)
    assert (opened.event, opened.opened_ns, opened.duration_ms) == ("open", t, 300.0)
    assert refusals(m, "too_short", "okx") == 1


def test_below_fees_counted_only_for_a_positive_gross_spread() -> None:
    d, m = detector()
    now = time.time_ns()
    # okx ask 100, binance bid 100.15: gross +15 bps, net (100.04985 - 100.1) / 100.1 = -5.01 bps
    d.update(view("okx", [("99", "1")], [("100", "1")], now_ns=now), now)
    assert d.update(view("binance", [("100.15", "1")], [("102", "1")], now_ns=now), now) == []
    assert refusals(m, "below_fees", "okx") == 1
    # the reverse direction (buy binance at 102, sell okx at 99) has a negative gross: not a candidate
    assert refusals(m, "below_fees", "binance") == 0


def test_insufficient_depth_when_the_top_passes_but_the_walk_finds_nothing() -> None:
    # threshold 10 bps; top of book: 100 vs 100.3004 → net (100.2000996 - 100.1) / 100.1 = 9.99996 bps
    # passes the float pre-screen (with its 0.01 slack) but the exact walk needs 10: no fill
    d, m = detector()
    now = time.time_ns()
    d.update(view("okx", [("99", "1")], [("100", "1")], now_ns=now), now)
    assert d.update(view("binance", [("100.3004", "1")], [("102", "1")], now_ns=now), now) == []
    assert refusals(m, "insufficient_depth", "okx") == 1
    assert refusals(m, "below_fees", "okx") == 0


def test_stale_invalid_crossed_books_are_refused() -> None:
    d, m = detector()
    now = time.time_ns()
    d.update(view("okx", [("99", "1")], ASKS, now_ns=now), now)
    assert d.update(view("binance", BIDS, [("102", "1")], age_ms=1500, now_ns=now), now) == []
    assert refusals(m, "stale_book", "binance") == 1
    assert d.update(view("binance", BIDS, [("102", "1")], valid=False, now_ns=now), now) == []
    assert refusals(m, "invalid_book", "binance") == 1
    assert d.update(view("binance", [("103", "1")], [("102", "1")], now_ns=now), now) == []
    assert refusals(m, "crossed_book", "binance") == 1
    # the okx book ages past the limit: a fresh binance book no longer pairs with it
    later = now + 1_500_000_000
    assert d.update(view("binance", BIDS, [("102", "1")], now_ns=later), later) == []
    assert refusals(m, "stale_book", "okx") == 1


def test_stale_by_exchange_timestamp_even_if_received_just_now() -> None:
    d, m = detector()
    now = time.time_ns()
    d.update(view("okx", [("99", "1")], ASKS, now_ns=now), now)
    v = view("binance", BIDS, [("102", "1")], now_ns=now)
    v.exch_ms = now // 1_000_000 - 5000  # the venue stamped it 5 s ago
    assert d.update(v, now) == []
    assert refusals(m, "stale_book", "binance") == 1


def test_profit_below_minimum_is_refused() -> None:
    d, m = detector(min_profit_quote=Decimal(2))  # the walk yields 1.54645
    now = time.time_ns()
    d.update(view("okx", [("99", "1")], ASKS, now_ns=now), now)
    assert d.update(view("binance", BIDS, [("102", "1")], now_ns=now), now) == []
    assert refusals(m, "below_min_profit", "okx") == 1


def test_account_rates_fetched_later_reach_the_cached_pairs() -> None:
    # okx ask 100, binance bid 100.15 (10 each): +15 bps gross; at 0.1 % a side it is below fees, at 0.01 % a
    # side it nets 13 bps and 1.3 quote: it qualifies
    d, m = detector()
    now = time.time_ns()
    d.update(view("okx", [("99", "10")], [("100", "10")], now_ns=now), now)
    assert d.update(view("binance", [("100.15", "10")], [("102", "10")], now_ns=now), now) == []
    assert refusals(m, "below_fees", "okx") == 1
    low = (Decimal("0.0001"), Decimal("0.0001"))
    d.fee_model.set_account("okx", {"BTC/USDT": low})
    d.fee_model.set_account("binance", {"BTC/USDT": low})
    opps = d.update(view("binance", [("100.15", "10")], [("102", "10")], now_ns=now), now)
    assert [(o.event, o.buy_venue, o.sell_venue, o.buy_fee) for o in opps] == [("open", "okx", "binance", "0.0001")]
    assert refusals(m, "below_fees", "okx") == 1


def test_a_book_turns_stale_between_updates_without_being_sent_again() -> None:
    # the usability horizon is cached per book: it must still expire with the clock
    d, m = detector()
    now = time.time_ns()
    d.update(view("okx", [("99", "1")], ASKS, now_ns=now), now)
    d.update(view("binance", BIDS, [("102", "1")], now_ns=now), now)
    assert refusals(m, "stale_book", "okx") == 0
    later = now + 1_000_000_001 + 999_999_999  # past max_book_age_ms for the okx book
    d.update(view("binance", BIDS, [("102", "1")], now_ns=later), later)
    assert refusals(m, "stale_book", "okx") == 1


def test_early_hands_over_each_event_as_it_is_made() -> None:
    d, _m = detector()
    got: list[list[str]] = []
    d.early = lambda opps: got.append([f"{o.event} {o.buy_venue}>{o.sell_venue}" for o in opps])
    now = time.time_ns()
    d.update(view("okx", [("99", "1")], ASKS, now_ns=now), now)
    rest = d.update(view("binance", BIDS, [("102", "1")], now_ns=now), now)
    assert got == [["open okx>binance"]] and rest == []  # handed over at once, not in the result
    # the spread goes: the close is in the result (closes are not walks), after what was handed over
    later = now + 1_000_000
    rest = d.update(view("binance", [("99.5", "1")], [("102", "1")], now_ns=later), later)
    assert [o.event for o in rest] == ["close"] and got == [["open okx>binance"]]
    d.early = None
    again = d.update(view("binance", BIDS, [("102", "1")], now_ns=later), later)
    assert [o.event for o in again] == ["open"]  # without early: in the result, as before


def test_a_close_caused_by_a_resyncing_book_carries_a_receive_time() -> None:
    # a book being resynced is published invalid with recv_ns 0 (store/schema.py); the close it causes
    # must not tell consumers it was triggered at the epoch
    d, _m = detector()
    now = time.time_ns()
    d.update(view("okx", [("99", "1")], ASKS, now_ns=now), now)
    assert [o.event for o in d.update(view("binance", BIDS, [("102", "1")], now_ns=now), now)] == ["open"]
    gone = BookView("binance", "BTC/USDT", False, [], [], 0, 0, 0.0, 0.0)
    later = now + 5_000_000
    closes = d.update(gone, later)
    assert [(o.event, o.recv_ns) for o in closes] == [("close", later)]


def test_fmt_rounds_half_even_and_drops_trailing_zeros_as_quantize_would() -> None:
    def reference(d: Decimal, places: int) -> str:  # the definition: quantize, then normalise
        s = format(d.quantize(Decimal(1).scaleb(-places)).normalize(), "f")
        return "0" if s in ("-0", "") else s

    rng = random.Random(7)
    cases = [Decimal(x) for x in ("0", "-0", "100", "-100.000", "0E-20", "1E+5", "5E-13", "1.5E-12", "2.5E-12",
                                  "-0.00000000000050", "0.00000000000150", "12.50", "-7.25")]
    cases += [Decimal(rng.choice(("1", "-1", "0.5", "123.456"))) * Decimal(rng.random())
              * Decimal(10) ** rng.randint(-15, 12) for _ in range(20_000)]
    for d in cases:
        for places in (0, 4, 8, 12):
            assert fmt(d, places) == reference(d, places), (d, places)
    assert fmt(Decimal("2.5"), 0) == "2" and fmt(Decimal("3.5"), 0) == "4" and fmt(Decimal("1.50"), 4) == "1.5"
