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
    """Turns one raw frame into book messages and control events. Pure: no I/O, no clock.

    The collector keeps one parser per connection, so a parser may track per-connection
    state (Coinbase's ``sequence_num``); :meth:`on_connect` resets it for a new socket.

    Control kinds a parser may return and what the collector does with them:
    ``subscribed`` (inst or "" for all), ``unsubscribed``, ``error`` (counted, logged), ``pong``,
    ``reconnect`` (close and reconnect), ``ignored`` (counted as an unexpected channel),
    ``info``, ``ready`` (the venue's welcome: subscribe now, for ``VenueSpec.wait_ready``),
    ``send`` (send ``detail`` on this connection, e.g. HTX's ``{"pong": ts}``) and ``resync``
    (the stream lost data: resync ``inst``, or every instrument on the connection when
    ``inst`` is "", with ``detail`` as the reason label).
    """

    def parse(self, raw: bytes | str, recv_ns: int) -> list[BookMsg | Control]:  # pragma: no cover
        raise NotImplementedError

    def on_connect(self) -> None:
        """A new socket opened: forget per-connection state."""


@dataclass(frozen=True)
class ConnectInfo:
    """Where to connect, from a venue's connect handshake (KuCoin's ``bullet-public`` token)."""

    url: str
    ping_interval_s: float = 0.0  # 0: keep the configured ping_idle_s


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
    # Parser for one connection; given the channel setting (e.g. "books", "books5") and the markets
    # of the instruments it will see (may be empty, e.g. in a replay without a market cache).
    make_parser: Callable[[str, Sequence[Market]], Parser]
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
    # ---- optional venue features (defaults: not used) ------------------------------------------------
    # Frames that ask for a snapshot over the websocket (HTX ``req``): sent for an instrument when its
    # subscription is acknowledged, and used instead of ``resubscribe`` to resync it.
    ws_snapshot: Callable[[str, str], list[str]] | None = None
    # Connect handshake: POST ``rest_url + connect_path`` before every connect, and turn the response
    # body into the websocket URL (KuCoin's bullet token). "" = connect to ws_url directly.
    connect_path: str = ""
    parse_connect: Callable[[bytes, str], ConnectInfo] | None = None  # (body, configured ws_url)
    # Subscribe only after the venue's welcome frame (the parser returns Control("ready")).
    wait_ready: bool = False
    # POST this JSON body to the instruments endpoint instead of a GET (Hyperliquid ``/info``).
    instruments_body: bytes | None = None
    # Replaying a cryptofeed capture: only frames of connections whose URL contains this are the
    # venue's feed (Bybit records linear and spot sockets side by side, with identical topics). "" = all.
    capture_url_part: str = ""
    # Replaying a capture: other REST paths whose bodies are the same snapshot format as
    # ``snapshot_request``'s (KuCoin captures hold the keyed full-depth /api/v3/market/orderbook/level2).
    snapshot_alt_paths: tuple[str, ...] = ()
    # Send ``text_ping`` every ``ping_idle_s`` even while data flows (Bitget, Hyperliquid: the server
    # drops a client that has not *sent* anything for a while, however busy the stream is).
    ping_periodically: bool = False
