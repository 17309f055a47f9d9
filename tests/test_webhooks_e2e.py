"""End to end: simulators + collectors + real Redis + detector + webhook delivery, in-process. Every
opportunity event the detector produced reaches a real receiver, signature verified with
``standardwebhooks``, its payload equal to the event in the opportunities stream."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from scanner.sim.server import SimCluster
from scanner.webhooks.signing import webhook_id
from tests.pipeline_helpers import running, settings_for, until_event
from tests.webhook_helpers import Receiver, new_secret, webhook_settings


async def test_every_detector_event_is_delivered_and_verified(redis_url: str, market_cache: Path) -> None:
    secret = new_secret()
    rx = await Receiver(secret).start()
    r = Redis.from_url(redis_url, socket_timeout=30)
    try:
        async with SimCluster(venues=["okx", "binance"], symbols=["BTC/USDT"], tick_ms=50, seed=3) as sims:
            sims.freeze()
            sims.set_book("okx", "BTC/USDT", bids=[["64990", "1"]], asks=[["65000", "0.5"], ["65010", "1"]])
            sims.set_book("binance", "BTC/USDT", bids=[["65200", "0.3"], ["65150", "1"]], asks=[["65210", "1"]])
            settings = dataclasses.replace(settings_for(sims, redis_url, market_cache),
                                           webhooks=webhook_settings(rx.url, secret))
            async with running(settings) as p:
                await until_event(r, "0", "open")
                sims.set_book("binance", "BTC/USDT", bids=[["64900", "1"]], asks=[["65210", "1"]])  # closes it
                await until_event(r, "0", "close")
                box = cast(list[tuple[bytes, dict[bytes, bytes]]], await r.xrange("webhook_outbox"))
                want = {webhook_id(eid.decode(), "desk") for eid, _ in box}
                await rx.wait_for(lambda: want <= rx.ok_ids(), 20)
                assert p.webhooks is not None
        opps = cast(list[tuple[bytes, dict[bytes, bytes]]], await r.xrange("opportunities"))
    finally:
        await rx.stop()
        await r.aclose()
    events = [orjson.loads(f[b"data"]) for _, f in opps]
    assert {e["event"] for e in events} >= {"open", "close"}
    assert len(box) == len(opps)  # one outbox entry per event
    assert rx.bad_signatures == 0
    delivered: dict[str, Any] = {}
    for a in rx.arrivals:
        body = orjson.loads(a.body)
        data = {k: v for k, v in body["data"].items() if k != "schema_version"}
        delivered[a.msg_id] = data
        assert body["type"] == f"opportunity.{data['event']}"
    assert sorted(delivered.values(), key=lambda d: d["detected_ns"]) == \
        sorted(events, key=lambda d: d["detected_ns"])  # every event, exactly as the detector wrote it
