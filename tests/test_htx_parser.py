"""The HTX parser on real traffic and on hand-written current-protocol frames.

The 2021 capture (``cryptofeed/HUOBI.jsonl.zst``) holds gzip-compressed ``depth.step0``
pushes, acks, trades and server pings. It is replayed through our parser and books; every
expectation is recomputed here independently (gzip + json + Decimal). HTX sends no checksum,
so integrity rests on the ``prevSeqNum`` chain: the recording's real level strings are turned
into an ``mbp.150`` chain here to show a dropped frame is caught.
"""

from __future__ import annotations

import gzip
import itertools
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from scanner.book.errors import CrossedBook, ParseError, SequenceGap
from scanner.book.sync import SnapshotTooOld
from scanner.capture import Http, Recv, Send, read_cryptofeed
from scanner.model import BookMsg, Control
from scanner.replay import Replayer, replay_capture
from scanner.venues import VENUES
from scanner.venues.htx import (
    CHANNELS,
    VENUE,
    HtxParser,
    make_book,
    parse_instruments,
    resubscribe,
    subscribe,
    ws_snapshot,
)

Frame = dict[str, Any]


def capture(recorded_dir: Path) -> Path:
    return recorded_dir / "cryptofeed" / "HUOBI.jsonl.zst"


def gz(obj: Frame | str) -> bytes:
    return gzip.compress((obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))).encode())


def parse(frame: Frame | str | bytes, channel: str = "mbp.150") -> list[BookMsg | Control]:
    return HtxParser(channel).parse(frame if isinstance(frame, bytes) else gz(frame), 7)


def decoded_frames(recorded_dir: Path) -> list[Frame]:
    """Every received frame, decompressed and decoded independently, numbers kept as text."""
    out = []
    for r in read_cryptofeed(capture(recorded_dir)):
        if isinstance(r, Recv):
            assert isinstance(r.data, bytes) and r.data[:2] == b"\x1f\x8b"  # every frame is gzip binary
            out.append(json.loads(gzip.decompress(r.data), parse_float=str, parse_int=str))
    return out


def best(rows: list[list[str]], bids: bool) -> list[str]:
    live = [r for r in rows if Decimal(r[1]) != 0]
    top = max(live, key=lambda r: Decimal(r[0])) if bids else min(live, key=lambda r: Decimal(r[0]))
    return [top[0], top[1]]


# ------------------------------------------------------------------ the recording


def test_recording_replays_cleanly_and_tops_match(recorded_dir: Path) -> None:
    frames = decoded_frames(recorded_dir)
    depth = [d for d in frames if str(d.get("ch", "")).endswith(".depth.step0")]
    assert len(depth) == 292
    res = replay_capture("htx", "depth.step0", capture(recorded_dir))
    assert res.frames == len(frames) == 362
    assert res.parse_errors == 0 and not any(res.errors.values())
    assert res.book_msgs == res.applied == len(depth)
    assert res.controls == len(frames) - len(depth)  # acks, pings, trade pushes
    assert res.checksums_verified == 0  # HTX sends no checksum
    last: dict[str, Frame] = {}
    for d in depth:
        last[d["ch"].split(".")[1]] = d["tick"]
    assert res.invalid() == [] and sorted(res.books) == sorted(last) and len(last) == 10
    for inst, tick in last.items():
        assert res.top()[inst] == best(tick["bids"], True) + best(tick["asks"], False)
        book = res.books[inst].book
        assert book.seq == int(tick["version"])
        assert len(book.bids) == len(tick["bids"]) and len(book.asks) == len(tick["asks"])
    # Exact text survives: scientific notation and trailing ".0" exactly as HTX wrote them.
    assert res.top()["trioeth"][0] == "9.121E-7"
    assert any(p.endswith(".0") for p, _ in res.books["borusdt"].book.bids.top(150))


def test_recording_other_channel_is_ignored_not_an_error(recorded_dir: Path) -> None:
    res = replay_capture("htx", "mbp.150", capture(recorded_dir))
    assert res.parse_errors == 0 and res.book_msgs == 0 and res.books == {}


def test_recorded_pings_get_the_pong_the_client_really_sent(recorded_dir: Path) -> None:
    sent = {r.data for r in read_cryptofeed(capture(recorded_dir)) if isinstance(r, Send) and "pong" in r.data}
    parser = HtxParser("depth.step0")
    ours = set()
    for r in read_cryptofeed(capture(recorded_dir)):
        if isinstance(r, Recv):
            ours |= {c.detail for c in parser.parse(r.data, 0) if isinstance(c, Control) and c.kind == "send"}
    assert len(sent) == 6 and ours == sent


def test_recorded_acks_and_trades(recorded_dir: Path) -> None:
    parser = HtxParser("depth.step0")
    kinds: dict[str, int] = {}
    for r in read_cryptofeed(capture(recorded_dir)):
        if isinstance(r, Recv):
            for c in parser.parse(r.data, 0):
                if isinstance(c, Control):
                    kinds[c.kind] = kinds.get(c.kind, 0) + 1
    # 10 depth acks + 10 trade.detail acks, 6 pings, 44 trade pushes of another channel
    assert kinds == {"subscribed": 10, "info": 10, "send": 6, "ignored": 44}


def test_corrupted_level_in_the_recording_is_detected(recorded_dir: Path) -> None:
    frames = [r.data for r in read_cryptofeed(capture(recorded_dir)) if isinstance(r, Recv)]
    i = next(n for n, d in enumerate(decoded_frames(recorded_dir)) if d.get("ch") == "market.borusdt.depth.step0")
    frame = frames[i]
    assert isinstance(frame, bytes)
    raw = gzip.decompress(frame).decode()
    assert '"bids":[[' in raw
    frames[i] = gzip.compress(raw.replace('"bids":[[', '"bids":[[999999,1],[', 1).encode())  # bid above every ask
    r = Replayer("htx", "depth.step0")
    r.feed(frames)
    assert r.result.errors["crossed"] == 1 and r.result.parse_errors == 0
    assert r.result.error_log[0][0] == "borusdt"
    assert r.result.books["borusdt"].valid  # the next full push heals it
    clean = Replayer("htx", "depth.step0")
    clean.feed([r.data for r in read_cryptofeed(capture(recorded_dir)) if isinstance(r, Recv)])
    assert not any(clean.result.errors.values())


def mbp_chain(recorded_dir: Path, inst: str) -> tuple[bytes, list[bytes]]:
    """The recording's ``inst`` pushes as an mbp.150 ``req`` answer plus diffs chained by
    ``prevSeqNum`` (seqNum jumps by 7), all in HTX's JSON with the recorded number text."""
    ticks = [d["tick"] for d in decoded_frames(recorded_dir) if d.get("ch") == f"market.{inst}.depth.step0"]
    assert len(ticks) > 20

    def rows(levels: list[list[str]]) -> str:
        return "[" + ",".join(f"[{p},{q}]" for p, q in levels) + "]"

    seq = 1000
    first = ticks[0]
    snap = gz(f'{{"id":"req.{inst}","rep":"market.{inst}.mbp.150","status":"ok","ts":1,"data":{{"seqNum":{seq},'
              f'"bids":{rows(first["bids"])},"asks":{rows(first["asks"])}}}}}')
    diffs = []
    for a, b in itertools.pairwise(ticks):
        sides = []
        for key in ("bids", "asks"):
            old = {Decimal(p): (p, q) for p, q in a[key]}
            new = {Decimal(p): (p, q) for p, q in b[key]}
            ch = [list(new[k]) for k in new if old.get(k) != new[k]] + [[old[k][0], "0"] for k in old if k not in new]
            sides.append(f'"{key}":{rows(ch)}')
        diffs.append(gz(f'{{"ch":"market.{inst}.mbp.150","ts":2,"tick":{{"seqNum":{seq + 7},"prevSeqNum":{seq},'
                        f'{",".join(sides)}}}}}'))
        seq += 7
    return snap, diffs


def test_recorded_levels_as_an_mbp_chain_stay_exact_and_a_dropped_frame_is_a_gap(recorded_dir: Path) -> None:
    snap, diffs = mbp_chain(recorded_dir, "borusdt")
    last = [d["tick"] for d in decoded_frames(recorded_dir) if d.get("ch") == "market.borusdt.depth.step0"][-1]
    r = Replayer("htx", "mbp.150")
    r.feed([snap, *diffs])
    assert r.result.parse_errors == 0 and not any(r.result.errors.values())
    assert r.result.applied == 1 + len(diffs)
    book = r.result.books["borusdt"].book
    assert book.top(10**6) == ([(p, q) for p, q in last["bids"]], [(p, q) for p, q in last["asks"]])
    broken = Replayer("htx", "mbp.150")
    broken.feed([snap, *diffs[:5], *diffs[6:]])  # one update lost
    assert broken.result.errors["seq_gap"] == 1
    assert not broken.result.books["borusdt"].valid


def test_recorded_instruments(recorded_dir: Path) -> None:
    body = next(r.data for r in read_cryptofeed(capture(recorded_dir)) if isinstance(r, Http))
    raw = json.loads(body)["data"]
    markets = {m.venue_id: m for m in parse_instruments(body.encode())}
    assert len(markets) == len(raw) == 938
    assert sum(not m.active for m in markets.values()) == sum(r["state"] != "online" for r in raw) == 55
    btc = markets["btcusdt"]
    assert (btc.symbol, btc.base, btc.quote, btc.tick, btc.lot, btc.min_size) == (
        "BTC/USDT", "BTC", "USDT", "0.01", "0.000001", "0.0001")
    assert markets["trioeth"].tick == "0.0000000001"


def test_shipped_market_cache_parses() -> None:
    root = Path(__file__).resolve().parents[1]
    markets = parse_instruments((root / "configs" / "markets" / "htx.json").read_bytes())
    symbols = {m.symbol for m in markets}
    assert {"BTC/USDT", "ETH/USDT", "XRP/USDT", "SOL/USDT", "DOGE/USDT", "LINK/USDT", "ZEC/USDT"} <= symbols
    assert all(m.active and m.venue_id == m.venue_id.lower() for m in markets)


# ------------------------------------------------------------------ hand-written frames


def test_mbp_update_keeps_exact_number_text() -> None:
    [m] = parse('{"ch":"market.btcusdt.mbp.150","ts":1583472025885,"tick":{"seqNum":104998984994,'
                '"prevSeqNum":104998984977,"bids":[[9058.27,0],[9058.430,1.2034],[1E-7,3.0E8]],"asks":[[9084.27,0.2]]}}')
    assert isinstance(m, BookMsg) and not m.snapshot and m.inst == "btcusdt"
    assert (m.seq, m.prev, m.exch_ms, m.recv_ns, m.checksum) == (104998984994, 104998984977, 1583472025885, 7, 0)
    assert m.bids == [["9058.27", "0"], ["9058.430", "1.2034"], ["1E-7", "3.0E8"]] and m.asks == [["9084.27", "0.2"]]


def test_tick_by_tick_update_may_leave_out_a_side() -> None:
    [m] = parse({"ch": "market.ethusdt.mbp.5", "ts": 1, "tick": {"seqNum": 9, "prevSeqNum": 4, "asks": [[1, 2]]}},
                "mbp.5")
    assert isinstance(m, BookMsg) and m.bids == [] and m.asks == [["1", "2"]]


def test_req_answer_is_a_snapshot() -> None:
    [m] = parse({"id": "req.btcusdt", "rep": "market.btcusdt.mbp.150", "status": "ok", "ts": 5,
                 "data": {"seqNum": 100020142010, "bids": [[618.37, 71.594]], "asks": [[618.4, 1]]}})
    assert isinstance(m, BookMsg) and m.snapshot and m.seq == 100020142010 and m.bids == [["618.37", "71.594"]]
    assert parse({"id": 3, "rep": "market.btcusdt.mbp.5", "status": "ok", "data": {"seqNum": 1}}) == [
        Control("ignored", "btcusdt", "mbp.5")]


def test_depth_push_and_answer_are_snapshots() -> None:
    [m] = parse('{"ch":"market.trioeth.depth.step0","ts":3,"tick":{"bids":[[9.121E-7,5.0]],"asks":[],'
                '"version":100182534697,"ts":2}}', "depth.step0")
    assert isinstance(m, BookMsg) and m.snapshot and m.seq == 100182534697 and m.bids == [["9.121E-7", "5.0"]]
    [r] = parse({"id": "x", "rep": "market.trioeth.depth.step0", "status": "ok", "ts": 3,
                 "data": {"bids": [], "asks": [[1, 1]], "version": 8}}, "depth.step0")
    assert isinstance(r, BookMsg) and r.snapshot and r.seq == 8


def test_acks_pings_pongs_and_other_channels() -> None:
    assert parse({"id": "sub.btcusdt", "status": "ok", "subbed": "market.btcusdt.mbp.150", "ts": 1}) == [
        Control("subscribed", "btcusdt")]
    assert parse({"id": "sub.btcusdt", "status": "ok", "subbed": "market.btcusdt.trade.detail", "ts": 1}) == [
        Control("info", "btcusdt", "subbed trade.detail")]
    assert parse({"id": "unsub.btcusdt", "status": "ok", "unsubbed": "market.btcusdt.mbp.150", "ts": 1}) == [
        Control("unsubscribed", "btcusdt")]
    assert parse('{"ping":1492420473027}') == [Control("send", "", '{"pong":1492420473027}')]
    assert parse('{"ping":18446744073709551617}') == [Control("send", "", '{"pong":18446744073709551617}')]
    assert parse('{"pong":1492420473027}') == [Control("pong")]
    assert parse({"ch": "market.btcusdt.trade.detail", "ts": 1, "tick": {}}) == [
        Control("ignored", "btcusdt", "trade.detail")]
    assert parse({"ch": "market.btcusdt.mbp.400", "ts": 1, "tick": {}}) == [Control("ignored", "btcusdt", "mbp.400")]
    # plain (uncompressed) JSON is accepted too, e.g. a file of decompressed frames
    assert HtxParser().parse('{"pong":1}', 0) == [Control("pong")]


def test_error_frames() -> None:
    err = {"status": "error", "err-code": "bad-request", "err-msg": "invalid mbp.150.symbol linkusdt", "ts": 1}
    assert parse({**err, "id": "sub.linkusdt"}) == [
        Control("error", "linkusdt", "bad-request invalid mbp.150.symbol linkusdt")]
    # a refused snapshot request must not leave the book waiting forever
    assert parse({**err, "id": "req.linkusdt"}) == [
        Control("error", "linkusdt", "bad-request invalid mbp.150.symbol linkusdt"),
        Control("resync", "linkusdt", "snapshot_error")]
    assert parse({**err, "id": 2}) == [Control("error", "", "bad-request invalid mbp.150.symbol linkusdt")]


@pytest.mark.parametrize("frame", [
    b"\x1f\x8b\x08\x00garbage",  # not a gzip stream
    gzip.compress(b'{"ch":"market.btcusdt.mbp.150","tick":{"seqNum":')[:-9],  # cut stream
    gz('{"ch":"market.btcusdt.mbp.150","ts":1,"tick":{"seqNum":'),  # truncated JSON
    gz("[1,2,3]"),
    gz('"text"'),
    b"\xff\xfe\x00binary",
    gz({"ch": "market.btcusdt", "tick": {}}),
    gz({"ch": "trades", "tick": {}}),
    gz({"ch": 5}),
    gz({"ch": "market.btcusdt.mbp.150", "ts": 1}),  # no tick
    gz({"ch": "market.btcusdt.mbp.150", "ts": 1, "tick": {"prevSeqNum": 1, "bids": [], "asks": []}}),
    gz({"ch": "market.btcusdt.mbp.150", "ts": 1, "tick": {"seqNum": "x", "prevSeqNum": 1}}),
    gz({"ch": "market.btcusdt.mbp.150", "ts": 1, "tick": {"seqNum": 2.5, "prevSeqNum": 1}}),
    gz({"ch": "market.btcusdt.mbp.150", "ts": "now", "tick": {"seqNum": 2, "prevSeqNum": 1}}),
    gz({"ch": "market.btcusdt.mbp.150", "ts": 1, "tick": {"seqNum": 2, "prevSeqNum": 1, "bids": 5}}),
    gz({"rep": "market.btcusdt.mbp.150", "status": "ok"}),  # no data
    gz({"rep": "market.btcusdt.mbp.150", "status": "ok", "data": {"bids": [], "asks": []}}),  # no seqNum
    gz({"ping": "soon"}),
    gz({"status": "ok"}),
    gz({"hello": 1}),
])
def test_malformed_frames_raise_parse_error(frame: bytes) -> None:
    with pytest.raises(ParseError):
        HtxParser("mbp.150").parse(frame, 0)


def test_instruments_errors() -> None:
    for body in (b"{", b'{"status":"error","err-code":"x","err-msg":"y"}', b'{"status":"ok","data":[{"symbol":1}]}',
                 b'{"status":"ok","data":[{"base-currency":"a","quote-currency":"b","symbol":"ab",'
                 b'"price-precision":1.5,"amount-precision":2}]}', b"[]"):
        with pytest.raises(ParseError):
            parse_instruments(body)


# ------------------------------------------------------------------ sequencing and venue description


def upd(seq: int, prev: int, bids: list[list[str]] | None = None) -> BookMsg:
    return BookMsg("btcusdt", False, bids or [], [], seq, prev, 0, 0, 0)


def snap(seq: int) -> BookMsg:
    return BookMsg("btcusdt", True, [["100", "1"]], [["101", "1"]], seq, -1, 0, 0, 0)


def test_buffered_updates_bridge_on_prev_equal_to_snapshot_seq() -> None:
    book = make_book("mbp.150")
    for m in (upd(90, 80), upd(100, 90, [["99", "5"]]), upd(130, 100, [["99.5", "2"]]), upd(131, 130)):
        assert not book.on_message(m)
    assert book.on_message(snap(100))  # 90 and 100 are stale, 130 chains onto the image, then 131
    assert book.valid and book.book.seq == 131
    assert book.book.bids.top(5) == [("100", "1"), ("99.5", "2")]  # the stale 99 never applied
    assert not book.on_message(upd(131, 130))  # a duplicate is stale
    with pytest.raises(SequenceGap):
        book.on_message(upd(150, 140))  # prevSeqNum must equal the last seqNum, jumps allowed only via it
    assert not book.valid


def test_snapshot_older_than_the_buffer_is_refused() -> None:
    book = make_book("mbp.150")
    book.on_message(upd(130, 105))
    with pytest.raises(SnapshotTooOld):
        book.on_message(snap(100))
    straddling = make_book("mbp.150")
    straddling.on_snapshot(snap(100))
    with pytest.raises(SequenceGap):  # HTX aligns exactly: prev < image < seq is not a continuation
        straddling.on_message(upd(120, 95))


def test_crossed_update_is_caught() -> None:
    book = make_book("mbp.150")
    book.on_snapshot(snap(1))
    with pytest.raises(CrossedBook):
        book.on_message(upd(2, 1, [["101.5", "1"]]))


def test_book_depth_per_channel_and_frames() -> None:
    assert {c: make_book(c).max_levels for c in CHANNELS} == {
        "mbp.150": 150, "mbp.400": 400, "mbp.20": 20, "mbp.10": 10, "mbp.5": 5, "depth.step0": 150}
    assert subscribe(["btcusdt", "ethbtc"], "mbp.150") == [
        '{"sub":"market.btcusdt.mbp.150","id":"sub.btcusdt"}', '{"sub":"market.ethbtc.mbp.150","id":"sub.ethbtc"}']
    assert ws_snapshot("btcusdt", "mbp.5") == ['{"req":"market.btcusdt.mbp.5","id":"req.btcusdt"}']
    assert resubscribe("btcusdt", "mbp.150") == ['{"unsub":"market.btcusdt.mbp.150","id":"unsub.btcusdt"}',
                                                 '{"sub":"market.btcusdt.mbp.150","id":"sub.btcusdt"}']
    assert VENUES["htx"] is VENUE and VENUE.channels[0] == "mbp.150" and VENUE.ws_url == "wss://api.huobi.pro/feed"
    assert VENUE.ws_snapshot is ws_snapshot and VENUE.snapshot_request is None
    assert VENUE.text_ping is None and VENUE.ping_idle_s == 0  # the server pings; the parser answers
