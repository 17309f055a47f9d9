"""REST book snapshots, queued and rate-limited per venue.

One request per instrument at a time, weights drawn from a token bucket well under the
venue's documented limit, ``Retry-After`` honoured on 429/418. After a mass reconnect the
snapshots trickle out at the budgeted rate instead of stampeding the venue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp

from scanner.book.errors import ParseError
from scanner.model import BookMsg
from scanner.venues.spec import SnapshotRequest

if TYPE_CHECKING:
    from scanner.feed.tap import FrameTap

log = logging.getLogger(__name__)


class TokenBucket:
    """``rate_per_min`` weight per minute, bursts of at most ``burst`` weight."""

    def __init__(self, rate_per_min: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_min / 60.0
        self.burst = burst
        self.tokens = burst
        self.clock = clock
        self.stamp = clock()

    def delay_for(self, weight: float) -> float:
        """Take ``weight`` if available (return 0) or say how long until it will be."""
        now = self.clock()
        cap = max(self.burst, weight)  # a request heavier than the burst still gets through
        self.tokens = min(cap, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= weight:
            self.tokens -= weight
            return 0.0
        return (weight - self.tokens) / self.rate


class SnapshotFetcher:
    def __init__(self, venue: str, build: Callable[[str], SnapshotRequest],
                 parse: Callable[[str, bytes, int], BookMsg], deliver: Callable[[str, BookMsg], None],
                 weight_per_min: int, on_outcome: Callable[[str], None]) -> None:
        self.venue = venue
        self.build, self.parse, self.deliver, self.on_outcome = build, parse, deliver, on_outcome
        self.bucket = TokenBucket(weight_per_min, burst=weight_per_min / 60.0)
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.pending: set[str] = set()
        self.tap: FrameTap | None = None  # scanner record: sees every snapshot body

    def request(self, inst: str) -> None:
        if inst not in self.pending:
            self.pending.add(inst)
            self.queue.put_nowait(inst)

    async def run(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not stop.is_set():
                inst = await self.queue.get()
                req = self.build(inst)
                while (delay := self.bucket.delay_for(req.weight)) > 0:  # noqa: ASYNC110 - pacing, not a wait
                    await asyncio.sleep(delay)
                retry_after = await self._fetch_one(session, inst, req)
                if retry_after is not None:
                    self.queue.put_nowait(inst)
                    await asyncio.sleep(retry_after)

    async def _fetch_one(self, session: aiohttp.ClientSession, inst: str, req: SnapshotRequest) -> float | None:
        """Fetch and deliver one snapshot; return a delay to retry after, or None when done."""
        try:
            async with session.get(req.url) as resp:
                body = await resp.read()
                if resp.status in (418, 429):
                    wait = float(resp.headers.get("Retry-After", "10"))
                    log.warning("%s: REST snapshot rate-limited (%d); retrying %s in %.0fs",
                                self.venue, resp.status, inst, wait)
                    self.on_outcome("rate_limited")
                    return wait
                if resp.status != 200:
                    log.warning("%s: REST snapshot for %s failed: HTTP %d", self.venue, inst, resp.status)
                    self.on_outcome("http_error")
                    return 2.0
            recv_ns = time.time_ns()
            if self.tap is not None:
                self.tap.on_http(req.url, body, recv_ns)
            msg = self.parse(inst, body, recv_ns)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("%s: REST snapshot for %s failed: %s", self.venue, inst, exc)
            self.on_outcome("network_error")
            return 2.0
        except ParseError as exc:
            log.warning("%s: REST snapshot for %s unusable: %s", self.venue, inst, exc)
            self.on_outcome("parse_error")
            return 5.0
        self.on_outcome("ok")
        self.pending.discard(inst)
        self.deliver(inst, msg)
        return None
