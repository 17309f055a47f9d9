"""MEXC protobuf decoding and the MEXC parser, on bytes built independently of our encoder:
frames serialized by the official protobuf runtime (google.protobuf 5.29.5 with ccxt's compiled
copies of MEXC's .proto files, pasted here as hex), frames assembled by hand from the field
numbers (any field order, unknown fields of every wire type), round trips through our encoder,
truncated and malformed bytes, the JSON control frames, the version bridging rule, REST snapshot
and instrument parsing. There is no MEXC recording in ../shared/recorded, so the replay test
records a capture from the simulator over a real socket and replays it (and corrupted copies).
"""

from __future__ import annotations

import base64
import random
from pathlib import Path

import aiohttp
import orjson
import pytest

from scanner.book.errors import CrossedBook, ParseError, SequenceGap
from scanner.book.sync import SnapshotTooOld
from scanner.model import BookMsg, Control
from scanner.replay import replay_capture
from scanner.sim.server import SimCluster
from scanner.venues import mexc
from scanner.venues import mexc_pb as pb
from scanner.venues.mexc import MexcParser, make_book, parse_instruments, parse_snapshot, subscribe, topic

ROOT = Path(__file__).resolve().parent.parent
# Serialized with google.protobuf 5.29.5 from ccxt/protobuf/mexc/*_pb2.py (MEXC's official .proto files).
OFFICIAL_AGGRE = bytes.fromhex(
    "0a2e73706f74407075626c69632e61676772652e64657074682e76332e6170692e70624031306d7340455448555344541a0745"
    "5448555344542220356164356334346162336135346133633963353962346262653564356239656628a6e3eef5883330a8e3ee"
    "f58833ca1393010a120a07343231312e33371207302e35313233300a0b0a06343231312e3512013012130a07343231312e3336"
    "120831322e3030303031120b0a06343231312e31120130120c0a07343230392e39391201331a2673706f74407075626c69632e"
    "61676772652e64657074682e76332e6170692e70624031306d73220b31393032313535363730382a0b3139303231353536373133")
OFFICIAL_LIMIT = bytes.fromhex(  # createTime = -5 (a 10-byte varint), symbolId "abc"
    "0a2b73706f74407075626c69632e6c696d69742e64657074682e76332e6170692e7062404254435553445440351a074254435553"
    "4454220361626328fbffffffffffffffff0130a8e3eef58833fa121d0a080a03312e35120132120a0a03312e3412033330301a01"
    "7822023737")
OFFICIAL_DEALS = bytes.fromhex(
    "0a2f73706f74407075626c69632e61676772652e6465616c732e76332e6170692e7062403130306d7340425443555344541a0742"
    "54435553445430a8e3eef58833d213410a160a063131373030301203302e31180120f4e2eef58833122773706f74407075626c69"
    "632e61676772652e6465616c732e76332e6170692e7062403130306d73")
ETH_CHANNEL = "spot@public.aggre.depth.v3.api.pb@10ms@ETHUSDT"


def uv(n: int) -> bytes:
    """Test-local varint (independent of scanner.venues.mexc_pb)."""
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([low])
        out += bytes([low | 0x80])


def ld(field: int, payload: bytes) -> bytes:
    return uv(field << 3 | 2) + uv(len(payload)) + payload


def parse(raw: bytes | str) -> list[BookMsg | Control]:
    return MexcParser().parse(raw, 7)


def one_book(raw: bytes) -> BookMsg:
    [m] = parse(raw)
    assert isinstance(m, BookMsg)
    return m


# ------------------------------------------------------------------------- protobuf frames
def test_official_aggre_depth_frame() -> None:
    m = one_book(OFFICIAL_AGGRE)
    assert m == BookMsg("ETHUSDT", False, [["4211.36", "12.00001"], ["4211.1", "0"], ["4209.99", "3"]],
                        [["4211.37", "0.51230"], ["4211.5", "0"]], 19021556713, 19021556708, 0, 1754741322152, 7)


def test_official_limit_depth_frame_is_a_snapshot() -> None:
    assert OFFICIAL_LIMIT[:2] == b"\x0a\x2b" and b"\xfa\x12" in OFFICIAL_LIMIT  # field 303 = fa 12
    m = one_book(OFFICIAL_LIMIT)
    assert (m.inst, m.snapshot, m.seq, m.bids, m.asks) == ("BTCUSDT", True, 77, [["1.4", "300"]], [["1.5", "2"]])
    assert m.exch_ms == 1754741322152  # sendTime wins over the negative createTime


def test_other_bodies_are_ignored_channels() -> None:
    assert parse(OFFICIAL_DEALS) == [
        Control("ignored", "BTCUSDT", "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT")]


def test_hand_assembled_canonical_frame_equals_our_encoder() -> None:
    item = ld(1, b"117145.49") + ld(2, b"0")
    body = (ld(1, item) + ld(2, ld(1, b"117053.41") + ld(2, b"1.86837271"))
            + ld(3, b"spot@public.aggre.depth.v3.api.pb@100ms") + ld(4, b"43296363236") + ld(5, b"43296363255"))
    channel = b"spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT"
    frame = ld(1, channel) + ld(3, b"BTCUSDT") + uv(6 << 3) + uv(1754741322152) + ld(313, body)
    assert frame[-len(body) - 3: -len(body)] == b"\xca\x13" + bytes([len(body)])
    ours = pb.encode_push(channel.decode(), pb.AGGRE_DEPTHS, pb.encode_aggre_depths(
        [["117145.49", "0"]], [["117053.41", "1.86837271"]], "spot@public.aggre.depth.v3.api.pb@100ms",
        "43296363236", "43296363255"), symbol="BTCUSDT", send_time=1754741322152)
    assert ours == frame
    m = one_book(frame)
    assert (m.asks, m.bids, m.prev, m.seq) == ([["117145.49", "0"]], [["117053.41", "1.86837271"]],
                                               43296363236, 43296363255)


def unknowns(seed: int) -> bytes:
    """One unknown field of every wire type (field numbers no MEXC message uses here)."""
    return (uv(90 << 3) + uv(300 + seed)  # varint
            + uv(91 << 3 | 1) + bytes(range(8))  # fixed64
            + ld(92, b"\x0a\x03abc" + uv(7 << 3) + uv(1))  # length-delimited (a nested message)
            + uv(93 << 3 | 5) + b"\xff\xfe\xfd\xfc"  # fixed32
            + uv(94 << 3 | 3) + uv(1 << 3) + uv(5) + uv(95 << 3 | 3) + uv(95 << 3 | 4) + uv(94 << 3 | 4))  # groups


def test_any_field_order_and_unknown_fields_are_skipped() -> None:
    x = unknowns
    ask = x(1) + ld(2, b"0.5") + x(2) + ld(1, b"101.5") + uv(6 << 3) + uv(99)  # quantity first
    bid = ld(1, b"100.25") + ld(2, b"7") + x(3)
    body = (ld(5, b"1005") + x(4) + ld(2, bid) + ld(6, b"ignored") + ld(1, ask) + uv(6 << 3) + uv(1754)
            + ld(4, b"1001") + ld(3, b"ev") + x(5))
    frame = (ld(313, body) + x(6) + uv(6 << 3) + uv(1754741322152) + ld(3, b"SOLUSDT") + ld(4, b"id")
             + uv(5 << 3) + uv(1) + ld(1, b"spot@public.aggre.depth.v3.api.pb@100ms@SOLUSDT") + x(7))
    m = one_book(frame)
    assert (m.inst, m.bids, m.asks, m.prev, m.seq, m.exch_ms) == (
        "SOLUSDT", [["100.25", "7"]], [["101.5", "0.5"]], 1001, 1005, 1754741322152)


def test_a_repeated_body_merges_and_the_later_scalar_wins() -> None:
    a = ld(1, ld(1, b"2") + ld(2, b"1")) + ld(4, b"10") + ld(5, b"11")
    b = ld(2, ld(1, b"1") + ld(2, b"3")) + ld(5, b"12")
    m = one_book(ld(1, ETH_CHANNEL.encode()) + ld(313, a) + ld(313, b))
    assert (m.inst, m.asks, m.bids, m.prev, m.seq) == ("ETHUSDT", [["2", "1"]], [["1", "3"]], 10, 12)


def test_round_trip_through_our_encoder() -> None:
    rng = random.Random(7)
    for n in (0, 1, 5, 300):  # 300 levels: multi-byte body length
        asks = [[f"{rng.randint(1, 10**9)}.{rng.randint(0, 99)}", str(rng.random())] for _ in range(n)]
        bids = [[f"{rng.random():.12f}", str(rng.randint(0, 10**6))] for _ in range(n)]
        asks.append(["9" * 140 + ".5", "1" * 200])  # long strings: multi-byte item lengths
        frm, to = str(rng.randint(1, 10**15)), str(10**18 + n)
        raw = pb.encode_push(ETH_CHANNEL, pb.AGGRE_DEPTHS, pb.encode_aggre_depths(asks, bids, "e", frm, to),
                             symbol="ETHUSDT", symbol_id="x" * 200, create_time=-1, send_time=2**62)
        assert pb.decode_push(raw) == (pb.AGGRE_DEPTHS, ETH_CHANNEL, "ETHUSDT", 2**62, asks, bids, frm, to)
        limit = pb.encode_push("c", pb.LIMIT_DEPTHS, pb.encode_limit_depths(asks, bids, "e", to), create_time=-3)
        assert pb.decode_push(limit) == (pb.LIMIT_DEPTHS, "c", "", -3, asks, bids, "", to)
    assert pb.varint(-1) == b"\xff" * 9 + b"\x01" and uv(2**64 - 1) == pb.varint(-1)
    assert [pb.varint(v) for v in (0, 127, 128, 300)] == [uv(v) for v in (0, 127, 128, 300)]


def encoded_aggre_frames() -> list[bytes]:
    """Aggregated-depth pushes of 0, 1, 7 and 60 random levels a side, each also with an unknown trailing field."""
    rng = random.Random(3)
    frames = []
    for n in (0, 1, 7, 60):
        asks = [[f"{rng.randint(1, 10**6)}.{rng.randint(0, 99)}", str(rng.randint(0, 9))] for _ in range(n)]
        bids = [[str(rng.randint(1, 999)), f"0.{rng.randint(0, 10**8)}"] for _ in range(n)]
        body = pb.encode_aggre_depths(asks, bids, "ev", "5", str(5 + n))
        frames.append(pb.encode_push(ETH_CHANNEL, pb.AGGRE_DEPTHS, body, symbol="ETHUSDT", send_time=n + 1))
        frames.append(pb.encode_push(ETH_CHANNEL, pb.AGGRE_DEPTHS, body + uv(6 << 3) + uv(12345)))
    return frames


def test_the_canonical_fast_path_agrees_with_the_general_decoder() -> None:
    frames = [OFFICIAL_AGGRE, OFFICIAL_LIMIT, *encoded_aggre_frames()]
    for f in frames:
        s = f.decode("latin-1")
        fast = pb._decode_canonical(f, s)
        assert fast is not None and fast == pb._decode_general(f, s) == pb.decode_push(f)
    odd = ld(1, ETH_CHANNEL.encode()) + ld(313, ld(2, ld(2, b"3") + ld(1, b"1.5")) + ld(4, b"1") + ld(5, b"2"))
    assert pb._decode_canonical(odd, odd.decode("latin-1")) is None  # quantity before price
    assert pb.decode_push(odd)[5] == [["1.5", "3"]]


def test_truncated_frames_raise_parse_error() -> None:
    body_at = OFFICIAL_AGGRE.index(b"\xca\x13")
    for cut in range(body_at + 1, len(OFFICIAL_AGGRE)):
        with pytest.raises(ParseError):
            parse(OFFICIAL_AGGRE[:cut])
    for cut in range(1, body_at):  # before the body: either a clean field boundary or an error
        try:
            out = parse(OFFICIAL_AGGRE[:cut])
        except ParseError:
            continue
        assert out == [Control("ignored", "ETHUSDT", ETH_CHANNEL)]


@pytest.mark.parametrize(("raw", "why"), [
    (b"", "empty"),
    (b"\x0f\x00", "wire type 7"),
    (ld(1, b"c") + b"\x1e", "wire type 6"),
    (b"\x08" + b"\xff" * 11, "varint longer"),
    (ld(1, b"c") + uv(94 << 3 | 4), "end-group"),
    (ld(1, ETH_CHANNEL.encode()) + ld(313, ld(4, b"12a") + ld(5, b"13")), "bad versions"),
    (ld(1, ETH_CHANNEL.encode()) + ld(313, ld(4, b"14") + ld(5, b"13")), "toVersion 13 < fromVersion 14"),
    (ld(1, ETH_CHANNEL.encode()) + ld(313, ld(1, ld(1, b"1.5")) + ld(4, b"1") + ld(5, b"1")), "without price"),
    (ld(1, ETH_CHANNEL.encode()) + ld(313, ld(1, ld(1, b"1.5") + ld(2, b"12345")[:-2]) + ld(4, b"1")),
     "overruns"),
    (ld(1, ETH_CHANNEL.encode()) + ld(303, ld(4, b"v1")), "bad version"),
    (uv(5 << 3) + uv(1), "without channel"),
    (b'{"id":0,"code":0,', "not JSON"),
    ("[1,2]", "expected an object"),
    (b"[1,2]", "truncated"),
    ('{"hello":"world"}', "unrecognised JSON"),
])
def test_malformed_frames(raw: bytes | str, why: str) -> None:
    with pytest.raises(ParseError, match=why):
        parse(raw)


def test_json_control_frames() -> None:
    t1, t2 = topic("BTCUSDT", "aggre.depth@100ms"), topic("ETHUSDT", "limit.depth@20")
    assert parse(orjson.dumps({"id": 0, "code": 0, "msg": t1})) == [Control("subscribed", "BTCUSDT", t1)]
    assert parse(orjson.dumps({"id": 0, "code": 0, "msg": f"{t1},{t2}"}).decode()) == [
        Control("subscribed", "BTCUSDT", t1), Control("subscribed", "ETHUSDT", t2)]
    assert parse(b'{"id":0,"code":0,"msg":"PONG"}') == [Control("pong")]
    bad = "Not Subscribed successfully! [spot@public.increase.depth.v3.api@BTCUSDT].  Reason: Blocked! "
    assert parse(orjson.dumps({"id": 0, "code": 0, "msg": bad})) == [Control("error", "BTCUSDT", bad)]
    assert parse(b'{"id":0,"code":700007,"msg":"No permission"}') == [Control("error", "", "700007 No permission")]
    assert parse(b'{"id":0,"code":0,"msg":"Invalid request"}') == [Control("info", "", "Invalid request")]
    legacy = "spot@public.increase.depth.v3.api@BTCUSDT"
    frame = {"c": legacy, "d": {"r": "1"}, "s": "BTCUSDT", "t": 1}
    assert parse(orjson.dumps(frame)) == [Control("ignored", "BTCUSDT", legacy)]
    assert mexc.PONG in b'{"id":0,"code":0,"msg":"PONG"}' and mexc.PONG not in orjson.dumps({"msg": topic(
        "PONGUSDT", "aggre.depth@100ms")})


# ------------------------------------------------------------------------- sync rule and REST
def diff(frm: int, to: int, bid: str = "100", size: str = "1") -> BookMsg:
    return BookMsg("BTCUSDT", False, [[bid, size]], [], to, frm, 0, 0, 0)


def snap(last: int) -> BookMsg:
    return BookMsg("BTCUSDT", True, [["100", "5"], ["99", "1"]], [["101", "2"]], last, 0, 0, 0, 0)


def test_bridging_drops_old_diffs_straddles_then_chains_exactly() -> None:
    sb = make_book("aggre.depth@100ms")
    for frm, to, px in ((90, 95, "98"), (96, 101, "97"), (102, 104, "96")):
        assert not sb.on_message(diff(frm, to, px))
    assert sb.on_snapshot(snap(100)) and sb.book.seq == 104
    assert sb.book.bids.best() == ("100", "5") and len(sb.book.bids) == 4  # 98 dropped: toVersion <= 100
    assert sb.on_message(diff(105, 110, "100", "0")) and sb.book.bids.best() == ("99", "1")
    assert not sb.on_message(diff(101, 110))  # already applied: stale
    with pytest.raises(SequenceGap):
        sb.on_message(diff(110, 112))  # overlaps the last diff: MEXC requires fromVersion == last + 1
    assert not sb.valid
    sb.on_message(diff(120, 125))
    with pytest.raises(SnapshotTooOld):  # the buffered diff starts after lastUpdateId + 1
        sb.on_snapshot(snap(118))
    sb.on_message(diff(126, 130))
    assert sb.on_snapshot(snap(127)) and sb.book.seq == 130  # first kept straddles 128
    with pytest.raises(SequenceGap):
        sb.on_message(diff(132, 133))


def test_crossed_diff_is_caught() -> None:
    sb = make_book("aggre.depth@100ms")
    sb.on_snapshot(snap(1))
    with pytest.raises(CrossedBook):
        sb.on_message(diff(2, 2, "101.5"))


def test_rest_snapshot_and_request() -> None:
    req = mexc.snapshot_request("https://api.mexc.com", "BTCUSDT")
    assert req.url == "https://api.mexc.com/api/v3/depth?symbol=BTCUSDT&limit=5000" and req.weight == 1
    body = b'{"lastUpdateId":"744267132","bids":[["40838.50","0.387864"]],"asks":[["40838.61","6.5"]],"timestamp":5}'
    m = parse_snapshot("BTCUSDT", body, 3)
    assert (m.snapshot, m.seq, m.bids, m.asks, m.exch_ms) == (True, 744267132, [["40838.50", "0.387864"]],
                                                               [["40838.61", "6.5"]], 5)
    assert parse_snapshot("BTCUSDT", b'{"lastUpdateId":7,"bids":[],"asks":[]}', 0).seq == 7
    for bad in (b"nope", b'{"bids":[],"asks":[]}', b'{"lastUpdateId":1,"bids":{},"asks":[]}'):
        with pytest.raises(ParseError):
            parse_snapshot("BTCUSDT", bad, 0)


def test_shipped_instruments_cover_the_default_coins() -> None:
    markets = {m.symbol: m for m in parse_instruments((ROOT / "configs" / "markets" / "mexc.json").read_bytes())}
    for coin in ("BTC", "ETH", "XRP", "BNB", "SOL", "TRX", "DOGE", "ADA", "HYPE", "BCH", "LINK", "LEO", "ZEC"):
        assert markets[f"{coin}/USDT"].venue_id == f"{coin}USDT" and markets[f"{coin}/USDT"].active
    btc = markets["BTC/USDT"]
    assert (btc.tick, btc.lot, btc.min_size) == ("0.01", "0.000001", "0.000001")
    assert markets["DOGE/USDT"].tick == "0.00001" and "BTC/USDC" in markets


def test_instrument_rows() -> None:
    rows = [
        {"symbol": "AUSDT", "status": "1", "baseAsset": "A", "quoteAsset": "USDT", "baseAssetPrecision": 0,
         "quotePrecision": 9, "quoteAssetPrecision": "4", "baseSizePrecision": "0.5", "isSpotTradingAllowed": True},
        {"symbol": "BUSDT", "status": "2", "baseAsset": "B", "quoteAsset": "USDT", "baseAssetPrecision": 2,
         "quotePrecision": 3, "baseSizePrecision": "0", "isSpotTradingAllowed": True},
        {"symbol": "CUSDC", "status": "1", "baseAsset": "c", "quoteAsset": "USDC", "baseAssetPrecision": -1,
         "quoteAssetPrecision": 1, "isSpotTradingAllowed": False},
    ]
    a, b, c = parse_instruments(orjson.dumps({"symbols": rows}))
    assert (a.symbol, a.tick, a.lot, a.min_size, a.active) == ("A/USDT", "0.0001", "1", "0.5", True)
    assert (b.tick, b.lot, b.min_size, b.active) == ("0.001", "0.01", "0.01", False)
    assert (c.symbol, c.tick, c.lot, c.active) == ("C/USDC", "0.1", "10", False)
    with pytest.raises(ParseError):
        parse_instruments(b'{"symbols":[{"symbol":"X"}]}')


def test_subscribe_frames_and_topics() -> None:
    insts = [f"C{i}USDT" for i in range(65)]
    frames = [orjson.loads(f) for f in subscribe(insts, "aggre.depth@10ms")]
    assert [len(f["params"]) for f in frames] == [30, 30, 5] and all(f["method"] == "SUBSCRIPTION" for f in frames)
    assert frames[0]["params"][0] == "spot@public.aggre.depth.v3.api.pb@10ms@C0USDT"
    assert topic("BTCUSDT", "limit.depth@5") == "spot@public.limit.depth.v3.api.pb@BTCUSDT@5"
    assert mexc.topic_symbol(topic("BTCUSDT", "limit.depth@5")) == "BTCUSDT"
    assert mexc.resubscribe("BTCUSDT", "aggre.depth@100ms") == []
    with pytest.raises(ValueError, match="unknown channel"):
        topic("BTCUSDT", "depth")


# ------------------------------------------------------------------------- replay of a capture
def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


async def record_capture(path: Path, ticks: int) -> tuple[list[str], list[tuple[str, str]], list[tuple[str, str]]]:
    """Record the simulator as a cryptofeed capture (binary frames as ``b64``, the REST snapshot
    as an ``http`` record); return the record lines and the simulator's final BTCUSDT book."""
    lines = [orjson.dumps({"t": "header", "format": 2, "exchange": "MEXC",
                           "config": {"aggre.depth@100ms": ["BTCUSDT"]}, "recorded": 1.0}).decode()]
    ts = 1.0

    def add(rec: dict[str, object]) -> None:
        nonlocal ts
        ts += 0.001
        lines.append(orjson.dumps({**rec, "conn": "c1", "ts": ts}).decode())

    async with SimCluster(venues=["mexc"], symbols=["BTC/USDT"], tick_ms=0, seed=4) as sims, \
            aiohttp.ClientSession() as session:
        ws = await session.ws_connect(sims.url("mexc"))
        await ws.send_str(subscribe(["BTCUSDT"], "aggre.depth@100ms")[0])
        for i in range(ticks):
            if i == 3:
                async with session.get(f"{sims.rest_url('mexc')}/api/v3/depth?symbol=BTCUSDT&limit=5000") as r:
                    add({"t": "http", "url": "https://api.mexc.com/api/v3/depth?symbol=BTCUSDT&limit=5000",
                         "data": (await r.read()).decode()})
            if i:
                sims.step()
            msg = await ws.receive(timeout=5)
            if msg.type is aiohttp.WSMsgType.TEXT:
                add({"t": "recv", "data": msg.data})
            else:
                add({"t": "recv", "b64": base64.b64encode(msg.data).decode()})
        await ws.close()
        bids, asks = sims.book("mexc", "BTC/USDT")
    write_lines(path, lines)
    return lines, bids, asks


async def test_simulated_capture_replays_and_corruption_is_detected(tmp_path: Path) -> None:
    lines, bids, asks = await record_capture(tmp_path / "MEXC.jsonl", 40)
    res = replay_capture("mexc", "aggre.depth@100ms", tmp_path / "MEXC.jsonl")
    assert res.parse_errors == 0 and not any(res.errors.values()) and res.snapshots == 1
    assert res.book_msgs == 39 and res.controls == 1 and res.applied >= 36
    assert res.books["BTCUSDT"].valid and res.books["BTCUSDT"].book.top(10**6) == (bids, asks)

    dropped = tmp_path / "dropped.jsonl"  # one diff lost after the book is in sync
    write_lines(dropped, lines[:20] + lines[21:])
    bad = replay_capture("mexc", "aggre.depth@100ms", dropped)
    assert bad.errors["seq_gap"] == 1 and bad.invalid() == ["BTCUSDT"]

    rec = orjson.loads(lines[25])  # one level altered: a bid above the best ask
    _, ch, sym, t, a, b, frm, to = pb.decode_push(base64.b64decode(rec["b64"]))
    b.insert(0, ["99999999", "1"])
    rec["b64"] = base64.b64encode(pb.encode_push(ch, pb.AGGRE_DEPTHS, pb.encode_aggre_depths(
        a, b, "e", frm, to), symbol=sym, send_time=t)).decode()
    crossed = tmp_path / "crossed.jsonl"
    write_lines(crossed, [*lines[:25], orjson.dumps(rec).decode(), *lines[26:]])
    bad = replay_capture("mexc", "aggre.depth@100ms", crossed)
    assert bad.errors["crossed"] == 1 and bad.invalid() == ["BTCUSDT"]

    rec = orjson.loads(lines[30])  # one frame cut short
    rec["b64"] = base64.b64encode(base64.b64decode(rec["b64"])[:-3]).decode()
    cut = tmp_path / "cut.jsonl"
    write_lines(cut, [*lines[:30], orjson.dumps(rec).decode(), *lines[31:]])
    bad = replay_capture("mexc", "aggre.depth@100ms", cut)
    assert bad.parse_errors == 1 and bad.errors["seq_gap"] == 1
