"""The recording tap: an optional observer of everything a venue collector exchanges with its venue.

A :class:`VenueCollector <scanner.feed.collector.VenueCollector>` with a tap reports each
websocket connect, each frame it sends, each frame it receives (with the exact receive
timestamp the parser saw) and each REST book snapshot body. ``scanner record`` implements it
(:mod:`scanner.capture_writer`); without a tap (the default) the receive path pays one
``is not None`` test per frame. Every method is called on the event loop and must not block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from scanner.feed.connection import Connection


class FrameTap(Protocol):
    def on_connect(self, conn: Connection, addr: str) -> None:
        """``conn`` (re)connected to ``addr``; its frames follow."""

    def on_send(self, conn: Connection, text: str) -> None:
        """The collector queued ``text`` to be sent on ``conn``."""

    def on_recv(self, conn: Connection, payload: bytes, recv_ns: int) -> None:
        """A complete frame arrived on ``conn`` at ``recv_ns`` (``time.time_ns()``)."""

    def on_http(self, url: str, body: bytes, recv_ns: int) -> None:
        """A REST book snapshot (HTTP 200 body) was fetched from ``url`` at ``recv_ns``."""
