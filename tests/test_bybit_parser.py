"""The Bybit parser and books on real recorded traffic (``../shared/recorded/cryptofeed/BYBIT``) and on
hand-written current-protocol frames. Expectations on the recording are recomputed here
independently (json + Decimal), never taken from the code under test."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from scanner.book.errors import ParseError
from scanner.book.sync import APPLY, GAP, STALE, SyncedBook
from scanner.capture import Connect, Recv, read_cryptofeed
from scanner.model import BookMsg, Control
from scanner.replay import Replayer, ReplayResult, capture_events, replay_capture
from scanner.venues import VENUES
from scanner.venues.bybit import (
    BybitParser,
    channel_depth,
    make_book,
    parse_instruments,
    relation,
    resubscribe,
    subscribe,
)
from tests.book_drive import drive

ROOT = Path(__file__).resolve().parent.parent
SPOT = "wss://stream.bybit.com/v5/public/spot"


def capture(recorded_dir: Path) -> Path:
    return recorded_dir / "cryptofeed" / "BYBIT.jsonl.zst"


def spot_book_frames(recorded_dir: Path) -> list[dict[str, Any]]:
    """The spot connection's orderbook frames, found by the connection's URL."""
    urls: dict[str, str] = {}
    out = []
    for r in read_cryptofeed(capture(recorded_dir)):
        if isinstance(r, Connect):
            urls[r.conn] = r.addr
        elif isinstance(r, Recv) and urls.get(r.conn) == SPOT and isinstance(r.data, str):
            d = json.loads(r.data)
            if d.get("topic", "").startswith("orderbook."):
                out.append(d)
    return out


def reference_tops(frames: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Bybit's documented procedure by hand: snapshot replaces, delta needs u == last u + 1."""
    books: dict[str, tuple[dict[Decimal, tuple[str, str]], dict[Decimal, tuple[str, str]]]] = {}
    last: dict[str, int] = {}
    for d in frames:
        data = d["data"]
        sym = data["s"]
        if d["type"] == "snapshot":
            books[sym] = ({}, {})
        else:
            assert data["u"] == last[sym] + 1, f"gap in {sym}"
        last[sym] = data["u"]
        for side, rows in zip(books[sym], (data["b"], data["a"]), strict=True):
            for px, sz in rows:
                if Decimal(sz) == 0:
                    side.pop(Decimal(px), None)
                else:
                    side[Decimal(px)] = (px, sz)
    out = {}
    for sym, (bids, asks) in books.items():
        b, a = bids[max(bids)], asks[min(asks)]
        out[sym] = [b[0], b[1], a[0], a[1]]
    return out


def no_errors(res: ReplayResult) -> bool:
    return res.parse_errors == 0 and not any(res.errors.values())


def test_recording_spot_books_stay_valid(recorded_dir: Path) -> None:
    frames = spot_book_frames(recorded_dir)
    assert len(frames) == 550 and {d["topic"] for d in frames} == {"orderbook.200.BTCUSDT", "orderbook.200.ETHUSDT"}
    res = replay_capture("bybit", "orderbook.200", capture(recorded_dir))
    assert no_errors(res), res.error_log
    assert res.book_msgs == res.applied == len(frames)
    assert res.checksums_verified == 0  # Bybit sends no checksum; integrity is the u chain
    assert sorted(res.books) == ["BTCUSDT", "ETHUSDT"] and res.invalid() == []
    assert res.top() == reference_tops(frames)
    last = {d["data"]["s"]: d["data"]["u"] for d in frames}
    assert {k: sb.book.seq for k, sb in res.books.items()} == last
    assert all(len(sb.book.bids) <= 200 and not sb.book.crossed() for sb in res.books.values())


def test_recording_linear_frames_are_left_out(recorded_dir: Path) -> None:
    events = capture_events("bybit", capture(recorded_dir))
    conns = {e.conn for e in events if isinstance(e, Recv)}
    assert conns == {"BYBIT.ws.3"}  # the spot socket; BYBIT.ws.2 is /v5/public/linear
    # the linear socket has the same topics and symbols: without the filter its BTCUSDT/ETHUSDT
    # frames would land in the spot books, and SOLUSDT/DOGEUSDT would appear as spot books
    everything = [r for r in read_cryptofeed(capture(recorded_dir)) if isinstance(r, Recv)]
    mixed = Replayer("bybit", "orderbook.200")
    mixed.play(everything)
    assert sorted(mixed.result.books) == ["BTCUSDT", "DOGEUSDT", "ETHUSDT", "SOLUSDT"]
    assert mixed.result.book_msgs > 2 * len(spot_book_frames(recorded_dir))


def test_recording_dropped_delta_is_a_gap(recorded_dir: Path) -> None:
    events = capture_events("bybit", capture(recorded_dir))
    eth = [i for i, e in enumerate(events) if isinstance(e, Recv) and '"orderbook.200.ETHUSDT"' in str(e.data)
           and '"type":"delta"' in str(e.data)]
    del events[eth[len(eth) // 2]]
    r = Replayer("bybit", "orderbook.200")
    r.play(events)
    res = r.result
    assert {k: v for k, v in res.errors.items() if v} == {"seq_gap": 1}
    assert [e[:2] for e in res.error_log] == [("ETHUSDT", "seq_gap")]
    assert res.invalid() == ["ETHUSDT"] and res.books["ETHUSDT"].buffered > 0
    assert sorted(res.top()) == ["BTCUSDT"]


def test_recording_altered_level_that_crosses_is_caught(recorded_dir: Path) -> None:
    events = capture_events("bybit", capture(recorded_dir))
    i, d = next((i, json.loads(str(e.data))) for i, e in enumerate(events) if isinstance(e, Recv) and i > 200
                and '"orderbook.200.BTCUSDT"' in str(e.data) and '"type":"delta"' in str(e.data))
    d["data"]["b"].insert(0, ["99999.9", "1"])  # a bid far above every ask, sequence intact
    ev = events[i]
    assert isinstance(ev, Recv)
    events[i] = replace(ev, data=json.dumps(d, separators=(",", ":")))
    r = Replayer("bybit", "orderbook.200")
    r.play(events)
    assert {k: v for k, v in r.result.errors.items() if v} == {"crossed": 1}
    assert r.result.invalid() == ["BTCUSDT"]


# ------------------------------------------------------------------ hand-written current-protocol frames


def frame(kind: str, u: int, b: list[list[str]], a: list[list[str]], topic: str = "orderbook.50.BTCUSDT",
          **extra: Any) -> bytes:
    sym = topic.rpartition(".")[2]
    return orjson.dumps({"topic": topic, "ts": 1700000000123, "type": kind,
                         "data": {"s": sym, "b": b, "a": a, "u": u, "seq": 7961638724, **extra},
                         "cts": 1700000000120})


def test_snapshot_delta_and_restart() -> None:
    p = BybitParser()
    (snap,) = p.parse(frame("snapshot", 100, [["16493.50", "0.006"]], [["16611.00", "0.029"]]), 5)
    assert snap == BookMsg("BTCUSDT", True, [["16493.50", "0.006"]], [["16611.00", "0.029"]], 100, 99, 0,
                           1700000000123, 5)
    (delta,) = p.parse(frame("delta", 101, [["16493.50", "0"]], []), 6)
    assert isinstance(delta, BookMsg) and not delta.snapshot and delta.seq == 101 and delta.bids[0][1] == "0"
    (restart,) = p.parse(frame("delta", 1, [["16000", "1"]], [["16001", "1"]]), 7)
    assert isinstance(restart, BookMsg) and restart.snapshot and restart.seq == 1
    book = make_book("orderbook.50")
    for m in (snap, delta):
        assert isinstance(m, BookMsg)
        book.on_message(m)
    assert book.valid and book.book.bids.top(5) == [] and book.book.asks.top(5) == [("16611.00", "0.029")]
    assert book.on_message(restart) and book.book.seq == 1 and book.book.top(1) == ([("16000", "1")], [("16001", "1")])


def test_other_channels_and_depths_are_ignored() -> None:
    p = BybitParser("orderbook.200")
    assert p.parse(frame("delta", 5, [], []), 0) == [Control("ignored", "BTCUSDT", "orderbook.50.BTCUSDT")]
    ticker = b'{"topic":"tickers.BTCUSDT","ts":1,"type":"snapshot","cs":1,"data":{"symbol":"BTCUSDT"}}'
    assert p.parse(ticker, 0) == [Control("ignored", "", "tickers.BTCUSDT")]
    assert p.parse(b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[]}', 0) == [
        Control("ignored", "", "publicTrade.BTCUSDT")]


def test_acks_pongs_and_errors() -> None:
    p = BybitParser()
    spot_ack = b'{"success":true,"ret_msg":"subscribe","conn_id":"2324d924","req_id":"test","op":"subscribe"}'
    assert p.parse(spot_ack, 0) == [Control("subscribed", "", "test")]
    linear_ack = b'{"success":true,"ret_msg":"","conn_id":"d8bu1","req_id":"","op":"subscribe"}'
    assert p.parse(linear_ack, 0) == [Control("subscribed", "", "")]
    assert p.parse(b'{"success":true,"ret_msg":"","conn_id":"x","op":"unsubscribe"}', 0) == [
        Control("unsubscribed", "", "")]
    for pong in (b'{"success":true,"ret_msg":"pong","conn_id":"0970e817","op":"ping"}',
                 b'{"success":true,"ret_msg":"pong","conn_id":"a","req_id":"","op":"ping"}',
                 b'{"args":["1672916271846"],"op":"pong"}'):
        assert p.parse(pong, 0) == [Control("pong")]
        assert VENUES["bybit"].text_pong == b'"pong"' and b'"pong"' in pong  # the connection's keepalive match
    err = (b'{"success":false,"ret_msg":"error:handler not found,topic:orderbook.50.NOPEUSDT","conn_id":"c",'
           b'"op":"subscribe"}')
    assert p.parse(err, 0) == [Control("error", "NOPEUSDT",
                                       "subscribe failed: error:handler not found,topic:orderbook.50.NOPEUSDT")]
    assert p.parse(b'{"success":false,"ret_msg":"args size >10","op":"subscribe"}', 0) == [
        Control("error", "", "subscribe failed: args size >10")]
    assert p.parse(b'{"success":true,"ret_msg":"","op":"auth"}', 0) == [Control("info", "", "auth")]


@pytest.mark.parametrize("raw", [
    b"not json", b"[1,2,3]", b'{"hello":1}', b'{"topic":5,"data":{}}',
    b'{"topic":"orderbook.50.BTCUSDT","ts":1,"type":"delta"}',
    b'{"topic":"orderbook.50.BTCUSDT","ts":1,"type":"delta","data":[1]}',
    b'{"topic":"orderbook.50.BTCUSDT","ts":1,"type":"delta","data":{"s":"BTCUSDT","b":"x","a":[],"u":2}}',
    b'{"topic":"orderbook.50.BTCUSDT","ts":1,"type":"delta","data":{"s":"BTCUSDT","b":[],"a":[],"u":"2"}}',
    b'{"topic":"orderbook.50.BTCUSDT","ts":1,"type":"delta","data":{"s":"ETHUSDT","b":[],"a":[],"u":2}}',
    b'{"topic":"orderbook.50.BTCUSDT","ts":"x","type":"delta","data":{"s":"BTCUSDT","b":[],"a":[],"u":2}}',
    b'{"topic":"orderbook.50.BTCUSDT","ts":1,"type":"weird","data":{"s":"BTCUSDT","b":[],"a":[],"u":2}}',
    b'{"topic":"orderbook.50.BTCUSDT","ts":1,"type":"delta","data":{"s":"BTCUSDT","b":[],"a":[]}}',
])
def test_malformed_frames_raise_parse_error(raw: bytes) -> None:
    with pytest.raises(ParseError):
        BybitParser().parse(raw, 0)


def test_relation_subscribe_and_resubscribe() -> None:
    def msg(u: int) -> BookMsg:
        return BookMsg("X", False, [], [], u, u - 1, 0, 0, 0)

    assert [relation(msg(u), 10, False) for u in (11, 10, 3, 12)] == [APPLY, STALE, STALE, GAP]
    insts = [f"C{i}USDT" for i in range(23)]
    frames = [orjson.loads(f) for f in subscribe(insts, "orderbook.50")]
    assert [len(f["args"]) for f in frames] == [10, 10, 3] and all(f["op"] == "subscribe" for f in frames)
    assert frames[0]["args"][0] == "orderbook.50.C0USDT"
    assert [orjson.loads(f) for f in resubscribe("BTCUSDT", "orderbook.200")] == [
        {"op": "unsubscribe", "args": ["orderbook.200.BTCUSDT"]},
        {"op": "subscribe", "args": ["orderbook.200.BTCUSDT"]},
    ]
    assert [channel_depth(c) for c in VENUES["bybit"].channels] == [50, 1, 200, 1000]
    assert make_book("orderbook.200").max_levels == 200
    with pytest.raises(ValueError):
        channel_depth("orderbook.full")


def test_shipped_market_cache_parses() -> None:
    markets = parse_instruments((ROOT / "configs" / "markets" / "bybit.json").read_bytes())
    by_symbol = {m.symbol: m for m in markets}
    for coin in ("BTC", "ETH", "XRP", "BNB", "SOL", "TRX", "DOGE", "ADA", "HYPE", "BCH", "LINK"):
        assert f"{coin}/USDT" in by_symbol
    btc = by_symbol["BTC/USDT"]
    assert (btc.venue_id, btc.tick, btc.lot, btc.min_size, btc.active) == ("BTCUSDT", "0.1", "0.000001", "0.000001",
                                                                          True)
    with pytest.raises(ParseError):
        parse_instruments(b'{"retCode":10001,"retMsg":"params error","result":{}}')
    with pytest.raises(ParseError):
        parse_instruments(b'{"retCode":0,"result":{"list":[{"symbol":"X"}]}}')


# ---- the inlined diff path against the generic SyncedBook one ------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bybit_book_matches_the_generic_synced_book(seed: int) -> None:
    drive(make_book("orderbook.50"), SyncedBook(relation, None, max_levels=50), seed, checksums=False)
