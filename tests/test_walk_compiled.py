"""The compiled depth walk (scanner/detect/_walk.c) against the Decimal walk it stands in for.

The compiled walk must return the very Decimals the Decimal loop returns (value and exponent, so
``str()`` agrees too) or hand over to that loop; these tests run both on the same random books and
check each hand-over case returns ``NotImplemented`` rather than a figure."""

from __future__ import annotations

import math
import os
import random
import time
from decimal import Decimal

import pytest

from scanner.config import DetectorSettings
from scanner.detect import spread
from scanner.detect.detector import SpreadDetector
from scanner.detect.spread import Fill, walk
from scanner.sinks.metrics import Metrics
from scanner.store.schema import BookView
from tests.built import built, needs_built

_walk = built("scanner.detect._walk")
needs_c = needs_built(_walk, "scanner.detect._walk")


def test_ci_builds_the_compiled_walk() -> None:
    if os.environ.get("CI") != "true":
        pytest.skip("only asserted in CI")
    assert _walk is not None and spread.compiled_walk is not None


def decimal_walk(*args: object, **kw: object) -> Fill | None:
    """spread.walk with the compiled walk switched off: the Decimal loop alone."""
    saved = spread.compiled_walk
    spread.compiled_walk = None
    try:
        return walk(*args, **kw)  # type: ignore[arg-type]
    finally:
        spread.compiled_walk = saved


def as_text(f: Fill | None) -> tuple[str, ...] | None:
    """Every figure as its exact text: equal text means equal value and equal exponent."""
    if f is None:
        return None
    return (str(f.size), str(f.cost), str(f.proceeds), str(f.net_cost), str(f.net_proceeds), str(f.levels_buy),
            str(f.levels_sell), str(f.sell_size), str(f.buy_fee), str(f.sell_fee), str(f.buy_fee_in_base))


def _num(rng: random.Random, x: float, places: int) -> str:
    """A venue-style decimal string: fixed places, sometimes with trailing zeros stripped."""
    s = f"{x:.{places}f}"
    if places and rng.random() < 0.5:
        s = s.rstrip("0").rstrip(".") or "0"
    return s


def _book(rng: random.Random, mid: float, n: int, tick: int, up: bool) -> list[tuple[str, str]]:
    tick += max(0, 2 - math.floor(math.log10(mid)))  # enough places that no price reads as 0
    rows = []
    for k in range(n):
        px = mid + (k + rng.random()) * mid * 1e-4 * (1 if up else -1)
        rows.append((_num(rng, px, tick), _num(rng, rng.random() * 5 + 1e-6, rng.choice((0, 2, 4, 8)))))
    return rows


@needs_c
@pytest.mark.parametrize("seed", range(8))
def test_compiled_walk_returns_the_decimal_walks_figures(seed: int) -> None:
    rng = random.Random(seed)
    compiled = fallback = 0
    for _ in range(400):
        mid = rng.choice((0.0123, 1.5, 97.3, 3012.0, 65000.0))
        tick = rng.choice((1, 2, 4, 6))
        shift = rng.uniform(-0.004, 0.008)  # the sell venue's book this much above (or below) the buy venue's
        asks = _book(rng, mid, rng.randint(1, 25), tick, up=True)
        bids = _book(rng, mid * (1 + shift), rng.randint(1, 25), tick, up=False)
        fees = [Decimal(rng.choice(("0", "0.001", "0.00075", "0.0025", "0.0001"))) for _ in range(2)]
        bps = Decimal(rng.choice(("0", "5", "2.5", "10", "-3", "0.01")))
        cap = rng.choice((None, None, Decimal("100000"), Decimal("250.5"), Decimal("1e9")))
        want = decimal_walk(asks, bids, fees[0], fees[1], bps, cap)
        got = walk(asks, bids, fees[0], fees[1], bps, cap)
        assert as_text(got) == as_text(want), (asks, bids, fees, bps, cap)
        up, down, thr = str(1 + fees[0]), str(1 - fees[1]), str(bps / 10_000)
        raw = _walk.walk_quote(asks, bids, up, down, thr, None if cap is None else str(cap))  # type: ignore[union-attr]
        if raw is NotImplemented:
            fallback += 1
        else:
            compiled += 1
    assert compiled > fallback  # the compiled walk is the one that runs, not a hand-over every time


@needs_c
def test_a_binding_cap_hands_over_to_the_decimal_walk() -> None:
    asks, bids = [("100", "1"), ("100.5", "2")], [("101.2", "5")]
    assert _walk.walk_quote(asks, bids, "1.001", "0.999", "0.001", "120") is NotImplemented  # type: ignore[union-attr]
    f = walk(asks, bids, Decimal("0.001"), Decimal("0.001"), Decimal(10), Decimal("120"))
    assert f is not None and f.cost == Decimal("120")  # (120 - 100) / 100.5 more at 100.5: the Decimal division
    assert as_text(f) == as_text(decimal_walk(asks, bids, Decimal("0.001"), Decimal("0.001"), Decimal(10),
                                              Decimal("120")))


@needs_c
@pytest.mark.parametrize("row", [("1e2", "1"), ("100", "1_0"), (" 100", "1"), ("100", "-1"), ("nan", "1"),
                                 ("100", "1" * 29), ("1.", "x")])
def test_strings_that_are_not_plain_decimals_hand_over(row: tuple[str, str]) -> None:
    got = _walk.walk_quote([row], [("200", "1")], "1.001", "0.999", "0", None)  # type: ignore[union-attr]
    if row == ("1e2", "1"):  # an exponent is plain enough: read as Decimal reads it (0 + 1E+2 is 100)
        assert got is not NotImplemented and str(got[0]) == "1" and str(got[1]) == "100"
        want = decimal_walk([row], [("200", "1")], Decimal("0.001"), Decimal("0.001"), Decimal(0))
        assert want is not None and (want.size, want.cost) == got[:2] and str(want.cost) == "100"
    else:
        assert got is NotImplemented


@needs_c
def test_beyond_28_digits_hands_over_and_the_decimal_walk_rounds() -> None:
    # 26-digit price times a 4-digit size: 30 digits, which Decimal's context rounds
    asks, bids = [("1.0000000000000000000000001", "1.234")], [("2", "5")]
    assert _walk.walk_quote(asks, bids, "1", "1", "0", None) is NotImplemented  # type: ignore[union-attr]
    f = walk(asks, bids, Decimal(0), Decimal(0), Decimal(0))
    assert f is not None and len(f.cost.as_tuple().digits) == 28


@needs_c
def test_exponents_follow_decimal() -> None:
    # trailing zeros are kept as Decimal keeps them: "1.50" * "2.0" is 3.000
    got = _walk.walk_quote([("1.50", "2.0")], [("1.60", "3")], "1", "1", "0", None)  # type: ignore[union-attr]
    assert got is not NotImplemented and tuple(map(str, got)) == ("2.0", "3.000", "3.200", "1", "1")


@needs_c
def test_bad_arguments_raise() -> None:
    with pytest.raises(TypeError):
        _walk.walk_quote([], [], "1", "1", "0")  # type: ignore[call-arg,union-attr,unused-ignore]
    with pytest.raises(TypeError):
        _walk.walk_quote(None, [], "1", "1", "0", None)  # type: ignore[arg-type,union-attr,unused-ignore]


@needs_c
def test_the_detector_gives_the_cap_to_the_compiled_walk_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled walk tests the cap at each step, so it always gets it; the Decimal loop (buy fee in base, or
    the compiled walk switched off) gets None when the whole ask side cannot reach the cap, and so skips a
    division per step."""
    assert _walk is not None
    d = SpreadDetector({"a": Decimal("0.001")}, DetectorSettings(), Metrics())
    small = BookView("a", "S/USDT", True, [("99", "1")], [("100", "2")], 0, time.time_ns(), 99.0, 100.0)
    monkeypatch.setattr(spread, "compiled_walk", _walk.walk_quote)  # whatever SCANNER_PURE_PYTHON says
    assert d._cap(small, in_base=False) == DetectorSettings().max_notional_quote
    assert d._cap(small, in_base=True) is None
    monkeypatch.setattr(spread, "compiled_walk", None)
    assert d._cap(small, in_base=False) is None
