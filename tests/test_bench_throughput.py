"""The throughput bench's core on a small generated OKX ``books`` file: blaster process → real collector
pipeline → private Redis. Correctness only (books in Redis, counts, no errors); nothing here is timed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scanner.bench.throughput import run, scan_file

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GENERATOR = PROJECT_ROOT.parent / "shared" / "bench" / "gen_okx_books.py"
UPDATES = 20_000


@pytest.fixture(scope="module")
def bench_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deterministic 8-instrument file with its ``expected_top.json`` (the shared generator, stdlib only)."""
    if not GENERATOR.is_file():
        pytest.fail(f"bench generator not found at {GENERATOR} (expected <project root>/../shared/bench)",
                    pytrace=False)
    out = tmp_path_factory.mktemp("bench") / "okx_books.jsonl"
    subprocess.run([sys.executable, str(GENERATOR), "--messages", str(UPDATES), "--out", str(out),
                    "--expected", str(out.with_name("expected_top.json"))], check=True, stdout=subprocess.DEVNULL,
                   timeout=120)
    return out


def test_scan_counts_the_file(bench_file: Path) -> None:
    info = scan_file(bench_file)
    assert info.insts[:2] == ["BTC-USDT", "ETH-USDT"] and len(info.insts) == 8
    assert (info.snapshots, info.updates, info.lines) == (8, UPDATES, UPDATES + 16)
    assert info.whole_file and set(info.expected) == set(info.insts)  # the sidecar matches (sha256, lines)
    prefix = scan_file(bench_file, limit=1016)
    assert (prefix.updates, prefix.whole_file, prefix.expected) == (1000, False, {})


def test_every_update_reaches_redis(bench_file: Path, redis_url: str) -> None:
    res = run(bench_file, seconds=60, redis_url=redis_url)
    assert res["finished"]
    assert res["books_check"] == "expected_top.json"
    assert res["books_ok"] is True
    assert res["errors"] == 0, res["error_counts"]
    assert res["updates_total"] == res["updates_sent"] == UPDATES
    assert res["writes_total"] >= 8 and res["lat_samples"] > 0
    assert res["write_lat_p50_ms"] > 0


def test_a_prefix_is_checked_against_the_collectors_books(bench_file: Path, redis_url: str) -> None:
    res = run(bench_file, frames=5016, rate=20_000, seconds=60, redis_url=redis_url)
    assert res["finished"] and res["books_check"] == "collector memory"
    assert res["books_ok"] is True and res["errors"] == 0
    assert res["updates_total"] == res["updates_sent"] == 5000
