"""Bitget parser and sequencing rule: the real (v1, 2022) recording through our parser and synced
books, every checksum verified, corrupted copies caught; then hand-written v2 frames.

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

from scanner.book.errors import ChecksumMismatch, CrossedBook, ParseError, SequenceGap
from scanner.capture import Recv
from scanner.model import BookMsg, Control
from scanner.replay import Replayer, capture_events, replay_capture
from scanner.venues import VENUES
from scanner.venues.bitget import BitgetParser, make_book, parse_instruments, resubscribe, step, subscribe

Side = dict[Decimal, tuple[str, str]]


def crc(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
    parts: list[str] = []
    for i in range(25):
        parts += list(bids[i]) if i < len(bids) else []
        parts += list(asks[i]) if i < len(asks) else []
    v = zlib.crc32(":".join(parts).encode())
    return v - (1 << 32) if v & 0x80000000 else v


class RefBook:
    """Independent reference book: Decimal keys, the exact strings kept."""

    def __init__(self) -> None:
        self.bids: Side = {}
        self.asks: Side = {}

    def apply(self, item: dict[str, Any], snapshot: bool) -> None:
        if snapshot:
            self.bids, self.asks = {}, {}
        for side, rows in ((self.bids, item["bids"]), (self.asks, item["asks"])):
            for px, sz in rows:
                if Decimal(sz) == 0:
                    side.pop(Decimal(px), None)
                else:
                    side[Decimal(px)] = (px, sz)

    def sides(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        return [self.bids[k] for k in sorted(self.bids, reverse=True)], [self.asks[k] for k in sorted(self.asks)]

    def crc(self) -> int:
        return crc(*self.sides())

    def top(self) -> list[str]:
        b, a = self.sides()
        return [b[0][0], b[0][1], a[0][0], a[0][1]]


def recording(recorded_dir: Path) -> Path:
    return recorded_dir / "cryptofeed" / "BITGET.jsonl.zst"


def book_frames(events: list[Any]) -> list[tuple[int, dict[str, Any]]]:
    """(index into events, frame) of every ``books`` data frame."""
    out = []
    for i, ev in enumerate(events):
        if isinstance(ev, Recv) and isinstance(ev.data, str):
            d = json.loads(ev.data)
            if d.get("arg", {}).get("channel") == "books" and "data" in d:
                out.append((i, d))
    return out


def key(d: dict[str, Any]) -> str:
    arg = d["arg"]
    return arg["instId"] if arg["instType"] == "sp" else f"{arg['instType']}:{arg['instId']}"


# ------------------------------------------------------------------ the real recording (v1 envelope)


def test_recording_envelope_is_v1_and_every_checksum_agrees_with_the_rule(recorded_dir: Path) -> None:
    frames = book_frames(capture_events("bitget", recording(recorded_dir)))
    assert len(frames) == 637
    assert {d["arg"]["instType"] for _, d in frames} == {"sp", "mc"}
    items = [item for _, d in frames for item in d["data"]]
    assert all("seq" not in item and item["checksum"] != 0 for item in items)  # v1: no seq, checksums everywhere
    refs: dict[str, RefBook] = {}
    for _, d in frames:
        ref = refs.setdefault(key(d), RefBook())
        ref.apply(d["data"][0], d["action"] == "snapshot")
        assert ref.crc() == d["data"][0]["checksum"]


def test_recording_replays_with_every_checksum_verified(recorded_dir: Path) -> None:
    frames = book_frames(capture_events("bitget", recording(recorded_dir)))
    res = replay_capture("bitget", "books", recording(recorded_dir))
    assert res.parse_errors == 0 and not any(res.errors.values()), res.error_log
    assert res.book_msgs == res.applied == len(frames) == 637
    assert res.checksums_verified == 637  # snapshots included: v1 checksums them too
    assert res.invalid() == []
    refs: dict[str, RefBook] = {}
    for _, d in frames:
        refs.setdefault(key(d), RefBook()).apply(d["data"][0], d["action"] == "snapshot")
    assert res.top() == {inst: ref.top() for inst, ref in refs.items()}
    assert sorted(res.books) == sorted(refs) and "mc:DASHUSDT" in refs and "EOSUSDT" in refs
    assert res.controls > 0  # acks, tickers, trades and candles are controls, not errors


def test_recording_with_one_altered_size_fails_its_checksum(recorded_dir: Path) -> None:
    events = capture_events("bitget", recording(recorded_dir))
    frames = book_frames(events)
    refs: dict[str, RefBook] = {}
    target = -1
    for i, d in frames:
        item = d["data"][0]
        ref = refs.setdefault(key(d), RefBook())
        ref.apply(item, d["action"] == "snapshot")
        top25 = {p for p, _ in ref.sides()[0][:25]}
        hits = [row for row in item["bids"] if row[0] in top25]
        if d["action"] == "update" and hits and i > len(events) // 3:
            hits[0][1] = str(Decimal(hits[0][1]) + Decimal("1"))
            target, inst, new = i, key(d), json.dumps(d, separators=(",", ":"))
            break
    assert target > 0
    ev = events[target]
    assert isinstance(ev, Recv)
    events[target] = replace(ev, data=new)
    r = Replayer("bitget", "books")
    r.play(events)
    res = r.result
    assert {k: v for k, v in res.errors.items() if v} == {"checksum": 1}
    assert [e[:2] for e in res.error_log] == [(inst, "checksum")]
    assert res.invalid() == [inst]


def test_recording_with_one_dropped_update_is_detected(recorded_dir: Path) -> None:
    events = capture_events("bitget", recording(recorded_dir))
    frames = book_frames(events)
    # Find an update whose loss the instrument's next frame reveals (checked on the reference book).
    drop, inst = -1, ""
    for n, (i, d) in enumerate(frames):
        if d["action"] != "update" or i < len(events) // 3:
            continue
        nxt = next(((j, e) for j, e in frames[n + 1:] if key(e) == key(d)), None)
        if nxt is None or nxt[1]["action"] != "update":
            continue
        ref = RefBook()
        for _, e in frames[:n]:
            if key(e) == key(d):
                ref.apply(e["data"][0], e["action"] == "snapshot")
        ref.apply(nxt[1]["data"][0], False)
        if ref.crc() != nxt[1]["data"][0]["checksum"]:
            drop, inst = i, key(d)
            break
    assert drop > 0
    del events[drop]
    r = Replayer("bitget", "books")
    r.play(events)
    assert {k: v for k, v in r.result.errors.items() if v} == {"checksum": 1}
    assert [e[:2] for e in r.result.error_log] == [(inst, "checksum")]


# ------------------------------------------------------------------ current (v2) protocol, hand-written


def frame(action: str, inst: str, bids: list[list[str]], asks: list[list[str]], seq: int | None,
          checksum: int = 0, channel: str = "books", inst_type: str = "SPOT") -> str:
    item: dict[str, Any] = {"asks": asks, "bids": bids, "checksum": checksum, "ts": "1695710946394"}
    if seq is not None:
        item["seq"] = seq
    return orjson.dumps({"action": action, "arg": {"instType": inst_type, "channel": channel, "instId": inst},
                         "data": [item], "ts": 1695710946394}).decode()


def test_snapshot_then_updates_chained_by_seq_and_checksummed() -> None:
    p, book = BitgetParser("books"), make_book("books")
    bids, asks = [["26274.7", "0.0027"], ["26274.0", "1.5000"]], [["26274.9", "0.0009"], ["26275.0", "0.0500"]]
    snap_crc = crc([(p_, s) for p_, s in bids], [(p_, s) for p_, s in asks])
    (snap,) = p.parse(frame("snapshot", "BTCUSDT", bids, asks, 123, snap_crc), 7)
    assert isinstance(snap, BookMsg) and snap.snapshot and snap.seq == 123 and snap.exch_ms == 1695710946394
    assert snap.recv_ns == 7 and snap.inst == "BTCUSDT"
    assert book.on_message(snap) and book.valid
    upd = frame("update", "BTCUSDT", [["26274.7", "0.0000"]], [["26274.8", "0.0100"]], 124,
                crc([("26274.0", "1.5000")], [("26274.8", "0.0100"), ("26274.9", "0.0009"), ("26275.0", "0.0500")]))
    (msg,) = p.parse(upd.encode(), 8)
    assert isinstance(msg, BookMsg) and not msg.snapshot
    assert book.on_message(msg)
    assert book.book.top(5) == ([("26274.0", "1.5000")],
                                [("26274.8", "0.0100"), ("26274.9", "0.0009"), ("26275.0", "0.0500")])
    # a wrong checksum with an intact seq is caught
    (bad,) = p.parse(frame("update", "BTCUSDT", [["26273.0", "1.0000"]], [], 125, 12345), 9)
    assert isinstance(bad, BookMsg)
    with pytest.raises(ChecksumMismatch):
        book.on_message(bad)
    assert not book.valid


def book_msg(raw: str) -> BookMsg:
    (m,) = BitgetParser().parse(raw, 0)
    assert isinstance(m, BookMsg)
    return m


def test_seq_must_continue_by_one() -> None:
    snap = book_msg(frame("snapshot", "ETHUSDT", [["1500.00", "1.0000"]], [["1500.10", "2.0000"]], 10))
    book = make_book("books")
    book.on_message(snap)
    assert not book.on_message(book_msg(frame("update", "ETHUSDT", [["1.00", "1.0000"]], [], 10)))  # in the snapshot
    assert book.valid and book.book.top(5)[0] == [("1500.00", "1.0000")]
    assert book.on_message(book_msg(frame("update", "ETHUSDT", [["1499.00", "1.0000"]], [], 11)))
    for seq in (11, 3, 13):  # a repeat, a maintenance reset, a jump: each is a break once the chain runs
        b = make_book("books")
        b.on_message(snap)
        b.on_message(book_msg(frame("update", "ETHUSDT", [], [], 11)))
        with pytest.raises(SequenceGap):
            b.on_message(book_msg(frame("update", "ETHUSDT", [], [], seq)))
        assert not b.valid


def test_crossed_snapshot_is_refused() -> None:
    book = make_book("books5")
    msg = BitgetParser("books5").parse(frame("snapshot", "XRPUSDT", [["0.6000", "10.00"]], [["0.5999", "5.00"]], 3,
                                             channel="books5"), 0)[0]
    assert isinstance(msg, BookMsg) and msg.snapshot
    with pytest.raises(CrossedBook):
        book.on_message(msg)


def test_books5_frames_are_snapshots_and_other_channels_ignored() -> None:
    p = BitgetParser("books5")
    (m,) = p.parse(frame("snapshot", "SOLUSDT", [["150.00", "1.0000"]], [["150.01", "1.0000"]], 77, channel="books5"),
                   0)
    assert isinstance(m, BookMsg) and m.snapshot and m.seq == 77 and m.checksum == 0
    assert p.parse(frame("update", "SOLUSDT", [], [], 5, channel="books"), 0) == [
        Control("ignored", "SOLUSDT", "books")]
    ticker = '{"action":"snapshot","arg":{"instType":"SPOT","channel":"ticker","instId":"SOLUSDT"},"data":[{}]}'
    assert p.parse(ticker, 0) == [Control("ignored", "SOLUSDT", "ticker")]
    # non-spot books get their own key, so a futures book never lands in a spot book
    (fut,) = BitgetParser().parse(frame("snapshot", "BTCUSDT", [], [], 1, inst_type="USDT-FUTURES"), 0)
    assert isinstance(fut, BookMsg) and fut.inst == "USDT-FUTURES:BTCUSDT"


def test_controls() -> None:
    p = BitgetParser()
    assert p.parse("pong", 0) == [Control("pong")] and p.parse(b"pong", 0) == [Control("pong")]
    ack = '{"event":"subscribe","arg":{"instType":"SPOT","channel":"books","instId":"BTCUSDT"}}'
    assert p.parse(ack, 0) == [Control("subscribed", "BTCUSDT")]
    unack = '{"event":"unsubscribe","arg":{"instType":"SPOT","channel":"books","instId":"BTCUSDT"}}'
    assert p.parse(unack, 0) == [Control("unsubscribed", "BTCUSDT")]
    err = ('{"event":"error","arg":{"instType":"SPOT","channel":"books","instId":"NOPE"},"code":30001,'
           '"msg":"instType:SPOT,channel:books,instId:NOPE doesn\'t exist","op":"subscribe"}')
    assert p.parse(err, 0) == [Control("error", "NOPE", "30001 instType:SPOT,channel:books,instId:NOPE doesn't exist")]
    assert p.parse('{"event":"error","code":30006,"msg":"Request too many"}', 0) == [
        Control("error", "", "30006 Request too many")]
    assert p.parse('{"event":"login","code":0}', 0) == [Control("info", "", "login")]


@pytest.mark.parametrize("raw", [
    "not json", "[1,2]", "{}", '{"arg":"x"}',
    '{"action":"update","arg":{"instType":"SPOT","channel":"books","instId":"BTCUSDT"}}',
    '{"action":"update","arg":{"instType":"SPOT","channel":"books"},"data":[]}',
    '{"action":"update","arg":{"instType":"SPOT","channel":"books","instId":"BTCUSDT"},"data":[{"asks":"x","bids":[]}]}',
    '{"action":"update","arg":{"instType":"SPOT","channel":"books","instId":"BTCUSDT"},"data":[{"asks":[],"bids":[]}]}',
    '{"action":"update","arg":{"instType":"SPOT","channel":"books","instId":"BTCUSDT"},'
    '"data":[{"asks":[],"bids":[],"ts":"z","seq":1}]}',
    '{"action":"update","arg":{"instType":"SPOT","channel":"books","instId":"BTCUSDT"},'
    '"data":[{"asks":[],"bids":[],"ts":"1","seq":"q"}]}',
    '{"action":"update","arg":{"instType":"SPOT","channel":"books","instId":"BTCUSDT"},"data":[7]}',
    '{"action":"merge","arg":{"instType":"SPOT","channel":"books","instId":"BTCUSDT"},"data":[]}',
])
def test_malformed_frames_raise_parse_error(raw: str) -> None:
    with pytest.raises(ParseError):
        BitgetParser().parse(raw, 0)


def test_subscribe_batches_and_resubscribe() -> None:
    insts = [f"C{i}USDT" for i in range(120)]
    frames = [json.loads(f) for f in subscribe(insts, "books")]
    assert [len(f["args"]) for f in frames] == [50, 50, 20]
    assert all(len(s) < 4096 for s in subscribe(insts, "books"))
    assert frames[0]["op"] == "subscribe"
    assert frames[0]["args"][0] == {"instType": "SPOT", "channel": "books", "instId": "C0USDT"}
    assert [a["instId"] for f in frames for a in f["args"]] == insts
    un, sub = (json.loads(f) for f in resubscribe("BTCUSDT", "books"))
    arg = [{"instType": "SPOT", "channel": "books", "instId": "BTCUSDT"}]
    assert un == {"op": "unsubscribe", "args": arg} and sub == {"op": "subscribe", "args": arg}


def test_instruments_from_the_shipped_cache() -> None:
    body = (Path(__file__).resolve().parents[1] / "configs" / "markets" / "bitget.json").read_bytes()
    markets = {m.symbol: m for m in parse_instruments(body)}
    raw = {r["symbol"]: r for r in json.loads(body)["data"]}
    for m in markets.values():
        r = raw[m.venue_id]
        assert Decimal(m.tick) == Decimal(10) ** -int(r["pricePrecision"])
        assert Decimal(m.lot) == Decimal(10) ** -int(r["quantityPrecision"])
        assert m.active == (r["status"] == "online")
    btc = markets["BTC/USDT"]
    assert (btc.venue_id, btc.tick, btc.lot, btc.min_size) == ("BTCUSDT", "0.01", "0.000001", "0.000001")
    for coin in ("BTC", "ETH", "XRP", "BNB", "SOL", "TRX", "DOGE", "ADA", "HYPE", "BCH", "LINK", "ZEC"):
        assert f"{coin}/USDT" in markets
    assert {"BTC/USDC", "ETH/USDC", "USDC/USDT"} <= set(markets)
    assert markets["ETH/BTC"].min_size == "0.001"  # minTradeAmount wins when it is set
    assert VENUES["bitget"].parse_instruments is parse_instruments


def test_instruments_errors_and_precision_steps() -> None:
    assert [step("0"), step("2"), step(8)] == ["1", "0.01", "0.00000001"]
    rows = [{"symbol": "AUSDT", "baseCoin": "A", "quoteCoin": "USDT", "minTradeAmount": "0", "pricePrecision": "3",
             "quantityPrecision": "0", "status": "halt"}]
    (m,) = parse_instruments(orjson.dumps({"code": "00000", "msg": "success", "data": rows}))
    assert (m.tick, m.lot, m.min_size, m.active) == ("0.001", "1", "1", False)
    for bad in (b'{"code":"40034","msg":"Parameter does not exist","data":null}', b"nope",
                orjson.dumps({"code": "00000", "data": [{**rows[0], "pricePrecision": "x"}]}),
                orjson.dumps({"code": "00000", "data": [{"symbol": "AUSDT"}]})):
        with pytest.raises(ParseError):
            parse_instruments(bad)
