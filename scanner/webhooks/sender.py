"""Webhook delivery: one :class:`TargetWorker` per target, run by :class:`WebhookDispatcher`.

At least once: a worker reads the outbox through its target's consumer group (first its own
pending entries, left by a previous run, then new ones; entries another consumer left pending for
``claim_idle_s`` are taken over with XAUTOCLAIM), delivers up to ``max_in_flight`` events at once,
and XACKs an entry only after a 2xx, or after moving it to the dead-letter stream once
``max_attempts`` failed. Failures wait ``uniform(0, min(backoff_max_s, backoff_base_s * 2^(n-1)))``
(full jitter), or exactly ``Retry-After`` on 429/503. A stopped worker leaves unacknowledged
entries pending; the next run delivers them. The detector only XADDs: nothing here can slow it.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import aiohttp
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from scanner.config_webhooks import WebhookSettings, WebhookTarget
from scanner.sinks.metrics import Metrics
from scanner.webhooks import outbox, signing
from scanner.webhooks.formats import RenderedBody, render

log = logging.getLogger("scanner.webhooks")

MAX_RETRY_AFTER_S = 3600.0
MAX_ANSWER_BYTES = 64 * 1024  # a receiver's answer body is read up to this much, never more (bounded reads)


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no HTTP answer (connection refused, timeout)
    body: str  # the receiver's answer (at most 2000 characters), or the error
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: an integer, or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(int(value.strip())))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most ``limit`` bytes of the answer body: an oversized or endless body is cut off, not buffered
    (the connection is then closed instead of reused)."""
    out = bytearray()
    while len(out) < limit:
        chunk = await resp.content.read(limit - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


async def post(session: aiohttp.ClientSession, target: WebhookTarget, msg_id: str,
               rendered: RenderedBody) -> Answer:
    """One signed POST. Errors never carry the URL (chat webhook URLs hold tokens)."""
    ts = int(time.time())
    hdrs = {"content-type": rendered.content_type, **signing.headers(target.secret, msg_id, ts, rendered.body)}
    try:
        async with session.post(target.url.reveal(), data=rendered.body, headers=hdrs,
                                timeout=aiohttp.ClientTimeout(total=target.timeout_s)) as resp:
            text = (await _read_capped(resp, MAX_ANSWER_BYTES)).decode(errors="replace")[:2000]
            ra = retry_after(resp.headers.get("Retry-After")) if resp.status in (429, 503) else None
            return Answer(resp.status, text, ra)
    except TimeoutError:
        return Answer(None, f"timeout after {target.timeout_s:g}s")
    except aiohttp.ClientError as exc:
        return Answer(None, type(exc).__name__ + ": " + str(exc).replace(target.url.reveal(), "<url>")[:300])


class TargetWorker:
    """Delivers the outbox to one target. ``counts`` (tests and the benchmark wait on it with
    :meth:`wait_for`): attempts, failures, delivered, dead_letter, filtered, cooldown, missing."""

    def __init__(self, redis: Redis, settings: WebhookSettings, target: WebhookTarget, metrics: Metrics,
                 consumer: str | None = None) -> None:
        self.redis, self.settings, self.target, self.metrics = redis, settings, target, metrics
        self.consumer = consumer or settings.consumer
        self.inflight: dict[bytes, asyncio.Task[None]] = {}
        self.counts: dict[str, int] = {}
        self.delays: list[float] = []  # every backoff scheduled, in seconds (tests read it)
        self._last_sent: dict[str, float] = {}  # opportunity id → monotonic time (cooldown_s)
        self._changed = asyncio.Event()
        self._slot_free = asyncio.Event()

    def _bump(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1
        self._changed.set()

    async def wait_for(self, cond: Callable[[], bool], within: float) -> None:
        """Wait until ``cond()`` holds, re-checked on every count change; TimeoutError after ``within`` s."""
        async def loop() -> None:
            while not cond():
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(loop(), within)

    async def setup(self) -> None:
        await outbox.ensure_group(self.redis, self.settings.outbox_stream, self.target.name)

    async def run(self, stop: asyncio.Event, session: aiohttp.ClientSession) -> None:
        st, name = self.settings, self.target.name
        await self.setup()
        own_pending: str | None = "0"  # first this consumer's own unacknowledged entries, then new ones
        next_claim = 0.0
        next_lag = 0.0
        try:
            while not stop.is_set():
                if time.monotonic() >= next_lag:
                    next_lag = time.monotonic() + 1.0
                    await self._update_lag()
                free = self.target.max_in_flight - len(self.inflight)
                if free <= 0:
                    self._slot_free.clear()
                    await _either(self._slot_free, stop, within=1.0)
                    continue
                try:
                    entries: list[outbox.Entry] = []
                    now = time.monotonic()
                    if own_pending is not None:
                        entries = await outbox.read(self.redis, st.outbox_stream, name, self.consumer,
                                                    own_pending, free, None)
                        own_pending = entries[-1][0].decode() if entries else None
                    elif now >= next_claim:
                        next_claim = now + max(1.0, st.claim_idle_s / 2)
                        entries = [e for e in await outbox.autoclaim(
                            self.redis, st.outbox_stream, name, self.consumer, int(st.claim_idle_s * 1000), free)
                            if e[0] not in self.inflight]
                    if not entries and own_pending is None:
                        entries = await outbox.read(self.redis, st.outbox_stream, name, self.consumer, ">",
                                                    free, 500)
                except (RedisError, OSError) as exc:
                    self.metrics.redis_errors.labels("webhook_outbox").inc()
                    if "NOGROUP" in str(exc):  # Redis restarted empty: the group (and stream) went with it
                        log.error("webhook %s: the outbox group is gone (Redis restarted?); re-creating it", name)
                        with contextlib.suppress(RedisError, OSError):
                            await outbox.ensure_group(self.redis, st.outbox_stream, name, start="0")
                            continue
                    log.error("webhook %s: redis: %s; retrying", name, exc)
                    await _either(stop, within=1.0)
                    continue
                for eid, fields in entries:
                    if eid in self.inflight:
                        continue
                    task = asyncio.create_task(self._deliver(eid, fields, session, stop))
                    self.inflight[eid] = task
                    task.add_done_callback(self._done_callback(eid))
        finally:
            tasks = list(self.inflight.values())
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _update_lag(self) -> None:
        try:
            n = await outbox.lag(self.redis, self.settings.outbox_stream, self.target.name)
        except (RedisError, OSError):
            return  # the read below counts and logs Redis trouble
        self.metrics.webhook_outbox_lag.labels(self.target.name).set(n)

    def _done_callback(self, eid: bytes) -> Callable[[asyncio.Task[None]], None]:
        def done(_: asyncio.Task[None]) -> None:
            self.inflight.pop(eid, None)
            self._slot_free.set()
        return done

    async def _ack(self, eid: bytes) -> None:
        await self.redis.xack(self.settings.outbox_stream, outbox.group_name(self.target.name), eid)

    def _skip_reason(self, ev: dict[str, object]) -> str | None:
        t = self.target
        if ev.get("event") not in t.events:
            return "filtered"
        if t.symbols and str(ev.get("symbol", "")).upper() not in t.symbols:
            return "filtered"
        if t.venues and not {ev.get("buy_venue"), ev.get("sell_venue")} <= t.venues:
            return "filtered"
        try:
            if t.min_net_bps is not None and Decimal(str(ev.get("net_bps"))) < t.min_net_bps:
                return "filtered"
            if t.min_profit_quote is not None and Decimal(str(ev.get("profit_quote"))) < t.min_profit_quote:
                return "filtered"
        except InvalidOperation:
            return "filtered"
        if t.cooldown_s > 0 and ev.get("event") != "close":
            oid, now = str(ev.get("id", "")), time.monotonic()
            last = self._last_sent.get(oid)
            if last is not None and now - last < t.cooldown_s:
                return "cooldown"
            self._last_sent[oid] = now
        return None

    async def _deliver(self, eid: bytes, fields: dict[bytes, bytes], session: aiohttp.ClientSession,
                       stop: asyncio.Event) -> None:
        t, m, entry = self.target, self.metrics, eid.decode()
        try:
            raw = fields.get(b"data") if fields else None
            if raw is None:  # trimmed from the outbox before it could be delivered
                await self._ack(eid)
                self._bump("missing")
                return
            ev = orjson.loads(raw)
            skip = self._skip_reason(ev)
            if skip is not None:
                await self._ack(eid)
                m.webhook_deliveries.labels(t.name, skip).inc()
                self._bump(skip)
                return
            rendered = render(t.format, ev, target_name=t.name, chat_id=t.chat_id)
            msg_id = signing.webhook_id(entry, t.name)
            answer = Answer(None, "not attempted")
            for attempt in range(1, t.max_attempts + 1):
                answer = await post(session, t, msg_id, rendered)
                self._bump("attempts")
                if answer.ok:
                    await self._ack(eid)
                    m.webhook_deliveries.labels(t.name, "delivered").inc()
                    m.webhook_latency.labels(t.name).observe(
                        max(0.0, (time.time_ns() - int(ev.get("detected_ns") or 0)) / 1e9))
                    self._bump("delivered")
                    return
                self._bump("failures")
                if attempt == t.max_attempts:
                    break
                delay = self.backoff(attempt, answer.retry_after)
                self.delays.append(delay)
                m.webhook_retries.labels(t.name).inc()
                log.warning("webhook %s: event %s attempt %d/%d failed (%s); retrying in %.2fs", t.name, entry,
                            attempt, t.max_attempts, answer.status or answer.body, delay)
                if await _either(stop, within=delay):
                    return  # stopping: the entry stays pending and is delivered by the next run
            await outbox.add_dead_letter(self.redis, self.settings.dead_letter_stream, self.settings.outbox_stream,
                                         t.name, entry, {
                                             "target": t.name, "webhook_id": msg_id, "entry": entry, "data": raw,
                                             "attempts": t.max_attempts, "status": str(answer.status or ""),
                                             "error": answer.body[:500], "failed_ns": time.time_ns()})
            m.webhook_deliveries.labels(t.name, "dead_letter").inc()
            m.webhook_dead_letters.labels(t.name).inc()
            log.error("webhook %s: event %s dead-lettered after %d attempts (%s)", t.name, entry, t.max_attempts,
                      answer.status or answer.body)
            self._bump("dead_letter")
        except (RedisError, OSError) as exc:  # left pending: reclaimed by the next run
            m.redis_errors.labels("webhook_outbox").inc()
            log.error("webhook %s: redis: %s; event %s left pending", t.name, exc, entry)

    def backoff(self, attempt: int, retry_after_s: float | None) -> float:
        """Retry-After when the receiver gave one (429/503), else full jitter on an exponential cap."""
        if retry_after_s is not None:
            return min(retry_after_s, MAX_RETRY_AFTER_S)
        t = self.target
        return random.uniform(0.0, min(t.backoff_max_s, t.backoff_base_s * 2 ** (attempt - 1)))


async def _either(ev: asyncio.Event, other: asyncio.Event | None = None, within: float | None = None) -> bool:
    """Wait for ``ev`` (or ``other``) up to ``within`` s; True when ``ev`` is set."""
    waits = [asyncio.ensure_future(e.wait()) for e in (ev, other) if e is not None]
    try:
        await asyncio.wait(waits, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    return ev.is_set()


class WebhookDispatcher:
    """Every target's worker, sharing one HTTP session; started by the pipeline's detect role."""

    def __init__(self, redis: Redis, settings: WebhookSettings, metrics: Metrics) -> None:
        self.redis, self.settings = redis, settings
        self.workers = {n: TargetWorker(redis, settings, t, metrics) for n, t in settings.targets.items()}

    async def setup(self) -> None:
        """Create the consumer groups; call before the detector may append to the outbox."""
        for w in self.workers.values():
            await w.setup()

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as tg:
            for name, w in self.workers.items():
                tg.create_task(w.run(stop, session), name=f"webhook-{name}")
