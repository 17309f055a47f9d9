"""``scanner backtest``: shared recordings through the real parsers, books and detector, and synthetic captures
whose one crossing the detector must find with figures computed here from the configured fees."""

from __future__ import annotations

import argparse
import csv
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard

from scanner.backtest import cli
from scanner.backtest.engine import BacktestResult, run
from scanner.backtest.export import rows, write_csv, write_parquet
from scanner.backtest.plot import write_plot
from scanner.backtest.report import report_lines
from scanner.backtest.sources import Source, SourceError, capture_files, open_source
from scanner.config import Settings, from_dict, load
from scanner.replay import replay_capture

T0 = 1_700_000_000.0  # synthetic captures start here (unix s)
NS0 = 1_700_000_000 * 10**9
OKX_FEE, BYBIT_FEE = Decimal("0.001"), Decimal("0.002")
MIN_NET_BPS = Decimal(5)


def settings() -> Settings:
    return from_dict({
        "symbols": ["BTC/USDT"],
        "venues": {
            "okx": {"channel": "books", "taker_fee": str(OKX_FEE), "fees": {"fee_currency": "quote"}},
            "bybit": {"channel": "orderbook.50", "taker_fee": str(BYBIT_FEE), "fees": {"fee_currency": "quote"}},
        },
        "detector": {"min_net_bps": str(MIN_NET_BPS), "min_profit_quote": 1, "min_duration_ms": 0},
        "transfers": {"refresh": False},
    }, {})


def sources(paths: list[Path], s: Settings) -> list[Source]:
    return [open_source(p, {}, {v.name: v.channel for v in s.venues.values()}) for p in paths]


# ------------------------------------------------------------------------------------------- synthetic captures


def write_capture(path: Path, header: dict[str, Any], records: list[dict[str, Any]]) -> Path:
    lines = [orjson.dumps({"t": "header", "format": 2, "config": {}, "recorded": T0, **header})]
    lines += [orjson.dumps(r) for r in records]
    path.write_bytes(zstandard.ZstdCompressor().compress(b"\n".join(lines) + b"\n"))
    return path


def okx_frame(action: str, bids: list[list[str]], asks: list[list[str]], ts: float, seq: int, prev: int,
              checksum: int = 0) -> str:
    item = {"bids": [[p, q, "0", "1"] for p, q in bids], "asks": [[p, q, "0", "1"] for p, q in asks],
            "ts": str(int(ts * 1000)), "checksum": checksum, "seqId": seq, "prevSeqId": prev}
    return orjson.dumps({"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": action,
                         "data": [item]}).decode()


def bybit_frame(bids: list[list[str]], asks: list[list[str]], ts: float, u: int) -> str:
    return orjson.dumps({"topic": "orderbook.50.BTCUSDT", "type": "snapshot", "ts": int(ts * 1000),
                         "data": {"s": "BTCUSDT", "b": bids, "a": asks, "u": u, "seq": u}}).decode()


def crossing(tmp: Path, okx_checksum: int = 0) -> list[Path]:
    """OKX (a cryptofeed-style capture: no extras) asks 100.1 x 10 from T0; Bybit (a ``scanner record``
    capture: venue, channel, symbols, ns) bids 101.0 x 20 from T0+0.05 s: buy OKX, sell Bybit qualifies.
    At T0+0.5 s OKX's ask moves to 101.5: the crossing is gone."""
    okx = write_capture(tmp / "OKX.jsonl.zst", {"exchange": "OKX"}, [
        {"t": "connect", "conn": "OKX.ws.1", "ts": T0 - 1, "addr": "wss://ws.okx.com:8443/ws/v5/public"},
        {"t": "recv", "conn": "OKX.ws.1", "ts": T0,
         "data": okx_frame("snapshot", [["100.0", "5"]], [["100.1", "10"]], T0, 10, -1, okx_checksum)},
        {"t": "recv", "conn": "OKX.ws.1", "ts": T0 + 0.5,
         "data": okx_frame("update", [], [["100.1", "0"], ["101.5", "10"]], T0 + 0.5, 11, 10)},
        {"t": "recv", "conn": "OKX.ws.1", "ts": T0 + 0.9,
         "data": okx_frame("update", [["100.0", "6"]], [], T0 + 0.9, 12, 11)},
    ])
    bybit = write_capture(tmp / "bybit.jsonl.zst", {
        "exchange": "BYBIT", "venue": "bybit", "channel": "orderbook.50", "symbols": {"BTCUSDT": "BTC/USDT"}}, [
        {"t": "connect", "conn": "bybit.ws.1", "ts": T0 - 1, "ns": NS0 - 10**9,
         "addr": "wss://stream.bybit.com/v5/public/spot"},
        {"t": "recv", "conn": "bybit.ws.1", "ts": T0 + 0.05, "ns": NS0 + 50_000_000,
         "data": bybit_frame([["101.0", "20"]], [["101.2", "20"]], T0 + 0.05, 100)},
        {"t": "recv", "conn": "bybit.ws.1", "ts": T0 + 0.7, "ns": NS0 + 700_000_000,
         "data": bybit_frame([["101.0", "20"]], [["101.3", "20"]], T0 + 0.7, 101)},
    ])
    return [okx, bybit]


def test_synthetic_crossing_opens_and_closes_once(tmp_path: Path) -> None:
    s = settings()
    result = run(s, sources(crossing(tmp_path), s), keep_timeline=True)
    kinds = [(e.event, e.id) for e in result.events]
    assert kinds == [("open", "BTC/USDT|okx|bybit"), ("close", "BTC/USDT|okx|bybit")]
    opened, closed = result.events
    # opened by Bybit's frame at T0+0.05, closed by OKX's at T0+0.5
    assert opened.opened_ns == NS0 + 50_000_000  # Bybit's exact ns
    assert closed.detected_ns == round((T0 + 0.5) * 1e6) * 1000  # OKX's ts, in µs
    assert closed.duration_ms == pytest.approx(450.0, abs=0.001)
    # buy 10 at 100.1 on OKX (fee in quote), sell 10 at 101.0 on Bybit: the whole ask, well above the threshold
    cost, proceeds = Decimal("100.1") * 10 * (1 + OKX_FEE), Decimal("101.0") * 10 * (1 - BYBIT_FEE)
    net_bps = (proceeds - cost) / cost * 10_000
    assert abs(Decimal(closed.peak_net_bps) - net_bps) < Decimal("0.0001")
    assert abs(Decimal(closed.peak_profit_quote) - (proceeds - cost)) < Decimal("0.00000001")
    assert Decimal(closed.size) == 10
    assert result.still_open == []
    # venues interleaved by receive time: okx, bybit, okx, bybit, okx
    assert [i for _, i in result.timeline] == [0, 1, 0, 1, 0]
    assert [ns for ns, _ in result.timeline] == sorted(ns for ns, _ in result.timeline)
    # spread samples: at most one per symbol per second; the crossing shows as a positive gross spread
    pts = result.samples[("BTC/USDT", "okx", "bybit")]
    assert pts[0][1] == pytest.approx((101.0 - 100.1) / 100.1 * 1e4)


def test_crossing_still_open_at_the_end_is_reported_open(tmp_path: Path) -> None:
    s = settings()
    okx, bybit = crossing(tmp_path)
    # only OKX's snapshot and Bybit's first frame: never closed
    text = zstandard.ZstdDecompressor().decompress(okx.read_bytes(), max_output_size=1 << 20).splitlines()
    okx.write_bytes(zstandard.ZstdCompressor().compress(b"\n".join(text[:3]) + b"\n"))
    result = run(s, sources([okx, bybit], s))
    assert [e.event for e in result.events] == ["open"]
    assert len(result.still_open) == 1 and result.still_open[0].event == "open"
    assert result.still_open[0].duration_ms == pytest.approx(650.0, abs=0.001)  # T0+0.05 .. T0+0.7
    assert [r["state"] for r in rows(result)] == ["open"]


def test_checksum_error_refuses_the_book(tmp_path: Path) -> None:
    s = settings()
    result = run(s, sources(crossing(tmp_path, okx_checksum=12345), s))
    assert result.events == [] and result.still_open == []
    okx = result.venues[0]
    assert okx.venue == "okx" and okx.errors.get("checksum", 0) >= 1
    assert okx.invalid == ["BTC-USDT"]
    assert result.refusals.get(("invalid_book", "okx"), 0) >= 1


def test_report_and_exports(tmp_path: Path) -> None:
    s = settings()
    result = run(s, sources(crossing(tmp_path), s))
    text = "\n".join(report_lines(result))
    assert "OPEN   BTC/USDT buy okx sell bybit" in text and "CLOSE  BTC/USDT buy okx sell bybit" in text
    summary = [ln for ln in text.splitlines() if ln.strip().startswith("BTC/USDT ")]
    assert len(summary) == 1 and summary[0].split()[3:6] == ["1", "0", "0.450"]
    assert summary[0].split()[6] == result.closed()[0].peak_profit_quote
    _check_exports(result, tmp_path, n=1)


def _check_exports(result: BacktestResult, tmp: Path, n: int) -> None:
    assert write_csv(result, tmp / "o.csv") == n
    with (tmp / "o.csv").open(newline="") as fh:
        back = list(csv.DictReader(fh))
    assert back == [{k: str(v) for k, v in r.items()} for r in rows(result)]
    import pyarrow.parquet as pq

    assert write_parquet(result, tmp / "o.parquet") == n
    assert pq.read_table(tmp / "o.parquet").to_pylist() == rows(result)
    write_plot(result, tmp / "spreads.png")
    png = (tmp / "spreads.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


# ------------------------------------------------------------------------------------------- shared recordings


def test_shared_recordings_replay_like_scanner_replay(recorded_dir: Path, tmp_path: Path) -> None:
    s = load("configs/default.yaml")
    names = ["OKX", "BINANCE", "BYBIT"]
    paths = [recorded_dir / "cryptofeed" / f"{n}.jsonl.zst" for n in names]
    result = run(s, sources(paths, s), keep_timeline=True)
    stamps = [ns for ns, _ in result.timeline]
    assert stamps == sorted(stamps) and len(stamps) == result.records
    assert {i for _, i in result.timeline} == {0, 1, 2}
    for v, path in zip(result.venues, paths, strict=True):
        ref = replay_capture(v.venue, v.channel, path)  # scanner replay: file order, the same books
        assert v.frames == ref.frames and v.applied == ref.applied
        assert not v.errors and v.invalid == []
    assert result.first_ns < result.last_ns
    text = "\n".join(report_lines(result))
    assert "Summary per symbol and venue pair" in text and "OKX.jsonl.zst: okx books" in text
    _check_exports(result, tmp_path, n=len(result.closed()) + len(result.still_open))


def test_cli_on_a_directory(recorded_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ap = argparse.ArgumentParser()
    cli.add_arguments(ap)
    rc = cli.main(ap.parse_args([str(recorded_dir / "cryptofeed"), "--quiet", "--csv", str(tmp_path / "a.csv")]))
    out = capsys.readouterr().out
    assert rc == 0
    last = out.strip().splitlines()[-1]
    assert last.startswith("backtest: ") and "frames from 9 captures" in last and "x real time" in last
    assert (tmp_path / "a.csv").read_text().startswith("id,symbol,buy_venue")


def test_bad_inputs_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ap = argparse.ArgumentParser()
    cli.add_arguments(ap)
    (tmp_path / "notes.jsonl").write_text("hello\n")
    unknown = write_capture(tmp_path / "FOO.jsonl.zst", {"exchange": "FOOEX"}, [])
    for argv, want in [([str(tmp_path / "missing")], "no such file"),
                       ([str(tmp_path / "notes.jsonl")], "not a capture"),
                       ([str(unknown)], "unknown exchange 'FOOEX'"),
                       ([str(unknown), "--venue-map", "FOO=nosuch"], "unknown venue 'nosuch'"),
                       ([str(unknown), "--venue-map", "FOO"], "expected FILE=VENUE")]:
        assert cli.main(ap.parse_args(argv)) == 2
        err = capsys.readouterr().err
        assert want in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no capture files"):
        capture_files([tmp_path / "empty"])
