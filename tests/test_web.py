"""The live web view's server (scanner/web/): the snapshot, the event stream and its resume, bounded spread
history, feed health, refusals, limits, static files and the ``web`` config section. Real Redis, real
simulators and the real pipeline; waits are on events with deadlines."""

from __future__ import annotations

import asyncio
import math
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import aiohttp
import orjson
import pytest
from redis.asyncio import Redis

from scanner.bench.detector import book, settings
from scanner.config import ConfigError, from_dict
from scanner.config_web import WebSettings
from scanner.detect.detector import SpreadDetector
from scanner.sinks.metrics import Metrics
from scanner.web.state import OpenOpportunities, SpreadHistory, net_spreads, parse_id
from tests.faults.infra_helpers import SYMBOL, set_open
from tests.web_helpers import Running, SseReader, view_alone, web_pipeline

STREAM = "opportunities"


def fake_event(oid: str, event: str = "open", net_bps: str = "12.5") -> dict[str, Any]:
    symbol, buy, sell = oid.split("|")
    return {"id": oid, "event": event, "symbol": symbol, "buy_venue": buy, "sell_venue": sell, "size": "0.25",
            "net_bps": net_bps, "gross_bps": "30", "profit_quote": "4.1", "opened_ns": time.time_ns(),
            "detected_ns": time.time_ns(), "duration_ms": 0.0, "transfer_status": "open", "buy_vwap": "1"}


async def xadd(r: Redis, ev: dict[str, Any]) -> str:
    eid = await r.xadd(STREAM, {"data": orjson.dumps(ev)})
    return eid.decode() if isinstance(eid, bytes) else str(eid)


async def get_json(s: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with s.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return cast(dict[str, Any], await resp.json())


async def state_until(s: aiohttp.ClientSession, run: Running, what: str, cond: Any, seconds: float = 15.0,
                      query: str = "") -> dict[str, Any]:
    """Poll /api/state between simulator ticks until ``cond(state)``; fail after ``seconds``."""
    last: dict[str, Any] = {}

    async def loop() -> None:
        nonlocal last
        while True:
            last = await get_json(s, f"{run.base}/api/state{query}")
            if cond(last):
                return
            await run.sims.wait_ticks(2)
    try:
        await asyncio.wait_for(loop(), seconds)
    except TimeoutError:
        pytest.fail(f"timed out after {seconds}s waiting for {what}; last state: {str(last)[:600]}")
    return last


# ---- config


def test_web_config_defaults_and_values() -> None:
    base = {"symbols": ["BTC/USDT"], "venues": {"okx": {}}}
    assert from_dict(base, {}).web == WebSettings(enabled=True, history_s=300, max_rows=500, max_clients=8)
    s = from_dict({**base, "web": {"enabled": False, "history_s": 60, "max_rows": 20, "max_clients": 2}}, {})
    assert s.web == WebSettings(enabled=False, history_s=60, max_rows=20, max_clients=2)


@pytest.mark.parametrize(("web", "message"), [
    ({"colour": "red"}, "web.colour: unknown setting"),
    ({"history_s": 5}, "web.history_s: must be between 10 and 86400"),
    ({"history_s": "long"}, "web.history_s: must be a number"),
    ({"max_rows": 0}, "web.max_rows: must be between 1"),
    ({"max_clients": 2.5}, "web.max_clients: must be a whole number"),
    ({"enabled": "yes"}, "web.enabled: must be true or false"),
    (["enabled"], "web: must be a mapping"),
])
def test_web_config_errors(web: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        from_dict({"symbols": ["BTC/USDT"], "venues": {"okx": {}}, "web": web}, {})


def test_disabled_view_serves_no_page(redis_url: str) -> None:
    from scanner.app import COLLECT, DETECT, Pipeline

    s = from_dict({"symbols": ["BTC/USDT"], "venues": {"okx": {}}, "redis": {"url": redis_url},
                   "web": {"enabled": False}}, {})
    assert Pipeline(s, {COLLECT, DETECT}).web is None
    assert Pipeline(from_dict({"symbols": ["BTC/USDT"], "venues": {"okx": {}}}, {}), {DETECT}).web is not None


# ---- state kept in memory


def test_spread_history_is_bounded() -> None:
    h = SpreadHistory(window=10, max_series=3)
    for i in range(25):
        values = {("BTC/USDT", "okx", "binance"): float(i)}
        if i < 5:  # a pair that disappears: dropped once it has been absent for a whole window
            values[("BTC/USDT", "binance", "okx")] = -1.0
        for j in range(4):  # one series more than max_series
            values[("ETH/USDT", f"v{j}", "w")] = float(j)
        h.add(1000.0 * i, values)
    assert len(h.times) == 10 and all(len(r) == 10 for r in h.series.values())
    assert len(h.series) <= 3 and h.refused > 0
    assert ("BTC/USDT", "binance", "okx") not in h.series
    chart = h.chart("BTC/USDT")
    assert chart["t"] == [1000.0 * i for i in range(15, 25)]  # oldest first, the last 10 samples
    assert chart["series"] == [{"buy": "okx", "sell": "binance", "values": [float(i) for i in range(15, 25)]}]


def test_open_opportunities_bounded_and_closed() -> None:
    o = OpenOpportunities(max_rows=2)
    for n, oid in enumerate(["A/B|x|y", "A/B|y|x", "C/D|x|y"]):
        o.apply(f"{n + 1}-0", fake_event(oid))
    assert [r["id"] for r in o.newest_first()] == ["C/D|x|y", "A/B|y|x"] and o.evicted == 1
    o.apply("4-0", fake_event("C/D|x|y", "close"))
    assert [r["id"] for r in o.newest_first()] == ["A/B|y|x"] and o.last_id == "4-0"
    assert parse_id("1700000000000-12") == (1700000000000, 12)
    with pytest.raises(ValueError, match="not a stream id"):
        parse_id("$")


# ---- the running pipeline


async def test_state_shows_opportunity_spreads_health_and_refusals(redis_url: str, market_cache: Path,
                                                                    session: aiohttp.ClientSession) -> None:
    async with web_pipeline(redis_url, market_cache) as run:
        set_open(run.sims, True)
        st = await state_until(session, run, "an open BTC/USDT opportunity and a spread line",
                               lambda s: any(o["symbol"] == SYMBOL for o in s["opportunities"])
                               and any(sum(v is not None for v in x["values"]) >= 2 for x in s["spreads"]["series"]))
        assert set(st) >= {"now_ms", "last_id", "symbols", "history_s", "opportunities", "spreads", "health",
                           "refusals", "redis", "mode"}
        assert st["redis"] is True and st["mode"] == "run" and st["history_s"] == 300
        row = next(o for o in st["opportunities"] if o["symbol"] == SYMBOL)
        assert (row["buy_venue"], row["sell_venue"]) == ("okx", "binance")
        assert float(row["net_bps"]) > 0 and float(row["size"]) > 0 and row["event"] in ("open", "update")
        assert row["transfer_status"] in ("open", "closed", "unknown") and parse_id(row["stream_id"])
        line = next(x for x in st["spreads"]["series"] if (x["buy"], x["sell"]) == ("okx", "binance"))
        gauge = run.pipeline.metrics.spread_net.snapshot()[(SYMBOL, "okx", "binance")]
        assert math.isclose(line["values"][-1], gauge, abs_tol=1e-3)
        assert len(line["values"]) == len(st["spreads"]["t"])
        # health: both venues connected, books valid, messages flowing
        health = {h["venue"]: h for h in st["health"]}
        assert set(health) == {"okx", "binance"}
        assert all(h["connected"] >= 1 and h["valid"] == h["books"] == 2 for h in health.values())
        # refusals: what the detector refused, by reason, as its metric counts them
        by_reason = {r["reason"]: r for r in st["refusals"]}
        for (reason, venue), n in run.pipeline.metrics.refusals.snapshot().items():
            assert by_reason[reason]["count"] >= int(n) and (venue or "-") in by_reason[reason]["venues"]
        run.pipeline.metrics.refusals.labels("test_reason", "okx").inc(3)
        st = await get_json(session, f"{run.base}/api/state")
        assert {"reason": "test_reason", "count": 3, "venues": {"okx": 3}} in st["refusals"]
        # closing the opportunity removes the row
        set_open(run.sims, False)
        await state_until(session, run, "the BTC/USDT row to go on close",
                          lambda s: not any(o["symbol"] == SYMBOL for o in s["opportunities"]))


async def test_stream_delivers_events_and_health_that_moves(redis_url: str, market_cache: Path,
                                                            session: aiohttp.ClientSession) -> None:
    async with web_pipeline(redis_url, market_cache) as run:
        r = Redis.from_url(redis_url)
        try:
            async with session.get(f"{run.base}/api/stream?symbol={SYMBOL}") as resp:
                assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
                assert "Access-Control-Allow-Origin" not in resp.headers
                sse = SseReader(resp)
                first = await sse.until("health")
                eid = await xadd(r, fake_event("TEST/USDT|okx|binance", net_bps="<b>7</b>"))
                got = await sse.until("opportunity", id="TEST/USDT|okx|binance")
                assert got.id == eid and got.data["stream_id"] == eid and got.data["net_bps"] == "<b>7</b>"
                spreads = await sse.until("spreads")
                assert spreads.data["symbol"] == SYMBOL and len(spreads.data["t"]) >= 1
                # health is re-sent every second, and the message counts grow as the feed runs
                msgs = {h["venue"]: h["messages"] for h in first.data["venues"]}
                later = first
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 15
                while not all(h["messages"] > msgs.get(h["venue"], 0) and (h["msgs_per_s"] or 0) > 0
                              for h in later.data["venues"]):
                    if loop.time() > deadline:
                        pytest.fail(f"health never moved: {first.data} -> {later.data}")
                    later = await sse.until("health")
                assert later.data["redis"] is True
        finally:
            await r.aclose()


async def test_last_event_id_resumes_after_that_entry(redis_url: str, market_cache: Path,
                                                      session: aiohttp.ClientSession) -> None:
    async with web_pipeline(redis_url, market_cache) as run:
        r = Redis.from_url(redis_url)
        try:
            ids = [await xadd(r, fake_event(f"R{n}/USDT|okx|binance")) for n in range(4)]
            headers = {"Last-Event-ID": ids[1]}
            async with session.get(f"{run.base}/api/stream", headers=headers) as resp:
                sse = SseReader(resp)
                replayed: list[str | None] = []
                while len(replayed) < 2:
                    ev = await sse.next()
                    if ev.event == "opportunity" and ev.data["id"].startswith("R"):
                        replayed.append(ev.id)
                assert replayed == ids[2:]
                later = await xadd(r, fake_event("R9/USDT|okx|binance"))
                assert (await sse.until("opportunity", id="R9/USDT|okx|binance")).id == later
            async with session.get(f"{run.base}/api/stream", headers={"Last-Event-ID": "not-an-id"}) as resp:
                assert resp.status == 400 and "stream id" in await resp.text()
            # the state's last_id is where a fresh page starts its stream (?after=): nothing is lost between
            st = await get_json(session, f"{run.base}/api/state")
            assert parse_id(st["last_id"]) >= parse_id(later)
            assert {"R2/USDT|okx|binance", "R3/USDT|okx|binance", "R9/USDT|okx|binance"} <= {
                o["id"] for o in st["opportunities"]}
        finally:
            await r.aclose()


async def test_limits_routes_and_static_files(redis_url: str, market_cache: Path,
                                              session: aiohttp.ClientSession) -> None:
    async with web_pipeline(redis_url, market_cache, web={"max_clients": 1, "history_s": 30}) as run:
        async with session.get(f"{run.base}/api/stream") as first:
            await SseReader(first).until("health")
            async with session.get(f"{run.base}/api/stream") as second:
                assert second.status == 503 and "web.max_clients" in await second.text()
        async with session.get(f"{run.base}/") as resp:
            page = await resp.text()
            assert resp.status == 200 and '<canvas id="chart"' in page
            assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
            async with session.get(f"{run.base}/static/{name}") as resp:
                assert resp.status == 200 and resp.content_type == kind
        async with session.get(f"{run.base}/static/..%2Fserver.py") as resp:
            assert resp.status == 404
        async with session.post(f"{run.base}/api/state") as resp:
            assert resp.status == 405
        async with session.get(f"{run.base}/api/state?symbol=NOPE/USDT") as resp:
            assert resp.status == 400 and "unknown symbol" in await resp.text()
        st = await get_json(session, f"{run.base}/api/state")
        assert st["history_s"] == 30 and run.pipeline.web is not None
        assert run.pipeline.web.history.window == 30
        # bound to loopback: a page whose DNS name was rebound to 127.0.0.1 gets nothing (421); loopback names do
        port = run.pipeline.http.port
        for host, status in (("evil.example", 421), (f"evil.example:{port}", 421), (f"localhost:{port}", 200),
                             (f"127.0.0.1:{port}", 200), (f"[::1]:{port}", 200)):
            async with session.get(f"{run.base}/api/state", headers={"Host": host}) as resp:
                assert resp.status == status, host
        async with session.get(f"{run.base}/metrics", headers={"Host": "evil.example"}) as resp:
            assert resp.status == 200  # /metrics is not the view's: Prometheus scrapes it by any name


async def test_detect_only_health_from_redis_books(redis_url: str, market_cache: Path,
                                                   session: aiohttp.ClientSession) -> None:
    """``scanner detect`` has no collector: health comes from the books in Redis, the rest says n/a."""
    async with web_pipeline(redis_url, market_cache) as run, view_alone(run.pipeline.settings, False) as (_, base, _t):
        st = await state_until(session, Running(run.sims, run.pipeline, base), "health from Redis books",
                               lambda s: len(s["health"]) == 2 and all(h["valid"] == 2 for h in s["health"]))
        assert st["mode"] == "detect"
        for h in st["health"]:
            assert h["source"] == "redis" and h["connected"] is None and h["msgs_per_s"] is None
            assert h["books"] == 2 and h["valid"] == 2 and h["book_age_s"] is not None


async def test_redis_away_state_still_answers(session: aiohttp.ClientSession) -> None:
    s = from_dict({"symbols": ["BTC/USDT"], "venues": {"okx": {}}, "redis": {"url": "redis://127.0.0.1:1/0"}}, {})
    async with view_alone(s, True) as (_, base, task):
        async with session.get(f"{base}/api/stream") as resp:
            ev = await SseReader(resp).until("health")
            assert ev.data["redis"] is False
        st = await get_json(session, f"{base}/api/state")
        assert st["redis"] is False and st["opportunities"] == [] and not task.done()


def test_net_spreads_are_the_gauges_taken_in_slices_between_loop_turns() -> None:
    """The view's per-second sample computes the detector's spread series in slices, serving the event loop
    in between (4,500 pairs at 10 venues x 50 symbols would otherwise be one pause of several ms)."""
    m = Metrics()
    d = SpreadDetector({f"v{i}": Decimal("0.001") for i in range(10)}, settings(), m)
    now = time.time_ns()
    for s in range(30):
        for v in range(10):
            d.update(book(v, f"S{s}/USDT", 1, now), now)
    expected = {(lb["symbol"], lb["buy_venue"], lb["sell_venue"]): x
                for fam in m.registry.collect() if fam.name == "scanner_spread_net_bps"
                for x, lb in ((smp.value, smp.labels) for smp in fam.samples)}
    assert len(expected) == 30 * 10 * 9

    async def main() -> tuple[dict[tuple[str, str, str], float], int]:
        turns, done = 0, False

        async def count() -> None:
            nonlocal turns
            while not done:
                turns += 1
                await asyncio.sleep(0)

        counter = asyncio.create_task(count())
        got = await net_spreads(m, slice_n=100)
        done = True
        await counter
        return got, turns

    got, turns = asyncio.run(main())
    assert got == expected
    assert turns >= len(expected) // 100 - 1  # the loop ran between slices
