"""End to end: simulators + collectors + real Redis + detector, all in-process.

The lifecycle test reads open then close events of one id from the stream and prints the history.
Waiting is on events with deadlines: the Redis stream (XREAD BLOCK) or the simulator's
own ticks (``wait_ticks``) between checks of a condition; never bare sleeps.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import cast

import orjson
import pytest
from redis.asyncio import Redis

from scanner import cli
from scanner.sim.server import SimCluster
from tests.pipeline_helpers import metric, next_opportunities, running, settings_for, until, until_event

FEE = Decimal("0.001")


async def test_injected_spread_reported_with_exact_size_and_profit(redis_url: str, market_cache: Path) -> None:
    async with SimCluster(venues=["okx", "binance"], symbols=["BTC/USDT"], tick_ms=50, seed=3) as sims:
        sims.freeze()
        sims.set_book("okx", "BTC/USDT", bids=[["64990", "1"]], asks=[["65000", "0.5"], ["65010", "1"]])
        sims.set_book("binance", "BTC/USDT", bids=[["65200", "0.3"], ["65150", "1"]], asks=[["65210", "1"]])
        r = Redis.from_url(redis_url, socket_timeout=30)
        async with running(settings_for(sims, redis_url, market_cache)):
            opps = await next_opportunities(r, "0", wait_s=20)
        await r.aclose()
    assert opps, "no opportunity reached the Redis stream"
    o = opps[0][1]
    # hand walk: 0.3 @ 65000 vs 65200 (10.7 bps), 0.2 @ 65000 vs 65150 (3.05 bps), then 65010 vs 65150 is
    # 1.5 bps < 2: stop. size 0.5, cost 32500, proceeds 32590, profit 32590*0.999 - 32500*1.001 = 24.91
    assert (o["symbol"], o["buy_venue"], o["sell_venue"], o["event"]) == ("BTC/USDT", "okx", "binance", "open")
    assert (o["size"], o["buy_vwap"], o["sell_vwap"], o["profit_quote"]) == ("0.5", "65000", "65180", "24.91")
    assert Decimal(o["net_bps"]) == (Decimal("24.91") / Decimal("32532.5") * 10000).quantize(Decimal("0.0001"))
    assert o["buy_book_age_ms"] >= 0 and o["sell_book_age_ms"] >= 0
    assert all(x[1]["buy_venue"] == "okx" for x in opps)  # the reverse direction never qualifies


async def test_spread_smaller_than_fees_is_not_reported(redis_url: str, market_cache: Path) -> None:
    async with SimCluster(venues=["okx", "binance"], symbols=["BTC/USDT"], tick_ms=50, seed=4) as sims:
        sims.freeze()
        # 15.4 bps gross, but 20 bps of taker fees: net (65100*0.999 - 65000*1.001) / 65065 = -4.626 bps
        sims.set_book("okx", "BTC/USDT", bids=[["64990", "1"]], asks=[["65000", "2"]])
        sims.set_book("binance", "BTC/USDT", bids=[["65100", "2"]], asks=[["65210", "1"]])
        r = Redis.from_url(redis_url, socket_timeout=30)
        async with running(settings_for(sims, redis_url, market_cache, min_net_bps=0, min_profit_quote=0)) as p:
            labels = {"symbol": "BTC/USDT", "buy_venue": "okx", "sell_venue": "binance"}
            await until(lambda: abs(metric(p, "scanner_spread_net_bps", labels) + 4.626) < 0.01, sims,
                        "the detector to evaluate both injected books")
            gross = metric(p, "scanner_spread_gross_bps", labels)
            assert 15.3 < gross < 15.5
            assert await r.xlen("opportunities") == 0
            assert metric(p, "scanner_opportunities_total", labels) == 0
        await r.aclose()


async def test_corrupted_level_caught_by_checksum_resyncs_only_that_symbol(redis_url: str,
                                                                           market_cache: Path) -> None:
    async with SimCluster(venues=["okx", "binance"], symbols=["BTC/USDT", "ETH/USDT"], tick_ms=50, seed=5,
                          okx_checksum=True) as sims:
        # A small real opportunity: buy 0.01 BTC on Binance at 65000, sell on OKX at 65200.
        sims.set_book("okx", "BTC/USDT", bids=[["65200", "0.01"], ["64900", "1"]], asks=[["65300", "1"]])
        sims.set_book("binance", "BTC/USDT", bids=[["64800", "1"]], asks=[["65000", "5"]])
        r = Redis.from_url(redis_url, socket_timeout=30)
        async with running(settings_for(sims, redis_url, market_cache)) as p:
            first = await next_opportunities(r, "0", wait_s=20)
            assert first and first[0][1]["size"] == "0.01"
            okx = p.collectors["okx"]
            eth = okx.books["ETH-USDT"]
            eth_seq = eth.book.seq
            # The next OKX BTC update carries a best bid of 0.03000007 instead of 0.01, sequence intact:
            # used, it would inflate the opportunity threefold. Only the checksum can tell.
            sims.okx.corrupt_level("BTC/USDT", "size")
            await until(lambda: metric(p, "scanner_resyncs_total", {"venue": "okx", "reason": "checksum"}) >= 1,
                        sims, "the checksum mismatch")
            await until(lambda: okx.books["BTC-USDT"].valid, sims, "BTC-USDT to resync")
            await until(lambda: eth.book.seq != eth_seq, sims, "ETH-USDT to keep flowing")
            after = await until_event(r, first[-1][0], "open")  # the resync closes it; it must reopen
            assert after[-1][1]["id"] == first[0][1]["id"], "the opportunity did not come back after the resync"
            everything = first + after + await next_opportunities(r, after[-1][0], wait_s=0.3)
            assert {o["size"] for _, o in everything} == {"0.01"}, "an opportunity came from the corrupt book"
            assert eth.valid and okx.books["ETH-USDT"] is eth
            assert metric(p, "scanner_resyncs_total", {"venue": "okx", "reason": "checksum"}) == 1
            assert metric(p, "scanner_resyncs_total", {"venue": "binance", "reason": "seq_gap"}) == 0
        await r.aclose()


async def test_skipped_sequence_resyncs_that_symbol_from_rest(redis_url: str, market_cache: Path) -> None:
    async with SimCluster(venues=["okx", "binance"], symbols=["BTC/USDT", "ETH/USDT"], tick_ms=50,
                          seed=6) as sims, running(settings_for(sims, redis_url, market_cache)) as p:
        bn = p.collectors["binance"]
        await until(lambda: all(b.valid for b in bn.books.values()), sims, "Binance books to sync")
        depth_calls = [q for q in sims.binance.requests if q.path.startswith("/api/v3/depth")]
        assert {q.path.split("symbol=")[1].split("&")[0] for q in depth_calls} == {"BTCUSDT", "ETHUSDT"}
        eth = bn.books["ETHUSDT"]
        sims.binance.skip_seq("BTC/USDT")
        await until(lambda: metric(p, "scanner_resyncs_total", {"venue": "binance", "reason": "seq_gap"}) >= 1,
                    sims, "the sequence gap")
        await until(lambda: bn.books["BTCUSDT"].valid, sims, "BTCUSDT to resync from REST")
        later = [q for q in sims.binance.requests if q.path.startswith("/api/v3/depth")][len(depth_calls):]
        assert [q.path.split("symbol=")[1].split("&")[0] for q in later] == ["BTCUSDT"]
        assert eth.valid and metric(p, "scanner_resyncs_total", {"venue": "binance", "reason": "seq_gap"}) == 1
        # and the OKX side was never touched
        assert metric(p, "scanner_resyncs_total", {"venue": "okx", "reason": "seq_gap"}) == 0


async def test_lifecycle_open_then_close_with_the_same_id_and_history(redis_url: str, market_cache: Path,
                                                                       tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    async with SimCluster(venues=["okx", "binance"], symbols=["BTC/USDT"], tick_ms=50, seed=7) as sims:
        sims.freeze()
        sims.set_book("okx", "BTC/USDT", bids=[["64990", "1"]], asks=[["65000", "0.5"], ["65010", "1"]])
        sims.set_book("binance", "BTC/USDT", bids=[["65200", "0.3"], ["65150", "1"]], asks=[["65210", "1"]])
        r = Redis.from_url(redis_url, socket_timeout=30)
        settings = settings_for(sims, redis_url, market_cache)
        async with running(settings) as p:
            opened = await until_event(r, "0", "open")
            o = opened[-1][1]
            assert (o["id"], o["size"], o["profit_quote"]) == ("BTC/USDT|okx|binance", "0.5", "24.91")
            await sims.wait_ticks(2)  # the spread stays up for a few ticks
            # the spread goes away: Binance's bid falls under OKX's ask
            sims.set_book("binance", "BTC/USDT", bids=[["64980", "1"]], asks=[["65210", "1"]])
            closed = await until_event(r, opened[-1][0], "close")
            c = closed[-1][1]
            assert c["id"] == o["id"] and c["opened_ns"] == o["opened_ns"]
            assert c["duration_ms"] > 0 and c["peak_profit_quote"] == "24.91" and c["peak_size"] == "0.5"
            assert all(e["event"] != "open" for _, e in closed)  # no second open in between
            # the sink counts right after the XADD is acknowledged
            await until(lambda: metric(p, "scanner_opportunity_duration_seconds_count") == 1, sims, "the close count")
            assert metric(p, "scanner_opportunity_events_total", {"event": "close"}) == 1
            assert metric(p, "scanner_opportunity_events_total", {"event": "open"}) == 1
            entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await r.xrange("opportunity_history"))
            history = [orjson.loads(f[b"data"]) for _, f in entries]
            assert [h["event"] for h in history] == ["close"] and history[0]["id"] == o["id"]
        await r.aclose()
    cfg = tmp_path / "history.yaml"
    cfg.write_text(f"symbols: [BTC/USDT]\nvenues: {{okx: {{}}, binance: {{}}}}\nredis: {{url: '{redis_url}'}}\n")
    assert cli.main(["history", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "1 closed opportunities" in out and "okx → binance" in out and "24.9100 USDT" in out
