"""OkxParser: its hot path (one fully typed `books` item) gives exactly what the general path gives,
on every recorded frame and on frames that only nearly fit it; malformed frames still raise."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson
import pytest

from scanner.book.errors import ParseError
from scanner.capture import Recv, read_cryptofeed
from scanner.model import BookMsg, Control
from scanner.venues.okx import OkxParser


def test_hot_path_equals_the_general_path_on_the_recording(recorded_dir: Path) -> None:
    p = OkxParser("books")
    n = 0
    for rec in read_cryptofeed(recorded_dir / "cryptofeed" / "OKX.jsonl.zst"):
        if isinstance(rec, Recv) and rec.data != "pong":
            try:
                expected = p.parse_object(orjson.loads(rec.data), 7)
            except ParseError:
                with pytest.raises(ParseError):
                    p.parse(rec.data, 7)
                continue
            assert _cut(p.parse(rec.data, 7)) == _cut(expected)
            n += 1
    assert n > 400  # the recording: 410 frames of `books`, acks and pongs


def _cut(out: list[BookMsg | Control]) -> list[object]:
    """Levels as [price, size]: the compiled okx_books scanner drops the extras the book never reads."""
    return [dataclasses.replace(m, bids=[r[:2] for r in m.bids], asks=[r[:2] for r in m.asks])
            if isinstance(m, BookMsg) else m for m in out]


BOOK = {"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": "update",
        "data": [{"asks": [["101", "1", "0", "1"]], "bids": [["99", "2", "0", "1"]], "ts": "1782450000000",
                  "checksum": -12345, "seqId": 10, "prevSeqId": 9}]}


@pytest.mark.parametrize("change", [
    lambda d: d,  # the hot path itself
    lambda d: d.pop("action"),  # books5-style: a full book without action
    lambda d: d["data"][0].pop("checksum"),  # OKX since 2026-06-23 may omit it
    lambda d: d["data"][0].update(seqId="10", prevSeqId="9"),  # ids as strings: the general path converts
    lambda d: d["data"][0].pop("seqId"),  # pre-2023 frames: no chain
    lambda d: d["data"].append(dict(d["data"][0], seqId=11, prevSeqId=10)),  # two items
    lambda d: d["arg"].update(channel="books5"),  # another book channel: ignored
])
def test_near_misses_of_the_hot_path_parse_as_the_general_path_says(change: object) -> None:
    d = orjson.loads(orjson.dumps(BOOK))
    change(d)  # type: ignore[operator]
    p = OkxParser("books")
    assert _cut(p.parse(orjson.dumps(d), 5)) == _cut(p.parse_object(d, 5))


@pytest.mark.parametrize("frame", [
    b'[1, 2]', b'"text"', b'{"arg": {"channel": "books", "instId": 5}, "data": [{}]}',
    b'{"arg": {"channel": "books", "instId": "BTC-USDT"}, "data": [{"bids": 1, "asks": []}]}',
    b'{"arg": {"channel": "books", "instId": "BTC-USDT"}, "data": [{"bids": [], "asks": [], "seqId": 1,'
    b' "prevSeqId": 0, "ts": "soon"}]}',
    b'{"arg": {"channel": "nope", "instId": "BTC-USDT"}, "data": []}',
])
def test_malformed_frames_still_raise(frame: bytes) -> None:
    with pytest.raises(ParseError):
        OkxParser("books").parse(frame, 0)
