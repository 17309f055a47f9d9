"""Where opportunities go: a capped Redis stream, a structured log line, and metrics.

Stream entries (``XADD <redis.stream> MAXLEN ~ <redis.stream_maxlen>``) have one field,
``data``: the opportunity as JSON (exact decimal strings). Redis errors are counted and
logged; the opportunity is still logged and counted, and the detector carries on.
"""

from __future__ import annotations

import logging
import time
from collections import deque

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from scanner.config import RedisSettings
from scanner.model import Opportunity
from scanner.sinks.metrics import Metrics

log = logging.getLogger("scanner.opportunity")


class OpportunitySink:
    def __init__(self, redis: Redis, settings: RedisSettings, metrics: Metrics) -> None:
        self.redis, self.settings, self.metrics = redis, settings, metrics
        self.emitted = 0
        # frame received → stream write acknowledged, per opportunity (the benchmark reads these)
        self.latencies_ns: deque[int] = deque(maxlen=200_000)

    async def emit(self, opps: list[Opportunity]) -> None:
        m = self.metrics
        payloads = [orjson.dumps(o.to_dict()) for o in opps]
        try:
            pipe = self.redis.pipeline(transaction=False)
            for p in payloads:
                pipe.xadd(self.settings.stream, {"data": p}, maxlen=self.settings.stream_maxlen, approximate=True)
            await pipe.execute()
        except (RedisError, OSError) as exc:
            m.redis_errors.labels("opportunity_stream").inc()
            log.error("redis: could not append %d opportunities to stream %s: %s", len(opps), self.settings.stream,
                      exc)
        done_ns = time.time_ns()
        for o, p in zip(opps, payloads, strict=True):
            self.emitted += 1
            labels = (o.symbol, o.buy_venue, o.sell_venue)
            m.opportunities.labels(*labels).inc()
            m.opportunity_size.labels(*labels).set(float(o.size))
            m.opportunity_profit.labels(*labels).inc(max(0.0, float(o.profit_quote)))
            self.latencies_ns.append(done_ns - o.recv_ns)
            m.detect_latency.observe(max(0.0, (done_ns - o.recv_ns) / 1e9))
            log.info("opportunity %s", p.decode())
