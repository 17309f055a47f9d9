"""KuCoin parser and books: the real 2021 capture (``/market/level2`` diffs bridged to recorded REST
snapshots) through :mod:`scanner.replay`, checked against an independent reference (json + Decimal);
corrupted copies of it; and hand-written current-protocol frames (welcome, ack, pong, errors,
straddling and price-"0" changes, malformed frames), the bullet-public response, instruments and
the depth horizon of the 100-level REST snapshot."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

import scanner.book.l2 as l2mod
import scanner.venues.kucoin as kucoin_mod
from scanner.book import pycore
from scanner.book.errors import CrossedBook, ParseError, SequenceGap
from scanner.book.sync import APPLY, GAP, STALE
from scanner.capture import Http, Recv, read_cryptofeed
from scanner.model import BookMsg, Control
from scanner.replay import Replayer, RestSnapshot, capture_events, main, snapshot_inst
from scanner.venues import VENUES
from scanner.venues.kucoin import (
    HORIZON_MIN_LEVELS,
    PING,
    PONG_MARK,
    VENUE,
    DepthHorizon,
    KucoinBook,
    KucoinParser,
    parse_connect,
    parse_instruments,
    parse_snapshot,
    relation,
    subscribe,
)
from tests.book_drive import drive
from tests.parse_outcomes import parse_outcomes

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = "cryptofeed/KUCOIN.jsonl.zst"
INSTS = ["ANKR-BTC", "BCHSV-USDT", "CAPP-BTC", "COV-BTC", "DAPPT-BTC", "EQZ-BTC", "FET-BTC", "NRG-BTC", "SNX-BTC"]


class RefBook:
    """Independent reference: Decimal keys, exact strings, KuCoin's documented per-change procedure."""

    def __init__(self, snap: dict[str, object]) -> None:
        self.bids: dict[Decimal, tuple[str, str]] = {}
        self.asks: dict[Decimal, tuple[str, str]] = {}
        for side, rows in ((self.bids, snap["bids"]), (self.asks, snap["asks"])):
            assert isinstance(rows, list)
            for px, sz in rows:
                if Decimal(sz):
                    side[Decimal(px)] = (px, sz)
        self.seq = int(str(snap["sequence"]))

    def update(self, data: dict[str, object]) -> None:
        if int(str(data["sequenceEnd"])) <= self.seq:
            return
        assert int(str(data["sequenceStart"])) <= self.seq + 1, "gap in the capture"
        changes = data["changes"]
        assert isinstance(changes, dict)
        rows = sorted((int(c[2]), name, c) for name in ("bids", "asks") for c in changes[name])
        for seq, name, (px, sz, _) in rows:
            if seq <= self.seq:
                continue
            side = self.bids if name == "bids" else self.asks
            if px != "0":
                if Decimal(sz):
                    side[Decimal(px)] = (px, sz)
                else:
                    side.pop(Decimal(px), None)
            self.seq = seq
        self.seq = int(str(data["sequenceEnd"]))

    def top(self) -> list[str]:
        b, a = self.bids[max(self.bids)], self.asks[min(self.asks)]
        return [b[0], b[1], a[0], a[1]]


def reference(events: list[Recv | RestSnapshot]) -> tuple[dict[str, list[str]], dict[str, int]]:
    refs: dict[str, RefBook] = {}
    pending: dict[str, list[dict[str, object]]] = {}
    for ev in events:
        if isinstance(ev, RestSnapshot):
            refs[ev.inst] = ref = RefBook(json.loads(ev.body)["data"])
            for data in pending.pop(ev.inst, []):
                ref.update(data)
            continue
        d = json.loads(ev.data)
        if d.get("subject") != "trade.l2update":
            continue
        sym = d["data"]["symbol"]
        if sym in refs:
            refs[sym].update(d["data"])
        else:
            pending.setdefault(sym, []).append(d["data"])
    return {k: r.top() for k, r in refs.items()}, {k: r.seq for k, r in refs.items()}


@pytest.fixture(scope="module")
def events(recorded_dir: Path) -> list[Recv | RestSnapshot]:
    return capture_events("kucoin", recorded_dir / CAPTURE)


def play(evs: list[Recv | RestSnapshot]) -> Replayer:
    r = Replayer("kucoin", "level2")
    r.play(evs)
    return r


def test_capture_snapshots_are_the_keyed_full_book_matched_by_an_alt_path(recorded_dir: Path) -> None:
    urls = [r.url for r in read_cryptofeed(recorded_dir / CAPTURE) if isinstance(r, Http) and "orderbook" in r.url]
    assert len(urls) == 9 and {urlsplit(u).path for u in urls} == {"/api/v3/market/orderbook/level2"}
    assert VENUE.snapshot_alt_paths == ("/api/v3/market/orderbook/level2",)
    live = VENUE.snapshot_request is not None and VENUE.snapshot_request("https://api.kucoin.com", "BTC-USDT")
    assert live and live.url == "https://api.kucoin.com/api/v1/market/orderbook/level2_100?symbol=BTC-USDT"
    assert snapshot_inst(VENUE, live.url) == "BTC-USDT"
    assert sorted(snapshot_inst(VENUE, u) or "" for u in urls) == sorted(
        parse_qs(urlsplit(u).query)["symbol"][0] for u in urls)
    assert snapshot_inst(VENUE, "https://api.kucoin.com/api/v1/market/orderbook/level2_20?symbol=X") is None


def test_capture_replays_with_every_book_valid_and_equal_to_the_reference(events: list[Recv | RestSnapshot]) -> None:
    res = play(events).result
    assert res.parse_errors == 0 and not any(res.errors.values()), res.error_log
    assert res.snapshots == 9 and sorted(res.books) == INSTS and res.invalid() == []
    assert res.book_msgs == 3853 and res.frames == 4721
    assert res.checksums_verified == 0  # KuCoin publishes no checksum: integrity rests on the sequences
    tops, seqs = reference(events)
    assert res.top() == tops
    assert {k: b.book.seq for k, b in res.books.items()} == seqs
    # the diffs that arrived before each snapshot were bridged, not lost
    assert res.applied > res.book_msgs - 200


def test_capture_dropped_diff_is_a_gap_for_that_symbol_only(events: list[Recv | RestSnapshot]) -> None:
    snap_at = next(i for i, e in enumerate(events) if isinstance(e, RestSnapshot) and e.inst == "BCHSV-USDT")
    diffs = [i for i, e in enumerate(events) if i > snap_at and isinstance(e, Recv)
             and '"symbol":"BCHSV-USDT"' in str(e.data) and "trade.l2update" in str(e.data)]
    assert len(diffs) > 1000
    evs = list(events)
    del evs[diffs[len(diffs) // 2]]
    res = play(evs).result
    assert {k: v for k, v in res.errors.items() if v} == {"seq_gap": 1}
    assert [e[:2] for e in res.error_log] == [("BCHSV-USDT", "seq_gap")]
    assert res.invalid() == ["BCHSV-USDT"] and res.books["BCHSV-USDT"].buffered > 0
    assert sorted(res.top()) == [i for i in INSTS if i != "BCHSV-USDT"]


def test_capture_altered_level_crossing_the_book_is_detected(events: list[Recv | RestSnapshot]) -> None:
    snap_at = next(i for i, e in enumerate(events) if isinstance(e, RestSnapshot) and e.inst == "SNX-BTC")
    target = next(i for i, e in enumerate(events) if i > snap_at + 50 and isinstance(e, Recv)
                  and '"symbol":"SNX-BTC"' in str(e.data) and '"bids":[["0.' in str(e.data))
    ev = events[target]
    assert isinstance(ev, Recv)
    d = json.loads(ev.data)
    row = d["data"]["changes"]["bids"][0]
    d["data"]["changes"]["bids"][0] = ["0.5", "1", row[2]]  # a bid far above every ask, sequence intact
    evs = list(events)
    evs[target] = replace(ev, data=json.dumps(d))
    res = play(evs).result
    assert {k: v for k, v in res.errors.items() if v} == {"crossed": 1}
    assert [e[:2] for e in res.error_log] == [("SNX-BTC", "crossed")] and res.invalid() == ["SNX-BTC"]


def test_replay_cli_on_the_capture(recorded_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(file=recorded_dir / CAPTURE, venue="kucoin", channel=None, runs=1, warmup_lines=0,
                              strict=True)
    assert main(args) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["venue"] == "kucoin" and d["channel"] == "level2" and d["us_per_msg"] > 0
    assert d["snapshots"] == 9 and d["invalid"] == [] and not any(d["errors"].values())


@pytest.mark.parametrize("scanner", ["compiled", "pycore"])
def test_capture_frames_parse_the_same_through_the_l2_scanner_and_the_full_decoder(
        recorded_dir: Path, monkeypatch: pytest.MonkeyPatch, scanner: str) -> None:
    """Every frame of the capture (and the hand-written odd ones) gives the same BookMsg / Control /
    ParseError whether ``kucoin_l2`` reads it first or orjson decodes it in full."""
    if scanner == "compiled" and not l2mod.COMPILED:
        pytest.skip("scanner.book._core is not in use")
    frames: list[str | bytes] = [r.data for r in read_cryptofeed(recorded_dir / CAPTURE) if isinstance(r, Recv)]
    assert len(frames) == 4721
    scan = l2mod.kucoin_l2 if scanner == "compiled" else pycore.kucoin_l2
    kinds = Counter(type(scan(f, 0, BookMsg)).__name__ for f in frames)
    # every l2update is read by the scanner, and every message of another subject (tickers, matches); the 14 left
    # are acks and the welcome
    assert kinds == {"BookMsg": 3853, "str": 854, "NoneType": 14}
    odd: list[str | bytes] = [
        l2("BTC-USDT", 14701689783, 14701689786, [["67990.10", "0", "14701689784"], ["0", "0", "14701689786"]],
           [["67993.3", "1.21427407", "14701689783"], ["0", "1", "14701689785"]]),
        l2("A-B", 5, 4, [], []), l2("A-B", 4, 4, [["1", "2", "4"]], [], time=0),
        l2("A-B", -3, 10**17, [], [], time=-1), l2("A-B", 1, 10**18, [], []),
        l2("A-B", 1, 1, [["1", "2"]], []), l2("A-B", 1, 1, [["1", "2", "3", "4"]], []),
        b'{"type":"message","subject":"trade.l2update","data":{"changes":{},"sequenceStart":1,"sequenceEnd":2,'
        b'"symbol":"A-B","time":null}}',
        b'{"type":"message","subject":"trade.l2update","data":{"changes":{"bids":[]},"sequenceStart":1,'
        b'"sequenceEnd":2,"symbol":"A-B","time":1.5}}',
        b'{"type":"message","subject":"trade.l2update","data":{"changes":{"asks":[["1","2","3"]]},'
        b'"sequenceStart":"1","sequenceEnd":2,"symbol":"A-B"}}',
        b'{"type":"message","subject":"trade.l2update","data":{"changes":{"asks":[]},"sequenceStart":1,'
        b'"sequenceEnd":2,"symbol":7}}',
        '{"type":"message","subject":"trade.l2update","data":{"changes":{"asks":[["1","2","3"]]},'
        '"sequenceStart":1,"sequenceEnd":2,"symbol":"A-Bé"}}',
        '{ "type" : "message" , "subject" : "trade.l2update" , "topic" : "/market/level2:A-B" , "data" : '
        '{ "changes" : { "bids" : [ [ "1" , "2" , "3" ] ] , "x" : [ {} ] } , "sequenceStart" : 1 , "sequenceEnd" : 3 ,'
        ' "symbol" : "A-B" , "time" : 9 } }',
        b'{"data":{"changes":{"asks":[["1","2","3"]]},"sequenceStart":1,"sequenceEnd":2,"symbol":"A-B"},'
        b'"subject":"trade.ticker","topic":"/market/ticker:A-B","type":"message"}',
        b'{"type":"message","subject":"trade.ticker","topic":7,"data":{}}',
        b'{"type":"message","subject":"trade.ticker","data":{}}', b'{"type":"message","subject":"","topic":""}',
        *(raw for raw in [b"{not json", b"[1,2]", b'{"id":"1"}', b'{"type":"message","data":{}}',
                          b'{"type":"message","subject":"trade.l2update","data":[]}',
                          b'{"type":"message","subject":"trade.l2update","data":{"sequenceStart":1}}']),
    ]
    frames += odd + [f.decode() if isinstance(f, bytes) else f.encode() for f in odd]
    monkeypatch.setattr(kucoin_mod, "COMPILED", False)
    want = parse_outcomes(KucoinParser(), frames)
    monkeypatch.setattr(kucoin_mod, "COMPILED", True)
    monkeypatch.setattr(kucoin_mod, "kucoin_l2", scan)
    assert parse_outcomes(KucoinParser(), frames) == want


# ------------------------------------------------------------------ hand-written current-protocol frames


def l2(symbol: str, start: int, end: int, bids: list[list[str]], asks: list[list[str]], time: int = 1729816425625,
       ) -> bytes:
    return orjson.dumps({"topic": f"/market/level2:{symbol}", "type": "message", "subject": "trade.l2update",
                         "data": {"changes": {"asks": asks, "bids": bids}, "sequenceStart": start,
                                  "sequenceEnd": end, "symbol": symbol, "time": time}})


def snapshot(seq: int, bids: list[list[str]], asks: list[list[str]]) -> BookMsg:
    body = orjson.dumps({"code": "200000", "data": {"time": 1, "sequence": str(seq), "bids": bids, "asks": asks}})
    return parse_snapshot("BTC-USDT", body, 7)


def only(parser: KucoinParser, raw: bytes | str) -> BookMsg | Control:
    (item,) = parser.parse(raw, 5)
    return item


def test_l2update_keeps_exact_strings_and_drops_price_zero_steps() -> None:
    p = KucoinParser()
    msg = only(p, l2("BTC-USDT", 14701689783, 14701689786,
                     [["67990.10", "0", "14701689784"], ["0", "0", "14701689786"]],
                     [["67993.3", "1.21427407", "14701689783"], ["67995", "0.00100000", "14701689785"]]))
    assert msg == BookMsg("BTC-USDT", False, [["67990.10", "0", "14701689784"]],
                          [["67993.3", "1.21427407", "14701689783"], ["67995", "0.00100000", "14701689785"]],
                          14701689786, 14701689783, 0, 1729816425625, 5)
    old = orjson.loads(l2("X-BTC", 3, 3, [], [["0", "0", "3"]]))  # 2021 shape: no "time"
    del old["data"]["time"]
    assert only(p, orjson.dumps(old)) == BookMsg("X-BTC", False, [], [], 3, 3, 0, 0, 5)


def test_controls() -> None:
    p = KucoinParser()
    assert only(p, '{"id":"hQvf8jkno","type":"welcome"}') == Control("ready", "", "hQvf8jkno")
    assert only(p, '{"id":"1545910660739","type":"ack"}') == Control("subscribed", "", "1545910660739")
    assert only(p, '{"id":"scanner","type":"pong"}') == Control("pong", "", "scanner")
    assert only(p, '{"id":"1","type":"error","code":404,"data":"topic /market/level2:NOPE-USDT is not found"}'
                ) == Control("error", "", "404 topic /market/level2:NOPE-USDT is not found")
    expired = '{"type":"error","code":401,"data":"token is expired"}'
    assert only(p, expired) == Control("error", "", "401 token is expired")
    ticker = '{"topic":"/market/ticker:BTC-USDT","type":"message","subject":"trade.ticker","data":{"price":"1"}}'
    assert only(p, ticker) == Control("ignored", "BTC-USDT", "/market/ticker")
    assert only(p, '{"type":"notice","data":"x"}') == Control("info", "", "notice")


@pytest.mark.parametrize("raw", [
    b"{not json",
    b"[1,2]",
    b'{"id":"1"}',
    b'{"type":"message","subject":"trade.l2update","data":{"sequenceStart":1}}',
    b'{"type":"message","subject":"trade.l2update","data":[]}',
    b'{"type":"message","subject":"trade.l2update","data":{"changes":{"asks":"x","bids":[]},"sequenceStart":1,'
    b'"sequenceEnd":1,"symbol":"A-B"}}',
    b'{"type":"message","subject":"trade.l2update","data":{"changes":{"asks":[{"p":1}],"bids":[]},'
    b'"sequenceStart":1,"sequenceEnd":1,"symbol":"A-B"}}',
    b'{"type":"message","subject":"trade.l2update","data":{"changes":{"asks":[],"bids":[]},"sequenceStart":"x",'
    b'"sequenceEnd":1,"symbol":"A-B"}}',
    l2("A-B", 5, 4, [], []),
    b'{"type":"message","data":{}}',
])
def test_malformed_frames_raise_parse_error(raw: bytes) -> None:
    with pytest.raises(ParseError, match="kucoin"):
        KucoinParser().parse(raw, 0)


def test_relation() -> None:
    m = BookMsg("X", False, [], [], 110, 101, 0, 0, 0)  # sequenceStart 101, sequenceEnd 110
    assert relation(m, 110, False) == STALE and relation(m, 200, False) == STALE
    assert relation(m, 100, False) == APPLY and relation(m, 105, True) == APPLY
    assert relation(m, 99, False) == GAP


def test_straddling_message_applies_only_changes_after_the_snapshot() -> None:
    p, book = KucoinParser(), KucoinBook()
    early = only(p, l2("BTC-USDT", 98, 99, [["100", "1", "98"]], [["101", "9", "99"]]))
    straddle = only(p, l2("BTC-USDT", 99, 102, [["100", "5", "99"], ["99", "3", "101"]],
                          [["101", "7", "100"], ["102", "2", "102"]]))
    assert isinstance(early, BookMsg) and isinstance(straddle, BookMsg)
    assert book.on_message(early) is False and book.on_message(straddle) is False  # buffered
    assert book.on_snapshot(snapshot(100, [["100", "4"]], [["101", "6"]]))
    # 99 and 100 are in the snapshot already; 101 and 102 are applied
    assert book.book.top(10) == ([("100", "4"), ("99", "3")], [("101", "6"), ("102", "2")])
    assert book.valid and book.book.seq == 102
    nxt = only(p, l2("BTC-USDT", 103, 103, [], [["101", "0", "103"]]))
    assert isinstance(nxt, BookMsg) and book.on_message(nxt) and book.book.asks.top(5) == [("102", "2")]
    with pytest.raises(SequenceGap):
        gap = only(p, l2("BTC-USDT", 105, 105, [], [["103", "1", "105"]]))
        assert isinstance(gap, BookMsg)
        book.on_message(gap)
    assert not book.valid


def test_crossed_change_and_bad_level_invalidate() -> None:
    book = KucoinBook()
    book.on_snapshot(snapshot(10, [["100", "1"]], [["101", "1"]]))
    with pytest.raises(CrossedBook):
        book.on_message(BookMsg("BTC-USDT", False, [["101.5", "1", "11"]], [], 11, 11, 0, 0, 0))
    book.on_snapshot(snapshot(10, [["100", "1"]], [["101", "1"]]))
    with pytest.raises(Exception, match="sequence") as exc:  # a straddling row without its sequence
        book.on_message(BookMsg("BTC-USDT", False, [["99", "1"]], [], 12, 10, 0, 0, 0))
    assert exc.type.__name__ == "BadLevel" and not book.valid


def test_depth_horizon_of_a_truncated_snapshot() -> None:
    bids = [[str(1000 - i), "1"] for i in range(100)]  # exactly 100 levels: truncated by level2_100
    asks = [[str(2000 + i), "1"] for i in range(40)]  # fewer: the whole side
    book = KucoinBook()
    assert book.on_snapshot(snapshot(1, bids, asks))
    seq = 1
    # new bids below the horizon (901) are exact values but cannot vouch for the levels between
    book.on_message(BookMsg("BTC-USDT", False, [["500", "1", "2"]], [], 2, 2, 0, 0, 0))
    seq = 2
    for i in range(100 - HORIZON_MIN_LEVELS):  # delete from the top: 20 known levels remain
        seq += 1
        book.on_message(BookMsg("BTC-USDT", False, [[str(1000 - i), "0", str(seq)]], [], seq, seq, 0, 0, 0))
    assert book.valid and len(book.book.bids.keys) == HORIZON_MIN_LEVELS + 1
    # the ask side came complete: deleting it down to one level is fine
    for i in range(39):
        seq += 1
        book.on_message(BookMsg("BTC-USDT", False, [], [[str(2000 + i), "0", str(seq)]], seq, seq, 0, 0, 0))
    assert book.valid and book.book.asks.top(5) == [("2039", "1")]
    with pytest.raises(DepthHorizon):
        book.on_message(BookMsg("BTC-USDT", False, [["920", "0", str(seq + 1)]], [], seq + 1, seq + 1, 0, 0, 0))
    assert not book.valid and DepthHorizon.routine and DepthHorizon.reason == "depth_horizon"


# ------------------------------------------------------------------ REST bodies and requests


def test_snapshot_parsing() -> None:
    snap = snapshot(3262786978, [["6500.12", "0.45054140"]], [["6500.16", "0.57753524"]])
    assert snap == BookMsg("BTC-USDT", True, [["6500.12", "0.45054140"]], [["6500.16", "0.57753524"]],
                           3262786978, 0, 0, 1, 7)
    for body in (b'{"code":"900001","msg":"symbol not exists"}', b"<html>", b'{"code":"200000","data":{}}',
                 b'{"code":"200000","data":{"sequence":null,"bids":[],"asks":[]}}'):
        with pytest.raises(ParseError, match="kucoin"):
            parse_snapshot("X", body, 0)


def test_bullet_public_response() -> None:
    token = "2neAiuYvAU61ZDXANAGAsiL4-iAExhsBXZxftpOeh_55i3Ysy2q2LE+s/EWU64mdzUOPusi34M_wGoSf7iNyEWJ1UQy47Yb=="
    body = orjson.dumps({"code": "200000", "data": {"token": token, "instanceServers": [{
        "endpoint": "wss://ws-api-spot.kucoin.com/", "encrypt": True, "protocol": "websocket",
        "pingInterval": 18000, "pingTimeout": 10000}]}})
    info = parse_connect(body, "wss://ignored.example/")
    url = urlsplit(info.url)
    assert (url.scheme, url.netloc, url.path) == ("wss", "ws-api-spot.kucoin.com", "/")
    q = parse_qs(url.query)
    assert q["token"] == [token] and len(q["connectId"][0]) == 32 and info.ping_interval_s == 18.0
    assert parse_connect(body, "").url != info.url  # a fresh connectId per connection
    tail = parse_connect(body.replace(b"kucoin.com/", b"kucoin.com/endpoint?x=1"), "")
    assert tail.url.startswith("wss://ws-api-spot.kucoin.com/endpoint?x=1&token=")
    for bad in (b'{"code":"400100","msg":"x"}', b'{"code":"200000","data":{"token":"t","instanceServers":[]}}',
                b'{"code":"200000","data":{"token":"","instanceServers":[{"endpoint":"wss://a/"}]}}',
                b'{"code":"200000","data":{"token":"t","instanceServers":[{"endpoint":"https://a/"}]}}', b"nope"):
        with pytest.raises(ParseError, match="kucoin"):
            parse_connect(bad, "")


def test_subscribe_batches_of_100_and_keepalive_frames() -> None:
    insts = [f"C{i}-USDT" for i in range(250)]
    frames = [json.loads(f) for f in subscribe(insts, "level2")]
    assert [len(f["topic"].split(":")[1].split(",")) for f in frames] == [100, 100, 50]
    assert all(f["type"] == "subscribe" and f["response"] is True and f["privateChannel"] is False for f in frames)
    assert frames[0]["topic"].startswith("/market/level2:C0-USDT,C1-USDT,")
    assert len({f["id"] for f in frames}) == 3
    assert [s for f in frames for s in f["topic"].split(":")[1].split(",")] == insts
    assert VENUE.resubscribe("C0-USDT", "level2") == []  # resync comes from REST
    assert json.loads(PING) == {"id": "scanner", "type": "ping"} and PONG_MARK in b'{"id":"scanner","type":"pong"}'
    assert VENUE.wait_ready and VENUE.connect_path == "/api/v1/bullet-public" and VENUE.snapshot_on_subscribe
    assert VENUES["kucoin"] is VENUE


def test_instruments_cache_and_the_2021_v1_listing(recorded_dir: Path) -> None:
    markets = {m.symbol: m for m in parse_instruments((ROOT / "configs" / "markets" / "kucoin.json").read_bytes())}
    for coin in ("BTC", "ETH", "XRP", "BNB", "SOL", "TRX", "DOGE", "ADA", "HYPE", "BCH", "LINK", "ZEC"):
        assert markets[f"{coin}/USDT"].venue_id == f"{coin}-USDT" and markets[f"{coin}/USDT"].active
    btc = markets["BTC/USDT"]
    assert (btc.tick, btc.lot, btc.min_size) == ("0.1", "0.00000001", "0.00001")
    assert markets["BTC/USDC"].quote == "USDC" and markets["ETH/BTC"].tick == "0.00001"
    v1 = next(r for r in read_cryptofeed(recorded_dir / CAPTURE) if isinstance(r, Http) and r.url.endswith("symbols"))
    old = {m.venue_id: m for m in parse_instruments(v1.data.encode())}
    assert len(old) > 500 and old["REQ-ETH"].symbol == "REQ/ETH" and old["REQ-ETH"].tick == "0.0000001"
    with pytest.raises(ParseError, match="kucoin"):
        parse_instruments(b'{"code":"400100","msg":"x"}')
    with pytest.raises(ParseError, match="kucoin"):
        parse_instruments(b'{"code":"200000","data":[{"symbol":"A-B"}]}')


# ---- the inlined diff path against the generic SyncedBook one ------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kucoin_book_matches_the_generic_synced_book(seed: int) -> None:
    drive(KucoinBook(), KucoinBook(), seed, checksums=False)


def test_horizon_is_the_worst_snapshot_row_whether_or_not_it_was_loaded() -> None:
    """The horizon comes from the loaded keys when every row was kept, else from the rows themselves."""
    bids = [[str(1000 - i), "1"] for i in range(100)]
    asks = [[str(2000 + i), "1"] for i in range(120)]
    book = KucoinBook()
    book.on_snapshot(snapshot(1, bids, asks))
    assert book.horizon == (-901.0, 2119.0)
    bids[-1][1] = "0"  # the worst bid is a zero-size row (not loaded) and a price repeats: still the rows' worst
    book.on_snapshot(snapshot(1, [*bids, ["950", "2"]], [*asks, ["2119", "0"]]))
    assert book.horizon == (-901.0, 2119.0) and len(book.book.bids.keys) == 99 and len(book.book.asks.keys) == 119
    book.on_snapshot(snapshot(1, bids[:99], asks[:99]))  # complete sides
    assert book.horizon == (float("inf"), float("inf"))
