"""Where opportunity events go: a capped Redis stream, a structured log line, and metrics.

Stream entries (``XADD <redis.stream> MAXLEN ~ <redis.stream_maxlen>``) have one field,
``data``: the event as JSON (exact decimal strings; ``event`` is open, update or close).
Close events are also appended to ``<redis.history>`` (``MAXLEN ~ <redis.history_maxlen>``),
the bounded history ``scanner history`` summarises. With webhook targets configured, every event is
also appended to the webhook outbox (``webhooks.outbox_stream``, scanner/webhooks/outbox.py).
Redis errors are counted and logged; the event is still logged and counted, and the detector carries on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

import orjson
from redis.exceptions import RedisError, ResponseError

from scanner.config import RedisSettings
from scanner.model import Opportunity
from scanner.sinks.metrics import Metrics
from scanner.store.resp import RespConnection

log = logging.getLogger("scanner.opportunity")


class OpportunitySink:
    def __init__(self, settings: RedisSettings, metrics: Metrics) -> None:
        self.settings, self.metrics = settings, metrics
        self.conn = RespConnection(settings.url)  # pipelined XADDs without redis-py's per-call cost
        self.emitted = 0
        # frame received → stream write acknowledged, per open/update event (the benchmark reads these)
        self.latencies_ns: deque[int] = deque(maxlen=200_000)
        # frame received → its event's XADD written to Redis (the detector's emit; the rest is the round trip)
        self.emit_ns: deque[int] = deque(maxlen=200_000)
        # webhooks (scanner/webhooks/): (outbox stream, maxlen); every event is appended once, in the same pipeline
        self.outbox: tuple[str, int] | None = None

    def _commands(self, opps: list[Opportunity]) -> tuple[list[bytes], list[tuple[str | bytes | int, ...]]]:
        st = self.settings
        payloads = [orjson.dumps(o.to_dict()) for o in opps]
        commands: list[tuple[str | bytes | int, ...]] = []
        for o, p in zip(opps, payloads, strict=True):
            commands.append(("XADD", st.stream, "MAXLEN", "~", st.stream_maxlen, "*", "data", p))
            if o.event == "close":
                commands.append(("XADD", st.history, "MAXLEN", "~", st.history_maxlen, "*", "data", p))
            if self.outbox is not None:
                commands.append(("XADD", self.outbox[0], "MAXLEN", "~", self.outbox[1], "*", "data", p))
        return payloads, commands

    async def emit(self, opps: list[Opportunity]) -> None:
        """Append ``opps`` (connecting first if needed); counts and logs Redis errors, never raises them."""
        payloads, commands = self._commands(opps)
        error: BaseException | None = None
        written_ns = time.time_ns()
        try:
            await self.conn.execute(commands)
        except (RedisError, OSError) as exc:
            error = exc
        self._done(opps, payloads, error, written_ns)

    def submit(self, opps: list[Opportunity]) -> bool:
        """Write ``opps`` now, from the caller's callback, if the connection is up (False: it is not; use
        :meth:`emit`). Completion (metrics, latency, error handling) runs when Redis answers."""
        payloads, commands = self._commands(opps)
        fut = self.conn.send(commands)
        if fut is None:
            return False
        written_ns = time.time_ns()

        def done(f: asyncio.Future[list[Any]]) -> None:
            exc = None if f.cancelled() else f.exception()
            if exc is None:
                exc = next((r for r in f.result() if isinstance(r, ResponseError)), None)
            self._done(opps, payloads, exc, written_ns)

        fut.add_done_callback(done)
        return True

    def _done(self, opps: list[Opportunity], payloads: list[bytes], error: BaseException | None,
              written_ns: int) -> None:
        m, st = self.metrics, self.settings
        if error is not None:
            m.redis_errors.labels("opportunity_stream").inc()
            log.error("redis: could not append %d opportunities to stream %s: %s", len(opps), st.stream, error)
        done_ns = time.time_ns()
        info = log.isEnabledFor(logging.INFO)
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
                self.emit_ns.append(written_ns - o.recv_ns)
                m.detect_latency.observe(max(0.0, (done_ns - o.recv_ns) / 1e9))
            if info:
                log.info("opportunity %s", p.decode())
