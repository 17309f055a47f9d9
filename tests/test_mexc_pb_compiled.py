"""The compiled canonical MEXC decoder (scanner/venues/_mexc_pb.c) against the Python one it stands in for.

``decode_canonical(data)`` must return exactly what ``mexc_pb._decode_canonical(data, latin-1 view)``
returns, or None wherever that returns None or raises (IndexError past the end, ParseError on a varint
longer than 10 bytes: decode_push then runs the general decoder). These tests run both on the parser
tests' frames, on random frames from our encoder, on every truncation and on random byte mutations,
and on the edge cases of the varints and the one-byte lengths."""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import pytest

from scanner.book.errors import ParseError
from scanner.compiled import compiled as load_compiled
from scanner.venues import mexc_pb as pb
from tests import test_mexc_parser as tm
from tests.built import built, needs_built
from tests.test_mexc_parser import ETH_CHANNEL, OFFICIAL_AGGRE, OFFICIAL_DEALS, OFFICIAL_LIMIT, ld, uv

_mexc = built("scanner.venues._mexc_pb")
needs_c = needs_built(_mexc, "scanner.venues._mexc_pb")


def test_ci_builds_the_compiled_decoder() -> None:
    if os.environ.get("CI") != "true":
        pytest.skip("only asserted in CI")
    assert _mexc is not None and pb.compiled_canonical is not None


def reference(f: bytes) -> pb.Push | None:
    """The Python canonical path as decode_push sees it: IndexError (and the too-long varint) -> None."""
    try:
        return pb._decode_canonical(f, f.decode("latin-1"))
    except IndexError:
        return None
    except ParseError as e:
        assert "varint longer than 10 bytes" in str(e)
        return None


def compiled(f: bytes) -> pb.Push | None:
    assert _mexc is not None
    out: pb.Push | None = _mexc.decode_canonical(f)
    return out


def check(f: bytes) -> pb.Push | None:
    """Both decoders on ``f``; they must agree (tuples compared item by item, types included)."""
    want, got = reference(f), compiled(f)
    assert got == want, f.hex()
    if want is not None:
        assert got is not None and [type(x) for x in got] == [type(x) for x in want]
    return want


def decoded_t(f: bytes) -> int:
    r = check(f)
    assert r is not None
    return r[3]


def outcome(decode: Callable[[bytes], pb.Push], f: bytes) -> pb.Push | str:
    try:
        return decode(f)
    except ParseError as e:
        return f"ParseError: {e}"


def decode_push_with(canonical: Callable[[bytes], pb.Push | None] | None, f: bytes) -> pb.Push:
    """decode_push with its compiled path set to ``canonical`` (whatever SCANNER_PURE_PYTHON says)."""
    saved = pb.compiled_canonical
    pb.compiled_canonical = canonical
    try:
        return pb.decode_push(f)
    finally:
        pb.compiled_canonical = saved


def pure_decode_push(f: bytes) -> pb.Push:
    return decode_push_with(None, f)


def fast_decode_push(f: bytes) -> pb.Push:
    assert _mexc is not None
    return decode_push_with(_mexc.decode_canonical, f)


# ----------------------------------------------------------------------------------- frames
def parser_test_frames() -> list[bytes]:
    """The frames tests/test_mexc_parser.py decodes: the official ones, the hand-assembled ones and
    every bytes case of its malformed-frame table."""
    item = ld(1, b"117145.49") + ld(2, b"0")
    body = (ld(1, item) + ld(2, ld(1, b"117053.41") + ld(2, b"1.86837271"))
            + ld(3, b"spot@public.aggre.depth.v3.api.pb@100ms") + ld(4, b"43296363236") + ld(5, b"43296363255"))
    hand = (ld(1, b"spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT") + ld(3, b"BTCUSDT") + uv(6 << 3)
            + uv(1754741322152) + ld(313, body))
    x = tm.unknowns
    ask = x(1) + ld(2, b"0.5") + x(2) + ld(1, b"101.5") + uv(6 << 3) + uv(99)
    bid = ld(1, b"100.25") + ld(2, b"7") + x(3)
    body2 = (ld(5, b"1005") + x(4) + ld(2, bid) + ld(6, b"ignored") + ld(1, ask) + uv(6 << 3) + uv(1754)
             + ld(4, b"1001") + ld(3, b"ev") + x(5))
    unordered = (ld(313, body2) + x(6) + uv(6 << 3) + uv(1754741322152) + ld(3, b"SOLUSDT") + ld(4, b"id")
                 + uv(5 << 3) + uv(1) + ld(1, b"spot@public.aggre.depth.v3.api.pb@100ms@SOLUSDT") + x(7))
    a = ld(1, ld(1, b"2") + ld(2, b"1")) + ld(4, b"10") + ld(5, b"11")
    b = ld(2, ld(1, b"1") + ld(2, b"3")) + ld(5, b"12")
    merged = ld(1, ETH_CHANNEL.encode()) + ld(313, a) + ld(313, b)
    odd = ld(1, ETH_CHANNEL.encode()) + ld(313, ld(2, ld(2, b"3") + ld(1, b"1.5")) + ld(4, b"1") + ld(5, b"2"))
    table = [args[0] for mark in getattr(tm.test_malformed_frames, "pytestmark", [])
             if mark.name == "parametrize" for args in mark.args[1] if isinstance(args[0], bytes)]
    assert len(table) >= 12  # the malformed-frame table was found
    return [OFFICIAL_AGGRE, OFFICIAL_LIMIT, OFFICIAL_DEALS, hand, unordered, merged, odd, *table,
            *tm.encoded_aggre_frames()]


def rand_text(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return str(rng.randint(0, 10**rng.randint(1, 12)))
    return f"{rng.randint(0, 10**rng.randint(1, 9))}.{rng.randint(0, 10**rng.randint(1, 10))}"


def rand_frame(rng: random.Random, n: int | None = None) -> bytes:
    """A random frame from our encoder: half of them as MEXC writes them (the fast path decodes those),
    the others with any of the fields the fast path gives up on (long strings, empty strings, times
    out of the int64 range)."""
    if n is None:
        n = rng.choice((0, 1, 2, rng.randint(3, 40), rng.randint(40, 400), rng.randint(400, 2000)))
    wild = rng.random() < 0.5
    asks = [[rand_text(rng), rand_text(rng)] for _ in range(rng.randint(0, n))]
    bids = [[rand_text(rng), rand_text(rng)] for _ in range(n - len(asks))]
    if wild and n and rng.random() < 0.3:  # one odd level: a 2-byte length or an empty price or quantity
        side = asks if asks and rng.random() < 0.5 else bids or asks
        side[rng.randrange(len(side))][rng.randrange(2)] = rng.choice(("", "9" * rng.randint(120, 200) + ".5"))
    vers = ["", str(rng.randint(0, 10**6)), str(rng.randint(10**15, 10**19))] + ["v" * 130] * wild
    ev = rng.choice(("", "spot@public.aggre.depth.v3.api.pb@10ms", *(["e" * 130] * wild)))
    if rng.random() < 0.6:
        body_field = pb.AGGRE_DEPTHS
        body = pb.encode_aggre_depths(asks, bids, ev, rng.choice(vers), rng.choice(vers))
        if rng.random() < 0.3:
            body += pb.int_field(6, rng.choice((1, 1754741322152, 2**63, -1)))  # lastOrderCreateTime
    else:
        body_field = pb.LIMIT_DEPTHS
        body = pb.encode_limit_depths(asks, bids, ev, rng.choice(vers))
    times = [0, 0, 1754741322152, 2**63 - 1, 127, 128] + [2**63, -1, -5] * wild
    return pb.encode_push(rng.choice([ETH_CHANNEL, "c", ""] + ["x" * 150] * wild), body_field, body,
                          symbol=rng.choice(["", "ETHUSDT", "ETHUSDT"] + ["S" * 130] * wild),
                          symbol_id=rng.choice(["", "", "5ad5c44ab3a54a3c9c59b4bbe5d5b9ef"] + ["i" * 128] * wild),
                          create_time=rng.choice(times), send_time=rng.choice(times))


# ----------------------------------------------------------------------------------- tests
@needs_c
def test_the_parser_tests_frames() -> None:
    frames = parser_test_frames()
    results = [check(f) for f in frames]
    assert results[0] is not None and results[0][4] == [["4211.37", "0.51230"], ["4211.5", "0"]]
    assert results[1] is not None and results[1][3] == 1754741322152  # sendTime over createTime -5
    assert sum(r is not None for r in results) >= 10 and sum(r is None for r in results) >= 10


@needs_c
@pytest.mark.parametrize("seed", range(6))
def test_random_encoder_frames(seed: int) -> None:
    rng = random.Random(seed)
    decoded = 0
    for _ in range(40):
        f = rand_frame(rng)
        if check(f) is not None:
            decoded += 1
        assert outcome(fast_decode_push, f) == outcome(pure_decode_push, f)
    assert decoded >= 5  # the canonical path is taken, not only the fallback


@needs_c
def test_every_truncation() -> None:
    rng = random.Random(11)
    frames = [OFFICIAL_AGGRE, OFFICIAL_LIMIT, rand_frame(rng, 30), rand_frame(rng, 3)]
    body = pb.encode_aggre_depths([["1.5", "2"]] * 20, [["1.4", "300"]], "ev", "77", "80") + pb.int_field(6, 2**40)
    frames.append(pb.encode_push(ETH_CHANNEL, pb.AGGRE_DEPTHS, body, symbol="ETHUSDT", create_time=5, send_time=9))
    frames.append(pb.encode_push("c", pb.LIMIT_DEPTHS, pb.encode_limit_depths([["1", "2"]] * 50, [], "e", "9")))
    assert check(frames[-1]) is not None and check(frames[-2]) is not None
    for f in frames:
        for cut in range(len(f) + 1):
            check(f[:cut])


@needs_c
def test_random_single_byte_mutations() -> None:
    rng = random.Random(5)
    bases = [OFFICIAL_AGGRE, OFFICIAL_LIMIT, rand_frame(rng, 12), rand_frame(rng, 5), rand_frame(rng, 2)]
    interesting = (0x00, 0x01, 0x0A, 0x12, 0x1A, 0x22, 0x28, 0x2A, 0x30, 0x7F, 0x80, 0xCA, 0xFA, 0xFF)
    decoded = 0
    for _ in range(4000):
        f = bytearray(rng.choice(bases))
        pos = rng.randrange(len(f))
        f[pos] = rng.choice(interesting) if rng.random() < 0.5 else rng.randrange(256)
        if check(bytes(f)) is not None:
            decoded += 1
    assert 100 <= decoded <= 3900  # some mutations still decode on the fast path, most do not


def ts_frame(create: bytes = b"", send: bytes = b"") -> bytes:
    """A canonical frame whose createTime / sendTime varints are given raw."""
    body = pb.encode_aggre_depths([["2", "1"]], [["1", "3"]], "ev", "10", "11")
    head = ld(1, ETH_CHANNEL.encode()) + ld(3, b"ETHUSDT")
    return head + (b"\x28" + create if create else b"") + (b"\x30" + send if send else b"") + ld(313, body)


@needs_c
def test_varint_edges() -> None:
    too_long = b"\xff" * 10 + b"\x01"  # 11 bytes: ParseError in Python
    for f in (ts_frame(create=too_long), ts_frame(send=too_long), ts_frame(create=b"\x01", send=too_long)):
        assert compiled(f) is None and reference(f) is None
        with pytest.raises(ParseError, match="varint longer"):
            pb._decode_canonical(f, f.decode("latin-1"))
        for decode in (fast_decode_push, pure_decode_push):
            with pytest.raises(ParseError, match="varint longer"):
                decode(f)
    body = pb.encode_aggre_depths([["2", "1"]], [], "ev", "10", "11")
    long_body_len = ld(1, b"c") + b"\xca\x13" + b"\x80" * 10 + b"\x01" + body
    last_order = ld(1, b"c") + ld(313, body + b"\x30" + b"\x80" * 10 + b"\x00")
    for f in (long_body_len, last_order):
        assert check(f) is None
    assert check(ld(1, b"c") + ld(313, body + b"\x30" + b"\x80" * 9 + b"\x00")) is not None  # 10 bytes: fine

    i64 = 2**63 - 1
    assert decoded_t(ts_frame(create=pb.varint(i64))) == decoded_t(ts_frame(send=pb.varint(i64))) == i64
    assert check(ts_frame(create=pb.varint(2**63))) is None  # t > int64 max
    assert check(ts_frame(send=pb.varint(2**64 - 1))) is None
    assert check(ts_frame(create=b"\xff" * 9 + b"\x7f")) is None  # 10th byte > 1: Python's value >= 2**64
    two64 = b"\x80" * 9 + b"\x02"  # exactly 2**64: the low 64 bits are 0, yet sendTime is set and wins
    assert check(ts_frame(create=b"\x05", send=two64)) is None
    assert decoded_t(ts_frame(create=two64, send=b"\x07")) == 7
    assert decoded_t(ts_frame(create=b"\x05", send=b"\x80" * 9 + b"\x00")) == 5  # a sendTime of 0 does not win
    for f, t in ((ts_frame(create=pb.varint(2**63)), -(2**63)), (ts_frame(send=two64), 0)):
        assert fast_decode_push(f) == pure_decode_push(f) and pure_decode_push(f)[3] == t  # general path


@needs_c
def test_two_byte_lengths_wherever_they_matter() -> None:
    long = "7" * 128
    lv = [["1.5", "2"], ["1.25", "3"]]
    aggre = pb.encode_aggre_depths
    cases = [
        pb.encode_push(long, pb.AGGRE_DEPTHS, aggre(lv, lv, "e", "1", "2")),  # channel
        pb.encode_push("c", pb.AGGRE_DEPTHS, aggre(lv, lv, "e", "1", "2"), symbol=long),
        pb.encode_push("c", pb.AGGRE_DEPTHS, aggre(lv, lv, "e", "1", "2"), symbol_id=long),
        pb.encode_push("c", pb.AGGRE_DEPTHS, aggre(lv * 40, lv, "e", "1", "2")),  # body length: decoded
        pb.encode_push("c", pb.AGGRE_DEPTHS, aggre([[long, "1"]], lv, "e", "1", "2")),  # price
        pb.encode_push("c", pb.AGGRE_DEPTHS, aggre(lv, [["1", long]], "e", "1", "2")),  # quantity
        pb.encode_push("c", pb.AGGRE_DEPTHS, aggre(lv, lv, long, "1", "2")),  # eventType
        pb.encode_push("c", pb.AGGRE_DEPTHS, aggre(lv, lv, "e", long, "2")),  # fromVersion
        pb.encode_push("c", pb.AGGRE_DEPTHS, aggre(lv, lv, "e", "1", long)),  # toVersion
        pb.encode_push("c", pb.LIMIT_DEPTHS, pb.encode_limit_depths(lv, lv, "e", long)),  # version
        pb.encode_push("c", pb.LIMIT_DEPTHS, pb.encode_limit_depths(lv * 40, lv, "e", "9")),  # body length
        pb.encode_push("c", pb.AGGRE_DEPTHS, aggre([["1" * 60, "2" * 64]], lv, "e", "1", "2")),  # item >= 0x80
    ]
    got = [check(f) for f in cases]
    assert [g is not None for g in got] == [False, False, False, True, False, False, False, False, False, False,
                                            True, False]
    for f in cases:
        assert fast_decode_push(f) == pure_decode_push(f) == pb._decode_general(f, f.decode("latin-1"))


@needs_c
def test_empty_strings_written_out() -> None:
    """Zero-length fields that protobuf-java leaves out but a peer may write: the fast path rejects an
    empty price or quantity (the general decoder raises), and takes empty channel/symbol/versions."""
    def frame(item: bytes, channel: bytes = b"c", symbol: bytes = b"S", frm: bytes = b"1") -> bytes:
        body = ld(1, item) + ld(2, ld(1, b"1") + ld(2, b"3")) + ld(3, b"e") + ld(4, frm) + ld(5, b"2")
        return ld(1, channel) + ld(3, symbol) + ld(313, body)

    for item in (ld(1, b"1.5") + ld(2, b""), ld(1, b"") + ld(2, b"3"), ld(1, b"") + ld(2, b"")):
        f = frame(item)
        assert check(f) is None
        for decode in (fast_decode_push, pure_decode_push):
            with pytest.raises(ParseError, match="without price or quantity"):
                decode(f)
    ok = check(frame(ld(1, b"1.5") + ld(2, b"3"), channel=b"", symbol=b"", frm=b""))
    assert ok == (pb.AGGRE_DEPTHS, "", "", 0, [["1.5", "3"]], [["1", "3"]], "", "2")


def big_frame(rng: random.Random, n: int) -> bytes:
    asks = [[f"{4211 + k * 0.01:.2f}", f"{rng.random() * 10:.5f}"] for k in range(n // 2)]
    bids = [[f"{4210 - k * 0.01:.2f}", f"{rng.random() * 10:.5f}"] for k in range(n - n // 2)]
    body = pb.encode_aggre_depths(asks, bids, "spot@public.aggre.depth.v3.api.pb@10ms", "19021556708", "19021558308")
    return pb.encode_push(ETH_CHANNEL, pb.AGGRE_DEPTHS, body, symbol="ETHUSDT", send_time=1754741322152)


@needs_c
def test_decode_push_is_the_same_with_and_without_the_compiled_path() -> None:
    f = big_frame(random.Random(1), 1600)
    assert len(f) > 20_000
    fast, pure = fast_decode_push(f), pure_decode_push(f)
    assert fast == pure and len(fast[4]) + len(fast[5]) == 1600 and fast[6:] == ("19021556708", "19021558308")


@needs_c
def test_decode_push_takes_the_compiled_path_unless_switched_off() -> None:
    pure = os.environ.get("SCANNER_PURE_PYTHON") == "1"
    assert _mexc is not None
    assert pb.compiled_canonical is (None if pure else _mexc.decode_canonical)
    assert (load_compiled("scanner.venues._mexc_pb") is None) == pure


@needs_c
def test_only_bytes() -> None:
    assert _mexc is not None
    for bad in (bytearray(OFFICIAL_AGGRE), memoryview(OFFICIAL_AGGRE), OFFICIAL_AGGRE.decode("latin-1")):
        with pytest.raises(TypeError):
            _mexc.decode_canonical(bad)
