"""okx_books: the compiled scanner for OKX ``books`` frames (levels cut to [price, size]) against its pure-Python
twin, and OkxParser with the scanner on and off against the orjson path on every OKX frame the tests and the
recordings hold (levels compared as [price, size]: the extras are what the scanner drops)."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

import orjson
import pytest

import scanner.book.l2 as l2mod
import scanner.venues.okx as okx_mod
from scanner.book import pycore
from scanner.capture import Recv, read_cryptofeed
from scanner.model import BookMsg
from scanner.venues.okx import OkxParser
from tests.built import built, needs_built
from tests.conftest import PROJECT_ROOT
from tests.parse_outcomes import parse_outcomes
from tests.test_okx_parser import BOOK

_core = built("scanner.book._core")
needs_c = needs_built(_core, "scanner.book._core")
RECORDED = (PROJECT_ROOT.parent / "shared" / "recorded").resolve()
SCANNERS = [pytest.param("compiled", marks=needs_c), "pycore"]


def _frame(**changes: object) -> bytes:
    d = orjson.loads(orjson.dumps(BOOK))
    d["data"][0].update(changes)
    return orjson.dumps(d)


def _recorded_frames() -> list[str | bytes]:
    frames: list[str | bytes] = []
    capture = RECORDED / "cryptofeed" / "OKX.jsonl.zst"
    if capture.is_file():
        frames += [r.data for r in read_cryptofeed(capture) if isinstance(r, Recv)]
    extract = RECORDED / "ccxt" / "okx.watchOrderBook.extract.json"
    if extract.is_file():
        for case in json.loads(extract.read_text())["methods"]["watchOrderBook"]:
            for msg in case["messages"]:
                frames.append(orjson.dumps(msg))
                # the same real levels as a `books` frame (books5 carries no action and no prevSeqId)
                if isinstance(msg, dict) and isinstance(msg.get("arg"), dict) and isinstance(msg.get("data"), list):
                    books = dict(msg, arg=dict(msg["arg"], channel="books"), action="update")
                    books["data"] = [dict(item, prevSeqId=item.get("seqId", 0) - 1) if isinstance(item, dict)
                                     else item for item in msg["data"]]
                    frames.append(orjson.dumps(books))
    return frames


def _sim_frames(rng: random.Random) -> list[bytes]:
    """Frames in the OKX simulator's layout (scanner/sim/okx.py emit/snapshot_frame: its dict, its
    ``[px, sz, "0", count]`` levels, deletions ``[px, "0", "0", "0"]``)."""
    out = []
    seq = rng.randint(10**10, 2 * 10**10)
    for i in range(20):
        def lv(p: int) -> list[str]:
            q = rng.choice([0, rng.randint(1, 10**6)])
            return [f"{p / 100:.2f}", "0" if not q else f"{q / 1000:g}", "0", "0" if not q else str(1 + p % 29)]
        n = rng.choice([0, 1, 2, 25, 400, 1600])
        prev, seq = (-1, seq) if i == 0 else (seq, seq + rng.randint(0, 50))
        out.append(orjson.dumps({
            "arg": {"channel": "books", "instId": "ETH-USDT"}, "action": "snapshot" if i == 0 else "update",
            "data": [{"asks": [lv(340000 + k) for k in range(n)], "bids": [lv(339999 - k) for k in range(n)],
                      "ts": str(1782450000000 + i), "checksum": rng.choice([0, -(2**31), 2**31 - 1]),
                      "prevSeqId": prev, "seqId": seq}]}))
    return out


_TEST_FRAMES: list[str | bytes] = [
    orjson.dumps(BOOK), _frame(checksum=0), _frame(seqId="10", prevSeqId="9"), _frame(ts=1782450000000),
    _frame(ts="17824500000x0"), _frame(checksum=None), _frame(seqId=2**63), _frame(seqId=-(2**63)),
    _frame(prevSeqId=-1, seqId=0), _frame(bids=[["99", "2"]]), _frame(bids=[["99"]]), _frame(bids=[[99, "2"]]),
    _frame(bids=[["99", "2", None]]), _frame(bids=[["99", "2", 0, 1.5, "x"]]), _frame(bids="x"),
    b'[1, 2]', b'"text"', b'{"arg": {"channel": "books", "instId": 5}, "data": [{}]}',
    b'{"arg": {"channel": "books", "instId": "BTC-USDT"}, "data": [{"bids": 1, "asks": []}]}',
    b'{"arg": {"channel": "books", "instId": "BTC-USDT"}, "data": [{"bids": [], "asks": [], "seqId": 1,'
    b' "prevSeqId": 0, "ts": "soon"}]}',
    b'{"arg": {"channel": "nope", "instId": "BTC-USDT"}, "data": []}', b"{not json", b"pong", "pong",
    b'{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"a4d3ae55"}',
    b'{"event":"error","code":"60012","msg":"Invalid request","connId":"a4d3ae55"}',
    b'{"event":"notice","code":"64008","msg":"reconnect","connId":"a4d3ae55"}',
    b'{"arg":{"channel":"books","instId":"A-B"},"action":"update","data":[{"asks":[],"bids":[],"ts":"1",'
    b'"seqId":5,"prevSeqId":5}],"x":{"y":[1,{"z":null}]}}',
    b'{"arg":{"channel":"books","instId":"A-B"},"action":"weird","data":[{"asks":[],"bids":[],"ts":"1",'
    b'"seqId":5,"prevSeqId":5}]}',
    b'{"arg":{"channel":"books","instId":"A-B"},"action":"","data":[{"asks":[],"bids":[],"ts":"1",'
    b'"seqId":5,"prevSeqId":5}]}',
    b'{"arg":{"channel":"books","instId":"A-B"},"action":null,"data":[{"asks":[],"bids":[],"ts":"1",'
    b'"seqId":5,"prevSeqId":5}]}',
]


def _cut(out: Sequence[object]) -> list[object]:
    return [BookMsg(m.inst, m.snapshot, [r[:2] for r in m.bids], [r[:2] for r in m.asks], m.seq, m.prev,
                    m.checksum, m.exch_ms, m.recv_ns) if isinstance(m, BookMsg) else m for m in out]


def _all_frames() -> list[str | bytes]:
    odd = [*_TEST_FRAMES, *_sim_frames(random.Random(3))]
    near = []
    for change in ([], ["action"], ["checksum"]):
        d = orjson.loads(orjson.dumps(BOOK))
        for key in change:
            (d if key == "action" else d["data"][0]).pop(key)
        near.append(orjson.dumps(d))
    frames = [*odd, *near]
    return frames + [f.decode() if isinstance(f, bytes) else f.encode() for f in frames]


@pytest.mark.parametrize("channel", ["books", "books5", "bbo-tbt"])
@pytest.mark.parametrize("scanner", SCANNERS)
def test_parser_gives_the_same_with_the_scanner_on_and_off(monkeypatch: pytest.MonkeyPatch, scanner: str,
                                                           channel: str) -> None:
    frames = _all_frames()
    recorded = _recorded_frames()
    frames += recorded + [f.decode() if isinstance(f, bytes) else f.encode() for f in recorded]
    monkeypatch.setattr(okx_mod, "COMPILED", False)
    want = parse_outcomes(OkxParser(channel), frames, _cut)
    scan = _core.okx_books if scanner == "compiled" and _core is not None else pycore.okx_books
    monkeypatch.setattr(okx_mod, "COMPILED", True)
    monkeypatch.setattr(okx_mod, "okx_books", scan)
    assert parse_outcomes(OkxParser(channel), frames, _cut) == want
    if channel == "books":  # the scanner really took the book frames
        assert sum(scan(f) is not None for f in frames) >= 2 * (20 + 6)


def test_recordings_are_read_when_present() -> None:
    if not RECORDED.is_dir():
        pytest.skip(f"no recordings at {RECORDED}")
    frames = _recorded_frames()
    assert len(frames) > 400
    # the 2022 capture has no seqId (the full decoder's); the ccxt frames recast as `books` take the scanner
    assert any(pycore.okx_books(f) is not None for f in frames)


def test_parser_uses_the_scanner_result(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(okx_mod, "COMPILED", True)
    monkeypatch.setattr(okx_mod, "okx_books", pycore.okx_books)
    [m] = OkxParser("books").parse(orjson.dumps(BOOK), 3)
    assert m == BookMsg("BTC-USDT", False, [["99", "2"]], [["101", "1"]], 10, 9, -12345, 1782450000000, 3)


_WANT = ("BTC-USDT", "update", [["99", "2"]], [["101", "1"]], 10, 9, -12345, 1782450000000)


@pytest.mark.parametrize("core", [pytest.param("c", marks=needs_c), "py"])
def test_okx_books_reads_book_frames(core: str) -> None:
    f = _core.okx_books if core == "c" and _core is not None else pycore.okx_books
    text = orjson.dumps(BOOK).decode()
    assert f(text) == _WANT
    assert f(text.encode()) == _WANT
    assert f(json.dumps(json.loads(text), separators=(" , ", " : "))) == _WANT
    assert f('{"x":[{"y":null},true],"data":[{"seqId":-9223372036854775808,"z":{"a":[1,-2.5e3]},"bids":'
             '[["1","2",3,"4",5.5e-1]],"prevSeqId":9223372036854775807,"asks":[],"ts":"0009223372036854775"}],'
             '"arg":{"instId":"","k":7,"channel":"books"}}') == (
        "", "", [["1", "2"]], [], -(2**63), 2**63 - 1, 0, 9223372036854775)
    # the compiled scanner first looks for "seqId" from the end (past other 'q's): wherever it is, it is found
    assert f('{"arg":{"channel":"books","instId":"q"},"data":[{"seqId":1,"asks":[],"bids":[],"prevSeqId":0,'
             '"ts":"5","q":"qq","x":"seqId"}],"qq":["q"]}') == ("q", "", [], [], 1, 0, 0, 5)


_T = orjson.dumps(BOOK).decode()


@needs_c
@pytest.mark.parametrize("text", [
    _T[:-1], _T + "}", _T + "x", _T.replace('"books"', '"books5"'), _T.replace('"update"', '"updates"'),
    _T.replace('"action":"update",', '"action":"",'), _T.replace('"action":"update",', '"action":null,'),
    _T.replace('"action":"update",', '"action":"update","action":"update",'),
    _T.replace('"instId":"BTC-USDT"', '"instId":"BTC-USDT","instId":"X"'),
    _T.replace('"channel":"books"', '"channel":"books","channel":"books"'),
    _T.replace('"seqId":10', '"seqId":10,"seqId":10'),
    _T.replace('"checksum":-12345', '"checksum":-12345,"checksum":1'),
    _T.replace('"bids":', '"asks":[],"bids":'), _T.replace('"ts":"1782450000000"', '"ts":"1","ts":"1"'),
    _T.replace('"seqId":10', '"seqId":9223372036854775808'), _T.replace('"seqId":10', '"seqId":-9223372036854775809'),
    _T.replace('"seqId":10', '"seqId":10.0'), _T.replace('"seqId":10', '"seqId":1e1'),
    _T.replace('"seqId":10', '"seqId":"10"'), _T.replace(',"seqId":10', ""), _T.replace(',"prevSeqId":9', ""),
    _T.replace('"ts":"1782450000000",', ""), _T.replace('"1782450000000"', "1782450000000"),
    _T.replace('"1782450000000"', '""'), _T.replace('"1782450000000"', '"-1"'), _T.replace('"1782450000000"', '"1.5"'),
    _T.replace('"1782450000000"', '"9223372036854775808"'), _T.replace('"1782450000000"', '"01234567890123456789"'),
    _T.replace('"checksum":-12345', '"checksum":null'), _T.replace('"instId":"BTC-USDT"', '"instId":7'),
    _T.replace(',"instId":"BTC-USDT"', ""), _T.replace('{"channel":"books",', "{"),
    _T.replace('"bids":[["99","2","0","1"]]', '"bids":{}'), _T.replace('["99","2","0","1"]', '["99"]'),
    _T.replace('["99","2","0","1"]', '["99",2]'), _T.replace('["99","2","0","1"]', '["99","2",null]'),
    _T.replace('["99","2","0","1"]', '["99","2",[]]'), _T.replace('["99","2","0","1"]', '["99","2",true]'),
    _T.replace('"data":[{', '"data":{').replace("9}]}", "9}}"), _T.replace("9}]}", '9},{}]}'),
    _T.replace('"data":[{', '"data":[[],{'), _T.replace("BTC-USDT", "BTC-USDé"),
    _T.replace("BTC-USDT", "BTC\\u002dUSDT"),
    _T.replace(",", ",\n"), _T.replace(",", ",\t"), _T.replace('"arg"', '"x":NaN,"arg"'), _T.replace("99", "99\t"),
    _T.replace('"seqId":10', '"seqNo":10,"x":"seqId"'), _T.replace('"seqId":10', '"seqid":10'),
    '{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"1"}', "[]", "{}", "", "pong",
    "null",
])
def test_okx_books_gives_up_on_anything_else_in_both_cores(text: str) -> None:
    assert _core is not None
    assert _core.okx_books(text) is None
    assert pycore.okx_books(text) is None
    assert _core.okx_books(text.encode()) is None


_UNICODE = ["é", "日本", "\U0001f600", "ü\u2028"]


def _nested(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(7 if depth < 4 else 4)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -7, 2**62, 1.5, -2.5e-3, 1e300])
    if kind == 2:
        return rng.choice(["", "x", "a b", "0"])
    if kind == 3:
        return rng.randint(-(2**63), 2**63 - 1)
    if kind in (4, 5):
        return [_nested(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {f"k{i}": _nested(rng, depth + 1) for i in range(rng.randint(0, 3))}


def _shuffled(rng: random.Random, d: dict[str, object], extra: bool, uni: bool) -> dict[str, object]:
    items = list(d.items())
    if extra:
        for _ in range(rng.randint(1, 3)):
            key = rng.choice(["x", "instType", "connId", "z" * 40, "seq", "q", "reqId"]) + str(rng.randint(0, 99))
            items.append((key, _nested(rng)))
    if uni:
        items.append((rng.choice(_UNICODE), rng.choice(["v", _UNICODE[0], [_UNICODE[1]]])))
    rng.shuffle(items)
    return dict(items)


def _random_frame(rng: random.Random) -> tuple[bytes, bool]:
    """A random `books` frame and whether it is plain ASCII (so the twin, and the scanner, must read it)."""
    uni = rng.random() < 0.15

    def levels() -> list[list[object]]:
        n = rng.choice([0, 1, 2, rng.randint(0, 50), rng.randint(0, 2000)])
        rows: list[list[object]] = []
        for _ in range(n):
            row: list[object] = [f"{rng.random() * 5000:.{rng.randint(0, 8)}f}",
                                 f"{rng.random() * 10:.{rng.randint(0, 8)}f}"]
            for _ in range(rng.randint(0, 3)):
                row.append(rng.choice(["0", str(rng.randint(0, 99)), rng.randint(0, 99), -1.25, ""]))
            rows.append(row)
        return rows

    item: dict[str, object] = {"asks": levels(), "bids": levels(), "ts": str(rng.randint(0, 2**63 - 1)),
                               "seqId": rng.randint(-(2**63), 2**63 - 1), "prevSeqId": rng.randint(-1, 10**12)}
    if rng.random() < 0.7:
        item["checksum"] = rng.randint(-(2**31), 2**31 - 1)
    frame: dict[str, object] = {
        "arg": _shuffled(rng, {"channel": "books", "instId": rng.choice(["BTC-USDT", "", "X" * 40, "ETH-USDT-SWAP"])},
                         rng.random() < 0.3, False),
        "data": [_shuffled(rng, item, rng.random() < 0.5, uni and rng.random() < 0.5)],
    }
    if rng.random() < 0.8:
        frame["action"] = rng.choice(["update", "snapshot"])
    return orjson.dumps(_shuffled(rng, frame, rng.random() < 0.5, uni)), uni


@needs_c
def test_okx_books_c_matches_pycore_on_random_frames() -> None:
    assert _core is not None
    rng = random.Random(41)
    read = 0
    for _ in range(300):
        raw, uni = _random_frame(rng)
        for text in (raw, raw.decode()):
            got = _core.okx_books(text)
            assert got == pycore.okx_books(text)
            assert (got is None) == uni  # non-ASCII text: both leave it to the full decoder
            read += got is not None
        spaced = json.dumps(json.loads(raw), separators=(", ", ": "), ensure_ascii=False)
        assert _core.okx_books(spaced) == pycore.okx_books(spaced)
        if not uni:
            parsed = orjson.loads(raw)
            got = _core.okx_books(raw)
            assert got is not None and got[2] == [r[:2] for r in parsed["data"][0]["bids"]]
            assert got[1] == parsed.get("action", "") and got[7] == int(parsed["data"][0]["ts"])
    assert read > 400


def _some_frames() -> list[bytes]:
    rng = random.Random(5)
    small = [orjson.dumps(BOOK), _frame(bids=[["99", "2", 0, 1.5, "x"]]),
             b'{"arg":{"channel":"books","instId":"A-B"},"action":"update","data":[{"asks":[],"bids":[],"ts":"1",'
             b'"seqId":5,"prevSeqId":5}],"x":{"y":[1,{"z":null}]}}']
    return small + [_random_frame(rng)[0] for _ in range(3)] + _sim_frames(rng)[:2]


@needs_c
def test_okx_books_on_every_prefix_is_none_or_the_twin() -> None:
    assert _core is not None
    for frame in _some_frames()[:4]:
        text = frame.decode("utf-8", "replace")
        for i in range(len(frame)):
            for cut in (frame[:i], text[:i]):
                got = _core.okx_books(cut)
                assert got is None or got == pycore.okx_books(cut)


@needs_c
def test_okx_books_on_mutated_frames_is_none_or_the_twin() -> None:
    assert _core is not None
    rng = random.Random(43)
    frames = [f for f in _some_frames() if len(f) < 20000]
    alphabet = b'{}[]",:0123456789-+.eE tfnulx\\\x00\x7f\xc3\xa9'
    for n in range(4000):
        frame = bytearray(rng.choice(frames))
        i = rng.randrange(len(frame))
        op = rng.randrange(3)
        if op == 0:
            frame[i] = rng.choice(alphabet)
        elif op == 1:
            del frame[i]
        else:
            frame.insert(i, rng.choice(alphabet))
        raw = bytes(frame)
        got = _core.okx_books(raw)
        assert got is None or got == pycore.okx_books(raw), raw
        if n % 4 == 0:
            text = raw.decode("utf-8", "replace")
            got = _core.okx_books(text)
            assert got is None or got == pycore.okx_books(text), text


@needs_c
def test_okx_books_takes_str_and_bytes_only() -> None:
    assert _core is not None
    raw = orjson.dumps(BOOK)
    assert _core.okx_books(raw) == _core.okx_books(raw.decode()) == _WANT
    for other in (bytearray(raw), memoryview(raw), None, 5, [raw]):
        assert _core.okx_books(other) is None
        assert pycore.okx_books(other) is None  # type: ignore[arg-type]


def test_l2_exports_the_kernel_in_use() -> None:
    assert l2mod.okx_books is (pycore.okx_books if not l2mod.COMPILED else l2mod._core.okx_books)
