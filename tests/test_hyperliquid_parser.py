"""Hyperliquid parser: the real ``l2Book`` frames of ccxt's recorded test case through our parser and
books (every message a full snapshot), hand-written current-protocol frames, and spotMeta
instruments. Expectations come from the data itself, never from the code under test."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from scanner.book.errors import CrossedBook, ParseError
from scanner.model import BookMsg, Control
from scanner.replay import replay_frames
from scanner.venues import VENUES
from scanner.venues.hyperliquid import (
    INSTRUMENTS_BODY,
    HyperliquidParser,
    make_book,
    parse_instruments,
    resubscribe,
    subscribe,
)

ROOT = Path(__file__).resolve().parent.parent


def extract(recorded_dir: Path) -> list[dict[str, Any]]:
    data = json.loads((recorded_dir / "ccxt" / "hyperliquid.watchOrderBook.extract.json").read_text())
    (case,) = data["methods"]["watchOrderBook"]
    assert case["url"] == "wss://api.hyperliquid.xyz/ws"
    assert case["sentMessages"] == [json.loads(f) for f in subscribe(["BTC"], "l2Book")]  # what we would send
    messages: list[dict[str, Any]] = case["messages"]
    return messages


def pairs(levels: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(lv["px"], lv["sz"]) for lv in levels]


def test_recorded_frames_each_replace_the_book(recorded_dir: Path) -> None:
    messages = extract(recorded_dir)
    books = [m for m in messages if m["channel"] == "l2Book"]
    assert len(messages) == 3 and len(books) == 2
    parser, book = HyperliquidParser(), make_book("l2Book")
    assert parser.parse(orjson.dumps(messages[0]), 0) == [Control("subscribed", "BTC")]
    for m in books:
        (msg,) = parser.parse(orjson.dumps(m), 5)
        data = m["data"]
        assert isinstance(msg, BookMsg) and msg.snapshot and msg.inst == "BTC"
        assert msg.seq == msg.exch_ms == data["time"] and msg.checksum == 0 and msg.recv_ns == 5
        assert book.on_message(msg) and book.valid
        bids, asks = data["levels"]
        assert len(bids) == len(asks) == 20
        # the book is exactly this message, the exact strings kept ("64094.0" stays "64094.0")
        assert book.book.top(100) == (pairs(bids), pairs(asks))
        assert Decimal(bids[0]["px"]) < Decimal(asks[0]["px"])
    assert book.book.seq == books[-1]["data"]["time"]


def test_recorded_frames_through_the_replay_engine(recorded_dir: Path) -> None:
    messages = extract(recorded_dir)
    res = replay_frames("hyperliquid", "l2Book", [orjson.dumps(m).decode() for m in messages])
    assert res.parse_errors == 0 and not any(res.errors.values())
    assert (res.frames, res.book_msgs, res.applied, res.controls, res.checksums_verified) == (3, 2, 2, 1, 0)
    bids, asks = messages[-1]["data"]["levels"]
    assert res.top() == {"BTC": [bids[0]["px"], bids[0]["sz"], asks[0]["px"], asks[0]["sz"]]}
    assert res.invalid() == []


def book(coin: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]], t: int = 1782450000123) -> str:
    def side(rows: list[tuple[str, str]]) -> list[dict[str, object]]:
        return [{"px": p, "sz": s, "n": i + 1} for i, (p, s) in enumerate(rows)]

    return orjson.dumps({"channel": "l2Book", "data": {"coin": coin, "time": t,
                                                      "levels": [side(bids), side(asks)]}}).decode()


def test_snapshots_replace_and_a_crossed_one_is_refused() -> None:
    parser, b = HyperliquidParser(), make_book("l2Book")
    (m1,) = parser.parse(book("@107", [("30.123", "12.5"), ("30.122", "1.0")], [("30.125", "0.5")], 1), 0)
    (m2,) = parser.parse(book("@107", [("30.124", "2.0")], [("30.126", "0.75"), ("30.13", "4.0")], 2).encode(), 0)
    assert isinstance(m1, BookMsg) and isinstance(m2, BookMsg)
    b.on_message(m1)
    assert b.on_message(m2) and b.book.top(5) == ([("30.124", "2.0")], [("30.126", "0.75"), ("30.13", "4.0")])
    (bad,) = parser.parse(book("@107", [("30.2", "1.0")], [("30.126", "0.75")], 3), 0)
    assert isinstance(bad, BookMsg)
    with pytest.raises(CrossedBook):
        b.on_message(bad)
    assert not b.valid
    assert b.on_message(m2) and b.valid  # the next full book heals it: nothing to bridge
    (empty,) = parser.parse(book("@107", [], []), 0)
    assert isinstance(empty, BookMsg) and empty.bids == [] and empty.asks == []


def test_controls() -> None:
    p = HyperliquidParser()
    sub = {"type": "l2Book", "coin": "@107", "nSigFigs": None, "mantissa": None}
    assert p.parse(orjson.dumps({"channel": "subscriptionResponse", "data": {"method": "subscribe",
                                                                             "subscription": sub}}), 0) == [
        Control("subscribed", "@107")]
    assert p.parse(orjson.dumps({"channel": "subscriptionResponse", "data": {"method": "unsubscribe",
                                                                             "subscription": sub}}), 0) == [
        Control("unsubscribed", "@107")]
    trades = {"channel": "subscriptionResponse", "data": {"method": "subscribe",
                                                          "subscription": {"type": "trades", "coin": "@107"}}}
    assert p.parse(orjson.dumps(trades), 0) == [Control("info", "@107", "subscribe trades")]
    assert p.parse(b'{"channel":"pong"}', 0) == [Control("pong")]
    assert p.parse('{"channel":"error","data":"Invalid subscription {\\"type\\":\\"l2Book\\"}"}', 0) == [
        Control("error", "", 'Invalid subscription {"type":"l2Book"}')]
    assert p.parse('{"channel":"trades","data":[]}', 0) == [Control("ignored", "", "trades")]


@pytest.mark.parametrize("raw", [
    "nope", "[]", "{}", '{"channel":5}',
    '{"channel":"l2Book"}',
    '{"channel":"l2Book","data":{"coin":"@107","time":1}}',
    '{"channel":"l2Book","data":{"coin":"@107","time":"soon","levels":[[],[]]}}',
    '{"channel":"l2Book","data":{"coin":"@107","time":1,"levels":[[]]}}',
    '{"channel":"l2Book","data":{"coin":107,"time":1,"levels":[[],[]]}}',
    '{"channel":"l2Book","data":{"coin":"@107","time":1,"levels":[[{"px":1.5,"sz":"1","n":1}],[]]}}',
    '{"channel":"l2Book","data":{"coin":"@107","time":1,"levels":[[{"sz":"1","n":1}],[]]}}',
    '{"channel":"l2Book","data":{"coin":"@107","time":1,"levels":[[["1.5","1"]],[]]}}',
    '{"channel":"l2Book","data":{"coin":"@107","time":1,"levels":["bids","asks"]}}',
    '{"channel":"subscriptionResponse","data":{"method":"subscribe"}}',
])
def test_malformed_frames_raise_parse_error(raw: str) -> None:
    with pytest.raises(ParseError):
        HyperliquidParser().parse(raw, 0)


def test_subscribe_one_message_each_and_resubscribe() -> None:
    frames = [json.loads(f) for f in subscribe(["PURR/USDC", "@107", "@142"], "l2Book")]
    assert frames == [{"method": "subscribe", "subscription": {"type": "l2Book", "coin": c}}
                      for c in ("PURR/USDC", "@107", "@142")]
    assert [json.loads(f) for f in resubscribe("@107", "l2Book")] == [
        {"method": m, "subscription": {"type": "l2Book", "coin": "@107"}} for m in ("unsubscribe", "subscribe")]


def test_spot_meta_instruments() -> None:
    body = (ROOT / "configs" / "markets" / "hyperliquid.json").read_bytes()
    meta = json.loads(body)
    markets = {m.venue_id: m for m in parse_instruments(body)}
    assert set(markets) == {u["name"] for u in meta["universe"]}
    hype = markets["@107"]
    assert (hype.symbol, hype.base, hype.quote, hype.tick, hype.lot, hype.min_size) == (
        "HYPE/USDC", "HYPE", "USDC", "0.000001", "0.01", "0.01")
    assert markets["@142"].symbol == "UBTC/USDC"  # named as Hyperliquid spells the token, not "BTC"
    assert (markets["PURR/USDC"].tick, markets["PURR/USDC"].lot) == ("0.00000001", "1")
    tokens = {t["index"]: t for t in meta["tokens"]}
    for u in meta["universe"]:
        m, base = markets[u["name"]], tokens[u["tokens"][0]]
        assert Decimal(m.lot) == Decimal(10) ** -base["szDecimals"]
        assert Decimal(m.tick) == Decimal(10) ** -(8 - base["szDecimals"])
        assert m.symbol == f"{base['name']}/{tokens[u['tokens'][1]]['name']}" and m.active
    spec = VENUES["hyperliquid"]
    assert spec.instruments_path == "/info" and json.loads(spec.instruments_body or b"") == {"type": "spotMeta"}
    assert spec.instruments_body == INSTRUMENTS_BODY and spec.ping_periodically
    assert spec.text_ping == b'{"method":"ping"}' and spec.text_pong == b'{"channel":"pong"}'
    for bad in (b"x", b'{"tokens":[]}', b'{"tokens":[],"universe":[{"name":"@1","tokens":[5,0]}]}',
                orjson.dumps({**meta, "tokens": [{**t, "szDecimals": 12} for t in meta["tokens"]]})):
        with pytest.raises(ParseError):
            parse_instruments(bad)
