"""Where opportunity events go: a capped Redis stream, a structured log line, and metrics.

Stream entries (``XADD <redis.stream> MAXLEN ~ <redis.stream_maxlen>``) have one field,
``data``: the event as JSON (exact decimal strings; ``event`` is open, update or close).
Close events are also appended to ``<redis.history>`` (``MAXLEN ~ <redis.history_maxlen>``),
the bounded history ``scanner history`` summarises. With webhook targets configured, every event is
also appended to the webhook outbox (``webhooks.outbox_stream``, scanner/webhooks/outbox.py).
Redis errors are counted and logged and the detector carries on; events whose write failed are kept, in
order, and written again before anything newer (:attr:`OpportunitySink.unsent`, at most
:data:`MAX_UNSENT` events): delivery to the stream is at least once (an event Redis took but whose reply
was lost is written twice; its ``id`` tells).
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
MAX_UNSENT = 100_000  # events kept for a retry while Redis is away; older ones beyond this are dropped, counted


class OpportunitySink:
    def __init__(self, settings: RedisSettings, metrics: Metrics, samples: int = 200_000) -> None:
        """``samples``: latency samples kept for in-process readers (benchmarks, tests); ``scanner run``
        keeps none (0): nothing reads them there, and 2 x 200,000 ints would add ~14 MB over its first hour."""
        self.settings, self.metrics = settings, metrics
        self.conn = RespConnection(settings.url)  # pipelined XADDs without redis-py's per-call cost
        self.emitted = 0
        # frame received → stream write acknowledged, per open/update event (the benchmark reads these)
        self.latencies_ns: deque[int] = deque(maxlen=samples)
        # frame received → its event's XADD written to Redis (the detector's emit; the rest is the round trip)
        self.emit_ns: deque[int] = deque(maxlen=samples)
        # webhooks (scanner/webhooks/): (outbox stream, maxlen); every event is appended once, in the same pipeline
        self.outbox: tuple[str, int] | None = None
        # failed writes, oldest first, written again before anything new; beyond MAX_UNSENT the oldest go
        self.unsent: deque[Opportunity] = deque(maxlen=MAX_UNSENT)
        self.dropped = 0  # events lost because more than MAX_UNSENT waited for Redis

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
        """Append the unsent events, then ``opps`` (connecting first if needed); counts and logs Redis errors,
        never raises them (what failed stays in :attr:`unsent`). ``emit([])`` retries the unsent only."""
        if self.unsent:
            opps = [*self.unsent, *opps]
            self.unsent.clear()
        if not opps:
            return
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
        :meth:`emit`; so is anything unsent, which goes first). Completion (metrics, latency, error
        handling) runs when Redis answers."""
        if self.unsent:
            return False
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
            over = len(self.unsent) + len(opps) - MAX_UNSENT
            self.unsent.extend(opps)
            if over > 0:
                self.dropped += over
                m.refusals.labels("unsent_dropped", "").inc(over)
            log.error("redis: could not append %d opportunities to stream %s (%d kept for a retry, %d dropped "
                      "so far): %s", len(opps), st.stream, len(self.unsent), self.dropped, error)
            return
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
