"""Webhook delivery against a real local HTTP receiver and a real Redis: every signature verified
with ``standardwebhooks``; receiver down then up; 500 and 429/503 with Retry-After; dead letters and
replay; a worker stopped mid-delivery and restarted; filters and cooldown."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from redis.asyncio import Redis

from scanner.sinks.metrics import Metrics
from scanner.webhooks import outbox
from scanner.webhooks.signing import webhook_id
from tests.webhook_helpers import (
    Receiver,
    append,
    event,
    new_secret,
    pending,
    reserved_port,
    webhook_settings,
    worker_running,
)


def value(m: Metrics, name: str, **labels: str) -> float:
    return m.registry.get_sample_value(name, labels) or 0.0


async def test_every_event_delivered_signed_and_acked(redis_url: str) -> None:
    secret, m = new_secret(), Metrics()
    rx = await Receiver(secret).start()
    r = Redis.from_url(redis_url)
    ws = webhook_settings(rx.url, secret)
    try:
        async with worker_running(r, ws, m) as w:
            events = [event(i) for i in range(6)]
            ids = await append(r, ws, events)
            await w.wait_for(lambda: w.counts.get("delivered", 0) == 6, 15)
        want = {webhook_id(i, "desk") for i in ids}
        assert rx.ok_ids() == want and rx.bad_signatures == 0
        for a in rx.arrivals:  # the json payload carries the event and a schema version
            body = orjson.loads(a.body)
            assert body["type"] == "opportunity.open" and body["data"]["schema_version"]
            assert body["data"]["opened_ns"] in {e["opened_ns"] for e in events}
        assert await pending(r, ws) == 0
        assert value(m, "scanner_webhook_deliveries_total", target="desk", outcome="delivered") == 6
        assert value(m, "scanner_webhook_delivery_latency_seconds_count", target="desk") == 6
    finally:
        await rx.stop()
        await r.aclose()


async def test_receiver_down_then_up_loses_nothing(redis_url: str) -> None:
    secret, m = new_secret(), Metrics()
    held = reserved_port()  # down: connecting is refused, and nothing else can take the port meanwhile
    rx = Receiver(secret, held.getsockname()[1])
    r = Redis.from_url(redis_url)
    ws = webhook_settings(rx.url, secret, max_attempts=100, max_in_flight=2)
    try:
        async with worker_running(r, ws, m) as w:
            ids = await append(r, ws, [event(i) for i in range(5)])
            await w.wait_for(lambda: w.counts.get("failures", 0) >= 4, 15)  # refused while down
            assert w.counts.get("delivered", 0) == 0 and await pending(r, ws) >= 1
            assert await outbox.lag(r, ws.outbox_stream, "desk") == 5  # in flight + unread: the lag gauge's value
            held.close()
            await rx.start()
            await w.wait_for(lambda: w.counts.get("delivered", 0) == 5, 15)
        assert rx.ok_ids() == {webhook_id(i, "desk") for i in ids} and rx.bad_signatures == 0
        assert await pending(r, ws) == 0
        assert value(m, "scanner_webhook_retries_total", target="desk") >= 4
    finally:
        held.close()
        await rx.stop()
        await r.aclose()


async def test_500_is_retried_with_the_same_webhook_id(redis_url: str) -> None:
    secret = new_secret()
    rx = await Receiver(secret, plan=lambda _id, n: (500, {}) if n <= 2 else (200, {})).start()
    r = Redis.from_url(redis_url)
    ws = webhook_settings(rx.url, secret)
    try:
        async with worker_running(r, ws) as w:
            ids = await append(r, ws, [event(i) for i in range(3)])
            await w.wait_for(lambda: w.counts.get("delivered", 0) == 3, 15)
        for i in ids:  # two 500s then a 200, all under the one webhook-id, each attempt signed
            tries = [a for a in rx.arrivals if a.msg_id == webhook_id(i, "desk")]
            assert [a.status for a in tries] == [500, 500, 200]
        assert rx.bad_signatures == 0 and w.counts["failures"] == 6
    finally:
        await rx.stop()
        await r.aclose()


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured(redis_url: str, status: int) -> None:
    secret = new_secret()
    rx = await Receiver(secret, plan=lambda _id, n: (status, {"Retry-After": "1"}) if n == 1 else (200, {})).start()
    r = Redis.from_url(redis_url)
    ws = webhook_settings(rx.url, secret)
    try:
        async with worker_running(r, ws) as w:
            [eid] = await append(r, ws, [event(0)])
            await w.wait_for(lambda: w.counts.get("delivered", 0) == 1, 15)
        assert w.delays == [1.0]  # the scheduled wait is the receiver's Retry-After, not the 10-50 ms backoff
        first, second = rx.times(webhook_id(eid, "desk"))
        assert second - first >= 1.0  # the receiver saw the retry no earlier than it asked
    finally:
        await rx.stop()
        await r.aclose()


async def test_never_recovering_receiver_dead_letters_then_replay(redis_url: str) -> None:
    from scanner.webhooks.cli import list_dead, replay
    from tests.test_webhooks_cli import settings_with

    secret, m = new_secret(), Metrics()
    healthy = False
    rx = await Receiver(secret, plan=lambda _id, _n: (200, {}) if healthy else (500, {})).start()
    r = Redis.from_url(redis_url)
    ws = webhook_settings(rx.url, secret, max_attempts=3)
    try:
        async with worker_running(r, ws, m) as w:
            ids = await append(r, ws, [event(i) for i in range(3)])
            await w.wait_for(lambda: w.counts.get("dead_letter", 0) == 3, 15)
        dead = await outbox.dead_letters(r, ws.dead_letter_stream)
        assert sorted(d.entry for d in dead) == sorted(ids)
        assert {(d.target, d.status, d.attempts) for d in dead} == {("desk", "500", 3)}
        assert await pending(r, ws) == 0  # dead-lettered entries are acknowledged
        assert value(m, "scanner_webhook_dead_letters_total", target="desk") == 3
        settings = settings_with(redis_url, rx.url, secret, max_attempts=3)
        assert await list_dead(settings, "desk") == 0
        assert await replay(settings, None, None) == (0, 3)  # still down: kept
        assert len(await outbox.dead_letters(r, ws.dead_letter_stream)) == 3
        healthy = True
        assert await replay(settings, "desk", None) == (3, 0)
        assert await outbox.dead_letters(r, ws.dead_letter_stream) == []
        assert rx.ok_ids() == {webhook_id(i, "desk") for i in ids}  # the original ids: receivers can dedupe
        assert rx.bad_signatures == 0
    finally:
        await rx.stop()
        await r.aclose()


@pytest.mark.parametrize("second_consumer", ["scanner", "other-host"])
async def test_stopped_mid_delivery_then_restarted_delivers_everything(redis_url: str, second_consumer: str) -> None:
    """A worker stopped with every event in flight leaves them pending; the next worker (same consumer
    name: its own pending list; another name: XAUTOCLAIM) delivers them. Duplicates allowed, losses not."""
    secret = new_secret()
    rx = await Receiver(secret).start()
    rx.hold = asyncio.Event()
    r = Redis.from_url(redis_url)
    ws = webhook_settings(rx.url, secret, claim_idle_s=0, max_in_flight=4)
    try:
        async with worker_running(r, ws) as w1:
            ids = await append(r, ws, [event(i) for i in range(4)])
            await rx.wait_for(lambda: len({a.msg_id for a in rx.arrivals}) == 4)  # all four in flight, unanswered
            assert w1.counts.get("delivered", 0) == 0
        assert await pending(r, ws) == 4  # stopped mid-delivery: nothing acknowledged, nothing lost
        rx.hold.set()
        rx.hold = None
        async with worker_running(r, ws, consumer=second_consumer) as w2:
            await w2.wait_for(lambda: w2.counts.get("delivered", 0) == 4, 15)
        assert {webhook_id(i, "desk") for i in ids} <= rx.ok_ids()
        assert await pending(r, ws) == 0 and rx.bad_signatures == 0
    finally:
        await rx.stop()
        await r.aclose()


async def test_filters_and_cooldown_are_applied_per_target(redis_url: str) -> None:
    secret, m = new_secret(), Metrics()
    rx = await Receiver(secret).start()
    r = Redis.from_url(redis_url)
    ws = webhook_settings(rx.url, secret, symbols=["BTC/USDT"], venues=["okx", "bybit"], min_net_bps=10,
                          min_profit_quote="20", events=["open", "update"], cooldown_s=3600)
    try:
        async with worker_running(r, ws, m) as w:
            events = [
                event(0, symbol="ETH/USDT"),  # symbol
                event(1, sell_venue="binance"),  # venue
                event(2, net_bps="9.99"),  # min_net_bps
                event(3, profit_quote="19.999999"),  # min_profit_quote
                event(4, event="close"),  # events
                event(5),  # delivered
                event(6, event="update"),  # same id within cooldown_s
                event(7, buy_venue="bybit", sell_venue="okx"),  # another id: delivered
            ]
            ids = await append(r, ws, events)
            await w.wait_for(lambda: sum(w.counts.get(k, 0) for k in ("filtered", "cooldown", "delivered")) == 8, 15)
        assert (w.counts.get("filtered"), w.counts.get("cooldown"), w.counts.get("delivered")) == (5, 1, 2)
        assert rx.ok_ids() == {webhook_id(ids[5], "desk"), webhook_id(ids[7], "desk")}
        assert await pending(r, ws) == 0
        assert value(m, "scanner_webhook_deliveries_total", target="desk", outcome="filtered") == 5
    finally:
        await rx.stop()
        await r.aclose()
