"""The Gate parser and books on real recorded traffic (``../shared/recorded/cryptofeed/GATEIO``: the
legacy ``spot.order_book_update`` diffs bridged to REST ``order_book?with_id=true`` snapshots) and
on hand-written current-protocol ``spot.obu`` frames. Expectations on the recording are recomputed
here independently (json + Decimal), never taken from the code under test."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from scanner.book.errors import ParseError
from scanner.book.sync import APPLY, GAP, STALE
from scanner.capture import Http, Recv, read_cryptofeed
from scanner.model import BookMsg, Control
from scanner.replay import Replayer, RestSnapshot, capture_events, replay_capture, snapshot_inst
from scanner.venues import VENUES
from scanner.venues.gate import (
    GateParser,
    make_book,
    parse_instruments,
    parse_snapshot,
    relation,
    resubscribe,
    snapshot_request,
    step_text,
    subscribe,
)

ROOT = Path(__file__).resolve().parent.parent
PAIRS = ["BTC_USDC", "DIS_USDT", "FAST_USDT", "HAI_ETH", "INK_USDT", "NANO_USDT", "NEO_BTC", "OMG_USDT",
         "QTUM3S_USDT", "ZKS_ETH"]


def capture(recorded_dir: Path) -> Path:
    return recorded_dir / "cryptofeed" / "GATEIO.jsonl.zst"


def reference_tops(events: list[Recv | RestSnapshot]) -> dict[str, list[str]]:
    """Gate's documented legacy procedure by hand: load the REST snapshot, drop diffs with
    ``u <= id``, the first kept one needs ``U <= id + 1``, then ``U == last u + 1``."""
    books: dict[str, tuple[dict[Decimal, tuple[str, str]], dict[Decimal, tuple[str, str]]]] = {}
    local: dict[str, int] = {}
    pending: dict[str, list[dict[str, Any]]] = {}
    first: dict[str, bool] = {}

    def apply(sym: str, r: dict[str, Any]) -> None:
        if r["u"] <= local[sym]:
            return
        assert r["U"] <= local[sym] + 1 if first[sym] else r["U"] == local[sym] + 1, f"gap in {sym}"
        for side, rows in zip(books[sym], (r["b"], r["a"]), strict=True):
            for px, sz in rows:
                if Decimal(sz) == 0:
                    side.pop(Decimal(px), None)
                else:
                    side[Decimal(px)] = (px, sz)
        local[sym], first[sym] = r["u"], False

    for ev in events:
        if isinstance(ev, RestSnapshot):
            snap = json.loads(ev.body)
            books[ev.inst] = ({Decimal(p): (p, q) for p, q in snap["bids"]},
                              {Decimal(p): (p, q) for p, q in snap["asks"]})
            local[ev.inst], first[ev.inst] = snap["id"], True
            for r in pending.pop(ev.inst, []):
                apply(ev.inst, r)
            continue
        d = json.loads(ev.data)
        if d.get("channel") != "spot.order_book_update" or d.get("event") != "update":
            continue
        r = d["result"]
        if r["s"] in local:
            apply(r["s"], r)
        else:
            pending.setdefault(r["s"], []).append(r)
    out = {}
    for sym, (bids, asks) in books.items():
        b, a = bids[max(bids)], asks[min(asks)]
        out[sym] = [b[0], b[1], a[0], a[1]]
    return out


def test_recording_legacy_diffs_bridge_to_rest_snapshots(recorded_dir: Path) -> None:
    events = capture_events("gate", capture(recorded_dir))
    snaps = [e for e in events if isinstance(e, RestSnapshot)]
    assert sorted(s.inst for s in snaps) == PAIRS  # every recorded order_book URL matched snapshot_request
    diffs = [e for e in events if isinstance(e, Recv) and '"spot.order_book_update","event":"update"' in str(e.data)]
    res = replay_capture("gate", "order_book_update", capture(recorded_dir))
    assert res.parse_errors == 0 and not any(res.errors.values()), res.error_log
    assert res.snapshots == 10 and res.book_msgs == len(diffs) == 172
    assert sorted(res.books) == PAIRS and res.invalid() == []
    assert res.checksums_verified == 0  # Gate sends no checksum; integrity is the U/u chain
    assert res.top() == reference_tops(events)


def test_recording_dropped_diff_is_a_gap_for_that_pair_only(recorded_dir: Path) -> None:
    events = capture_events("gate", capture(recorded_dir))
    snap_at = next(i for i, e in enumerate(events) if isinstance(e, RestSnapshot) and e.inst == "OMG_USDT")
    diffs = [i for i, e in enumerate(events) if i > snap_at and isinstance(e, Recv)
             and '"s":"OMG_USDT"' in str(e.data) and '"spot.order_book_update"' in str(e.data)]
    assert len(diffs) > 5
    del events[diffs[len(diffs) // 2]]
    r = Replayer("gate", "order_book_update")
    r.play(events)
    assert {k: v for k, v in r.result.errors.items() if v} == {"seq_gap": 1}
    assert [e[:2] for e in r.result.error_log] == [("OMG_USDT", "seq_gap")]
    assert r.result.invalid() == ["OMG_USDT"] and len(r.result.top()) == 9


def test_recording_altered_level_that_crosses_is_caught(recorded_dir: Path) -> None:
    events = capture_events("gate", capture(recorded_dir))
    snap_at = next(i for i, e in enumerate(events) if isinstance(e, RestSnapshot) and e.inst == "NEO_BTC")
    i = [i for i, e in enumerate(events) if i > snap_at and isinstance(e, Recv)
         and '"s":"NEO_BTC"' in str(e.data) and '"spot.order_book_update"' in str(e.data)][-3]
    ev = events[i]
    assert isinstance(ev, Recv)
    d = json.loads(ev.data)
    d["result"]["b"].append(["0.5", "1"])  # a bid far above every ask; the U/u chain is intact
    events[i] = replace(ev, data=json.dumps(d, separators=(",", ":")))
    r = Replayer("gate", "order_book_update")
    r.play(events)
    assert {k: v for k, v in r.result.errors.items() if v} == {"crossed": 1}
    assert r.result.invalid() == ["NEO_BTC"]


def test_recording_through_the_obu_parser_is_ignored_not_broken(recorded_dir: Path) -> None:
    p = GateParser("obu.50")
    kinds = set()
    for rec in read_cryptofeed(capture(recorded_dir)):
        if isinstance(rec, Recv):
            kinds |= {type(x).__name__ + ":" + getattr(x, "kind", "") for x in p.parse(rec.data, 0)}
        elif isinstance(rec, Http) and "order_book" in rec.url:
            inst = snapshot_inst(VENUES["gate"], rec.url)
            assert inst is not None and parse_snapshot(inst, rec.data.encode(), 0).seq > 0
    assert kinds == {"Control:ignored", "Control:info"}


# ------------------------------------------------------------------ hand-written current-protocol frames

FULL = (b'{"channel":"spot.obu","event":"update","time_ms":1748572394325,"result":{"t":1748572394325,"full":true,'
        b'"s":"ob.BTC_USDT.50","u":28606981,"b":[["105958.9","0.00908"],["105953.2","0.02426"]],'
        b'"a":[["105959","0.1"],["105960.1","0.0125"]]}}')
DIFF = (b'{"channel":"spot.obu","event":"update","time_ms":1748572394346,"result":{"t":1748572394345,'
        b'"s":"ob.BTC_USDT.50","U":28606982,"u":28606985,"b":[["105958.9","0"]],"a":[["105960.1","0.013"]]}}')


def test_obu_full_and_diff() -> None:
    p = GateParser()
    (full,) = p.parse(FULL, 9)
    assert full == BookMsg("BTC_USDT", True, [["105958.9", "0.00908"], ["105953.2", "0.02426"]],
                           [["105959", "0.1"], ["105960.1", "0.0125"]], 28606981, 28606981, 0, 1748572394325, 9)
    (diff,) = p.parse(DIFF, 10)
    assert isinstance(diff, BookMsg) and not diff.snapshot and (diff.prev, diff.seq) == (28606982, 28606985)
    book = make_book("obu.50")
    for m in (full, diff):
        assert isinstance(m, BookMsg)
        book.on_message(m)
    assert book.valid and book.book.top(5) == ([("105953.2", "0.02426")], [("105959", "0.1"), ("105960.1", "0.013")])
    assert GateParser("obu.400").parse(FULL, 0) == [Control("ignored", "BTC_USDT", "spot.obu ob.BTC_USDT.50")]
    assert GateParser("order_book_update").parse(FULL, 0) == [Control("ignored", "", "spot.obu")]


def test_legacy_update_and_acks() -> None:
    p = GateParser("order_book_update")
    upd = (b'{"time":1650189272,"channel":"spot.order_book_update","event":"update","result":{"t":1650189272515,'
           b'"e":"depthUpdate","E":1650189272,"s":"GMT_USDT","U":140595902,"u":140595903,'
           b'"b":[["2.51518","228.119"]],"a":[["2.5182","4.199"]]}}')
    assert p.parse(upd, 1) == [BookMsg("GMT_USDT", False, [["2.51518", "228.119"]], [["2.5182", "4.199"]],
                                       140595903, 140595902, 0, 1650189272515, 1)]
    old_ack = (b'{"time":1619093532,"channel":"spot.order_book_update","event":"subscribe",'
               b'"result":{"status":"success"}}')
    assert p.parse(old_ack, 0) == [Control("subscribed", "")]
    new_ack = (b'{"time":1,"time_ms":1,"conn_id":"b6","trace_id":"d2","channel":"spot.order_book_update",'
               b'"event":"subscribe","payload":["BTC_USDT","100ms"],"result":{"status":"success"},"requestId":"d2"}')
    assert p.parse(new_ack, 0) == [Control("subscribed", "BTC_USDT")]
    obu_ack = (b'{"time":1748572393,"time_ms":1748572394271,"conn_id":"b61f","trace_id":"d2e2","channel":"spot.obu",'
               b'"event":"subscribe","payload":["ob.BTC_USDT.50"],"result":{"status":"success"},"requestId":"d2e2"}')
    assert GateParser().parse(obu_ack, 0) == [Control("info", "BTC_USDT", "subscribed spot.obu")]  # no REST cue
    assert p.parse(obu_ack, 0) == [Control("info", "BTC_USDT", "subscribed spot.obu")]
    err = (b'{"time":1,"channel":"spot.trades","event":"subscribe","error":{"code":2,'
           b'"message":"unknown currency pair GIBBERISH_USD"},"result":null}')
    assert p.parse(err, 0) == [Control("error", "", "subscribe spot.trades: 2 unknown currency pair GIBBERISH_USD")]
    dup = (b'{"time":1,"channel":"spot.obu","event":"subscribe","payload":["ob.BTC_USDT.50"],'
           b'"error":{"code":2,"message":"Alert sub ob.BTC_USDT.50"},"result":{"status":"fail"}}')
    assert GateParser().parse(dup, 0) == [
        Control("error", "BTC_USDT", "subscribe spot.obu: 2 Alert sub ob.BTC_USDT.50")]
    unsub = (b'{"time":1,"channel":"spot.obu","event":"unsubscribe","payload":["ob.BTC_USDT.50"],'
             b'"result":{"status":"success"}}')
    assert GateParser().parse(unsub, 0) == [Control("unsubscribed", "BTC_USDT")]
    pong = b'{"time":1729100692,"time_ms":1729100692123,"channel":"spot.pong","event":"","result":null}'
    assert p.parse(pong, 0) == [Control("pong")] and VENUES["gate"].text_pong in pong  # type: ignore[operator]
    ticker = b'{"time":1,"channel":"spot.tickers","event":"update","result":{"currency_pair":"NEO_BTC"}}'
    assert p.parse(ticker, 0) == [Control("ignored", "", "spot.tickers")]


@pytest.mark.parametrize("raw", [
    b"nope", b"[]", b'{"channel":"x","event":"y"}',
    b'{"channel":"spot.obu","event":"update","result":null}',
    b'{"channel":"spot.obu","event":"update","result":{"t":1,"s":"ob.BTC_USDT.50","U":1,"u":2,"b":"x","a":[]}}',
    b'{"channel":"spot.obu","event":"update","result":{"t":1,"s":"ob.BTC_USDT.50","U":1,"u":"2","b":[],"a":[]}}',
    b'{"channel":"spot.obu","event":"update","result":{"t":1,"s":"ob.BTC_USDT.50","U":"1","u":2,"b":[],"a":[]}}',
    b'{"channel":"spot.obu","event":"update","result":{"t":1,"s":"ob.BTC_USDT.50","u":2,"b":[],"a":[]}}',
    b'{"channel":"spot.obu","event":"update","result":{"t":"x","s":"ob.BTC_USDT.50","U":1,"u":2,"b":[],"a":[]}}',
    b'{"channel":"spot.obu","event":"update","result":{"t":1,"s":"BTC_USDT","U":1,"u":2,"b":[],"a":[]}}',
    b'{"channel":"spot.obu","event":"update","result":{"t":1,"U":1,"u":2,"b":[],"a":[]}}',
])
def test_malformed_frames_raise_parse_error(raw: bytes) -> None:
    with pytest.raises(ParseError):
        GateParser().parse(raw, 0)


def test_relation_requests_and_snapshots() -> None:
    def diff(first: int, last: int) -> BookMsg:
        return BookMsg("X", False, [], [], last, first, 0, 0, 0)

    assert [relation(diff(11, 15), 10, False), relation(diff(5, 10), 10, False), relation(diff(12, 15), 10, False),
            relation(diff(8, 12), 10, True), relation(diff(8, 12), 10, False)] == [APPLY, STALE, GAP, APPLY, GAP]
    assert [orjson.loads(f) for f in subscribe(["BTC_USDT", "ETH_USDT"], "obu.400")] == [
        {"id": 1, "channel": "spot.obu", "payload": ["ob.BTC_USDT.400"], "event": "subscribe"},
        {"id": 2, "channel": "spot.obu", "payload": ["ob.ETH_USDT.400"], "event": "subscribe"}]
    assert [orjson.loads(f) for f in resubscribe("BTC_USDT", "order_book_update")] == [
        {"channel": "spot.order_book_update", "payload": ["BTC_USDT", "100ms"], "event": "unsubscribe"},
        {"channel": "spot.order_book_update", "payload": ["BTC_USDT", "100ms"], "event": "subscribe"}]
    assert [make_book(c).max_levels for c in VENUES["gate"].channels] == [50, 400, 100]
    req = snapshot_request("https://api.gateio.ws", "HAI_ETH")
    assert req.url == "https://api.gateio.ws/api/v4/spot/order_book?currency_pair=HAI_ETH&limit=100&with_id=true"
    snap = parse_snapshot("HAI_ETH", b'{"id":2691446,"current":1619093533000,"update":1619093532999,'
                                     b'"asks":[["0.00010396","5876.967"]],"bids":[["0.00010322","5360.209"]]}', 3)
    assert (snap.snapshot, snap.seq, snap.exch_ms) == (True, 2691446, 1619093533000)
    assert snap.bids == [["0.00010322", "5360.209"]]
    for bad in (b'{"label":"INVALID_CURRENCY_PAIR","message":"x"}', b'{"asks":[],"bids":[]}', b"[", b'{"id":"x"}'):
        with pytest.raises(ParseError):
            parse_snapshot("HAI_ETH", bad, 0)


def test_instruments() -> None:
    assert [step_text(n) for n in (0, 1, 2, 6)] == ["1", "0.1", "0.01", "0.000001"]
    rows = (b'[{"id":"IHT_ETH","base":"IHT","quote":"ETH","fee":"0.2","min_quote_amount":"0.001",'
            b'"amount_precision":1,"precision":9,"trade_status":"tradable","sell_start":0,"buy_start":0},'
            b'{"id":"X_USDT","base":"X","quote":"USDT","min_base_amount":"5","amount_precision":0,"precision":4,'
            b'"trade_status":"untradable"}]')
    a, b = parse_instruments(rows)
    assert (a.venue_id, a.symbol, a.tick, a.lot, a.min_size, a.active) == ("IHT_ETH", "IHT/ETH", "0.000000001", "0.1",
                                                                        "0.1", True)
    assert (b.lot, b.min_size, b.active) == ("1", "5", False)
    shipped = {m.symbol: m for m in parse_instruments((ROOT / "configs" / "markets" / "gate.json").read_bytes())}
    for coin in ("BTC", "ETH", "XRP", "BNB", "SOL", "TRX", "DOGE", "ADA", "HYPE", "BCH", "LINK", "LEO", "ZEC"):
        assert shipped[f"{coin}/USDT"].active
    assert shipped["BTC/USDT"].venue_id == "BTC_USDT" and shipped["BTC/USDT"].tick == "0.1"
    for bad in (b'{"label":"X","message":"y"}', b'[{"id":"A_B"}]', b"{"):
        with pytest.raises(ParseError):
            parse_instruments(bad)
