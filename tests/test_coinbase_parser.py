"""The Coinbase Advanced Trade parser and books on real traffic (../shared/recorded, 2026-08 ``level2``
with ``sequence_num`` and heartbeats) and on hand-written current-protocol frames.

Expectations from the recording are recomputed here independently (json + Decimal), never taken
from the code under test."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from scanner.book.errors import CrossedBook, ParseError
from scanner.book.sync import APPLY, STALE
from scanner.capture import Recv, read_cryptofeed
from scanner.markets import MarketMap
from scanner.model import BookMsg, Control
from scanner.replay import Replayer, capture_events, replay_capture
from scanner.venues import VENUES
from scanner.venues.coinbase import (
    VENUE,
    CoinbaseParser,
    make_book,
    parse_instruments,
    relation,
    resubscribe,
    subscribe,
    timestamp_ms,
)

ROOT = Path(__file__).resolve().parents[1]
Side = dict[Decimal, tuple[str, str]]


def recording(recorded_dir: Path) -> Path:
    return recorded_dir / "cryptofeed" / "COINBASE.jsonl.zst"


def received(recorded_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(r.data) for r in read_cryptofeed(recording(recorded_dir))
            if isinstance(r, Recv) and isinstance(r.data, str)]


class RefBook:
    """Independent reference: Decimal keys, exact strings, absolute sizes."""

    def __init__(self) -> None:
        self.bids: Side = {}
        self.asks: Side = {}

    def apply(self, updates: list[dict[str, str]], snapshot: bool) -> None:
        if snapshot:
            self.bids, self.asks = {}, {}
        for u in updates:
            side = self.bids if u["side"] == "bid" else self.asks
            if Decimal(u["new_quantity"]) == 0:
                side.pop(Decimal(u["price_level"]), None)
            else:
                side[Decimal(u["price_level"])] = (u["price_level"], u["new_quantity"])

    def top(self, n: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        return ([self.bids[k] for k in sorted(self.bids, reverse=True)[:n]],
                [self.asks[k] for k in sorted(self.asks)[:n]])


# ------------------------------------------------------------------ the recording


def test_recording_is_one_unbroken_connection(recorded_dir: Path) -> None:
    frames = received(recorded_dir)
    seqs = [f["sequence_num"] for f in frames]
    assert seqs == list(range(len(frames))) and len(frames) == 1030
    channels = {f["channel"] for f in frames}
    assert {"l2_data", "heartbeats", "subscriptions", "ticker", "market_trades", "candles"} == channels
    l2 = [e for f in frames if f["channel"] == "l2_data" for e in f["events"]]
    assert [e["type"] for e in l2].count("snapshot") == 2 and len(l2) == 775
    assert {u["side"] for e in l2 for u in e["updates"]} == {"bid", "offer"}


def test_recording_replays_valid_with_every_sequence_checked(recorded_dir: Path) -> None:
    frames = received(recorded_dir)
    refs: dict[str, RefBook] = {}
    for f in frames:
        for e in f["events"] if f["channel"] == "l2_data" else []:
            refs.setdefault(e["product_id"], RefBook()).apply(e["updates"], e["type"] == "snapshot")
    r = Replayer("coinbase", "level2")
    r.play(capture_events("coinbase", recording(recorded_dir)))
    res = r.result
    parser = cast(CoinbaseParser, r.parser)
    assert res.parse_errors == 0 and not any(res.errors.values()), res.error_log
    assert parser.checked == len(frames) - 1 == 1029 and parser.gaps == 0  # every frame after the first
    assert res.book_msgs == res.applied == 775
    assert res.controls == len(frames) - sum(1 for f in frames if f["channel"] == "l2_data")
    assert sorted(res.books) == ["BTC-USD", "ETH-USD"] and res.invalid() == []
    for inst, ref in refs.items():
        book = res.books[inst].book
        assert book.top(1000) == ref.top(1000)  # exact strings, 1000 levels a side
        assert not book.crossed()
    assert res.top()["BTC-USD"] == ["65083.66", "0.23929087", "65083.67", "0.29040961"]


def test_dropped_book_frame_is_a_sequence_gap(recorded_dir: Path) -> None:
    events = capture_events("coinbase", recording(recorded_dir))
    l2_updates = [i for i, ev in enumerate(events)
                  if isinstance(ev, Recv) and '"channel":"l2_data"' in str(ev.data) and '"update"' in str(ev.data)]
    drop = l2_updates[len(l2_updates) // 2]
    r = Replayer("coinbase", "level2")
    r.play(events[:drop] + events[drop + 1:])
    res = r.result
    assert cast(CoinbaseParser, r.parser).gaps == 1
    assert res.errors["seq_gap"] == 1 and [e[:2] for e in res.error_log] == [("", "seq_gap")]
    assert res.invalid() == ["BTC-USD", "ETH-USD"]  # a connection gap may have hit any product
    assert all(b.buffered > 0 for b in res.books.values())  # no fresh snapshot in the recording


def test_dropped_heartbeat_is_a_gap_too_and_the_intact_copy_is_not(recorded_dir: Path) -> None:
    events = capture_events("coinbase", recording(recorded_dir))
    hb = next(i for i, ev in enumerate(events) if isinstance(ev, Recv) and '"heartbeats"' in str(ev.data)
              and '"subscriptions"' not in str(ev.data))
    assert replay_capture("coinbase", "level2", recording(recorded_dir)).errors["seq_gap"] == 0
    r = Replayer("coinbase", "level2")
    r.play(events[:hb] + events[hb + 1:])
    assert r.result.errors["seq_gap"] == 1


def test_altered_level_that_crosses_is_detected(recorded_dir: Path) -> None:
    events = capture_events("coinbase", recording(recorded_dir))
    target = -1
    for i, ev in enumerate(events):
        if i > len(events) // 2 and isinstance(ev, Recv) and isinstance(ev.data, str):
            d = json.loads(ev.data)
            e = d["events"][0] if d["channel"] == "l2_data" else {}
            if e.get("product_id") == "ETH-USD" and any(u["side"] == "bid" for u in e["updates"]):
                bid = next(u for u in e["updates"] if u["side"] == "bid")
                bid["price_level"], bid["new_quantity"] = "1999.99", "1"  # far above the ETH-USD asks
                target, new = i, json.dumps(d)
                break
    assert target > 0
    ev = events[target]
    assert isinstance(ev, Recv)
    events[target] = replace(ev, data=new)
    r = Replayer("coinbase", "level2")
    r.play(events)
    assert r.result.errors["crossed"] == 1 and r.result.errors["seq_gap"] == 0
    assert r.result.invalid() == ["ETH-USD"]


# ------------------------------------------------------------------ hand-written frames


def frame(seq: int, channel: str = "l2_data", **body: Any) -> bytes:
    return orjson.dumps({"channel": channel, "client_id": "", "timestamp": "2026-07-01T12:00:00.123456789Z",
                         "sequence_num": seq, **body})


def l2(seq: int, kind: str, inst: str, *ups: tuple[str, str, str]) -> bytes:
    return frame(seq, events=[{"type": kind, "product_id": inst, "updates": [
        {"side": s, "event_time": "2026-07-01T12:00:00.120000Z", "price_level": p, "new_quantity": q}
        for s, p, q in ups]}])


def test_snapshot_and_update_frames() -> None:
    p = CoinbaseParser()
    snap = p.parse(l2(0, "snapshot", "BTC-USD", ("bid", "67010.40", "1.2034"), ("offer", "67011.2", "0.50")), 7)
    assert snap == [BookMsg("BTC-USD", True, [["67010.40", "1.2034"]], [["67011.2", "0.50"]], 0, -1, 0,
                            1_782_907_200_123, 7)]
    upd = p.parse(l2(1, "update", "BTC-USD", ("offer", "67011.2", "0"), ("bid", "67010.5", "2")), 8)
    assert upd == [BookMsg("BTC-USD", False, [["67010.5", "2"]], [["67011.2", "0"]], 1, 0, 0, 1_782_907_200_123, 8)]
    book = make_book("level2")
    for m in snap + upd:
        assert isinstance(m, BookMsg)
        book.on_message(m)
    assert book.valid and book.book.top(5) == ([("67010.5", "2"), ("67010.40", "1.2034")], [])
    assert p.checked == 1 and p.gaps == 0


def test_timestamps() -> None:
    assert timestamp_ms("1970-01-01T00:00:00Z") == 0
    assert timestamp_ms("2026-08-09T21:05:48.483587501Z") == 1_786_309_548_483
    assert timestamp_ms("2026-08-09T21:05:48.35161Z") == 1_786_309_548_351
    assert timestamp_ms("2026-08-09T21:05:48.4Z") == 1_786_309_548_400
    for bad in ("2026-08-09 21:05:48Z", "2026-13-09T21:05:48.1Z", "2026-08-09T21:05:48.1", 17, "T",
                "2026-08-09T2x:05:48Z", "2026-08-09T-1:05:48Z", "2026-08-09T21:05:48.x1Z"):
        with pytest.raises(ParseError):
            timestamp_ms(bad)


def test_controls_acks_heartbeats_errors_and_other_channels() -> None:
    p = CoinbaseParser()
    ack = frame(0, "subscriptions", events=[{"subscriptions": {"level2": ["BTC-USD"], "heartbeats": ["heartbeats"]}}])
    assert p.parse(ack, 0) == [Control("subscribed", "", "heartbeats,level2")]
    hb = frame(1, "heartbeats", events=[{"current_time": "2026-07-01 12:00:00.1 +0000 UTC m=+1.0",
                                         "heartbeat_counter": "3049"}])
    assert p.parse(hb, 0) == [Control("info", "", "heartbeats")]
    ticker = frame(2, "ticker", events=[{"type": "update", "tickers": []}])
    assert p.parse(ticker, 0) == [Control("ignored", "", "ticker")]
    assert p.parse(frame(3, "brand_new_channel", events=[]), 0) == [Control("ignored", "", "brand_new_channel")]
    err = b'{"type":"error","message":"Failed to subscribe","reason":"NOPE-USD is not a valid product"}'
    assert p.parse(err, 0) == [Control("error", "", "Failed to subscribe: NOPE-USD is not a valid product")]
    assert p.parse(b'{"type":"error","message":"rate limit exceeded"}', 0) == [
        Control("error", "", "rate limit exceeded")]
    assert p.checked == 3 and p.gaps == 0  # error frames carry no sequence_num


@pytest.mark.parametrize("raw", [
    b"{not json", b"[1,2]", b'"text"',
    b'{"channel":"l2_data","events":[]}',  # no sequence_num
    b'{"channel":"l2_data","sequence_num":"3","events":[]}',
    b'{"sequence_num":3,"events":[]}',
    b'{"channel":"l2_data","sequence_num":0,"timestamp":"2026-07-01T12:00:00Z","events":{}}',
    b'{"channel":"l2_data","sequence_num":0,"events":[]}',  # no timestamp
    b'{"channel":"l2_data","sequence_num":0,"timestamp":"yesterday","events":[]}',
])
def test_malformed_frames_raise_parse_error(raw: bytes) -> None:
    with pytest.raises(ParseError):
        CoinbaseParser().parse(raw, 0)


@pytest.mark.parametrize("ups", [
    [{"side": "ask", "price_level": "1", "new_quantity": "1"}],
    [{"side": "bid", "price_level": 1.5, "new_quantity": "1"}],
    [{"side": "bid", "price_level": "1.5", "new_quantity": 2}],
    [{"side": "bid", "price_level": "1.5"}],
    "nope",
    [7],
])
def test_malformed_levels_raise_parse_error(ups: object) -> None:
    with pytest.raises(ParseError):
        CoinbaseParser().parse(frame(0, events=[{"type": "update", "product_id": "BTC-USD", "updates": ups}]), 0)
    with pytest.raises(ParseError):
        CoinbaseParser().parse(frame(0, events=[{"type": "delta", "product_id": "BTC-USD", "updates": []}]), 0)
    with pytest.raises(ParseError):
        CoinbaseParser().parse(frame(0, "subscriptions", events=[{"subscriptions": ["level2"]}]), 0)


def test_sequence_gap_resync_and_reconnect() -> None:
    p = CoinbaseParser()
    p.parse(l2(0, "snapshot", "BTC-USD", ("bid", "1", "1")), 0)
    items = p.parse(l2(2, "update", "BTC-USD", ("bid", "1", "2")), 0)
    assert items[0] == Control("resync", "", "seq_gap") and isinstance(items[1], BookMsg)
    assert p.parse(frame(3, "heartbeats", events=[]), 0) == [Control("info", "", "heartbeats")]
    assert p.parse(frame(3, "heartbeats", events=[]), 0)[0] == Control("resync", "", "seq_gap")  # repeated
    p.on_connect()  # a new socket counts from 0 again
    assert p.parse(frame(0, "heartbeats", events=[]), 0) == [Control("info", "", "heartbeats")]
    # A gap on a frame whose body is malformed is still reported, with the next frame.
    with pytest.raises(ParseError):
        p.parse(frame(5, events="broken"), 0)
    assert p.parse(frame(6, "heartbeats", events=[]), 0) == [Control("resync", "", "seq_gap"),
                                                              Control("info", "", "heartbeats")]
    assert p.parse(frame(7, "heartbeats", events=[]), 0) == [Control("info", "", "heartbeats")]
    assert p.gaps == 3


def test_relation_drops_updates_older_than_the_snapshot() -> None:
    def msg(seq: int, snapshot: bool = False, bid: str = "1") -> BookMsg:
        return BookMsg("BTC-USD", snapshot, [[bid, "1"]], [], seq, seq - 1, 0, 0, 0)

    assert relation(msg(5), 4, True) == APPLY and relation(msg(9), 4, False) == APPLY
    assert relation(msg(4), 4, False) == STALE and relation(msg(3), 4, True) == STALE
    book = make_book("level2")
    book.on_message(msg(3, bid="10"))  # buffered before the (re)subscription's snapshot
    book.on_message(msg(8, snapshot=True, bid="20"))
    book.on_message(msg(9, bid="21"))
    assert book.book.top(5)[0] == [("21", "1"), ("20", "1")]
    with pytest.raises(CrossedBook):
        book.on_message(BookMsg("BTC-USD", False, [], [["20.5", "1"]], 10, 9, 0, 0, 0))
    assert not book.valid


def test_subscribe_and_resubscribe_frames() -> None:
    frames = [orjson.loads(f) for f in subscribe([f"C{i}-USD" for i in range(150)], "level2")]
    assert [len(f.get("product_ids", [])) for f in frames] == [100, 50, 0]
    assert frames[0]["type"] == "subscribe" and frames[0]["channel"] == "level2"
    assert frames[-1] == {"type": "subscribe", "channel": "heartbeats"}
    assert [orjson.loads(f) for f in resubscribe("BTC-USDC", "level2")] == [
        {"type": "unsubscribe", "product_ids": ["BTC-USDC"], "channel": "level2"},
        {"type": "subscribe", "product_ids": ["BTC-USDC"], "channel": "level2"},
    ]


def product(pid: str, **kw: Any) -> dict[str, Any]:
    base, quote = pid.split("-")[:2]
    return {"product_id": pid, "base_currency_id": base, "quote_currency_id": quote, "price_increment": "0.01",
            "base_increment": "0.00000001", "base_min_size": "0.00000001", "status": "online",
            "trading_disabled": False, "is_disabled": False, "cancel_only": False, "product_type": "SPOT",
            "alias": "", "alias_to": [], **kw}


def test_parse_instruments_aliases_and_states() -> None:
    body = orjson.dumps({"products": [
        product("BTC-USD", alias_to=["BTC-USDC"]), product("BTC-USDC", alias="BTC-USD"),
        product("USDT-USDC"), product("EURC-USDC", base_increment="1"),
        product("MKR-USD", status="delisted", trading_disabled=True), product("OLD-USD", cancel_only=True),
        product("BIT-31JUL26-CDE", product_type="FUTURE"),
    ], "num_products": 7})
    ms = {m.venue_id: m for m in parse_instruments(body)}
    assert sorted(ms) == ["BTC-USD", "BTC-USDC", "EURC-USDC", "MKR-USD", "OLD-USD", "USDT-USDC"]
    assert (ms["BTC-USDC"].symbol, ms["BTC-USDC"].quote, ms["BTC-USDC"].stream_id) == ("BTC/USDC", "USDC", "BTC-USD")
    assert ms["BTC-USD"].stream_id == "" and ms["USDT-USDC"].stream_id == "" and ms["EURC-USDC"].lot == "1"
    assert not ms["MKR-USD"].active and not ms["OLD-USD"].active and ms["BTC-USD"].active
    for bad in (b"{", b"[]", b'{"products":[{"product_id":"X-Y"}]}', b'{"items":[]}'):
        with pytest.raises(ParseError):
            parse_instruments(bad)


def test_shipped_market_cache_covers_the_default_coins() -> None:
    markets = MarketMap("coinbase", parse_instruments((ROOT / "configs" / "markets" / "coinbase.json").read_bytes()))
    listed = {"BTC", "ETH", "XRP", "BNB", "SOL", "DOGE", "ADA", "HYPE", "BCH", "LINK", "ZEC"}
    for coin in listed:
        m = markets.by_symbol[f"{coin}/USDC"]
        assert m.active and m.stream_id == f"{coin}-USD" and f"{coin}-USD" in markets.by_id
    assert {s.split("/")[0] for s in markets.by_symbol if s.endswith("/USDT")} == {
        "BTC", "ETH", "XRP", "SOL", "DOGE", "ADA", "LINK"}
    assert not any(s.startswith(("TRX/", "LEO/")) for s in markets.by_symbol)  # Coinbase lists neither
    assert markets.by_symbol["USDT/USDC"].stream_id == ""
    body = json.loads((ROOT / "configs" / "markets" / "coinbase.json").read_text())
    assert body["num_products"] == len(body["products"]) == len(markets)
    assert all(m.tick and m.lot and m.min_size and Decimal(m.tick) > 0 for m in markets.by_id.values())


def test_venue_spec() -> None:
    assert VENUES["coinbase"] is VENUE
    assert VENUE.ws_url == "wss://advanced-trade-ws.coinbase.com" and VENUE.rest_url == "https://api.coinbase.com"
    assert VENUE.instruments_path.startswith("/api/v3/brokerage/market/products")
    assert VENUE.text_ping is None and VENUE.ping_idle_s > 0 and VENUE.snapshot_request is None
    assert VENUE.max_sends_per_s <= 8 and VENUE.channels == ("level2",)
    assert isinstance(VENUE.make_parser("level2", []), CoinbaseParser)
