"""The compiled kernel's merge path (a side's batch of many rows, ``merge_rows`` in scanner/book/_core.c)
against pycore's one-row-at-a-time loop: the same three lists, the same flags, the same errors with the same
rows applied before them. Large batches take the merge at the default threshold; ``set_merge_min`` forces
either path on any batch so the small random walks check it too (the touched flag above all)."""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

import pytest

from scanner.book import pycore
from tests.built import built, needs_built

_core = built("scanner.book._core")
pytestmark = needs_built(_core, "scanner.book._core")

ZEROS = ("0", "0.0", "0.00000000")
Side = list[list[Any]]  # [keys, pxs, szs]


@pytest.fixture(params=["default", "merge", "loop"])
def path(request: pytest.FixtureRequest) -> Iterator[str]:
    """The compiled kernel at its own threshold, forced to merge every batch, and forced to loop."""
    assert _core is not None
    old = _core.set_merge_min({"default": 32, "merge": 1, "loop": 10**9}[request.param])
    try:
        yield request.param
    finally:
        _core.set_merge_min(old)


def _px(tick: int, decimals: int = 1) -> str:
    return f"{tick / 10 ** decimals:.{decimals}f}"


def _size(rng: random.Random, p_zero: float = 0.3) -> str:
    if rng.random() < p_zero:
        return rng.choice(ZEROS)
    return f"{rng.randint(1, 10**6) / 10**rng.choice((0, 2, 8)):.{rng.choice((3, 8))}f}".rstrip("0").rstrip(".")


def _ordered(rng: random.Random, rows: list[list[str]], neg: bool) -> list[list[str]]:
    """The orders venues send a side in (best first, worst first, deletes then inserts) or none."""
    mode = rng.randrange(5)
    if mode == 0:
        return sorted(rows, key=lambda r: -float(r[0]) if neg else float(r[0]))
    if mode == 1:
        return sorted(rows, key=lambda r: float(r[0]) if neg else -float(r[0]))
    if mode == 2:
        return sorted(rows, key=lambda r: float(r[1]) != 0.0)
    if mode == 3:
        rng.shuffle(rows)
    return rows


def _side(rng: random.Random, n: int, lo: int, hi: int, neg: bool) -> Side:
    ticks = rng.sample(range(lo, hi), min(n, hi - lo))
    return [list(x) for x in pycore.load_rows([[_px(t), _size(rng, 0)] for t in ticks], neg)]


def _run(core: ModuleType, side: Side, rows: Sequence[Sequence[str]], neg: bool, watch: int) -> object:
    try:
        return core.apply_rows(*side, rows, neg, watch)
    except Exception as exc:  # the error itself must match: type and message
        return type(exc), str(exc)


def _loop(side: Side, rows: Sequence[Sequence[str]], neg: bool, watch: int) -> object:
    """The compiled kernel forced to its one-row-at-a-time loop: the behaviour before the merge."""
    assert _core is not None
    old = _core.set_merge_min(10**9)
    try:
        return _run(_core, side, rows, neg, watch)
    finally:
        _core.set_merge_min(old)


def _both(side: Side, rows: Sequence[Sequence[str]], neg: bool, watch: int, ref_core: bool = True) -> Side:
    """The compiled kernel on its current path against pycore (lists, flag, error type) and against its own
    loop (lists, flag, error type and message: a few messages were always the C kernel's own)."""
    assert _core is not None
    ref, loop, got = [list(x) for x in side], [list(x) for x in side], [list(x) for x in side]
    want, old = _run(pycore, ref, rows, neg, watch), _loop(loop, rows, neg, watch)
    ids = [id(x) for x in got]
    have = _run(_core, got, rows, neg, watch)
    assert have == old
    assert got == loop
    if ref_core:
        assert type(have) is type(want) and (have == want if type(want) is bool else have[0] is want[0])  # type: ignore[index]
        assert got == ref
    assert [id(x) for x in got] == ids  # the caller's list objects, filled in place
    return got


def _batch(rng: random.Random, side: Side, neg: bool, kind: str) -> list[list[str]]:
    """One side's batch of a given shape, in ticks of 0.1 around 1000.0 (bids below, asks above)."""
    held = side[1]
    n = rng.randint(100, 1500)
    if kind == "replace":  # every level deleted, as many new ones
        rows = [[px, rng.choice(ZEROS)] for px in held]
        rows += [[_px(t), _size(rng, 0)] for t in rng.sample(range(5000, 15000), len(held) or n)]
    elif kind == "shock":  # the side deleted, the new one in front of the old best
        best = float(held[0]) if held else 1000.0
        step = 1 if neg else -1  # in front: higher bids, lower asks
        start = round(best * 10) + step
        rows = [[px, rng.choice(ZEROS)] for px in held]
        rows += [[_px(start + step * i), _size(rng, 0)] for i in range(n)]
    elif kind == "mixed":  # updates, deletes of held and absent prices, inserts, repeats within the batch
        rows = []
        for _ in range(n):
            r = rng.random()
            if r < 0.3 and held:
                rows.append([rng.choice(held), _size(rng)])
            elif r < 0.4 and rows:
                rows.append([rng.choice(rows)[0], _size(rng)])  # a repeated price: the later row wins
            else:
                rows.append([_px(rng.randint(8000, 12000), rng.choice((1, 1, 2))), _size(rng)])
    else:  # "absent": deletes of prices the side does not hold, a few inserts
        rows = [[_px(rng.randint(8000, 12000) * 10 + 5, 2), rng.choice(ZEROS)] for _ in range(n)]
        rows += [[_px(rng.randint(8000, 12000)), _size(rng, 0)] for _ in range(rng.randint(0, 3))]
    return _ordered(rng, rows, neg)


@pytest.mark.parametrize("kind", ["replace", "shock", "mixed", "absent"])
@pytest.mark.parametrize("neg", [True, False])
def test_large_batches_match_pycore(path: str, kind: str, neg: bool) -> None:
    rng = random.Random(hash((kind, neg)) & 0xFFFF)
    for _ in range(30):
        lo, hi = (8000, 10000) if neg else (10000, 12000)
        side = _side(rng, rng.choice((0, 1, 10, 400, 1000)), lo, hi, neg)
        for _ in range(3):  # a few batches in a row on the same side
            rows = _batch(rng, side, neg, kind)
            side = _both(side, rows, neg, rng.choice((0, 1, 5, 25, 400, 5000, -1)))


@pytest.mark.parametrize("neg", [True, False])
def test_a_bad_row_leaves_the_rows_before_it_applied(path: str, neg: bool) -> None:
    rng = random.Random(31 if neg else 32)
    bad_rows: list[object] = [["0", "1"], ["-1", "1"], ["1", "-1"], ["nan", "1"], ["1", "inf"],
                                        ["abc", "1"], ["1", ""], ["1"], [], 5, [None, "1"], ("1e400", "1")]
    for bad in bad_rows:
        for _ in range(10):
            side = _side(rng, rng.choice((0, 50, 400)), 8000, 12000, neg)
            rows: list[Any] = list(_batch(rng, side, neg, rng.choice(("replace", "shock", "mixed"))))
            rows.insert(rng.randint(0, len(rows)), bad)
            _both(side, rows, neg, rng.choice((1, 25)))


def test_small_random_walk_with_every_batch_merged(path: str) -> None:
    """The touched flag of a merged batch is the loop's (a change at a position < watch when it was applied),
    on many small batches near the top of a short side, where every case of that definition occurs."""
    rng = random.Random(41)
    for neg in (True, False):
        side = _side(rng, 30, 9900, 10100, neg)
        for _ in range(4000):
            rows = [[_px(rng.randint(9950, 10050)), _size(rng, 0.4)] for _ in range(rng.randint(0, 12))]
            side = _both(side, _ordered(rng, rows, neg), neg, rng.choice((0, 1, 2, 5, 25, 40)))


@pytest.mark.parametrize("neg", [True, False])
def test_apply_sides_on_shocks_matches_pycore(path: str, neg: bool) -> None:
    """Both sides, the cut to max_levels and the crossed flag, on price shocks that may cross the book."""
    assert _core is not None
    rng = random.Random(51 if neg else 52)
    for _ in range(60):
        books = [[_side(rng, rng.choice((0, 200, 1000)), 8000, 10000, True),
                  _side(rng, rng.choice((0, 200, 1000)), 10000, 12000, False)]]
        books.append([[list(x) for x in s] for s in books[0]])
        shift = rng.randint(-3000, 3000)
        bids = [[px, rng.choice(ZEROS)] for px in books[0][0][1]]
        bids += [[_px(9999 + shift - i), _size(rng, 0)] for i in range(rng.randint(0, 1200))]
        asks = [[px, rng.choice(ZEROS)] for px in books[0][1][1]]
        asks += [[_px(10000 + shift + rng.randint(-5, 5) + i), _size(rng, 0.1)] for i in range(rng.randint(0, 1200))]
        bids, asks = _ordered(rng, bids, True), _ordered(rng, asks, False)
        if neg and rng.random() < 0.3:
            asks.insert(rng.randint(0, len(asks)), ["-5", "1"])
        watch, max_levels = rng.choice((1, 25, 400)), rng.choice((10, 400, 1000, 5000))
        out = []
        for core, (b, a) in zip((pycore, _core), books, strict=True):
            try:
                out.append(core.apply_sides(*b, *a, bids, asks, watch, max_levels))
            except ValueError as exc:
                out.append(str(exc))
        assert out[0] == out[1]
        assert books[0] == books[1]


def test_rows_of_any_sequence_type_and_mismatched_lists(path: str) -> None:
    assert _core is not None

    class Row:
        def __init__(self, *items: str) -> None:
            self.items = items

        def __getitem__(self, i: int) -> str:
            return self.items[i]

    rng = random.Random(61)
    side = _side(rng, 300, 10000, 12000, False)
    rows: list[object] = [(px, "0") for px in side[1][:100]] + [Row(_px(t), "2", "x") for t in range(9000, 9100)]
    _both(side, rows, False, 25)  # type: ignore[arg-type]
    broken = [side[0], side[1][:-1], side[2]]  # pxs one short: the loop and its own error, in both
    _both(broken, [[_px(t), "1"] for t in range(9000, 9100)], False, 25, ref_core=False)  # pycore has no such check


def test_merge_keeps_reference_counts() -> None:
    """Strings moved, stored, replaced and dropped by the merge end with the references they started with."""
    assert _core is not None
    old = _core.set_merge_min(1)
    try:
        keep, gone, new = "1000.5", "1001.5", "999.5"
        size_a, size_b = "7.25", "8.25"
        counts = [sys.getrefcount(x) for x in (keep, gone, new, size_a, size_b)]
        for _ in range(50):
            side: Side = [[1000.5, 1001.5], [keep, gone], [size_a, size_a]]
            _core.apply_rows(*side, [[gone, "0"], [keep, size_b], [new, size_a], [new, size_b]] * 20, False, 25)
            assert side == [[999.5, 1000.5], [new, keep], [size_b, size_b]]
            del side
        after = [sys.getrefcount(x) for x in (keep, gone, new, size_a, size_b)]
        assert after == counts
    finally:
        _core.set_merge_min(old)
