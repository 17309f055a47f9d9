"""Reconnect delays: exponential growth with full jitter, capped, never giving up."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator


def backoff(base: float = 0.5, cap: float = 30.0, rand: Callable[[], float] = random.random) -> Iterator[float]:
    """Yield delays uniformly in [0, min(cap, base * 2**attempt)] forever ("full jitter"),
    so many clients that lost the same venue do not come back in lockstep."""
    attempt = 0
    while True:
        yield rand() * min(cap, base * (2.0**attempt))
        if base * (2.0**attempt) < cap:
            attempt += 1
