"""``scanner record``: captures of the simulators' traffic that the capture reader and the replay engine
read back into the same books the live collectors held; crash safety (SIGKILL leaves a readable file,
SIGINT a complete one); bad --out and write failures exit 1 with a clear message."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard

from scanner import capture_writer, cli
from scanner.bench.record import bench_file, load_frames
from scanner.capture import Connect, Header, Http, Recv, Send, read_cryptofeed
from scanner.capture_writer import CaptureWriteError, CaptureWriter, redact_url
from scanner.feed.collector import VenueCollector
from scanner.record import Recording
from scanner.replay import replay_capture, snapshot_inst
from scanner.sim.server import SimCluster
from scanner.venues import VENUES
from tests.faults.infra_helpers import set_open
from tests.pipeline_helpers import settings_for, until, until_event
from tests.record_helpers import recording, started

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NO_REDIS = "redis://127.0.0.1:1/0"  # collectors-only recordings never connect to it
SYMBOLS = ["BTC/USDT", "ETH/USDT"]


def live_tops(col: VenueCollector) -> dict[str, list[str]]:
    """The collector's valid books as ``inst -> [bid_px, bid_sz, ask_px, ask_sz]`` (ReplayResult.top's shape)."""
    out: dict[str, list[str]] = {}
    for inst, sb in sorted(col.books.items()):
        bid, ask = sb.book.bids.best(), sb.book.asks.best()
        if sb.valid and bid is not None and ask is not None:
            out[inst] = [bid[0], bid[1], ask[0], ask[1]]
    return out


def recorded(rec: Recording, venue: str) -> int:
    cap = rec.writer.files.get(venue)
    return 0 if cap is None else cap.stats.frames


async def test_record_round_trip_matches_live_books(tmp_path: Path, market_cache: Path) -> None:
    out = tmp_path / "cap"
    async with SimCluster(venues=["okx", "binance"], symbols=SYMBOLS, tick_ms=20, seed=7) as sims:
        rec = Recording(settings_for(sims, NO_REDIS, market_cache), out, flush_s=0.2)
        async with recording(rec):
            await until(lambda: all(recorded(rec, v) >= 150 for v in ("okx", "binance"))
                        and all(sb.valid for c in rec.collectors.values() for sb in c.books.values()),
                        sims, "150 recorded frames per venue and every book valid", 30)
            sims.freeze()
            await sims.wait_ticks(3)  # anything in flight has landed; frozen books send nothing new
            live = {v: live_tops(c) for v, c in rec.collectors.items()}
            insts = {v: dict(c.symbols) for v, c in rec.collectors.items()}
            channels = {v: c.settings.channel for v, c in rec.collectors.items()}

    assert sorted(p.name for p in out.iterdir()) == ["binance.jsonl.zst", "okx.jsonl.zst"]
    for venue in ("okx", "binance"):
        path = out / f"{venue}.jsonl.zst"
        records = list(read_cryptofeed(path))  # every record parses
        header = records[0]
        assert isinstance(header, Header)
        assert (header.exchange, header.format) == (venue.upper(), 2)
        assert header.config == {channels[venue]: list(insts[venue])}
        assert header.extra["venue"] == venue and header.extra["channel"] == channels[venue]
        assert header.extra["symbols"] == insts[venue] and sorted(insts[venue].values()) == SYMBOLS
        assert header.extra["ws_url"] == sims.url(venue)

        body = records[1:]
        assert not any(isinstance(r, Header) for r in body)
        connects = [r for r in body if isinstance(r, Connect)]
        assert connects and all(c.addr == sims.url(venue) for c in connects)
        seen: set[str] = set()
        last_ns: dict[str, int] = {}
        for r in body:
            assert isinstance(r, Connect | Send | Recv | Http)
            assert r.ns > 0 and abs(r.ts * 1e9 - r.ns) < 1_000, r  # ts and ns say the same time
            if isinstance(r, Connect):
                seen.add(r.conn)
            elif isinstance(r, Recv | Send):
                assert r.conn in seen, f"{r.conn} has no connect record before its frames"
            if isinstance(r, Recv):
                assert r.ns > last_ns.get(r.conn, 0), f"ns not strictly increasing on {r.conn}"
                last_ns[r.conn] = r.ns
        frames = [r for r in body if isinstance(r, Recv)]
        assert len(frames) >= 150 and all(isinstance(r.data, str) for r in frames)
        snaps = [r for r in body if isinstance(r, Http)]
        if venue == "binance":  # the REST snapshots the collector bridged its diffs with
            assert snaps and {snapshot_inst(VENUES[venue], s.url) for s in snaps} <= set(insts[venue])
            assert all(orjson.loads(s.data)["lastUpdateId"] > 0 for s in snaps)
        else:
            assert any(isinstance(r, Send) and "subscribe" in r.data for r in body)

        res = replay_capture(venue, channels[venue], path)
        assert res.parse_errors == 0 and not any(res.errors.values()), res.error_log[:3]
        assert res.invalid() == [] and set(res.books) == set(insts[venue])
        assert res.top() == live[venue] and len(live[venue]) == len(SYMBOLS)
        if venue == "binance":
            assert res.snapshots == len(snaps)


async def test_record_with_pipeline_finds_opportunities(tmp_path: Path, market_cache: Path, redis_url: str) -> None:
    from redis.asyncio import Redis

    out = tmp_path / "cap"
    async with SimCluster(venues=["okx", "binance"], symbols=["BTC/USDT"], tick_ms=50, seed=3) as sims:
        sims.freeze()
        rec = Recording(settings_for(sims, redis_url, market_cache), out, with_pipeline=True, flush_s=0.2)
        r = Redis.from_url(redis_url)
        try:
            async with recording(rec):
                assert rec.pipeline is not None and set(rec.collectors) == {"okx", "binance"}
                assert rec.pipeline.collectors["okx"].tap is rec.writer.files["okx"]
                set_open(sims, True)
                got = await until_event(r, "0", "open")  # fails the test after 20 s without one
                assert got[-1][1]["buy_venue"] == "okx" and got[-1][1]["sell_venue"] == "binance"
        finally:
            await r.aclose()
    for venue in ("okx", "binance"):
        res = replay_capture(venue, rec.collectors[venue].settings.channel, out / f"{venue}.jsonl.zst")
        assert res.frames > 0 and not any(res.errors.values()) and res.invalid() == []


def sim_config(tmp_path: Path, sims: SimCluster, market_cache: Path) -> Path:
    cfg = tmp_path / "record.yaml"  # JSON is YAML
    cfg.write_bytes(orjson.dumps({
        "symbols": SYMBOLS, "log_level": "WARNING",
        "venues": {v: {"ws_url": sims.url(v), "rest_url": sims.rest_url(v)} for v in ("okx", "binance")},
        "markets": {"cache_dir": str(market_cache), "refresh": False},
    }))
    return cfg


def decoded(path: Path) -> bytes:
    """Everything in a capture file, decoded across its zstd frames."""
    with open(path, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True) as rd:
        return rd.read()


def complete_records(path: Path) -> int:
    """Records readable now (0 while the file is missing or mid-write)."""
    try:
        return len(list(read_cryptofeed(path)))
    except (OSError, ValueError, zstandard.ZstdError):
        return 0


async def start_recorder(tmp_path: Path, sims: SimCluster, market_cache: Path,
                         *extra: str) -> tuple[asyncio.subprocess.Process, Path]:
    out = tmp_path / "cap"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scanner", "record", "--venues", "okx,binance", "--out", str(out),
        "--config", str(sim_config(tmp_path, sims, market_cache)), "--flush-s", "0.2", *extra,
        cwd=PROJECT_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    return proc, out


async def wait_records(proc: asyncio.subprocess.Process, sims: SimCluster, paths: list[Path], n: int) -> list[int]:
    counts: list[int] = []

    def ready() -> bool:
        nonlocal counts
        assert proc.returncode is None, "the recorder exited early"
        counts = [complete_records(p) for p in paths]
        return all(c >= n for c in counts)

    await until(ready, sims, f"{n} flushed records in each capture", 30)
    return counts


async def test_killed_recorder_leaves_readable_files(tmp_path: Path, market_cache: Path) -> None:
    async with SimCluster(venues=["okx", "binance"], symbols=SYMBOLS, tick_ms=20, seed=5) as sims:
        proc, out = await start_recorder(tmp_path, sims, market_cache)
        paths = [out / "okx.jsonl.zst", out / "binance.jsonl.zst"]
        try:
            before = await wait_records(proc, sims, paths, 60)
        finally:
            proc.kill()  # SIGKILL: no close, no final flush
            await proc.wait()
    for path, n in zip(paths, before, strict=True):
        data = decoded(path)
        assert data.endswith(b"\n")  # whole zstd frames of whole lines, up to the last flush
        records = list(read_cryptofeed(path))
        assert isinstance(records[0], Header) and len(records) >= n


async def test_sigint_closes_cleanly_and_prints_summary(tmp_path: Path, market_cache: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    async with SimCluster(venues=["okx", "binance"], symbols=SYMBOLS, tick_ms=20, seed=6) as sims:
        proc, out = await start_recorder(tmp_path, sims, market_cache)
        paths = [out / "okx.jsonl.zst", out / "binance.jsonl.zst"]
        try:
            await wait_records(proc, sims, paths, 30)
        finally:
            proc.send_signal(signal.SIGINT)
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, stderr.decode()
    text = stdout.decode()
    assert "frames" in text and "compressed" in text and "2 files" in text
    total = 0
    for path in paths:
        recs = list(read_cryptofeed(path))
        frames = sum(isinstance(r, Recv) for r in recs)
        assert f"{path}: {frames} frames" in text  # the summary counts what the file holds
        total += frames
    assert f"recorded {total} frames" in text
    # `scanner replay` reads the capture as it reads ../shared/recorded
    assert cli.main(["replay", "--venue", "binance", str(paths[1]), "--runs", "1", "--warmup-lines", "0",
                     "--min-run-lines", "0", "--strict"]) == 0
    summary = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == sum(isinstance(r, Recv) for r in read_cryptofeed(paths[1]))
    assert summary["snapshots"] > 0 and summary["applied"] > 0


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = cli.main(argv)
    return rc, capsys.readouterr().err


def test_bad_out_exits_1_with_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(PROJECT_ROOT / "configs" / "default.yaml")
    a_file = tmp_path / "plain"
    a_file.write_text("x")
    rc, err = run_cli(["record", "--venues", "okx", "--out", str(a_file), "--config", cfg], capsys)
    assert rc == 1 and "exists and is not a directory" in err and "Traceback" not in err
    rc, err = run_cli(["record", "--venues", "okx", "--out", str(a_file / "sub"), "--config", cfg], capsys)
    assert rc == 1 and f"cannot write to {a_file / 'sub'}" in err and "Traceback" not in err
    rc, err = run_cli(["record", "--venues", "nosuch", "--out", str(tmp_path / "o"), "--config", cfg], capsys)
    assert rc == 2 and "nosuch not enabled" in err
    assert not (tmp_path / "o").exists()  # nothing created before the arguments were valid


def test_existing_capture_is_never_overwritten(tmp_path: Path) -> None:
    w = CaptureWriter(tmp_path)
    w.open_venue("okx", "books", {"BTC-USDT": "BTC/USDT"})
    w.close()
    before = (tmp_path / "okx.jsonl.zst").read_bytes()
    with pytest.raises(CaptureWriteError, match="already exists"):
        CaptureWriter(tmp_path).open_venue("okx", "books", {"BTC-USDT": "BTC/USDT"})
    assert (tmp_path / "okx.jsonl.zst").read_bytes() == before


def test_a_writer_that_falls_behind_stops_the_recording(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk that stalls instead of failing: the queue stops at MAX_QUEUED, the error is reported once (which
    stops the recording), later frames are refused, and what was queued is still written: a true prefix."""
    monkeypatch.setattr(capture_writer, "MAX_QUEUED", 50)
    errors: list[str] = []
    w = CaptureWriter(tmp_path, on_error=errors.append)  # thread not started: nothing is flushed meanwhile
    cap = w.open_venue("okx", "books", {"BTC-USDT": "BTC/USDT"})
    conn = types.SimpleNamespace(shard=0)
    for i in range(80):
        cap.on_recv(conn, f'{{"n":{i}}}'.encode(), 1_700_000_000_000_000_000 + i)  # type: ignore[arg-type]
    assert len(cap.queue) == 50 and cap.full
    assert len(errors) == 1 and "fell 50 records behind" in errors[0] and w.error == errors[0]
    with pytest.raises(CaptureWriteError, match="fell 50 records behind"):
        w.close()
    frames = [r for r in read_cryptofeed(tmp_path / "okx.jsonl.zst") if isinstance(r, Recv)]
    assert [orjson.loads(f.data)["n"] for f in frames] == list(range(50))


async def test_disk_full_stops_the_recording_with_an_error(tmp_path: Path, market_cache: Path) -> None:
    async with SimCluster(venues=["okx", "binance"], symbols=SYMBOLS, tick_ms=20, seed=8) as sims:
        rec = Recording(settings_for(sims, NO_REDIS, market_cache), tmp_path / "cap", flush_s=0.2)
        stop = asyncio.Event()
        task = asyncio.create_task(rec.run(stop))
        await started(rec, task)
        await until(lambda: recorded(rec, "okx") > 10 and recorded(rec, "binance") > 10, sims, "frames flushed")
        cap = rec.writer.files["okx"]
        swap: Callable[[], Any] = lambda: open("/dev/full", "wb", buffering=0)  # noqa: E731, SIM115
        cap._fh.close()
        cap._fh = swap()  # the disk fills up under a running recorder
        with pytest.raises(CaptureWriteError, match="No space left on device"):
            await asyncio.wait_for(task, 10)  # ends by itself: the error set stop
        assert stop.is_set() and rec.writer.error is not None and "okx.jsonl.zst" in rec.writer.error
        assert rec.writer.files["okx"].failed and not rec.writer.files["binance"].failed
    # the healthy file was flushed to the end and closed: complete, readable
    recs = list(read_cryptofeed(tmp_path / "cap" / "binance.jsonl.zst"))
    assert sum(isinstance(r, Recv) for r in recs) == recorded(rec, "binance") > 10


def test_connect_tokens_are_redacted() -> None:
    url = "wss://ws-api-spot.kucoin.com/?token=s3cr3t&connectId=7"
    assert redact_url(url) == "wss://ws-api-spot.kucoin.com/?token=***&connectId=7"
    stream = "wss://stream.binance.com:9443/stream?streams=btcusdt@depth@100ms/ethusdt@depth@100ms"
    assert redact_url(stream) == stream  # left byte for byte


def test_bench_reports_overhead(recorded_dir: Path) -> None:
    path = recorded_dir / "cryptofeed" / "OKX.jsonl.zst"
    n = len(load_frames(path))
    row = bench_file(path, runs=1, min_frames=n + 1, level=1)
    assert row["frames"] == 2 * n  # the recording's frames, repeated to reach --min-frames
    for key in ("tap_us_per_frame", "writer_us_per_frame", "writer_mb_per_s", "ratio"):
        value = row[key]
        assert isinstance(value, float) and value > 0, (key, row)
