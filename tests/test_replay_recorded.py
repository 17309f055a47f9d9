"""Real venue traffic through the real parsers and synced books (scanner.replay).

Every expectation is recomputed here independently (json + Decimal + zlib), never taken
from the code under test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zlib
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from scanner.capture import Recv, read_cryptofeed, read_lines
from scanner.model import BookMsg
from scanner.replay import Replayer, ReplayResult, RestSnapshot, capture_events, main, replay_capture, replay_frames
from scanner.venues import VENUES

Side = dict[Decimal, tuple[str, str]]


class DecimalBook:
    """Independent reference book: Decimal keys, exact strings kept, absolute sizes."""

    def __init__(self) -> None:
        self.bids: Side = {}
        self.asks: Side = {}

    def load(self, bids: list[list[str]], asks: list[list[str]]) -> None:
        self.bids, self.asks = {}, {}
        self.apply(bids, asks)

    def apply(self, bids: list[list[str]], asks: list[list[str]]) -> None:
        for side, rows in ((self.bids, bids), (self.asks, asks)):
            for row in rows:
                if Decimal(row[1]) == 0:
                    side.pop(Decimal(row[0]), None)
                else:
                    side[Decimal(row[0])] = (row[0], row[1])

    def sorted_sides(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        return ([self.bids[k] for k in sorted(self.bids, reverse=True)], [self.asks[k] for k in sorted(self.asks)])

    def top(self) -> list[str]:
        b, a = self.sorted_sides()
        return [b[0][0], b[0][1], a[0][0], a[0][1]]

    def okx_crc(self) -> int:
        b, a = self.sorted_sides()
        parts: list[str] = []
        for i in range(25):
            parts += list(b[i]) if i < len(b) else []
            parts += list(a[i]) if i < len(a) else []
        v = zlib.crc32(":".join(parts).encode())
        return v - (1 << 32) if v & 0x80000000 else v


def no_errors(res: ReplayResult) -> bool:
    return res.parse_errors == 0 and not any(res.errors.values())


# ------------------------------------------------------------------ OKX capture (2022, checksums, no seqId)


def okx_book_frames(recorded_dir: Path) -> list[dict[str, Any]]:
    out = []
    for r in read_cryptofeed(recorded_dir / "cryptofeed" / "OKX.jsonl.zst"):
        if isinstance(r, Recv) and isinstance(r.data, str):
            d = json.loads(r.data)
            if d.get("arg", {}).get("channel") == "books" and "data" in d:
                out.append(d)
    return out


def test_okx_capture_frames_have_checksums_and_no_seqid(recorded_dir: Path) -> None:
    frames = okx_book_frames(recorded_dir)
    assert len(frames) == 290
    assert all(item["checksum"] != 0 and "seqId" not in item for f in frames for item in f["data"])
    # the reference book reproduces every published checksum: the data and the rule agree
    refs: dict[str, DecimalBook] = {}
    for f in frames:
        ref = refs.setdefault(f["arg"]["instId"], DecimalBook())
        item = f["data"][0]
        (ref.load if f["action"] == "snapshot" else ref.apply)(item["bids"], item["asks"])
        assert ref.okx_crc() == item["checksum"]


def test_okx_capture_every_checksum_validated(recorded_dir: Path) -> None:
    frames = okx_book_frames(recorded_dir)
    with_crc = sum(1 for f in frames for item in f["data"] if item.get("checksum"))
    res = replay_capture("okx", "books", recorded_dir / "cryptofeed" / "OKX.jsonl.zst")
    assert no_errors(res), res.error_log
    assert res.book_msgs == len(frames) == 290
    assert res.checksums_verified == with_crc == 290
    assert sorted(res.books) == ["BTC-USD-220527", "BTC-USDT", "UNI-USD-SWAP"] and res.invalid() == []
    refs: dict[str, DecimalBook] = {}
    for f in frames:
        ref = refs.setdefault(f["arg"]["instId"], DecimalBook())
        (ref.load if f["action"] == "snapshot" else ref.apply)(f["data"][0]["bids"], f["data"][0]["asks"])
    assert res.top()["BTC-USDT"] == refs["BTC-USDT"].top()
    assert res.top() == {inst: ref.top() for inst, ref in refs.items()}


def test_okx_capture_corrupted_size_is_a_checksum_mismatch(recorded_dir: Path) -> None:
    events = capture_events("okx", recorded_dir / "cryptofeed" / "OKX.jsonl.zst")
    ref, target = DecimalBook(), -1
    for i, ev in enumerate(events):  # find an update changing a size inside BTC-USDT's top 25 asks
        d = json.loads(ev.data) if isinstance(ev, Recv) and isinstance(ev.data, str) else {}
        if d.get("arg") != {"channel": "books", "instId": "BTC-USDT"} or "data" not in d:
            continue
        item = d["data"][0]
        (ref.load if d["action"] == "snapshot" else ref.apply)(item["bids"], item["asks"])
        top25 = {p for p, _ in ref.sorted_sides()[1][:25]}
        hits = [row for row in item["asks"] if row[0] in top25 and Decimal(row[1]) != 0]
        if d["action"] == "update" and hits and i > len(events) // 3:
            hits[0][1] = str(Decimal(hits[0][1]) + Decimal("0.5"))
            target, new = i, json.dumps(d, separators=(",", ":"))
            break
    assert target > 0
    ev = events[target]
    assert isinstance(ev, Recv)
    events[target] = replace(ev, data=new)
    r = Replayer("okx", "books")
    r.play(events)
    res = r.result
    assert res.errors == {"seq_gap": 0, "checksum": 1, "crossed": 0, "snapshot_too_old": 0, "bad_level": 0}
    assert [e[:2] for e in res.error_log] == [("BTC-USDT", "checksum")]
    assert res.invalid() == ["BTC-USDT"]  # no later snapshot: its diffs are buffered, not applied
    assert res.books["BTC-USDT"].buffered > 0


def test_okx_books5_frames_from_ccxt_extract(recorded_dir: Path) -> None:
    extract = json.loads((recorded_dir / "ccxt" / "okx.watchOrderBook.extract.json").read_text())
    cases = extract["methods"]["watchOrderBook"]
    assert len(cases) == 2
    for case in cases:
        frames = [orjson.dumps(m).decode() for m in case["messages"]]
        data = [m for m in case["messages"] if "data" in m]
        res = replay_frames("okx", "books5", frames)
        assert no_errors(res) and res.controls == 1 and res.book_msgs == len(data) == 2
        parser = VENUES["okx"].make_parser("books5", [])
        for raw, m in zip(frames[1:], data, strict=True):
            (msg,) = parser.parse(raw, 0)
            item = m["data"][0]
            assert isinstance(msg, BookMsg) and msg.snapshot and msg.inst == item["instId"]
            assert msg.seq == item["seqId"] and msg.checksum == 0 and len(msg.bids) == len(msg.asks) == 5
        last = data[-1]["data"][0]
        inst = last["instId"]
        assert res.top() == {inst: [last["bids"][0][0], last["bids"][0][1], last["asks"][0][0], last["asks"][0][1]]}
        assert res.books[inst].book.seq == last["seqId"]


# ------------------------------------------------------------------ synthetic OKX books (seqId chain + checksum)


@pytest.fixture(scope="module")
def okx_generated(recorded_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    gen = recorded_dir.parent / "bench" / "gen_okx_books.py"
    out = tmp_path_factory.mktemp("okx") / "okx_books.jsonl"
    subprocess.run([sys.executable, str(gen), "--instruments", "3", "--messages", "3000", "--seed", "7",
                    "--out", str(out), "--expected", str(out.with_suffix(".json"))], check=True, capture_output=True)
    return out, json.loads(out.with_suffix(".json").read_text())


def expected_top(exp: dict[str, Any]) -> dict[str, list[str]]:
    return {k: [v["bid_px"], v["bid_sz"], v["ask_px"], v["ask_sz"]] for k, v in exp["top"].items()}


def test_generated_okx_books_replay(okx_generated: tuple[Path, dict[str, Any]]) -> None:
    path, exp = okx_generated
    lines = read_lines(path)
    res = replay_frames("okx", "books", lines)
    assert no_errors(res) and res.frames == len(lines) == exp["lines"]
    assert res.checksums_verified == res.book_msgs == len(lines) - 3
    assert res.top() == expected_top(exp)
    assert {k: sb.book.seq for k, sb in res.books.items()} == {k: v["seqId"] for k, v in exp["top"].items()}


@pytest.mark.parametrize(("field", "reason"), [("prevSeqId", "seq_gap"), ("checksum", "checksum")])
def test_generated_okx_books_corruption(okx_generated: tuple[Path, dict[str, Any]], field: str, reason: str) -> None:
    lines = read_lines(okx_generated[0])
    i = next(n for n in range(len(lines) // 2, len(lines)) if '"instId":"ETH-USDT"},"action":"update"' in lines[n])
    d = json.loads(lines[i])
    d["data"][0][field] += 1
    lines[i] = json.dumps(d, separators=(",", ":"))
    res = replay_frames("okx", "books", lines)
    assert {k: v for k, v in res.errors.items() if v} == {reason: 1}
    assert [e[:2] for e in res.error_log] == [("ETH-USDT", reason)]
    assert res.invalid() == ["ETH-USDT"]
    want = expected_top(okx_generated[1])
    del want["ETH-USDT"]
    assert res.top() == want


def test_replay_cli_prints_one_json_line(okx_generated: tuple[Path, dict[str, Any]],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(file=okx_generated[0], venue="okx", channel=None, runs=3, warmup_lines=100,
                              strict=True)
    assert main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    d = json.loads(out[0])
    assert d["us_per_msg"] > 0 and len(d["runs_us"]) == 3 and d["us_per_msg"] == sorted(d["runs_us"])[1]
    assert d["frames"] == okx_generated[1]["lines"] and d["parse_errors"] == 0 and not any(d["errors"].values())
    assert d["top"] == expected_top(okx_generated[1])


# ------------------------------------------------------------------ Binance capture (REST snapshot + U/u diffs)


def binance_reference(events: list[Recv | RestSnapshot]) -> dict[str, list[str]]:
    """Binance's documented procedure, done by hand on the same events."""
    books: dict[str, DecimalBook] = {}
    local: dict[str, int] = {}
    for ev in events:
        if isinstance(ev, RestSnapshot):
            snap = json.loads(ev.body)
            books[ev.inst] = DecimalBook()
            books[ev.inst].load(snap["bids"], snap["asks"])
            local[ev.inst] = snap["lastUpdateId"]
            continue
        d = json.loads(ev.data).get("data", {})
        sym = d.get("s")
        if d.get("e") != "depthUpdate" or sym not in local or d["u"] <= local[sym]:
            continue
        assert d["U"] <= local[sym] + 1, f"gap in {sym}"
        books[sym].apply(d["b"], d["a"])
        local[sym] = d["u"]
    return {sym: b.top() for sym, b in books.items()}


def test_binance_capture_syncs_every_symbol(recorded_dir: Path) -> None:
    events = capture_events("binance", recorded_dir / "cryptofeed" / "BINANCE.jsonl.zst")
    snaps = [e for e in events if isinstance(e, RestSnapshot)]
    assert [s.inst for s in snaps] == ["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"]
    r = Replayer("binance", "depth@100ms")
    r.play(events)
    res = r.result
    assert no_errors(res) and res.snapshots == 4 and res.invalid() == []
    assert sorted(res.books) == ["BLZETH", "LRCBTC", "NKNUSDT", "RUNEEUR"]
    assert res.top() == binance_reference(events)
    assert res.book_msgs == 177 and res.controls == 88


def test_binance_capture_dropped_diff_is_a_gap_for_that_symbol_only(recorded_dir: Path) -> None:
    events = capture_events("binance", recorded_dir / "cryptofeed" / "BINANCE.jsonl.zst")
    snap_at = next(i for i, e in enumerate(events) if isinstance(e, RestSnapshot) and e.inst == "NKNUSDT")
    diffs = [i for i, e in enumerate(events) if i > snap_at and isinstance(e, Recv)
             and '"e":"depthUpdate"' in str(e.data) and '"s":"NKNUSDT"' in str(e.data)]
    assert len(diffs) > 10
    del events[diffs[len(diffs) // 2]]
    r = Replayer("binance", "depth@100ms")
    r.play(events)
    res = r.result
    assert {k: v for k, v in res.errors.items() if v} == {"seq_gap": 1}
    assert [e[:2] for e in res.error_log] == [("NKNUSDT", "seq_gap")]
    assert res.invalid() == ["NKNUSDT"]
    assert sorted(res.top()) == ["BLZETH", "LRCBTC", "RUNEEUR"]
