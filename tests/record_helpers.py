"""Shared by the recording tests: run a :class:`~scanner.record.Recording` for the length of a block."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from scanner.record import Recording


async def started(rec: Recording, task: asyncio.Task[None]) -> None:
    """Wait until ``rec`` runs (15 s at most); a recording that failed to start raises its error here."""
    waiter = asyncio.ensure_future(rec.started.wait())
    await asyncio.wait({task, waiter}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()
    assert rec.started.is_set(), "the recording did not start within 15 s"


@asynccontextmanager
async def recording(rec: Recording) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(rec.run(stop))
    try:
        await started(rec, task)
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
