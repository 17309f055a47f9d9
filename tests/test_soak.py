"""``make soak`` in miniature: ``python -m scanner.bench.soak`` for 30 s on 2 venues x 3 symbols with a fault
every ~3 s, as a subprocess (its own simulators, private Redis and ``scanner run`` process), and the fields of
its final JSON line: faults injected and seen, every book valid afterwards, the pipeline alive, verdict ok.
Also the fix the soak led to: the service's opportunity sink keeps no latency samples."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from redis.asyncio import Redis

from scanner.config import RedisSettings
from scanner.model import Opportunity
from scanner.sinks.metrics import Metrics
from scanner.sinks.opportunities import OpportunitySink

CMD = [sys.executable, "-m", "scanner.bench.soak", "--minutes", "0.5", "--warmup-minutes", "0.1",
       "--venues", "okx,binance", "--symbols", "3", "--fault-every", "3"]


def test_short_soak_survives_random_faults_with_books_valid_and_flat_rss() -> None:
    proc = subprocess.run(CMD, capture_output=True, text=True, timeout=45)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{"bench": "soak"')]
    assert lines, f"no JSON line (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    res: dict[str, Any] = json.loads(lines[-1])
    detail = f"{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    assert proc.returncode == 0, detail
    assert res["verdict"] == "ok", detail
    assert res["alive"] is True
    assert res["books"] == 6 and res["books_served"] == 6
    # faults went out, more than one kind, each venue hit, no simulator error
    assert res["faults_injected"] > 0 and res["faults_injected"] == sum(res["faults"].values())
    assert len(res["faults"]) >= 2, res["faults"]
    assert set(res["faults_by_venue"]) == {"okx", "binance"}
    assert res["fault_errors"] == []
    # a fault a venue refuses (400, FaultUnsupported) is skipped, never counted; both venues support these
    assert all(u.split(":")[1] not in ("drop", "garbage", "skip_seq", "stall") for u in res["unsupported"])
    assert all(" no " in why or "needs" in why for why in res["unsupported"].values()), res["unsupported"]
    # the pipeline saw them
    assert res["resyncs"] + res["reconnects"] > 0
    if res["faults"].get("drop"):
        assert res["reconnects"] > 0
    if res["faults"].get("garbage"):
        assert res["parse_errors"] > 0
    assert res["book_updates"] > 0
    # every book valid in Redis after the last fault, RSS within 10 %
    assert res["books_valid"] is True and res["books_valid_count"] == 6 and res["books_missing"] == []
    assert res["rss_samples"] >= 10
    assert res["rss_growth_pct"] <= 10.0
    assert 0 < res["rss_min_mb"] <= res["rss_max_mb"] <= res["rss_peak_mb"]


async def test_service_sink_keeps_no_latency_samples_but_writes_every_event(redis_url: str) -> None:
    """``scanner run`` builds its sink with ``samples=0``: the soak found 2 x 200,000 latency ints (read only by
    in-process benchmarks) growing the service's RSS by ~14 MB over its first hour."""
    stream = "soak-test-opportunities"

    def event(n: int) -> Opportunity:
        return Opportunity("BTC/USDT", "okx", "binance", "1", "100", "101", "100", "90", "0.9", "0.001", "0.001",
                           1.0, 1.0, 1, 1, n, n, id=f"BTC/USDT|okx|binance|{n}")

    service = OpportunitySink(RedisSettings(url=redis_url, stream=stream), Metrics(), samples=0)
    bench = OpportunitySink(RedisSettings(url=redis_url, stream=stream), Metrics())
    r = Redis.from_url(redis_url)
    try:
        await r.delete(stream)
        await service.emit([event(1), event(2)])
        await bench.emit([event(3)])
        assert service.emitted == 2 and len(service.latencies_ns) == 0 and len(service.emit_ns) == 0
        assert bench.emitted == 1 and len(bench.latencies_ns) == 1 and len(bench.emit_ns) == 1
        assert await r.xlen(stream) == 3
    finally:
        await r.delete(stream)
        await r.aclose()
        service.conn.close()
        bench.conn.close()
