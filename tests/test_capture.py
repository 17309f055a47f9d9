"""The capture reader on every recorded cryptofeed file, and on raw-frame files."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest
import zstandard

from scanner.capture import (
    CaptureError,
    Connect,
    Frame,
    Header,
    Http,
    Recv,
    Send,
    detect_format,
    iter_lines,
    read_cryptofeed,
    read_lines,
    read_records,
    ts_to_ns,
)

CAPTURES = ("BINANCE", "BITGET", "BYBIT", "COINBASE", "GATEIO", "HUOBI", "KRAKEN", "KUCOIN", "OKX")
KIND = {Header: "header", Connect: "connect", Send: "send", Recv: "recv", Http: "http"}


def independent_kinds(path: Path) -> Counter[str]:
    """Record kinds counted with zstandard + json directly (not through scanner.capture)."""
    text = zstandard.ZstdDecompressor().decompress(path.read_bytes(), max_output_size=1 << 30).decode()
    return Counter(json.loads(line)["t"] for line in text.splitlines() if line.strip())


@pytest.mark.parametrize("name", CAPTURES)
def test_every_capture_reads_completely(recorded_dir: Path, name: str) -> None:
    path = recorded_dir / "cryptofeed" / f"{name}.jsonl.zst"
    assert detect_format(path) == "cryptofeed"
    records = list(read_records(path))
    header = records[0]
    assert isinstance(header, Header)
    assert header.exchange == name and header.format == 2 and header.recorded > 1.6e9
    assert header.config.get("l2_book")
    assert not any(isinstance(r, Header) for r in records[1:])
    kinds = Counter(KIND[type(r)] for r in records)
    assert kinds == independent_kinds(path)
    assert kinds["recv"] > 100
    for r in records[1:]:
        assert isinstance(r, Connect | Send | Recv | Http)
        assert r.conn.startswith(name) and r.ts > 1.6e9
    # each connection's frames are in receive order
    last: dict[str, float] = {}
    for r in records[1:]:
        if isinstance(r, Recv):
            assert r.ts >= last.get(r.conn, 0.0)
            last[r.conn] = r.ts


def test_okx_capture_content(recorded_dir: Path) -> None:
    records = list(read_cryptofeed(recorded_dir / "cryptofeed" / "OKX.jsonl.zst"))
    kinds = Counter(KIND[type(r)] for r in records)
    assert kinds == {"header": 1, "http": 25, "connect": 1, "send": 3, "recv": 410}
    connect = next(r for r in records if isinstance(r, Connect))
    assert connect.addr == "wss://ws.okx.com:8443/ws/v5/public"
    recv = [r for r in records if isinstance(r, Recv)]
    assert all(isinstance(r.data, str) and not r.binary for r in recv)
    books = [json.loads(r.data) for r in recv if '"channel":"books"' in str(r.data) and '"data"' in str(r.data)]
    assert Counter(b["action"] for b in books) == {"snapshot": 3, "update": 287}
    http = [r for r in records if isinstance(r, Http)]
    assert all(r.url.startswith("https://www.okx.com/api/v5/public/instruments") for r in http)


def test_huobi_binary_frames_are_decoded(recorded_dir: Path) -> None:
    recv = [r for r in read_records(recorded_dir / "cryptofeed" / "HUOBI.jsonl.zst") if isinstance(r, Recv)]
    assert len(recv) == 362 and all(r.binary for r in recv)
    kinds: Counter[str] = Counter()
    for r in recv:
        assert isinstance(r.data, bytes) and r.data[:2] == b"\x1f\x8b"  # gzip, as HTX sends it
        d = json.loads(gzip.decompress(r.data))
        ch = str(d.get("ch", ""))
        kinds["ping" if "ping" in d else "ack" if "subbed" in d else ch.rsplit(".", 1)[-1] or "other"] += 1
        if ch.endswith(".depth.step0"):  # a full book snapshot, levels as JSON numbers
            bids, asks = d["tick"]["bids"], d["tick"]["asks"]
            assert bids and asks and bids[0][0] < asks[0][0]
    assert kinds == {"step0": 292, "detail": 44, "ack": 20, "ping": 6}


def test_raw_frames_plain_and_zstd(tmp_path: Path) -> None:
    frames = ['{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"}}', "pong",
              '{"arg":{"channel":"books"},"data":[{"x":"a\u2028b"}]}']
    plain = tmp_path / "frames.jsonl"
    plain.write_text("\n".join(frames) + "\n", encoding="utf-8")
    packed = tmp_path / "frames.bin"  # no .zst suffix: detected by magic number
    packed.write_bytes(zstandard.ZstdCompressor().compress(plain.read_bytes()))
    for path in (plain, packed):
        assert detect_format(path) == "frames"
        assert read_lines(path) == frames
        assert list(iter_lines(path)) == frames
        assert list(read_records(path)) == [Frame(i, f) for i, f in enumerate(frames)]


def test_crlf_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "crlf.txt"
    path.write_bytes(b"a\r\n\r\nb\r\n")
    assert read_lines(path) == ["a", "b"]
    assert [r for r in read_records(path)] == [Frame(0, "a"), Frame(1, "b")]


def test_bad_capture_lines_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    header = '{"t":"header","format":2,"exchange":"X","config":{},"recorded":1.0}'
    path.write_text(header + '\n{"t":"recv","conn":"c","ts":1.0,"data":"x"}\n{"t":"telepathy","ts":1}\n')
    assert detect_format(path) == "cryptofeed"
    it = read_cryptofeed(path)
    assert next(it) == Header("X", 2, {}, 1.0)
    assert next(it) == Recv(1.0, "c", "x")
    with pytest.raises(CaptureError, match=r"bad.jsonl:3: unknown record kind 'telepathy'"):
        next(it)
    path.write_text(header + '\n{"t":"recv","conn":"c","ts":"soon","data":"x"}\n')
    with pytest.raises(CaptureError, match=r":2: .*'ts' should be float"):
        list(read_cryptofeed(path))


def test_ts_to_ns_keeps_microseconds() -> None:
    assert ts_to_ns(1652459225.5044203) == 1652459225504420000
