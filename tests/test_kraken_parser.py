"""Kraken parser, ordering rule and checksum: the real v1 recording replayed through our parser
and books (every checksum verified; a corrupted copy caught), the PROTOCOLS.md test vector, and
hand-written v2 frames (JSON numbers with trailing zeros, acks, pongs, errors, malformed input).

Expectations are recomputed here independently (json + Decimal + zlib), never taken from the
code under test."""

from __future__ import annotations

import json
import zlib
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

import scanner.book.l2 as l2mod
from scanner.book import pycore
from scanner.book.errors import ChecksumMismatch, ParseError
from scanner.book.sync import SyncedBook
from scanner.capture import Http, Recv, read_cryptofeed
from scanner.markets import Market
from scanner.model import BookMsg, Control
from scanner.replay import Replayer, ReplayResult, capture_events, replay_capture
from scanner.venues import VENUES, kraken
from scanner.venues.kraken import KrakenParser, make_book, parse_instruments, resubscribe, subscribe
from tests.book_drive import drive
from tests.parse_outcomes import parse_outcomes

Side = dict[Decimal, tuple[str, str]]
DOC_ASKS = [(f"0.{5005 + 5 * i:05d}", "0.00000500") for i in range(10)]
DOC_BIDS = [(p, "0.00000500") for p in ("0.05000", "0.04995", "0.04990", "0.04980", "0.04975", "0.04970",
                                        "0.04965", "0.04960", "0.04955", "0.04950")]


def crc(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
    def f(x: str) -> str:
        return x.replace(".", "").lstrip("0")

    text = "".join(f(p) + f(q) for p, q in asks[:10]) + "".join(f(p) + f(q) for p, q in bids[:10])
    return zlib.crc32(text.encode())


class RefBook:
    """Independent reference: Decimal keys, exact strings, truncation to ``depth``."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.bids: Side = {}
        self.asks: Side = {}

    def apply(self, bids: list[list[str]], asks: list[list[str]], snapshot: bool = False) -> None:
        if snapshot:
            self.bids, self.asks = {}, {}
        for side, rows, rev in ((self.bids, bids, True), (self.asks, asks, False)):
            for row in rows:
                if Decimal(row[1]) == 0:
                    side.pop(Decimal(row[0]), None)
                else:
                    side[Decimal(row[0])] = (row[0], row[1])
            for k in sorted(side, reverse=rev)[self.depth:]:
                del side[k]

    def sides(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        return [self.bids[k] for k in sorted(self.bids, reverse=True)], [self.asks[k] for k in sorted(self.asks)]

    def crc(self) -> int:
        return crc(*self.sides())


def v1_book(d: Any) -> tuple[str, bool, list[list[str]], list[list[str]], int | None] | None:
    """(pair, snapshot, bids, asks, checksum or None) of a v1 book frame, else None."""
    if not isinstance(d, list) or not str(d[-2]).startswith("book-"):
        return None
    bids: list[list[str]] = []
    asks: list[list[str]] = []
    c, snap = None, False
    for part in d[1:-2]:
        snap = snap or "as" in part
        asks += part.get("as", []) + part.get("a", [])
        bids += part.get("bs", []) + part.get("b", [])
        c = int(part["c"]) if "c" in part else c
    return d[-1], snap, bids, asks, c


@pytest.fixture(scope="module")
def recording(recorded_dir: Path) -> Path:
    return recorded_dir / "cryptofeed" / "KRAKEN.jsonl.zst"


def no_errors(res: ReplayResult) -> bool:
    return res.parse_errors == 0 and not any(res.errors.values())


# ------------------------------------------------------------------ the v1 recording (2021, book-1000)


def test_recording_every_checksum_verifies(recording: Path) -> None:
    refs: dict[str, RefBook] = {}
    with_c = frames = 0
    for r in read_cryptofeed(recording):
        b = v1_book(json.loads(r.data)) if isinstance(r, Recv) and isinstance(r.data, str) else None
        if b is None:
            continue
        frames += 1
        ref = refs.setdefault(b[0], RefBook(1000))
        ref.apply(b[2], b[3], b[1])
        if b[4] is not None:
            with_c += 1
            assert ref.crc() == b[4]  # the data and the rule agree
    res = replay_capture("kraken", "book-v1", recording)
    assert no_errors(res), res.error_log
    assert res.book_msgs == frames == 4279
    assert res.checksums_verified == with_c == 4269
    assert len(res.books) == 10 and res.invalid() == []
    assert res.top() == {p: [*ref.sides()[0][0], *ref.sides()[1][0]] for p, ref in refs.items()}
    assert {p: sb.book.top(10**6) for p, sb in res.books.items()} == {p: ref.sides() for p, ref in refs.items()}


def _book_events(recording: Path) -> list[tuple[int, Any]]:
    events = capture_events("kraken", recording)
    return [(i, json.loads(ev.data)) for i, ev in enumerate(events)
            if isinstance(ev, Recv) and isinstance(ev.data, str) and ev.data.startswith("[")
            and '"book-' in ev.data]


def _replay_with(recording: Path, i: int, new: str | None) -> ReplayResult:
    events = capture_events("kraken", recording)
    ev = events[i]
    assert isinstance(ev, Recv)
    if new is None:
        del events[i]
    else:
        events[i] = replace(ev, data=new)
    r = Replayer("kraken", "book-v1")
    r.play(events)
    return r.result


def test_recording_altered_level_is_a_checksum_mismatch(recording: Path) -> None:
    book_events = _book_events(recording)
    refs: dict[str, RefBook] = {}
    for n, (i, d) in enumerate(book_events):
        pair, snap, bids, asks, _ = v1_book(d) or ("", False, [], [], None)
        ref = refs.setdefault(pair, RefBook(1000))
        ref.apply(bids, asks, snap)
        top10 = {p for p, _ in ref.sides()[0][:10]}
        hit = next((part for part in d[1:-2] for row in part.get("b", []) if row[0] in top10 and Decimal(row[1])),
                   None)
        if n > len(book_events) // 3 and hit is not None:
            hit["b"][0][1] = str(Decimal(hit["b"][0][1]) + Decimal("0.5"))
            res = _replay_with(recording, i, json.dumps(d, separators=(",", ":")))
            break
    else:
        pytest.fail("no update inside the top 10 bids found")
    assert {k: v for k, v in res.errors.items() if v} == {"checksum": 1}
    assert [e[:2] for e in res.error_log] == [(pair, "checksum")]
    assert res.invalid() == [pair] and res.books[pair].buffered > 0  # no later snapshot: diffs buffer


def test_recording_dropped_frame_is_caught_by_the_next_checksum(recording: Path) -> None:
    book_events = _book_events(recording)
    start, mismatch = len(book_events) // 2, False
    for n in range(start, len(book_events)):  # a dropped update the next checksum must reveal
        refs: dict[str, RefBook] = {}
        pair = ""
        for m, (_, d) in enumerate(book_events):
            b = v1_book(d)
            assert b is not None
            if m == n:
                pair = b[0]
                continue
            ref = refs.setdefault(b[0], RefBook(1000))
            ref.apply(b[2], b[3], b[1])
            if m > n and b[0] == pair and b[4] is not None:
                mismatch = ref.crc() != b[4]
                break
        if mismatch:
            break
    assert mismatch, "no droppable update found"
    res = _replay_with(recording, book_events[n][0], None)
    assert {k: v for k, v in res.errors.items() if v} == {"checksum": 1}
    assert [e[:2] for e in res.error_log] == [(pair, "checksum")]
    assert res.invalid() == [pair] and len(res.top()) == 9


def test_recording_asset_pairs_map_v1_names(recording: Path) -> None:
    body = next(r.data for r in read_cryptofeed(recording) if isinstance(r, Http) and "AssetPairs" in r.url)
    result = json.loads(body)["result"]
    markets = {m.venue_id: m for m in parse_instruments(body.encode())}
    assert len(markets) == sum(1 for r in result.values() if "wsname" in r) == 304 - 11  # no dark-pool ".d" pairs
    btc = markets["BTC/USD"]
    assert (btc.symbol, btc.base, btc.quote, btc.tick, btc.lot) == ("BTC/USD", "BTC", "USD", "0.1", "0.00000001")
    assert markets["DOGE/USD"].tick == "0.0000001" and "XBT/USD" not in markets and "XDG/USD" not in markets
    assert all(m.active for m in markets.values())  # 2021: no status field yet


# ------------------------------------------------------------------ v2 frames


@pytest.mark.parametrize("scanner", ["compiled", "pycore"])
def test_recording_frames_parse_the_same_through_the_v1_scanner_and_the_full_decoder(
        recording: Path, monkeypatch: pytest.MonkeyPatch, scanner: str) -> None:
    """Every v1 frame of the capture (and hand-written odd ones) gives the same BookMsg / Control / ParseError, and
    the same arrival count, whether ``kraken_v1`` reads it first or it is decoded in full."""
    if scanner == "compiled" and not l2mod.COMPILED:
        pytest.skip("scanner.book._core is not in use")
    frames: list[str | bytes] = [r.data for r in read_cryptofeed(recording) if isinstance(r, Recv)]
    scan = l2mod.kraken_v1 if scanner == "compiled" else pycore.kraken_v1
    # every book diff takes the scanner but the one of two parts ([id, {"a"}, {"b", "c"}, name, pair])
    assert sum(scan(f, 1, 0, BookMsg) is not None for f in frames) == 4268
    odd: list[str | bytes] = [
        '[1,{"a":[["1.0","2.0","3.0"]]},{"b":[["0.9","1.0","3.0"]],"c":"12"},"book-10","A/B"]',
        '[1,{"a":[["1.0","2.0","3.0"]],"c":"0012"},"book-10","A/B"]', '[1,{"c":"1"},"ticker","A/B"]',
        '[1,{"a":[["1.0","2.0","3.0"]],"c":12},"book-10","A/B"]', '[1,{"a":[["1.0"]]},"book-10","A/B"]',
        '[1,{"a":[["1.0","2.0","3.0"]],"x":1},"book-10","A/B"]', '[1,{},"book-10","A/B"]',
        '[1,{"a":[["1.0","2.0","3.0"]],"c":"7"},"book-10","A/Bé"]', '[1,{"b":[]},"book-10",5]',
    ]
    frames += odd + [f.encode() for f in odd if isinstance(f, str)]
    monkeypatch.setattr(kraken, "COMPILED", False)
    want = parse_outcomes(KrakenParser(kraken.V1_CHANNEL), frames)
    monkeypatch.setattr(kraken, "COMPILED", True)
    monkeypatch.setattr(kraken, "kraken_v1", scan)
    assert parse_outcomes(KrakenParser(kraken.V1_CHANNEL), frames) == want


def v2_frame(kind: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]], checksum: int,
             symbol: str = "BTC/USD", ts: str = "2026-07-01T12:00:00.440295Z") -> str:
    """A v2 book frame with JSON *numbers* written exactly as given (trailing zeros kept)."""
    def rows(side: list[tuple[str, str]]) -> str:
        return ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in side)

    stamp = f',"timestamp":"{ts}"' if kind == "update" else ""
    return (f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{symbol}","bids":[{rows(bids)}],'
            f'"asks":[{rows(asks)}],"checksum":{checksum}{stamp}}}]}}')


def test_protocol_test_vector_through_parser_and_book() -> None:
    assert crc(DOC_BIDS, DOC_ASKS) == 974947235
    raw = v2_frame("snapshot", DOC_BIDS, DOC_ASKS, 974947235)
    (msg,) = KrakenParser("book.10").parse(raw.encode(), 5)
    assert isinstance(msg, BookMsg) and msg.snapshot and msg.checksum == 974947235 and msg.recv_ns == 5
    assert [tuple(r) for r in msg.asks] == DOC_ASKS and [tuple(r) for r in msg.bids] == DOC_BIDS
    sb = make_book("book.10")
    assert sb.on_message(msg) and sb.book.bids.best() == ("0.05000", "0.00000500")
    floats = [(repr(float(p)), repr(float(q))) for p, q in DOC_BIDS]  # the float trap: 5e-06, 0.05
    assert crc(floats, [(repr(float(p)), repr(float(q))) for p, q in DOC_ASKS]) != 974947235


def test_v2_updates_truncate_to_depth_then_verify() -> None:
    p, ref, sb = KrakenParser("book.10"), RefBook(10), make_book("book.10")
    bids = [(f"{65000 - i}.0", "1.50000000") for i in range(10)]
    asks = [(f"{65001 + i}.0", "0.20000000") for i in range(10)]
    steps = [("snapshot", bids, asks), ("update", [("64999.5", "2.00000000")], []),  # pushes a bid out
             ("update", [("65000.0", "0")], [("65001.0", "0"), ("65011.0", "0.01000000")]),
             ("update", [("64991.0", "3.10000000"), ("64991.0", "3.20000000")], [])]  # same price twice: in order
    for kind, b, a in steps:
        ref.apply([list(x) for x in b], [list(x) for x in a], kind == "snapshot")
        (msg,) = p.parse(v2_frame(kind, b, a, ref.crc()), 0)
        assert isinstance(msg, BookMsg) and sb.on_message(msg)  # raises ChecksumMismatch if not
        assert sb.book.top(100) == ref.sides() and len(sb.book.bids) == len(ref.bids) <= 10
    assert sb.book.bids.best() == ("64999.5", "2.00000000") and sb.book.exch_ms == 1782907200440
    assert ("64991.0", "3.20000000") in sb.book.bids.top(10)
    (bad,) = p.parse(v2_frame("update", [("64999.5", "2.10000000")], [], ref.crc()), 0)
    assert isinstance(bad, BookMsg)
    with pytest.raises(ChecksumMismatch):
        sb.on_message(bad)


def test_slow_path_keeps_exact_text_and_rewrites_exponents() -> None:
    fast = v2_frame("update", [("0.05000", "0.00000500")], [("0.05005", "12.10")], 7)
    pretty = json.dumps(json.loads(fast, parse_float=Decimal), indent=2, default=str)  # quoted, spaced
    reordered = fast.replace('{"price":0.05005,"qty":12.10}', '{"qty":12.10,"price":0.05005}')
    exponent = fast.replace("0.00000500", "5e-06")
    market = Market("kraken", "BTC/USD", "BTC/USD", "BTC", "USD", "0.00001", "0.00000001", "1")
    for raw in (fast, pretty, reordered, exponent):
        (msg,) = KrakenParser("book.25", [market]).parse(raw, 0)
        assert isinstance(msg, BookMsg) and msg.checksum == 7 and msg.exch_ms == 1782907200440
        assert [list(r) for r in msg.bids] == [["0.05000", "0.00000500"]]
        assert [list(r) for r in msg.asks] == [["0.05005", "12.10"]]
    (msg,) = KrakenParser("book.25").parse(exponent, 0)  # no market known: plain, shortest text
    assert isinstance(msg, BookMsg) and list(msg.bids[0]) == ["0.05000", "0.000005"]


def test_arrival_order_makes_buffered_diffs_stale() -> None:
    p, sb = KrakenParser("book.10"), make_book("book.10")
    snap = v2_frame("snapshot", DOC_BIDS, DOC_ASKS, 974947235)
    before = p.parse(v2_frame("update", [("0.05000", "9.00000000")], [], 1), 0)[0]
    assert isinstance(before, BookMsg) and not sb.on_message(before) and sb.buffered == 1
    (s,) = p.parse(snap, 0)
    assert isinstance(s, BookMsg) and s.seq > before.seq and sb.on_message(s)
    assert sb.book.bids.best() == ("0.05000", "0.00000500")  # the older diff was not applied


@pytest.mark.parametrize(("raw", "want"), [
    ('{"method":"subscribe","result":{"channel":"book","depth":25,"snapshot":true,"symbol":"BTC/USD"},'
     '"success":true,"time_in":"x","time_out":"y","req_id":1}', Control("subscribed", "BTC/USD")),
    ('{"method":"unsubscribe","result":{"channel":"book","depth":25,"symbol":"ETH/USD"},"success":true}',
     Control("unsubscribed", "ETH/USD")),
    ('{"error":"Currency pair not supported XYZ/USD","method":"subscribe","req_id":3,"success":false,'
     '"symbol":"XYZ/USD","time_in":"x","time_out":"y"}',
     Control("error", "XYZ/USD", "subscribe: Currency pair not supported XYZ/USD")),
    ('{"method":"subscribe","result":{"channel":"ticker","symbol":"BTC/USD"},"success":true}',
     Control("info", "BTC/USD", "subscribe")),
    ('{"method":"pong","req_id":7,"time_in":"x","time_out":"y"}', Control("pong")),
    ('{"channel":"heartbeat"}', Control("info", "", "heartbeat")),
    ('{"channel":"status","type":"update","data":[{"api_version":"v2","connection_id":1,"system":"online",'
     '"version":"2.0.10"}]}', Control("info", "", "status online")),
    ('{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":1.5}]}', Control("ignored", "", "ticker")),
    ('{"error":"Exceeded msg rate","success":false}', Control("error", "", "Exceeded msg rate")),
    ('{"event":"heartbeat"}', Control("info", "", "heartbeat")),
    ('{"event":"pong","reqid":1}', Control("pong")),
    ('{"channelID":992,"channelName":"book-1000","event":"subscriptionStatus","pair":"XMR/USD",'
     '"status":"subscribed","subscription":{"depth":1000,"name":"book"}}', Control("subscribed", "XMR/USD")),
    ('{"errorMessage":"Currency pair not supported","event":"subscriptionStatus","pair":"X/Y","status":"error"}',
     Control("error", "X/Y", "Currency pair not supported")),
    ('[993,[["354.1","0.8","1618678142.5","s","l",""]],"trade","XMR/USD"]', Control("ignored", "XMR/USD", "trade")),
])
def test_control_frames(raw: str, want: Control) -> None:
    assert KrakenParser().parse(raw, 0) == [want]


@pytest.mark.parametrize("raw", [
    "{not json", "[1,2,3]", '"text"', '{"foo":1}', '{"channel":5}',
    '{"channel":"book","type":"delta","data":[]}',
    '{"channel":"book","type":"update","data":[]}',
    '{"channel":"book","type":"update","data":[7]}',
    '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":"x","asks":[]}]}',
    '{"channel":"book","type":"update","data":[{"bids":[],"asks":[],"checksum":1}]}',
    '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[],"checksum":"12"}]}',
    '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":true,"qty":1}],"asks":[]}]}',
    '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":1e-x,"qty":1}]}]}',
    '[1,{"a":5,"c":"1"},"book-10","XBT/USD"]', '[1,{"a":[],"c":"zz"},"book-10","XBT/USD"]', "[1,2,3,4]",
])
def test_malformed_frames_raise_parse_error(raw: str) -> None:
    with pytest.raises(ParseError):
        KrakenParser().parse(raw, 0)


def test_subscribe_resubscribe_depths_and_registry() -> None:
    insts = [f"C{i}/USD" for i in range(kraken.SUBSCRIBE_BATCH + 3)]
    frames = [orjson.loads(f) for f in subscribe(insts, "book.100")]
    assert [len(f["params"]["symbol"]) for f in frames] == [kraken.SUBSCRIBE_BATCH, 3]
    assert frames[0] == {"method": "subscribe", "req_id": 1, "params": {
        "channel": "book", "symbol": insts[: kraken.SUBSCRIBE_BATCH], "depth": 100, "snapshot": True}}
    un, sub = (orjson.loads(f) for f in resubscribe("BTC/USD", "book.25"))
    assert un["method"] == "unsubscribe" and un["params"] == {"channel": "book", "symbol": ["BTC/USD"], "depth": 25}
    assert sub["method"] == "subscribe" and sub["params"]["depth"] == 25 and sub["params"]["snapshot"] is True
    v1 = orjson.loads(subscribe(["XBT/USD"], "book-v1")[0])
    assert v1["event"] == "subscribe" and v1["subscription"] == {"name": "book", "depth": 1000}
    assert [make_book(c).max_levels for c in kraken.CHANNELS] == [25, 10, 100, 500, 1000, 1000]
    with pytest.raises(ValueError):
        make_book("book.50")
    spec = VENUES["kraken"]
    assert spec is kraken.VENUE and spec.channels[0] == "book.25" and spec.text_pong is not None
    assert spec.text_pong in b'{"method":"pong","req_id":1}' and spec.snapshot_request is None


def test_instruments_cache_and_errors() -> None:
    body = (Path(__file__).resolve().parents[1] / "configs" / "markets" / "kraken.json").read_bytes()
    markets = {m.symbol: m for m in parse_instruments(body)}
    for coin in ("BTC", "ETH", "XRP", "SOL", "DOGE", "ADA", "LINK", "BCH"):
        assert f"{coin}/USDT" in markets
    doge = markets["DOGE/USDT"]
    assert doge.venue_id == "DOGE/USDT" and doge.tick == "0.00001" and doge.lot == "0.00000001"
    assert markets["BTC/USDT"].min_size == "0.00005" and all(m.active for m in markets.values())
    delisted = body.replace(b'"status": "online"', b'"status": "delisted"', 1)
    assert not parse_instruments(delisted)[0].active
    for bad in (b'{"error":["EGeneral:Internal error"]}', b'{"error":[],"result":{"X":{"wsname":"A/B"}}}', b"[1]"):
        with pytest.raises(ParseError):
            parse_instruments(bad)


# ---- the inlined diff path against the generic SyncedBook one ------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kraken_book_matches_the_generic_synced_book(seed: int) -> None:
    ref = SyncedBook(kraken.relation, kraken.book_checksum, checksum_depth=kraken.CHECKSUM_DEPTH, max_levels=25)
    drive(make_book("book.25"), ref, seed, checksums=True)
