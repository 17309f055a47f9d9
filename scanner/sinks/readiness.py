"""Readiness for ``/readyz`` (``/healthz`` is liveness only).

A collecting process (``run``, ``collect``) is ready when every configured venue has at least one
valid book fresher than ``detector.max_book_age_ms``, judged like the detector does: by receive time
and, when the venue sends one, by exchange timestamp. The rows come from the book sources the
collectors register on ``Metrics`` (the same ones behind ``scanner_book_age_seconds``).
A detect-only process is ready when Redis answers PING and the detector holds at least one book.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from scanner.sinks.metrics import BookAgeRow

# (ready, short reason)
ReadyCheck = Callable[[], Awaitable[tuple[bool, str]]]


def stale_venues(venues: Iterable[str], rows: Iterable[BookAgeRow], max_age_ms: int,
                 now_ns: int | None = None) -> list[str]:
    """The configured ``venues`` without one valid book fresher than ``max_age_ms``, sorted."""
    now = time.time_ns() if now_ns is None else now_ns
    max_ns = max_age_ms * 1_000_000
    fresh: set[str] = set()
    for venue, _symbol, exch_ms, recv_ns, valid in rows:
        if not valid or not recv_ns or now - recv_ns > max_ns:
            continue
        if exch_ms and now - exch_ms * 1_000_000 > max_ns:
            continue
        fresh.add(venue)
    return sorted(set(venues) - fresh)


def collector_check(venues: Iterable[str], rows: Callable[[], Iterable[BookAgeRow]], max_age_ms: int) -> ReadyCheck:
    """Ready when no configured venue is stale (see ``stale_venues``)."""
    names = list(venues)

    async def check() -> tuple[bool, str]:
        if not names:
            return False, "no venue configured"
        stale = stale_venues(names, rows(), max_age_ms)
        if stale:
            return False, f"no fresh valid book (max {max_age_ms} ms) from: {', '.join(stale)}"
        return True, f"{len(names)} venues fresh"

    return check


def detector_check(redis: Redis, book_count: Callable[[], int], timeout_s: float = 1.0) -> ReadyCheck:
    """Ready when Redis answers PING within ``timeout_s`` and the detector holds a book."""
    async def check() -> tuple[bool, str]:
        try:
            await asyncio.wait_for(redis.ping(), timeout_s)
        except (RedisError, OSError, TimeoutError) as exc:
            return False, f"redis does not answer: {type(exc).__name__}"
        books = book_count()
        if books == 0:
            return False, "detector holds no book yet"
        return True, f"redis ok, detector holds {books} books"

    return check
