"""Fault scenario 7 (issue 8): a webhook receiver that answers 5xx, 429 with ``Retry-After``, hangs
past the sender's timeout and answers slowly, behind a live pipeline (simulators, collectors, real
Redis, detector). Delivery is at least once: every event the detector produced reaches the receiver
with a 2xx once it recovers and the outbox is left with nothing pending (duplicates are counted,
and allowed).

The detector's latency is unaffected, shown structurally rather than with timings: while every
delivery hangs in the receiver, new events still land in the ``opportunities`` stream, so the detector
never awaits a webhook. The frame -> emit latency samples (``OpportunitySink.emit_ns``) with and without
the hanging receiver are reported, not asserted.

Bad input at the edges: an oversized, endless answer body is read only up to
``scanner.webhooks.sender.MAX_ANSWER_BYTES``; the sender does not buffer the rest."""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis

from scanner.sim.server import SimCluster
from scanner.webhooks import sender
from scanner.webhooks.formats import RenderedBody
from tests.faults.conftest import scaled
from tests.faults.infra_helpers import SYMBOL, WALKING, SinkSpy, delivered, set_open, toggle
from tests.faults.report import Row
from tests.pipeline_helpers import running, settings_for, until
from tests.webhook_helpers import Receiver, new_secret, pending, webhook_settings

TIMEOUT_S = 0.5  # the sender's per-request timeout in this test


def plan(_msg_id: str, n: int) -> tuple[int, dict[str, str]]:
    """Every event: first a 503, then a 429 asking to wait 1 s, then (and on every later try) 200."""
    if n == 1:
        return 503, {}
    if n == 2:
        return 429, {"Retry-After": "1"}
    return 200, {}



def _p50_ms(samples: list[int]) -> float:
    return statistics.median(samples) / 1e6 if samples else 0.0


async def test_receiver_faults_at_least_once_and_detector_never_waits(
        redis_url: str, market_cache: Path, fault_report: Row, monkeypatch: pytest.MonkeyPatch) -> None:
    hang_s = scaled(2.0, 10.0)
    secret = new_secret()
    rx = await Receiver(secret, plan=plan).start()
    r = Redis.from_url(redis_url, socket_timeout=5)
    try:
        async with SimCluster(venues=["okx", "binance"], symbols=[SYMBOL, WALKING], tick_ms=50, seed=5) as sims:
            set_open(sims, False)
            ws = webhook_settings(rx.url, secret, timeout_s=TIMEOUT_S, max_attempts=50)
            settings = dataclasses.replace(settings_for(sims, redis_url, market_cache), webhooks=ws)
            async with running(settings) as p:
                assert p.webhooks is not None
                worker = p.webhooks.workers["desk"]
                spy = SinkSpy().install(p, monkeypatch)
                stop_toggle = asyncio.Event()
                toggler = asyncio.create_task(toggle(sims, stop_toggle, 6))
                # 5xx and 429 phase: every event fails twice, then gets through
                await until(lambda: len(spy.written) >= 4 and worker.counts.get("delivered", 0) >= 2, sims,
                            "events delivered through 503 and 429", 20)
                calm = list(p.sink.emit_ns)
                # hanging receiver: deliveries block past the sender's timeout, then answer slowly
                rx.hold = asyncio.Event()
                await rx.wait_for(lambda: any(a.status == 0 for a in rx.arrivals), 10)
                blocked_at_entries = await r.xlen("opportunities")
                emitted_before = len(p.sink.emit_ns)
                t0 = time.monotonic()
                await until(lambda: time.monotonic() - t0 >= hang_s, sims, "the hang", hang_s + 5)
                entries_while_blocked = await r.xlen("opportunities") - blocked_at_entries
                assert entries_while_blocked >= 2  # the detector kept writing while every delivery hung
                assert worker.inflight  # and deliveries were indeed hanging
                timeouts = worker.counts.get("failures", 0)
                hung = list(p.sink.emit_ns)[emitted_before:]
                rx.hold.set()  # the receiver recovers: held requests answer late (slow), new ones at once
                rx.hold = None
                recovered = time.monotonic()
                stop_toggle.set()
                await asyncio.wait_for(toggler, 5)
                await until(lambda: bool(spy.written) and spy.written[-1][1] == "close"
                            and spy.all <= set(delivered(rx)), sims, "every event delivered", 30)
                recover_s = time.monotonic() - recovered
                await worker.wait_for(lambda: not worker.inflight, 10)
                assert await pending(r, ws) == 0
                got, emitted = delivered(rx), spy.all
                counts = dict(worker.counts)
    finally:
        await rx.stop()
        await r.aclose()

    missing = emitted - set(got)
    assert not missing
    assert counts.get("dead_letter", 0) == 0
    statuses = [a.status for a in rx.arrivals]
    assert 503 in statuses and 429 in statuses
    assert any(d >= 1.0 for d in worker.delays)  # Retry-After honoured as given
    fault_report.injected = (f"webhook receiver: 503 then 429 (Retry-After 1 s) on every event; hangs {hang_s:g} s "
                             f"past the {TIMEOUT_S:g} s timeout, then answers late")
    fault_report.observed = {
        "events": len(emitted), "delivered": len(got), "duplicates": sum(n - 1 for n in got.values()),
        "attempts": counts.get("attempts", 0), "failures": counts.get("failures", 0), "failures_at_hang_end": timeouts,
        "stream_entries_while_blocked": entries_while_blocked,
        "emit_p50_ms_calm": round(_p50_ms(calm), 3), "emit_p50_ms_hung": round(_p50_ms(hung), 3)}
    fault_report.recover_s = recover_s
    fault_report.lost = len(missing)


async def test_oversized_answer_body_is_read_bounded(fault_report: Row) -> None:
    """The receiver answers 200 with an endless chunked body (100 MB before it would give up by itself): the
    sender reads at most MAX_ANSWER_BYTES and hangs up, so the receiver manages to push far less than it tried."""
    total = 100 * 1024 * 1024
    sent = 0
    finished = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        await request.read()
        resp = web.StreamResponse(status=200)
        await resp.prepare(request)
        chunk = b"\xff\x00<" * 21845  # ~64 KiB of binary junk, not even UTF-8
        try:
            while sent < total:
                await resp.write(chunk)
                sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the sender hung up: what the bounded read is for
        finally:
            finished.set()
        return resp

    app = web.Application()
    app.router.add_post("/hook", endless)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        target = webhook_settings(f"http://127.0.0.1:{port}/hook", new_secret(), timeout_s=30).targets["desk"]
        async with aiohttp.ClientSession() as session:
            answer = await sender.post(session, target, "msg_1", RenderedBody(b"{}", "application/json"))
        await asyncio.wait_for(finished.wait(), 30)
    finally:
        await runner.cleanup()
    assert answer.status == 200 and answer.ok  # read, bounded, and answered; not a timeout
    assert len(answer.body) <= 2000
    assert sent < total // 2  # the rest was never read (the old unbounded read took all 100 MB)
    fault_report.injected = "receiver answers 200 with an endless binary body (100 MB offered)"
    fault_report.observed = {"bytes_offered": total, "bytes_pushed_before_hangup": sent,
                             "read_cap": sender.MAX_ANSWER_BYTES}
    fault_report.lost = 0
