"""GcPolicy: the pipeline's garbage-collector settings, so that no full collection lands on the hot path.

CPython's cyclic collector runs a full (generation 2) pass whenever enough objects have survived into
the oldest generation. The pipeline makes many medium-lived containers (the detector's book views,
diffs buffered while a book waits for its snapshot) that outlive two young passes and then die, so
with the default thresholds full passes came every 1-2 s and, over 100k-500k tracked objects, stopped
the event loop for 50-500 ms each: measured, they were the p99 of frame -> opportunity. Reference
counting frees nearly everything the pipeline allocates; cycles are rare. While a pipeline runs:

- everything built at start-up is frozen (``gc.freeze``): never scanned again;
- young passes (generations 0 and 1) run as usual: well under a millisecond each;
- automatic full passes are off; :meth:`GcPolicy.run` does one every ``full_every_s`` instead, so cyclic
  garbage is still reclaimed and memory stays flat;
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

FULL_EVERY_S = 120.0
NEVER = 1 << 30  # generation 2's threshold: full passes only when we ask for them


class GcPolicy:
    def __init__(self, metrics: Metrics, full_every_s: float = FULL_EVERY_S) -> None:
        self.metrics, self.full_every_s = metrics, full_every_s
        self._saved: tuple[int, int, int] | None = None
        self._started_ns = 0
        self.full_passes = 0
        self.passed = asyncio.Event()  # set after each full pass (tests wait on it)
        self._pause = [metrics.gc_pause.labels(str(g)) for g in range(3)]

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started_ns = time.perf_counter_ns()
        elif self._started_ns:
            self._pause[info["generation"]].observe((time.perf_counter_ns() - self._started_ns) / 1e9)

    def install(self) -> None:
        """Freeze what exists, keep young passes, stop automatic full ones, observe every pause."""
        if self._saved is not None:
            return
        gc.collect()  # start-up garbage goes now, not into the frozen set
        gc.freeze()
        self._saved = gc.get_threshold()
        young, middle, _ = self._saved
        gc.set_threshold(young, middle, NEVER)
        gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        if self._saved is None:
            return
        gc.set_threshold(*self._saved)
        self._saved = None
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
        gc.unfreeze()

    async def run(self, stop: asyncio.Event) -> None:
        """One full pass every ``full_every_s`` until ``stop``."""
        while not await wait_stop(stop, self.full_every_s):
            found = gc.collect()
            self.full_passes += 1
            self.passed.set()
            log.debug("gc: full pass found %d unreachable objects", found)
