"""The /metrics exposition: every family present, and `promtool check metrics` clean."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator

import aiohttp
import pytest

from scanner.sinks.http import HttpEndpoint
from scanner.sinks.metrics import Metrics


def populated() -> Metrics:
    m = Metrics()
    m.messages.labels("okx").inc(3)
    m.parse_errors.labels("okx", "malformed").inc()
    m.reconnects.labels("okx", "watchdog").inc()
    m.resyncs.labels("binance", "seq_gap").inc()
    m.feed_latency.labels("okx").observe(0.02)
    m.detect_latency.observe(0.0004)
    m.spread_net.labels("BTC/USDT", "okx", "binance").set(-3.5)
    m.refusals.labels("stale_book", "okx").inc()
    m.opportunities.labels("BTC/USDT", "okx", "binance").inc()
    m.redis_errors.labels("book_store").inc()
    m.opportunity_events.labels("close").inc()
    m.opportunity_duration.observe(1.5)
    m.webhook_deliveries.labels("desk", "delivered").inc()
    m.webhook_retries.labels("desk").inc()
    m.webhook_dead_letters.labels("desk").inc()
    m.webhook_latency.labels("desk").observe(0.02)
    m.webhook_outbox_lag.labels("desk").set(3)
    now = time.time_ns()
    m.add_book_source(lambda: [("okx", "BTC/USDT", now // 1_000_000 - 1500, now - 1_000_000, True)])
    return m


def test_families_and_live_book_age() -> None:
    text = populated().render().decode()
    for family in ("scanner_messages_total", "scanner_reconnects_total", "scanner_resyncs_total",
                   "scanner_parse_errors_total", "scanner_feed_latency_seconds_bucket",
                   "scanner_detect_latency_seconds_bucket", "scanner_spread_net_bps", "scanner_spread_gross_bps",
                   "scanner_opportunities_total", "scanner_refusals_total", "scanner_redis_errors_total",
                   "scanner_book_age_seconds", "scanner_book_valid", "scanner_opportunity_events_total",
                   "scanner_opportunity_duration_seconds_bucket", "scanner_webhook_deliveries_total",
                   "scanner_webhook_retries_total", "scanner_webhook_dead_letters_total",
                   "scanner_webhook_delivery_latency_seconds_bucket", "scanner_webhook_outbox_lag"):
        assert family in text, family
    age = next(line for line in text.splitlines() if line.startswith("scanner_book_age_seconds{"))
    assert 1.4 < float(age.rsplit(" ", 1)[1]) < 60  # computed at scrape time from the exchange timestamp


def test_promtool_check_metrics() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI (.ci/run installs Debian's prometheus package)")
        pytest.skip("promtool not installed (apt-get install prometheus); CI runs this check")
    res = subprocess.run([promtool, "check", "metrics"], input=populated().render(), capture_output=True,
                         timeout=30, check=False)
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()


def test_a_scrape_does_not_hold_the_event_loop() -> None:
    """/metrics is rendered on a worker thread: while a slow collector is read, the loop keeps turning."""
    m = populated()
    reading = threading.Event()

    def slow_series() -> Iterator[tuple[tuple[str, ...], float]]:
        reading.set()
        time.sleep(0.3)  # a collector that takes a while (releases the GIL: the loop could run meanwhile)
        yield ("S/USDT", "okx", "binance"), 1.5

    m.spread_net.sources.append(slow_series)

    async def main() -> tuple[int, str]:
        endpoint = HttpEndpoint(m, "127.0.0.1", 0)
        await endpoint.start()
        turns = 0
        try:
            async with aiohttp.ClientSession() as s:
                scrape = asyncio.create_task(s.get(endpoint.url))
                assert await asyncio.to_thread(reading.wait, 10)
                while not scrape.done():  # turns of the loop while the collector is being read
                    turns += 1
                    await asyncio.sleep(0.001)
                resp = await scrape
                return turns, await resp.text()
        finally:
            await endpoint.stop()

    turns, text = asyncio.run(main())
    assert 'scanner_spread_net_bps{buy_venue="okx",sell_venue="binance",symbol="S/USDT"} 1.5' in text
    assert turns >= 10  # on the loop, the 0.3 s read would have allowed none
