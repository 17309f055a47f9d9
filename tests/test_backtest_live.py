"""A backtest of a capture made by ``scanner record`` reports what the live run reported (issue 9).

The full pipeline runs against the simulators while ``scanner record --with-pipeline`` captures every frame and
REST snapshot its collectors receive. One opportunity (buy BTC/USDT on OKX, sell on Binance) is opened and closed
several times by hand-setting both books; the live run's events land in the Redis stream. The capture is then
backtested with the same settings. Asserted: the same opportunity ids open and close in the same order, each open
with the same exact figures (size, VWAPs, net bps, profit), and each close after the same duration as live, up to
the time the live loop took to evaluate the frame (its clock is the wall clock at evaluation; the backtest's is
the frame's receive time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from scanner.backtest.engine import run
from scanner.backtest.sources import capture_files, open_source
from scanner.record import Recording
from scanner.sim.server import SimCluster
from tests.faults.infra_helpers import SYMBOL, set_open
from tests.pipeline_helpers import settings_for, until_event
from tests.record_helpers import recording

FLIPS = 6  # open, close, open, close, open, close
FIGURES = ("size", "buy_vwap", "sell_vwap", "gross_bps", "net_bps", "profit_quote", "net_size")
HOLD_TICKS = 8  # each opportunity stays open for 8 simulator ticks (~400 ms)
DURATION_SLACK_MS = 100.0  # live evaluation delay on either end (the close's book arrives, then is evaluated)


async def test_backtest_of_a_recording_reports_what_the_live_run_reported(tmp_path: Path, market_cache: Path,
                                                                          redis_url: str) -> None:
    out = tmp_path / "capture"
    r = Redis.from_url(redis_url)
    try:
        async with SimCluster(venues=["okx", "binance"], symbols=[SYMBOL], tick_ms=50, seed=21) as sims:
            sims.freeze()  # only the hand-set books move: every opportunity is one the test made
            set_open(sims, False)
            settings = settings_for(sims, redis_url, market_cache)
            rec = Recording(settings, out, with_pipeline=True, flush_s=0.2)
            last: bytes | str = "0"
            async with recording(rec):
                for i in range(FLIPS):
                    set_open(sims, i % 2 == 0)
                    got = await until_event(r, last, "open" if i % 2 == 0 else "close")
                    last = got[-1][0]
                    if i % 2 == 0:
                        await sims.wait_ticks(HOLD_TICKS)  # open long enough that durations mean something
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await r.xrange(settings.redis.stream))
    finally:
        await r.aclose()
    live: list[dict[str, Any]] = [orjson.loads(f[b"data"]) for _, f in entries]
    live = [e for e in live if e["event"] in ("open", "close")]
    assert [e["event"] for e in live] == ["open", "close"] * (FLIPS // 2)  # the run made what the test asked

    channels = {v.name: v.channel for v in settings.venues.values()}
    sources = [open_source(f, {}, channels) for f in capture_files([out])]
    assert sorted(s.venue for s in sources) == ["binance", "okx"]
    result = run(settings, sources)
    backtest = [o for o in result.events if o.event in ("open", "close")]

    assert [(o.event, o.id) for o in backtest] == [(e["event"], e["id"]) for e in live]
    assert result.still_open == []
    assert all(v.parse_errors == 0 and not v.errors and v.invalid == [] for v in result.venues), result.venues
    assert {v.venue: v.snapshots > 0 for v in result.venues} == {"okx": False, "binance": True}  # REST replayed
    for b, e in zip(backtest, live, strict=True):
        if b.event == "open":
            assert {k: getattr(b, k) for k in FIGURES} == {k: e[k] for k in FIGURES}
            assert (b.transfer_status, b.buy_venue, b.sell_venue) == (e["transfer_status"], "okx", "binance")
        else:
            assert b.duration_ms >= HOLD_TICKS * 50 * 0.8
            assert abs(b.duration_ms - e["duration_ms"]) < DURATION_SLACK_MS, (b.duration_ms, e["duration_ms"])
            assert b.peak_net_bps == e["peak_net_bps"] and b.peak_profit_quote == e["peak_profit_quote"]
