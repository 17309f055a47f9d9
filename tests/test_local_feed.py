"""The in-process book feed of ``scanner run``: the store hands the detector the payloads it publishes
as they go out, nothing while Redis is away, and the detector skips those books' copies from the
channel while still reading books other processes publish."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from scanner.book.l2 import L2Book
from scanner.config import DetectorSettings, RedisSettings
from scanner.detect.detector import SpreadDetector
from scanner.detect.runner import run_detector
from scanner.sinks.metrics import Metrics
from scanner.sinks.opportunities import OpportunitySink
from scanner.store.books import BookStore
from scanner.store.schema import BookView, book_key, encode_book, origin


def book(bid: str, ask: str, recv_ns: int) -> L2Book:
    b = L2Book()
    b.bids.load([[bid, "1"]])
    b.asks.load([[ask, "1"]])
    b.recv_ns = recv_ns
    return b


def test_origin_names_the_book_whatever_its_contents() -> None:
    a = encode_book("okx", "BTC/USDT", book("100", "101", 1), 20, 5)
    b = encode_book("okx", "BTC/USDT", book("99", "102", 2), 20, 6)
    gone = encode_book("okx", "BTC/USDT", None, 20, 7)
    assert origin(a) == origin(b) == origin(gone) == b'{"venue":"okx","symbol":"BTC/USDT"'
    assert origin(encode_book("okx", "BTC/USDC", book("1", "2", 1), 20, 5)) != origin(a)
    assert origin(encode_book("binance", "BTC/USDT", book("1", "2", 1), 20, 5)) != origin(a)


def test_store_hands_listeners_the_published_payloads(redis_url: str) -> None:
    async def main() -> None:
        settings = RedisSettings(url=redis_url, channel="local-feed-1")
        store = BookStore(settings, Metrics())
        got: list[bytes] = []
        fed = asyncio.Event()

        def listener(payloads: list[bytes]) -> None:
            got.extend(payloads)
            fed.set()

        store.listeners.append(listener)
        stop = asyncio.Event()
        task = asyncio.create_task(store.run(stop))
        store.mark("okx", "BTC/USDT", book("100", "101", 42))
        await asyncio.wait_for(fed.wait(), 5)
        stop.set()
        await asyncio.wait_for(task, 5)
        r = Redis.from_url(redis_url)
        try:
            assert got == [await r.get(book_key("BTC/USDT", "okx"))]  # exactly what Redis holds
        finally:
            await r.aclose()
        store.conn.close()

    asyncio.run(main())


def test_store_feeds_nothing_while_redis_is_away() -> None:
    async def main() -> None:
        store = BookStore(RedisSettings(url="redis://127.0.0.1:1/0"), Metrics())
        got: list[bytes] = []
        store.listeners.append(got.extend)
        with pytest.raises(RedisConnectionError):
            await store._write({("okx", "BTC/USDT"): book("100", "101", 1)})
        assert got == []

    asyncio.run(main())


class _Registry(list):  # type: ignore[type-arg]
    """The store's listener list, telling the test when the detector has joined it."""

    def __init__(self) -> None:
        super().__init__()
        self.joined = asyncio.Event()

    def append(self, item: object) -> None:
        super().append(item)
        self.joined.set()


class _Detector(SpreadDetector):
    def __init__(self) -> None:
        super().__init__({"okx": Decimal("0.001"), "binance": Decimal("0.001")},
                         DetectorSettings(max_book_age_ms=3_600_000), Metrics())
        self.seen: list[tuple[str, int]] = []
        self.binance = asyncio.Event()

    def update(self, view: BookView, now_ns: int) -> list:  # type: ignore[type-arg]
        self.seen.append((view.venue, view.recv_ns))
        if view.venue == "binance":
            self.binance.set()
        return super().update(view, now_ns)


def test_detector_takes_local_books_in_process_and_skips_their_channel_copies(redis_url: str) -> None:
    async def main() -> None:
        settings = RedisSettings(url=redis_url, channel="local-feed-2")
        metrics = Metrics()
        detector = _Detector()
        sink = OpportunitySink(settings, metrics)
        local = _Registry()
        r = Redis.from_url(redis_url)
        stop = asyncio.Event()
        task = asyncio.create_task(run_detector(r, settings, detector, sink, metrics, stop, local))
        try:
            await asyncio.wait_for(local.joined.wait(), 5)
            mine = encode_book("okx", "BTC/USDT", book("100", "101", 1_000), 20, 1)
            local[0]([mine])  # the store's pass: evaluated right here, no Redis in between
            assert detector.seen == [("okx", 1_000)]
            # the same book's copy on the channel is skipped; another process's book is read
            await r.publish("local-feed-2", encode_book("okx", "BTC/USDT", book("100", "101", 2_000), 20, 2))
            await r.publish("local-feed-2", encode_book("binance", "BTC/USDT", book("99", "100", 3_000), 20, 3))
            await asyncio.wait_for(detector.binance.wait(), 5)
            assert detector.seen == [("okx", 1_000), ("binance", 3_000)]
            assert detector.books["BTC/USDT"]["okx"].recv_ns == 1_000
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)
            await r.aclose()
            sink.conn.close()
        assert len(local) == 0  # the detector leaves the store's listeners when it stops

    asyncio.run(main())
