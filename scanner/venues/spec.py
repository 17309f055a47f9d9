"""What the shared connection loop needs to know about a venue, as data.

A venue module fills one :class:`VenueSpec`; the loop, the collector and the replay
command read it and contain no ``if venue == ...`` branches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scanner.book.sync import SyncedBook
from scanner.markets import Market
from scanner.model import BookMsg, Control


class Parser:
    """Turns one raw frame into book messages and control events. Pure: no I/O, no clock."""

    def parse(self, raw: bytes | str, recv_ns: int) -> list[BookMsg | Control]:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class SnapshotRequest:
    """A REST book snapshot: where to GET it and what it costs against the venue's limit."""

    url: str
    weight: int


@dataclass(frozen=True)
class VenueSpec:
    name: str
    channels: tuple[str, ...]  # book channels the parser understands; the first is the default
    ws_url: str  # default public endpoint (config may override)
    rest_url: str
    # Parser for one connection; given the channel setting (e.g. "books", "books5").
    make_parser: Callable[[str], Parser]
    # A fresh synced book for one instrument on the given channel.
    make_book: Callable[[str], SyncedBook]
    # Frames that subscribe these instruments (already batched within the venue's limits).
    subscribe: Callable[[Sequence[str], str], list[str]]
    # Frames that make the venue send a fresh snapshot of one instrument, or [] if it cannot.
    resubscribe: Callable[[str, str], list[str]]
    # Builds the REST snapshot request for an instrument, or None if the venue needs none.
    snapshot_request: Callable[[str, str], SnapshotRequest] | None
    parse_snapshot: Callable[[str, bytes, int], BookMsg] | None
    # Instruments endpoint (path under rest_url) and its parser.
    instruments_path: str
    parse_instruments: Callable[[bytes], list[Market]]
    # Buffered diffs (with no snapshot yet) after which a REST snapshot is fetched; 0 = never.
    rest_seed_after: int
    # Fetch REST snapshots as soon as the venue acknowledges a subscription (the venue never
    # pushes one itself, and a quiet book may send no diff for a long time).
    snapshot_on_subscribe: bool
    # Text keepalive: send ``text_ping`` after ``ping_idle_s`` of silence, expect ``text_pong``.
    text_ping: bytes | None
    text_pong: bytes | None
    ping_idle_s: float
    # Reconnect if no book data at all arrives for this long.
    watchdog_s: float
    # Proactively reconnect before the venue's connection lifetime runs out (0 = never).
    max_connection_age_s: float
    # Client->server frames per second the venue tolerates, and instruments per connection.
    max_sends_per_s: float
    max_instruments_per_conn: int
    # REST weight budget per minute used for snapshots (well under the venue's limit).
    rest_weight_per_min: int
