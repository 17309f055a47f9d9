"""GcPolicy: no automatic full collections while a pipeline runs, timed full passes instead, pauses
observed, and the process's previous settings restored afterwards."""

from __future__ import annotations

import asyncio
import gc

from scanner.gcpolicy import GcPolicy
from scanner.sinks.metrics import Metrics


def _count(m: Metrics, generation: str) -> float:
    v = m.registry.get_sample_value("scanner_gc_pause_seconds_count", {"generation": generation})
    return v or 0.0


def test_install_stops_automatic_collection_and_uninstall_restores() -> None:
    assert gc.isenabled()
    m = Metrics()
    policy = GcPolicy(m)
    policy.install()
    try:
        assert not gc.isenabled()
        assert gc.get_freeze_count() > 0  # start-up objects are out of every pass
        junk = []
        for _ in range(5):  # make young garbage with cycles: young passes still run and are observed
            a: list[object] = []
            a.append(a)
            junk.append(a)
        del junk
        gc.collect(0)
        assert _count(m, "0") >= 1
    finally:
        policy.uninstall()
    assert gc.isenabled() and gc.get_freeze_count() == 0
    n = _count(m, "0")
    gc.collect(0)
    assert _count(m, "0") == n  # the callback is gone with the policy


def test_run_freezes_and_does_timed_full_passes_until_stopped() -> None:
    async def main() -> int:
        m = Metrics()
        policy = GcPolicy(m, full_every_s=0.05, freeze_every_s=0.01)
        stop = asyncio.Event()
        policy.install()
        try:
            task = asyncio.create_task(policy.run(stop))
            await asyncio.wait_for(policy.passed.wait(), 5)
            before = gc.get_freeze_count()
            kept = [[i] for i in range(5000)]  # alive, tracked: the next freeze takes them out of every pass
            policy.froze.clear()
            await asyncio.wait_for(policy.froze.wait(), 5)
            assert gc.get_freeze_count() >= before + len(kept)
            stop.set()
            await asyncio.wait_for(task, 5)
        finally:
            policy.uninstall()
        assert _count(m, "2") >= 1  # the timed full pass, observed
        return policy.full_passes

    assert asyncio.run(main()) >= 1
