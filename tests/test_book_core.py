"""The compiled book kernels (scanner/book/_core.c) against their pure-Python twins (pycore).

Both must give identical sides, touched flags, checksums and errors on the same input; a random
walk of inserts, updates and deletions near the touch drives them side by side.
"""

from __future__ import annotations

import os
import random
import zlib
from types import ModuleType

import pytest

from scanner.book import l2, pycore

_core: ModuleType | None
try:
    from scanner.book import _core
except ImportError:  # pragma: no cover - only without a C compiler
    _core = None

CORES: list[ModuleType] = [pycore] + ([_core] if _core is not None else [])
needs_c = pytest.mark.skipif(_core is None, reason="scanner.book._core is not built (no C compiler at install)")


def test_ci_builds_the_compiled_core() -> None:
    """CI installs with gcc present: the fast path must actually be the one under test there."""
    if os.environ.get("CI") != "true":
        pytest.skip("only asserted in CI")
    assert _core is not None and l2.COMPILED


def _fmt(x: float, decimals: int) -> str:
    s = f"{x:.{decimals}f}".rstrip("0").rstrip(".")
    return s or "0"


def _random_rows(rng: random.Random, mid: float, n: int) -> list[list[str]]:
    rows = []
    for _ in range(n):
        px = _fmt(mid + rng.randint(-60, 60) * 0.1, 1)
        sz = "0" if rng.random() < 0.35 else _fmt(rng.random() * 3, rng.choice((0, 3, 8)))
        rows.append([px, sz, "0", "1"])
    return rows


@needs_c
@pytest.mark.parametrize("neg", [True, False])
def test_apply_and_load_match_pycore_on_a_random_walk(neg: bool) -> None:
    assert _core is not None
    rng = random.Random(7 if neg else 8)
    snap = _random_rows(rng, 100.0, 120)
    sides = [list(core.load_rows(snap, neg)) for core in (pycore, _core)]
    assert sides[0] == sides[1]
    for step in range(3000):
        rows = _random_rows(rng, 100.0 + step * 0.001, rng.randint(0, 6))
        watch = rng.choice((1, 5, 25))
        flags = [core.apply_rows(*side, rows, neg, watch) for core, side in zip((pycore, _core), sides, strict=True)]
        assert flags[0] == flags[1], step
        assert sides[0] == sides[1], step
        keys = sides[1][0]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        assert all(float(s) != 0.0 for s in sides[1][2])


@pytest.mark.parametrize("core", CORES, ids=lambda c: c.__name__.rsplit(".", 1)[-1])
def test_touched_is_exact_about_the_watched_levels(core: ModuleType) -> None:
    keys, pxs, szs = core.load_rows([["101", "1"], ["102", "1"], ["103", "1"]], False)
    assert core.apply_rows(keys, pxs, szs, [["104", "2"]], False, 3) is False  # below the best 3
    assert core.apply_rows(keys, pxs, szs, [["99", "0"]], False, 3) is False  # deleting a level we lack
    assert core.apply_rows(keys, pxs, szs, [["102", "5"]], False, 3) is True
    assert core.apply_rows(keys, pxs, szs, [["101", "0"]], False, 3) is True
    assert pxs == ["102", "103", "104"] and szs == ["5", "1", "2"]


@pytest.mark.parametrize("core", CORES, ids=lambda c: c.__name__.rsplit(".", 1)[-1])
def test_load_keeps_the_last_row_of_a_price_and_sorts(core: ModuleType) -> None:
    keys, pxs, szs = core.load_rows([["3", "1"], ["1", "1"], ["2", "4"], ["1", "7"], ["2", "0"]], True)
    assert pxs == ["3", "1"] and szs == ["1", "7"] and keys == [-3.0, -1.0]


@pytest.mark.parametrize("core", CORES, ids=lambda c: c.__name__.rsplit(".", 1)[-1])
@pytest.mark.parametrize("row", [["0", "1"], ["-1", "1"], ["1", "-1"], ["nan", "1"], ["1", "inf"], ["1e400", "1"],
                                 ["abc", "1"], ["1", ""]])
def test_bad_levels_raise_value_error(core: ModuleType, row: list[str]) -> None:
    keys, pxs, szs = core.load_rows([["5", "1"]], False)
    with pytest.raises(ValueError):
        core.apply_rows(keys, pxs, szs, [row], False, 25)
    with pytest.raises(ValueError):
        core.load_rows([row], False)


@pytest.mark.parametrize("core", CORES, ids=lambda c: c.__name__.rsplit(".", 1)[-1])
def test_short_rows_raise_index_error(core: ModuleType) -> None:
    with pytest.raises(IndexError):
        core.apply_rows([], [], [], [["1"]], False, 25)


@needs_c
def test_number_reading_matches_float_exactly() -> None:
    """The C fast path (Clinger) and its fallbacks give float()'s double for every form."""
    assert _core is not None
    rng = random.Random(3)
    samples = ["0.1", "0.01095667", "65000", "65000.1", "1e-8", "1E3", "00012.5000", ".5", "5.", "123456789012345",
               "1234567890123456", "0.0000000000000000000001", "9007199254740993", "3.14159265358979323846"]
    samples += [_fmt(rng.random() * 10 ** rng.randint(-9, 9), rng.randint(0, 12)) for _ in range(5000)]
    for s in samples:
        if float(s) <= 0:
            continue
        keys, _, _ = _core.load_rows([[s, "1"]], False)
        assert keys == [float(s)], s


@pytest.mark.parametrize("core", CORES, ids=lambda c: c.__name__.rsplit(".", 1)[-1])
def test_interleaved_crc32_is_the_okx_algorithm(core: ModuleType) -> None:
    rng = random.Random(11)
    for nb, na, depth in [(30, 30, 25), (3, 40, 25), (40, 0, 25), (0, 0, 25), (10, 12, 5)]:
        bpx = [_fmt(100 - i * 0.1, 1) for i in range(nb)]
        apx = [_fmt(100.1 + i * 0.1, 1) for i in range(na)]
        bsz = [_fmt(rng.random(), 6) for _ in range(nb)]
        asz = [_fmt(rng.random(), 6) for _ in range(na)]
        parts = []
        for i in range(depth):
            if i < nb:
                parts += [bpx[i], bsz[i]]
            if i < na:
                parts += [apx[i], asz[i]]
        v = zlib.crc32(":".join(parts).encode())
        assert core.interleaved_crc32(bpx, bsz, apx, asz, depth) == (v - (1 << 32) if v & 0x80000000 else v)


@needs_c
def test_long_and_non_ascii_strings_take_the_general_paths() -> None:
    assert _core is not None
    long_px = "1" * 40
    assert _core.interleaved_crc32([long_px], ["é"], [], [], 25) == pycore.interleaved_crc32(
        [long_px], ["é"], [], [], 25)
    with pytest.raises(TypeError):
        _core.interleaved_crc32([1.5], ["1"], [], [], 25)


@needs_c
@pytest.mark.parametrize("clmul", [True, False])
def test_crc32_matches_zlib_on_both_paths(clmul: bool) -> None:
    """The carry-less-multiply fold (x86-64 with PCLMULQDQ) and the table fallback both give zlib.crc32."""
    assert _core is not None
    active = _core.set_clmul(clmul)
    try:
        if clmul and not active:
            pytest.skip("this CPU has no PCLMULQDQ")
        rng = random.Random(5)
        for n in [*range(0, 200), *(rng.randint(200, 5000) for _ in range(300))]:
            data = rng.randbytes(n)
            assert _core.crc32(data) == zlib.crc32(data), n
    finally:
        _core.set_clmul(True)


@needs_c
@pytest.mark.parametrize("n", range(0, 40))
def test_every_string_length_copies_exactly(n: int) -> None:
    """The short-string copies (overlapping words) for every length around their boundaries."""
    assert _core is not None
    px, sz = "7" * n if n else "", "0." + "1" * n
    assert _core.interleaved_crc32([px], [sz], [sz], [px], 25) == pycore.interleaved_crc32([px], [sz], [sz], [px], 25)
