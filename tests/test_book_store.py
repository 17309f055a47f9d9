"""The book store's pipelined passes, against a real Redis held with ``CLIENT PAUSE WRITE``: a pass goes out
while the one before is still unanswered, every pass is written once Redis answers, and when passes on the
wire fail each book is marked again with its newest state. In-process listeners get each book at its mark."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from scanner.book.l2 import L2Book
from scanner.config import RedisSettings
from scanner.sinks.metrics import Metrics
from scanner.store.books import BookStore
from scanner.store.resp import Arg
from scanner.store.schema import BookView, book_key

WAIT_S = 10.0


def book(bid: str, ask: str, seq: int) -> L2Book:
    b = L2Book()
    b.bids.load([[bid, "1"]])
    b.asks.load([[ask, "1"]])
    b.seq, b.recv_ns = seq, seq
    return b


class _Passes:
    """Counts the passes the store sends (its connection's ``send``), so the test can wait for the n-th;
    ``told`` is what its listener was handed."""

    def __init__(self, store: BookStore) -> None:
        self.sent = 0
        self.told: list[list[BookView]] = []
        self.changed = asyncio.Event()
        send = store.conn.send

        def counted(commands: Sequence[Sequence[Arg]]) -> asyncio.Future[list[Any]] | None:
            fut = send(commands)
            if fut is not None:
                self.sent += 1
                self.changed.set()
            return fut

        store.conn.send = counted  # type: ignore[method-assign]
        store.listeners.append(self.told.append)

    async def until(self, n: int) -> None:
        while self.sent < n:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), WAIT_S)


@contextlib.asynccontextmanager
async def running(url: str) -> AsyncIterator[tuple[BookStore, _Passes, Redis, asyncio.Event]]:
    store = BookStore(RedisSettings(url=url), Metrics())
    passes = _Passes(store)
    written = asyncio.Event()
    store.on_written = lambda stamps, ack_ns: written.set()
    await store.conn.execute([("PING",)])  # connected: passes are sent without waiting (the pipelined path)
    stop = asyncio.Event()
    task = asyncio.create_task(store.run(stop))
    r = Redis.from_url(url)
    try:
        yield store, passes, r, written
    finally:
        await r.client_unpause()
        stop.set()
        await asyncio.wait_for(task, WAIT_S)
        await r.aclose()
        store.conn.close()


async def until(cond: Callable[[], bool], event: asyncio.Event) -> None:
    """Wait (bounded) until ``cond()`` holds, re-checking each time ``event`` is set."""
    while not cond():
        event.clear()
        await asyncio.wait_for(event.wait(), WAIT_S)


def test_a_pass_goes_out_while_the_one_before_is_unanswered(redis_url: str) -> None:
    async def main() -> None:
        async with running(redis_url) as (store, passes, r, written):
            await r.client_pause(10_000, all=False)  # Redis holds every write
            store.mark("okx", "BTC/USDT", book("100", "101", 1))
            assert [(v.venue, v.recv_ns) for v in passes.told[0]] == [("okx", 1)]  # handed over at the mark
            await passes.until(1)
            store.mark("binance", "BTC/USDT", book("100.5", "101.5", 2))
            await passes.until(2)  # the second pass went out before Redis answered the first
            assert len(store._in_flight) == 2 and store.writes == 0
            assert [[(v.venue, v.recv_ns) for v in vs] for vs in passes.told] == [[("okx", 1)], [("binance", 2)]]
            await r.client_unpause()
            await until(lambda: store.writes == 2, written)
            for venue, seq in (("okx", 1), ("binance", 2)):
                held = await r.get(book_key("BTC/USDT", venue))
                assert held is not None and orjson.loads(held)["seq"] == seq
            assert not store._in_flight and store.healthy

    asyncio.run(main())


@pytest.mark.parametrize("newest_valid", [False, True])
def test_failed_passes_mark_each_book_again_with_its_newest_state(redis_url: str, newest_valid: bool) -> None:
    """Two passes of one book on the wire, the older valid and the newer resyncing (or the reverse), both
    failed by the connection dropping: what Redis ends up holding is the newer state."""

    async def main() -> None:
        async with running(redis_url) as (store, passes, r, written):
            await r.client_pause(10_000, all=False)
            older, newer = ("invalid", "valid") if newest_valid else ("valid", "invalid")
            for i, state in enumerate((older, newer)):
                if state == "valid":
                    store.mark("okx", "BTC/USDT", book("100", "101", 7))
                else:
                    store.mark_invalid("okx", "BTC/USDT")
                await passes.until(i + 1)
            assert len(store._in_flight) == 2
            newest = store._in_flight[-1].fut
            store.conn.close()  # the connection drops: both passes fail
            await asyncio.wait_for(asyncio.wait([newest]), WAIT_S)  # settled in order: the older one first
            assert store.failures == 2 and store.writes == 0 and not store._in_flight
            await r.client_unpause()
            await until(lambda: store.writes >= 1, written)  # the retry, on a new connection
            held = await r.get(book_key("BTC/USDT", "okx"))
            assert held is not None and orjson.loads(held)["valid"] is newest_valid
            assert store.healthy

    asyncio.run(main())
