"""The compiled book kernels (scanner/book/_core.c) against their pure-Python twins (pycore).

Both must give identical sides, touched flags, checksums and errors on the same input; a random
walk of inserts, updates and deletions near the touch drives them side by side.
"""

from __future__ import annotations

import json
import os
import random
import zlib
from types import ModuleType

import pytest

from scanner.book import l2, pycore
from scanner.model import BookMsg
from tests.built import built, needs_built

_core = built("scanner.book._core")
CORES: list[ModuleType] = [pycore] + ([_core] if _core is not None else [])
needs_c = needs_built(_core, "scanner.book._core")


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


# ---- kernels added for the per-frame venues (Kraken, Bybit, KuCoin, Coinbase, Hyperliquid) ----------


def _kraken_text(px: str, sz: str) -> str:
    return px.replace(".", "").lstrip("0") + sz.replace(".", "").lstrip("0")


@pytest.mark.parametrize("core", CORES, ids=lambda c: c.__name__.rsplit(".", 1)[-1])
def test_kraken_crc32_is_the_kraken_algorithm(core: ModuleType) -> None:
    rng = random.Random(13)
    for nb, na, depth in [(30, 30, 10), (3, 40, 10), (40, 0, 10), (0, 0, 10), (12, 5, 25)]:
        bpx = [f"{0.05 - i * 0.0001:.6f}" for i in range(nb)]
        apx = [f"{65000.1 + i:.5f}" for i in range(na)]
        bsz = [_fmt(rng.random() * 10, 8) or "0.00000001" for _ in range(nb)]
        asz = [f"{rng.random() * 100:.8f}" for _ in range(na)]
        text = "".join(_kraken_text(apx[i], asz[i]) for i in range(min(na, depth)))
        text += "".join(_kraken_text(bpx[i], bsz[i]) for i in range(min(nb, depth)))
        assert core.kraken_crc32(bpx, bsz, apx, asz, depth) == zlib.crc32(text.encode())
    assert core.kraken_crc32(["0.0050"], ["00.10"], ["..5"], ["10"], 10) == zlib.crc32(b"5105010")


@needs_c
@pytest.mark.parametrize("n", range(0, 24))
def test_kraken_crc32_c_matches_pycore_on_odd_strings(n: int) -> None:
    assert _core is not None
    px, sz = ("0." * n) + "0" * n + "12.30", "é" * (n % 3) + "0.5"
    args = ([px, "1"], [sz, "2"], [sz, "0.1"], [px, "3"], 10)
    assert _core.kraken_crc32(*args) == pycore.kraken_crc32(*args)
    for core in CORES:
        with pytest.raises(TypeError):
            core.kraken_crc32([1.5], ["1"], [], [], 10)
        with pytest.raises(ValueError):
            core.kraken_crc32(["1"], [], [], [], 10)


@needs_c
def test_apply_sides_matches_apply_rows_and_pycore() -> None:
    """apply_sides = apply_rows on both sides + the cut to max_levels + the crossed flag, in both cores."""
    assert _core is not None
    seed = random.Random(19)
    snap_b, snap_a = _random_rows(seed, 99.0, 80), _random_rows(seed, 101.0, 80)
    books = [(list(core.load_rows(snap_b, True)), list(core.load_rows(snap_a, False))) for core in CORES]
    rng = random.Random(21)
    for step in range(3000):
        mid = 100.0 + rng.uniform(-3, 3)
        bids, asks = _random_rows(rng, mid - 1, rng.randint(0, 3)), _random_rows(rng, mid + 1, rng.randint(0, 3))
        watch, max_levels = rng.choice((1, 10, 25)), rng.choice((20, 60, 1000))
        (bk, bp, bs), (ak, ap, az) = [[list(x) for x in side] for side in books[0]]
        touched = pycore.apply_rows(bk, bp, bs, bids, True, watch)
        touched = pycore.apply_rows(ak, ap, az, asks, False, watch) or touched
        for side in (bk, bp, bs, ak, ap, az):
            del side[max_levels:]
        crossed = bool(bk) and bool(ak) and -bk[0] >= ak[0]
        for core, (b, a) in zip(CORES, books, strict=True):
            flags = core.apply_sides(*b, *a, bids, asks, watch, max_levels)
            assert flags == (1 if touched else 0) | (2 if crossed else 0), (core.__name__, step)
            assert (b, a) == ([bk, bp, bs], [ak, ap, az]), (core.__name__, step)
    for core in CORES:
        with pytest.raises(ValueError):
            core.apply_sides([], [], [], [], [], [], [["1", "1"]], [["-1", "1"]], 10, 10)


@pytest.mark.parametrize("core", CORES, ids=lambda c: c.__name__.rsplit(".", 1)[-1])
def test_pick_and_split_rows(core: ModuleType) -> None:
    levels = [{"px": "30.1", "sz": "2", "n": 3}, {"px": "30.0", "sz": "0.5", "n": 1}]
    assert core.pick_rows(levels, "px", "sz") == [["30.1", "2"], ["30.0", "0.5"]]
    assert core.pick_rows([], "px", "sz") == []
    bad_levels: list[object] = [{"px": 1.5, "sz": "1"}, {"sz": "1"}, ["30", "1"], None]
    for bad in bad_levels:
        assert core.pick_rows([levels[0], bad], "px", "sz") is None
    assert core.pick_rows("nope", "px", "sz") is None
    ups = [{"side": "bid", "t": "x", "price_level": "1.5", "new_quantity": "2"},
           {"side": "offer", "price_level": "1.6", "new_quantity": "0"},
           {"side": "bid", "price_level": "1.4", "new_quantity": "3"}]
    assert core.split_rows(ups, "side", "bid", "offer", "price_level", "new_quantity") == (
        [["1.5", "2"], ["1.4", "3"]], [["1.6", "0"]])
    bads: list[object] = [{"side": "ask", "price_level": "1", "new_quantity": "1"},
                          {"price_level": "1", "new_quantity": "1"},
                          {"side": "bid", "price_level": 1, "new_quantity": "1"},
                          {"side": "bid", "price_level": "1"}, "x"]
    for bad in bads:
        assert core.split_rows([*ups, bad], "side", "bid", "offer", "price_level", "new_quantity") is None


_L2_FRAME = ('{"channel":"l2_data","client_id":"","timestamp":"2026-08-09T21:05:48.48Z","sequence_num":13,'
             '"events":[{"type":"snapshot","product_id":"BTC-USD","updates":['
             '{"side":"bid","event_time":"2026-08-09T21:05:48.1Z","price_level":"65083.66","new_quantity":"0.2"},'
             '{"side":"offer","event_time":"2026-08-09T21:05:48.1Z","price_level":"65084","new_quantity":"1"}]},'
             '{"type":"update","product_id":"ETH-USD","updates":[],"extra":{"a":[1,-2.5e3,true,false,null,{}]}}]}')


@pytest.mark.parametrize("core", CORES, ids=lambda c: c.__name__.rsplit(".", 1)[-1])
def test_coinbase_l2_reads_the_fields_the_parser_uses(core: ModuleType) -> None:
    want = ("l2_data", "2026-08-09T21:05:48.48Z", 13,
            [("snapshot", "BTC-USD", [["65083.66", "0.2"]], [["65084", "1"]]), ("update", "ETH-USD", [], [])])
    assert core.coinbase_l2(_L2_FRAME) == want
    assert core.coinbase_l2(_L2_FRAME.encode()) == want
    assert core.coinbase_l2(json.dumps(json.loads(_L2_FRAME), separators=(" , ", " : "))) == want


@needs_c
@pytest.mark.parametrize("text", [
    _L2_FRAME[:-1], _L2_FRAME + "x", _L2_FRAME.replace('"side":"bid"', '"side":"ask"'),
    _L2_FRAME.replace('"new_quantity":"1"', '"new_quantity":1'), _L2_FRAME.replace('"price_level":"65084",', ""),
    _L2_FRAME.replace('"sequence_num":13', '"sequence_num":13.0'), _L2_FRAME.replace('"sequence_num":13,', ""),
    _L2_FRAME.replace('"client_id":""', '"channel":"l2_data"'), _L2_FRAME.replace('"client_id":""', '"type":"x"'),
    _L2_FRAME.replace("65083.66", "65083\\u0036"), _L2_FRAME.replace("BTC-USD", "BTC-USDé"),
    _L2_FRAME.replace(",", ",\n"), _L2_FRAME.replace("true", "tru"), _L2_FRAME.replace("-2.5e3", "-2.e3"),
    _L2_FRAME.replace("-2.5e3", "01"), _L2_FRAME.replace("-2.5e3", "NaN"),
    _L2_FRAME.replace('"updates":[]', '"updates":{}'),
    _L2_FRAME.replace('"product_id":"ETH-USD"', '"product_id":7'), "[]", "{}", "", "nope",
])
def test_coinbase_l2_gives_up_on_anything_else_in_both_cores(text: str) -> None:
    assert _core is not None
    assert _core.coinbase_l2(text) is None
    assert pycore.coinbase_l2(text) is None


@needs_c
def test_coinbase_l2_c_matches_pycore_on_random_frames() -> None:
    assert _core is not None
    rng = random.Random(23)
    for _ in range(300):
        ups = [{"side": rng.choice(("bid", "offer")), "event_time": "2026-08-09T21:05:48Z",
                "price_level": _fmt(rng.random() * 1000, rng.randint(0, 8)), "new_quantity": _fmt(rng.random(), 8)}
               for _ in range(rng.randint(0, 30))]
        event = {"type": rng.choice(("snapshot", "update", "odd")), "product_id": "SOL-USD", "updates": ups}
        frame = {"channel": "l2_data", "timestamp": "2026-08-09T21:05:48.5Z",
                 "sequence_num": rng.randint(0, 10**12), "events": [event]}
        text = json.dumps(frame, separators=(",", ":") if rng.random() < 0.5 else (", ", ": "))
        assert _core.coinbase_l2(text) == pycore.coinbase_l2(text) is not None
        cut = text[: rng.randint(0, len(text) - 1)]
        assert _core.coinbase_l2(cut) is None and pycore.coinbase_l2(cut) is None


_V1_DIFF = ('[1920,{"a":[["0.043230","52785.98896926","1618678135.043564"]],"b":[["0.04","1.5","1.0","r"]],'
            '"c":"0325"},"book-1000","SC/EUR"]')


@pytest.mark.parametrize("core", CORES, ids=lambda c: c.__name__.rsplit(".", 1)[-1])
def test_kraken_v1_reads_book_diffs(core: ModuleType) -> None:
    want = BookMsg("SC/EUR", False, [["0.04", "1.5", "1.0", "r"]],
                   [["0.043230", "52785.98896926", "1618678135.043564"]], 7, 6, 325, 0, 123)
    assert core.kraken_v1(_V1_DIFF, 7, 123, BookMsg) == want
    assert core.kraken_v1(_V1_DIFF.encode(), 7, 123, BookMsg) == want
    assert core.kraken_v1(json.dumps(json.loads(_V1_DIFF), separators=(" , ", " : ")), 7, 123, BookMsg) == want
    empty = core.kraken_v1('[{"x":[1,{}]},{},"book-10","XBT/USD"]', 2**70, 0, BookMsg)
    assert empty == BookMsg("XBT/USD", False, [], [], 2**70, 2**70 - 1, 0, 0, 0)
    assert type(empty) is BookMsg and type(empty.bids) is list


@needs_c
@pytest.mark.parametrize("text", [
    _V1_DIFF[:-1], _V1_DIFF + "]", _V1_DIFF.replace('"c":"0325"', '"c":325'),
    _V1_DIFF.replace("0325", "12345678901"),
    _V1_DIFF.replace("0325", "-1"), _V1_DIFF.replace("0325", ""), _V1_DIFF.replace('"a"', '"as"'),
    _V1_DIFF.replace('"b"', '"a"'), _V1_DIFF.replace('"r"', "1"), _V1_DIFF.replace(',"r"', ',"r"' * 7),
    _V1_DIFF.replace('["0.04","1.5","1.0","r"]', '["0.04"]'), _V1_DIFF.replace('"SC/EUR"', "7"),
    _V1_DIFF.replace("SC/EUR", "SC/EUé"), _V1_DIFF.replace("1920", "NaN"), _V1_DIFF.replace(",", ",\t"),
    _V1_DIFF.replace("SC/EUR", 'SC\\"EUR'), '[1,{},"book-10","X",5]', '[1,{},"book-10"]', "{}", "", "[]",
    _V1_DIFF.replace("book-1000", "ticker"), _V1_DIFF.replace("book-1000", "book"), '[1,{},"spread","X"]',
])
def test_kraken_v1_gives_up_on_anything_else_in_both_cores(text: str) -> None:
    assert _core is not None
    assert _core.kraken_v1(text, 1, 0, BookMsg) is None
    assert pycore.kraken_v1(text, 1, 0, BookMsg) is None


@needs_c
def test_kraken_v1_c_matches_pycore_on_random_frames() -> None:
    assert _core is not None
    rng = random.Random(29)
    for _ in range(500):
        part: dict[str, object] = {}
        for key in rng.sample(["a", "b", "c"], rng.randint(0, 3)):
            part[key] = str(rng.randint(0, 4294967295)) if key == "c" else [
                [_fmt(rng.random() * 100, 5), _fmt(rng.random(), 8), "1618678135.1"] + ["r"] * rng.randint(0, 1)
                for _ in range(rng.randint(0, 4))]
        text = json.dumps([rng.randint(0, 9999), part, "book-1000", "XBT/USD"],
                          separators=(",", ":") if rng.random() < 0.5 else (", ", ": "))
        seq, ns = rng.randint(1, 2**64), rng.randint(0, 2**63)
        assert _core.kraken_v1(text, seq, ns, BookMsg) == pycore.kraken_v1(text, seq, ns, BookMsg) is not None
        cut = text[: rng.randint(0, len(text) - 1)]
        assert _core.kraken_v1(cut, seq, ns, BookMsg) is None and pycore.kraken_v1(cut, seq, ns, BookMsg) is None


_KC_DIFF = ('{"type":"message","topic":"/market/level2:BTC-USDT","subject":"trade.l2update","data":{"changes":'
            '{"asks":[["18906","0.00331","14103845"],["0","0","14103846"]],"bids":[]},"sequenceEnd":14103846,'
            '"sequenceStart":14103845,"symbol":"BTC-USDT","time":1663747970273}}')


@pytest.mark.parametrize("core", CORES, ids=lambda c: c.__name__.rsplit(".", 1)[-1])
def test_kucoin_l2_reads_level2_diffs(core: ModuleType) -> None:
    want = BookMsg("BTC-USDT", False, [], [["18906", "0.00331", "14103845"]], 14103846, 14103845, 0, 1663747970273, 9)
    assert core.kucoin_l2(_KC_DIFF, 9, BookMsg) == want
    assert core.kucoin_l2(_KC_DIFF.encode(), 9, BookMsg) == want
    assert core.kucoin_l2(json.dumps(json.loads(_KC_DIFF), separators=(" , ", " : ")), 9, BookMsg) == want
    assert type(core.kucoin_l2(_KC_DIFF, 9, BookMsg)) is BookMsg
    # keys in any order, others skipped, sides and time optional, negative and 18-digit integers
    assert core.kucoin_l2('{"data":{"x":[{"y":null}],"symbol":"A","sequenceEnd":999999999999999999,"changes":'
                          '{"z":1,"bids":[["1","2","3"]]},"sequenceStart":-5},"id":true,"subject":"trade.l2update",'
                          '"type":"message"}', 0, BookMsg) == BookMsg("A", False, [["1", "2", "3"]], [],
                                                                      999999999999999999, -5, 0, 0, 0)
    # sequenceStart > sequenceEnd: the parser's error, found by its full decode
    assert core.kucoin_l2('{"type":"message","subject":"trade.l2update","data":{"changes":{},"sequenceStart":2,'
                          '"sequenceEnd":1,"symbol":""}}', 0, BookMsg) is None


_KC_TICKER = ('{"data":{"sequence":"1612844051653","bestAsk":"0.00028717","size":"0.01745248","time":1619378326323,'
              '"changes":{"asks":[["1","2","3"]]},"bestBid":"0.00028678"},"subject":"trade.ticker",'
              '"topic":"/market/ticker:SNX-BTC","type":"message"}')


@pytest.mark.parametrize("core", CORES, ids=lambda c: c.__name__.rsplit(".", 1)[-1])
@pytest.mark.parametrize("text", [
    _KC_TICKER, _KC_TICKER.replace('"data":{', '"data":[{').replace('"0.00028678"}', '"0.00028678"}]'),
    _KC_TICKER.replace('"subject":"trade.ticker",', "").replace('"data"', '"subject":"trade.ticker","data"'),
    _KC_TICKER.replace('"data":{"sequence"', '"data":{"symbol":7,"sequence"'),
    _KC_TICKER.replace('"type":"message"', '"type":"message","data":1').replace('"data":{', '"x":{', 1),
    '{"type":"message","topic":"/market/ticker:SNX-BTC","subject":""}',
])
def test_kucoin_l2_gives_another_subjects_topic(core: ModuleType, text: str) -> None:
    """A message of another subject, its data of any shape (even one that starts like an l2update's), gives
    its topic: the parser reports it as ignored without decoding it in full."""
    assert core.kucoin_l2(text, 0, BookMsg) == "/market/ticker:SNX-BTC"


@needs_c
@pytest.mark.parametrize("text", [
    _KC_DIFF[:-1], _KC_DIFF + "}", _KC_DIFF + "x", _KC_DIFF.replace('"message"', '"messages"'),
    _KC_TICKER.replace('"topic":"/market/ticker:SNX-BTC",', ""), _KC_TICKER.replace('"/market/ticker:SNX-BTC"', "1"),
    _KC_TICKER.replace('"topic"', '"topic":"x","topic"'), _KC_TICKER.replace('"trade.ticker"', "null"),
    _KC_TICKER.replace('"data":{', '"data":{,'), _KC_TICKER.replace('"type":"message"', '"type":"notice"'),
    _KC_TICKER.replace('"subject":"trade.ticker",', '"subject":"trade.ticker","subject":"x",'),
    _KC_DIFF.replace('"data":{', '"data":{"data":{}},"data":{'),
    _KC_DIFF.replace('"type":"message",', ""),
    _KC_DIFF.replace('"subject":"trade.l2update",', ""), _KC_DIFF.replace('"symbol":"BTC-USDT",', ""),
    _KC_DIFF.replace('"sequenceStart":14103845,', ""), _KC_DIFF.replace('"sequenceEnd":14103846,', ""),
    _KC_DIFF.replace('{"changes":{"asks":[["18906","0.00331","14103845"],["0","0","14103846"]],"bids":[]},', "{"),
    _KC_DIFF.replace('"type":"message"', '"type":"message","type":"message"'),
    _KC_DIFF.replace('"symbol":"BTC-USDT"', '"symbol":"BTC-USDT","symbol":"ETH-USDT"'),
    _KC_DIFF.replace('"bids":[]', '"bids":[],"bids":[]'), _KC_DIFF.replace('"bids":[]', '"asks":[]'),
    _KC_DIFF.replace('"time":1663747970273', '"time":1663747970273,"time":1'),
    _KC_DIFF.replace('"time":1663747970273', '"time":null'), _KC_DIFF.replace("1663747970273", "1663747970273.0"),
    _KC_DIFF.replace("1663747970273", "1e3"), _KC_DIFF.replace("1663747970273", "1234567890123456789"),
    _KC_DIFF.replace("14103846,", "-1234567890123456789,"), _KC_DIFF.replace("14103846,", '"14103846",'),
    _KC_DIFF.replace('"symbol":"BTC-USDT"', '"symbol":null'), _KC_DIFF.replace('"bids":[]', '"bids":{}'),
    _KC_DIFF.replace('"bids":[]', '"bids":[["1","2"]]'), _KC_DIFF.replace('"bids":[]', '"bids":[["1","2","3","4"]]'),
    _KC_DIFF.replace('"bids":[]', '"bids":[["1","2",3]]'), _KC_DIFF.replace('"bids":[]', '"bids":[{}]'),
    _KC_DIFF.replace('"changes":{', '"changes":[').replace(',"bids":[]}', ',"bids":[]]'),
    _KC_DIFF.replace('"data":{', '"data":[{').replace("970273}}", "970273}]}"),
    _KC_DIFF.replace("BTC-USDT", "BTC-USDé"), _KC_DIFF.replace("BTC-USDT", "BTC\\u002dUSDT"),
    _KC_DIFF.replace(",", ",\n"), _KC_DIFF.replace('"topic"', '"topic":NaN,"t"'), _KC_DIFF.replace("18906", "18906\t"),
    '{"id":"hQvf8jkno","type":"welcome"}', "[]", "{}", "", "nope", "null",
])
def test_kucoin_l2_gives_up_on_anything_else_in_both_cores(text: str) -> None:
    assert _core is not None
    assert _core.kucoin_l2(text, 0, BookMsg) is None
    assert pycore.kucoin_l2(text, 0, BookMsg) is None


@needs_c
def test_kucoin_l2_c_matches_pycore_on_random_frames() -> None:
    assert _core is not None
    rng = random.Random(31)
    for _ in range(500):
        sides: dict[str, list[list[str]]] = {}
        for key in rng.sample(["asks", "bids", "extra"], rng.randint(0, 3)):
            sides[key] = [[rng.choice(["0", _fmt(rng.random() * 100, 5)]), _fmt(rng.random(), 8),
                           str(rng.randint(0, 10**14))] for _ in range(rng.randint(0, 4))]
        start = rng.randint(-10**17, 10**17)
        data: dict[str, object] = {"changes": sides, "sequenceStart": start, "sequenceEnd": start + rng.randint(-2, 9),
                                   "symbol": rng.choice(["BTC-USDT", "X" * 40, "", f"S{rng.randint(0, 300)}-USDT"])}
        if rng.random() < 0.7:
            data["time"] = rng.randint(0, 2 * 10**12)
        items = list(data.items())
        rng.shuffle(items)
        subject = rng.choice(["trade.l2update"] * 3 + ["trade.ticker"])  # another subject's data of any shape
        frame = {"type": "message", "topic": "/market/level2:BTC-USDT", "subject": subject,
                 "data": dict(items) if rng.random() < 0.9 else [dict(items)]}
        top = list(frame.items())
        rng.shuffle(top)
        text = json.dumps(dict(top), separators=(",", ":") if rng.random() < 0.5 else (", ", ": "))
        ns = rng.randint(0, 2**63)
        got = _core.kucoin_l2(text, ns, BookMsg)
        assert got == pycore.kucoin_l2(text, ns, BookMsg)
        if subject != "trade.l2update":
            assert got == "/market/level2:BTC-USDT"
            continue
        if start > data["sequenceEnd"] or type(frame["data"]) is list:  # type: ignore[operator]
            assert got is None
            continue
        assert type(got) is BookMsg and got.inst == data["symbol"] and got.recv_ns == ns
        assert got.bids == [r for r in sides.get("bids", []) if r[0] != "0"] and (got.prev, got.seq) == (
            start, data["sequenceEnd"])
        cut = text[: rng.randint(0, len(text) - 1)]
        assert _core.kucoin_l2(cut, ns, BookMsg) is None and pycore.kucoin_l2(cut, ns, BookMsg) is None


# ----- new_slots: BookMsg without its Python __init__ ---------------------------------------------------
@pytest.mark.parametrize("core", CORES, ids=lambda c: c.__name__.rsplit(".", 1)[-1])
def test_new_slots_makes_the_same_book_msg(core: ModuleType) -> None:
    from scanner.model import BookMsg, Control

    rng = random.Random(5)
    for _ in range(200):
        values = (f"I{rng.randint(0, 9)}", rng.random() < 0.5, _random_rows(rng, 100, 3), _random_rows(rng, 101, 2),
                  rng.randint(0, 2**62), rng.randint(-1, 2**62), rng.randint(-2**31, 2**31), rng.randint(0, 2**41),
                  rng.randint(0, 2**63))
        made = core.new_slots(BookMsg, *values)
        assert type(made) is BookMsg and made == BookMsg(*values)
        made.seq += 1  # an ordinary instance: its slots can be set, and it compares by value
        assert made != BookMsg(*values)
    assert core.new_slots(Control, "info", "X", "d") == Control("info", "X", "d")  # another class: learnt anew
    assert l2.book_msg("X", False, [], [], 1, 0, 0, 0, 0) == BookMsg("X", False, [], [], 1, 0, 0, 0, 0)


@needs_c
def test_new_slots_refuses_what_it_cannot_fill_and_keeps_references_right() -> None:
    import sys

    from scanner.model import BookMsg

    assert _core is not None
    with pytest.raises(TypeError, match="takes 9 values, got 2"):
        _core.new_slots(BookMsg, "X", False)
    with pytest.raises(TypeError, match="must be a class"):
        _core.new_slots("BookMsg", 1)
    with pytest.raises(AttributeError):
        _core.new_slots(dict, 1)  # no __slots__ at all

    class NotPlain:
        __slots__ = ("a",)

        @property
        def b(self) -> int:
            return 1

    NotPlain.__slots__ = ("a", "b")  # type: ignore[assignment]  # "b" is a property, not a slot
    with pytest.raises(TypeError, match="not a plain slot"):
        _core.new_slots(NotPlain, 1, 2)
    marker = object()
    before = sys.getrefcount(marker)
    made = _core.new_slots(BookMsg, marker, False, [], [], 1, 0, 0, 0, 0)
    held = sys.getrefcount(marker)  # read apart from the asserts: pytest keeps what an assert evaluates
    assert held == before + 1
    assert made.inst is marker
    del made
    after = sys.getrefcount(marker)
    assert after == before
