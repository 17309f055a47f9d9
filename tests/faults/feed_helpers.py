"""Helpers of the feed-side fault scenarios (issue 8, scenarios 1-5): books as stored in Redis, the
simulator's WebSocket accepts (its request log), per-instrument resyncs from the collector's own
log lines, and the opportunity stream read back whole."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from scanner.app import Pipeline
from scanner.feed.connection import Connection
from scanner.sim.server import SimCluster, SimVenue
from scanner.store.schema import book_key

Key = tuple[str, str]  # (venue, symbol)


async def stored_books(r: Redis, keys: Iterable[Key]) -> dict[Key, dict[str, Any]]:
    """The book payloads Redis holds for ``keys`` (an empty dict where there is none)."""
    ks = list(keys)
    raws = cast(list[bytes | None], await r.mget([book_key(s, v) for v, s in ks]))
    return {k: (orjson.loads(raw) if raw else {}) for k, raw in zip(ks, raws, strict=True)}


def all_keys(sims: SimCluster, venues: Iterable[str] | None = None) -> list[Key]:
    return [(v, s) for v in (venues or sims.venues) for s in sims.venue(v).states]


def record_waits(p: Pipeline) -> dict[str, list[float]]:
    """The reconnect delays each venue's backoff chose, in order, as the collectors are told them
    (``on_reconnect_wait``: wrapped, still called)."""
    waits: dict[str, list[float]] = {name: [] for name in p.collectors}
    for name, col in p.collectors.items():
        orig = col.on_reconnect_wait

        def record(conn: Connection, reason: str, delay: float, _orig: Any = orig, _name: str = name) -> None:
            waits[_name].append(delay)
            _orig(conn, reason, delay)
        col.on_reconnect_wait = record  # type: ignore[method-assign]
    return waits


def accepts(venue: SimVenue[Any]) -> list[float]:
    """Monotonic times of the venue's WebSocket upgrades (status 101 in its request log)."""
    return [q.t for q in venue.requests if q.status == 101]


def mono_to_wall_ns(t: float) -> int:
    """A ``time.monotonic()`` instant as ``time.time_ns()`` (books carry wall-clock receive times)."""
    return time.time_ns() - int((time.monotonic() - t) * 1e9)


class ResyncLog(logging.Handler):
    """Counts the collector's "book broken ... resyncing this instrument only" lines per
    (venue, instrument, reason): the per-symbol view of ``scanner_resyncs_total``."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[tuple[str, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "book broken" in str(record.msg) and isinstance(record.args, tuple) and len(record.args) >= 3:
            venue, inst, reason = (str(a) for a in record.args[:3])
            self.seen.append((venue, inst, reason))

    def count(self, venue: str | None = None, inst: str | None = None) -> int:
        return sum(1 for v, i, _ in self.seen if (venue is None or v == venue) and (inst is None or i == inst))

    def __enter__(self) -> ResyncLog:
        logging.getLogger("scanner.feed.collector").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("scanner.feed.collector").removeHandler(self)


async def all_events(r: Redis, after: bytes = b"0-0") -> list[dict[str, Any]]:
    """Every opportunity event in the stream after the entry id ``after``, oldest first."""
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await r.xrange("opportunities", min=b"(" + after))
    return [orjson.loads(f[b"data"]) for _, f in entries]


def naming(events: Iterable[dict[str, Any]], venue: str, symbol: str) -> list[dict[str, Any]]:
    """The events that buy or sell ``symbol`` on ``venue``."""
    return [o for o in events if o["symbol"] == symbol and venue in (o["buy_venue"], o["sell_venue"])]


def best(sims: SimCluster, venues: Iterable[str], symbol: str) -> tuple[Decimal, Decimal]:
    """The lowest best bid and the highest best ask of ``symbol`` over ``venues`` (simulator books)."""
    bids, asks = [], []
    for v in venues:
        b, a = sims.book(v, symbol, 1)
        bids.append(Decimal(b[0][0]))
        asks.append(Decimal(a[0][0]))
    return min(bids), max(asks)


def on_tick(price: Decimal, tick: Decimal) -> str:
    """``price`` rounded down to the ``tick`` grid, as an exact string."""
    return str((price / tick).to_integral_value(rounding="ROUND_FLOOR") * tick)

