"""The in-process book feed of ``scanner run``: the store hands the detector the books it publishes
as they go out (the views decoding the payloads would give), nothing while Redis is away, and the
detector skips those books' copies from the channel while still reading books other processes publish."""

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
from scanner.store.schema import BookView, book_key, decode_book, encode_book, encode_levels, origin, origin_of, view_of


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


def test_origin_of_a_book_is_its_payloads_origin() -> None:
    for venue, symbol in (("okx", "BTC/USDT"), ("kraken", "XBT/EUR"), ("x", 'odd "quoted" é')):
        assert origin_of(venue, symbol) == origin(encode_book(venue, symbol, book("1", "2", 1), 20, 5))


def _fields(v: BookView) -> tuple[object, ...]:
    return (v.venue, v.symbol, v.valid, v.bids, v.asks, v.exch_ms, v.recv_ns, v.best_bid, v.best_ask, v.integrity)


def test_view_of_a_book_is_what_decoding_its_payload_gives() -> None:
    deep = L2Book()
    deep.bids.load([[f"{100 - i}.5", f"{i + 1}.25"] for i in range(40)])
    deep.asks.load([[f"{101 + i}.5", "0.001"] for i in range(3)])
    deep.seq, deep.exch_ms, deep.recv_ns = 7, 1_700_000_000_123, 99
    one_sided = L2Book()
    one_sided.asks.load([["5", "1"]])
    for b in (deep, one_sided, book("100", "101", 42), None):
        for depth in (1, 20):
            bids, asks = (b.bids.top(depth), b.asks.top(depth)) if b is not None else ([], [])
            payload = encode_levels("okx", "BTC/USDT", b, bids, asks, 5, "ccxt")
            assert payload == encode_book("okx", "BTC/USDT", b, depth, 5, "ccxt")
            assert _fields(view_of("okx", "BTC/USDT", b, bids, asks, "ccxt")) == _fields(decode_book(payload))


def test_store_hands_listeners_the_published_books(redis_url: str) -> None:
    async def main() -> None:
        settings = RedisSettings(url=redis_url, channel="local-feed-1")
        store = BookStore(settings, Metrics())
        got: list[BookView] = []
        fed = asyncio.Event()

        def listener(views: list[BookView]) -> None:
            got.extend(views)
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
            held = await r.get(book_key("BTC/USDT", "okx"))
            assert held is not None
            assert [_fields(v) for v in got] == [_fields(decode_book(held))]  # exactly what Redis holds
        finally:
            await r.aclose()
        store.conn.close()

    asyncio.run(main())


def test_a_connected_store_hands_over_each_book_at_its_mark_and_writes_the_same(redis_url: str) -> None:
    async def main() -> None:
        settings = RedisSettings(url=redis_url, channel="local-feed-3")
        store = BookStore(settings, Metrics())
        got: list[BookView] = []
        store.listeners.append(got.extend)
        written = asyncio.Event()
        store.on_written = lambda stamps, ack_ns: written.set()
        b = book("100", "101", 42)
        store.mark("okx", "BTC/USDT", b)
        assert got == []  # not connected yet: handed over only once its pass is written
        await store.conn.execute([("PING",)])
        store.mark("okx", "ETH/USDT", book("10", "11", 43))
        store.mark_invalid("binance", "BTC/USDT")
        assert [(v.symbol, v.venue, v.valid) for v in got] == [("ETH/USDT", "okx", True),
                                                              ("BTC/USDT", "binance", False)]
        stop = asyncio.Event()
        task = asyncio.create_task(store.run(stop))
        await asyncio.wait_for(written.wait(), 5)
        stop.set()
        await asyncio.wait_for(task, 5)
        assert [(v.symbol, v.venue) for v in got][2:] == [("BTC/USDT", "okx")]  # the first book, after its write
        r = Redis.from_url(redis_url)
        try:
            for view in got:
                held = await r.get(book_key(view.symbol, view.venue))
                assert held is not None and _fields(view) == _fields(decode_book(held))  # what Redis holds
        finally:
            await r.aclose()
        store.conn.close()

    asyncio.run(main())


def test_store_feeds_nothing_while_redis_is_away() -> None:
    async def main() -> None:
        store = BookStore(RedisSettings(url="redis://127.0.0.1:1/0"), Metrics())
        got: list[BookView] = []
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
            mine = decode_book(encode_book("okx", "BTC/USDT", book("100", "101", 1_000), 20, 1))
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
