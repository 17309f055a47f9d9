"""Where opportunity events go: a capped Redis stream, a structured log line, and metrics.

Stream entries (``XADD <redis.stream> MAXLEN ~ <redis.stream_maxlen>``) have one field,
``data``: the event as JSON (exact decimal strings; ``event`` is open, update or close).
Close events are also appended to ``<redis.history>`` (``MAXLEN ~ <redis.history_maxlen>``),
the bounded history ``scanner history`` summarises. With webhook targets configured, every event is
also appended to the webhook outbox (``webhooks.outbox_stream``, scanner/webhooks/outbox.py).
Redis errors are counted and logged; the event is still logged and counted, and the detector carries on.
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
from scanner.store.resp import RespConnection

log = logging.getLogger("scanner.opportunity")


class OpportunitySink:
    def __init__(self, redis: Redis, settings: RedisSettings, metrics: Metrics) -> None:
        self.redis, self.settings, self.metrics = redis, settings, metrics
        self.conn = RespConnection(settings.url)  # pipelined XADDs without redis-py's per-call cost
        self.emitted = 0
        # frame received → stream write acknowledged, per open/update event (the benchmark reads these)
        self.latencies_ns: deque[int] = deque(maxlen=200_000)
        # webhooks (scanner/webhooks/): (outbox stream, maxlen); every event is appended once, in the same pipeline
        self.outbox: tuple[str, int] | None = None

    async def emit(self, opps: list[Opportunity]) -> None:
        m, st = self.metrics, self.settings
        payloads = [orjson.dumps(o.to_dict()) for o in opps]
        try:
            commands: list[tuple[str | bytes | int, ...]] = []
            for o, p in zip(opps, payloads, strict=True):
                commands.append(("XADD", st.stream, "MAXLEN", "~", st.stream_maxlen, "*", "data", p))
                if o.event == "close":
                    commands.append(("XADD", st.history, "MAXLEN", "~", st.history_maxlen, "*", "data", p))
                if self.outbox is not None:
                    commands.append(("XADD", self.outbox[0], "MAXLEN", "~", self.outbox[1], "*", "data", p))
            await self.conn.execute(commands)
        except (RedisError, OSError) as exc:
            m.redis_errors.labels("opportunity_stream").inc()
            log.error("redis: could not append %d opportunities to stream %s: %s", len(opps), st.stream, exc)
        done_ns = time.time_ns()
        for o, p in zip(opps, payloads, strict=True):
            self.emitted += 1
            labels = (o.symbol, o.buy_venue, o.sell_venue)
            m.opportunity_events.labels(o.event).inc()
            if o.event == "open":
                m.opportunities.labels(*labels).inc()
            if o.event == "close":
                m.opportunity_duration.observe(o.duration_ms / 1e3)
                m.opportunity_profit.labels(*labels).inc(max(0.0, float(o.peak_profit_quote or o.profit_quote)))
            else:  # the close event's trigger may be a poll, not a frame: no latency sample
                m.opportunity_size.labels(*labels).set(float(o.size))
                self.latencies_ns.append(done_ns - o.recv_ns)
                m.detect_latency.observe(max(0.0, (done_ns - o.recv_ns) / 1e9))
            log.info("opportunity %s", p.decode())
