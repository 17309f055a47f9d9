"""GcPolicy: the pipeline's garbage-collector settings, so that no full collection lands on the hot path.

CPython's cyclic collector runs a full (generation 2) pass whenever enough objects have survived into
the oldest generation. The pipeline makes many medium-lived containers (the detector's book views,
diffs buffered while a book waits for its snapshot) that outlive two young passes and then die, so
with the default thresholds full passes came every 1-2 s and, over 100k-500k tracked objects, stopped
the event loop for 50-500 ms each: measured, they were the p99 of frame -> opportunity. Young passes
were next: ~4 % of the loop, and a timed young pass once a second still took 12 ms (it scans every
object allocated since that is still alive: a second's book views). Reference counting frees nearly
everything the pipeline allocates (cyclic garbage, measured: under one object a second, once the books
stopped keeping their exceptions in locals), so while a pipeline runs:

- automatic collection is off;
- everything alive is frozen (``gc.freeze``: moved to the permanent generation, never scanned) at start
  and then every ``freeze_every_s`` (1 s): constant time, no pause; frozen objects are still freed by
  reference counting as soon as they die;
- every ``full_every_s`` (10 min) everything is unfrozen and one full pass reclaims whatever cycles
  there were, then all is frozen again;
- every pass's pause is observed in ``scanner_gc_pause_seconds{generation}``.

The previous settings come back when the pipeline stops (the tests run many pipelines in one process).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

from scanner.aio import wait_stop
from scanner.sinks.metrics import Metrics

log = logging.getLogger(__name__)

FREEZE_EVERY_S = 1.0
FULL_EVERY_S = 600.0


class GcPolicy:
    def __init__(self, metrics: Metrics, full_every_s: float = FULL_EVERY_S,
                 freeze_every_s: float = FREEZE_EVERY_S) -> None:
        self.metrics, self.full_every_s, self.freeze_every_s = metrics, full_every_s, freeze_every_s
        self._was_enabled: bool | None = None
        self._started_ns = 0
        self.full_passes = self.freezes = 0
        self.passed = asyncio.Event()  # set after each full pass (tests wait on it)
        self.froze = asyncio.Event()  # set after each freeze
        self._pause = [metrics.gc_pause.labels(str(g)) for g in range(3)]

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started_ns = time.perf_counter_ns()
        elif self._started_ns:
            self._pause[info["generation"]].observe((time.perf_counter_ns() - self._started_ns) / 1e9)

    def install(self) -> None:
        """Freeze what exists, turn automatic collection off, observe every pause."""
        if self._was_enabled is not None:
            return
        gc.collect()  # start-up garbage goes now, not into the frozen set
        gc.freeze()
        self._was_enabled = gc.isenabled()
        gc.disable()
        gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        if self._was_enabled is None:
            return
        if self._was_enabled:
            gc.enable()
        self._was_enabled = None
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
        gc.unfreeze()

    async def run(self, stop: asyncio.Event) -> None:
        """Freeze every ``freeze_every_s``; a full pass every ``full_every_s``; until ``stop``."""
        loop = asyncio.get_running_loop()
        next_full = loop.time() + self.full_every_s
        while not await wait_stop(stop, min(self.freeze_every_s, self.full_every_s)):
            if loop.time() >= next_full:
                next_full = loop.time() + self.full_every_s
                gc.unfreeze()
                found = gc.collect()
                self.full_passes += 1
                self.passed.set()
                log.debug("gc: full pass found %d unreachable objects", found)
            gc.freeze()
            self.freezes += 1
            self.froze.set()
