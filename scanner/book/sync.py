"""Keeps one instrument's book consistent with the venue: snapshot + diff bridging,
sequence continuity, checksum and crossed-book checks. Pure: no I/O, no clock.

Venues differ only in how a diff relates to the local sequence id (``relation``) and
in their checksum (``checksum``); the state machine is shared:

    WAITING --snapshot (WS push or REST)--> VALID --gap/checksum/crossed--> WAITING

While WAITING, diffs are buffered so a REST snapshot can be bridged to them. The buffer is bounded
by count and by age: a snapshot is taken after its request is sent, so diffs received well before
that (more than ``max_buffer_ms`` before the newest) are ones it already contains. A book waiting
long for a rate-limited snapshot therefore holds seconds of diffs, not thousands of frames.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import NoReturn

from scanner.book.errors import BookError, ChecksumMismatch, CrossedBook, SequenceGap
from scanner.book.l2 import L2Book, apply_sides
from scanner.model import BookMsg

APPLY, STALE, GAP = 0, 1, 2

# relation(msg, local_seq, first_after_snapshot) -> APPLY | STALE | GAP
Relation = Callable[[BookMsg, int, bool], int]
Checksum = Callable[[L2Book], int]


class SnapshotTooOld(BookError):
    """The snapshot predates the buffered diffs; fetch another."""

    reason = "snapshot_too_old"


class BadLevel(BookError):
    reason = "bad_level"


class SyncedBook:
    """An :class:`L2Book` plus the rules that keep it in sync with one venue stream."""

    __slots__ = (
        "_buffer",
        "_buffer_ns",
        "_crc",
        "_crc_dirty",
        "_first",
        "book",
        "chained",
        "checksum",
        "checksum_depth",
        "max_levels",
        "relation",
        "valid",
    )

    def __init__(
        self,
        relation: Relation,
        checksum: Checksum | None = None,
        checksum_depth: int = 25,
        max_levels: int = 1000,
        max_buffer: int = 2000,
        max_buffer_ms: int = 15_000,
        chained: bool = False,
    ) -> None:
        self.book = L2Book()
        self.valid = False
        self.relation = relation
        # the venue chains every diff to its predecessor's id (OKX prevSeqId): prev == the book's seq is
        # APPLY without calling ``relation`` (which must say the same), the common case checked inline
        self.chained = chained
        self.checksum = checksum
        self.checksum_depth = checksum_depth
        self.max_levels = max_levels
        self._buffer: deque[BookMsg] = deque(maxlen=max_buffer)
        self._buffer_ns = max_buffer_ms * 1_000_000
        self._first = False  # the next diff is the first after a snapshot
        self._crc = 0
        self._crc_dirty = True

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def invalidate(self) -> None:
        """Drop the book; diffs from now on are buffered until the next snapshot."""
        self.valid = False
        self.book.clear()
        self._buffer.clear()

    def _fail(self, err: BookError) -> NoReturn:
        """Invalidate the book and raise ``err``. Pass the exception inline (``self._fail(X(...))``), never
        from a local: a frame holding the exception it raises makes frame -> exception -> traceback ->
        frame a reference cycle, freed only by the cyclic GC, and with it the frame's whole message."""
        self.invalidate()
        try:
            raise err
        finally:
            del err

    def on_message(self, msg: BookMsg) -> bool:
        """Apply one frame. Returns True when the book changed and is valid.

        Raises a :class:`BookError` when the book can no longer be trusted; the book is
        then invalid and the caller must resync (resubscribe or fetch a snapshot)."""
        if msg.snapshot:
            return self.on_snapshot(msg)
        if not self.valid:
            buf = self._buffer
            buf.append(msg)
            horizon = msg.recv_ns - self._buffer_ns
            while buf[0].recv_ns < horizon:  # never empties it: msg itself is within the horizon
                buf.popleft()
            return False
        try:
            if not self.chained or msg.prev != self.book.seq:
                rel = self.relation(msg, self.book.seq, self._first)
                if rel != APPLY:
                    if rel == STALE:
                        return False
                    raise SequenceGap(f"expected continuation of {self.book.seq}, got prev={msg.prev} seq={msg.seq}")
            self._apply(msg)
        except BookError:
            self.invalidate()
            raise
        return True

    def on_snapshot(self, snap: BookMsg) -> bool:
        """Load a snapshot and bridge any buffered diffs onto it."""
        book = self.book
        try:
            book.bids.load(snap.bids)
            book.asks.load(snap.asks)
        except (ValueError, TypeError, IndexError) as exc:
            self.invalidate()
            raise BadLevel(f"unusable level in snapshot: {exc}") from exc
        book.seq, book.exch_ms, book.recv_ns = snap.seq, snap.exch_ms, snap.recv_ns
        self._crc_dirty = True
        self._first = True
        try:
            self._verify(snap)
            pending, self._buffer = self._buffer, deque(maxlen=self._buffer.maxlen)
            for msg in pending:
                rel = self.relation(msg, book.seq, self._first)
                if rel == STALE:
                    continue
                if rel == GAP:
                    raise SnapshotTooOld(f"snapshot seq {snap.seq} does not reach buffered prev={msg.prev}")
                self._apply(msg)
        except BookError:
            self.invalidate()
            raise
        self.valid = True
        return True

    def _apply(self, msg: BookMsg) -> None:
        # The hot path: one call into the level kernel for both sides (rows applied, each side cut to
        # max_levels, flags: 1 = a change within the best ``checksum_depth``, 2 = crossed), the checksum
        # only when a change reached the levels it covers, no per-frame allocation of our own.
        book = self.book
        b, a = book.bids, book.asks
        try:
            flags = apply_sides(b.keys, b.pxs, b.szs, a.keys, a.pxs, a.szs, msg.bids, msg.asks, self.checksum_depth,
                                self.max_levels)
        except (ValueError, TypeError, IndexError) as exc:
            raise BadLevel(f"unusable level: {exc}") from exc
        book.seq, book.exch_ms, book.recv_ns = msg.seq, msg.exch_ms, msg.recv_ns
        self._first = False
        if msg.checksum and self.checksum is not None:
            if flags & 1 or self._crc_dirty:
                self._crc = self.checksum(book)
                self._crc_dirty = False
            if self._crc != msg.checksum:
                raise ChecksumMismatch(f"checksum {msg.checksum} != local {self._crc} at seq {msg.seq}")
        elif flags & 1:
            self._crc_dirty = True
        if flags & 2:
            raise CrossedBook(f"best bid {b.best()} >= best ask {a.best()}")

    def _verify(self, msg: BookMsg) -> None:
        """Checksum and crossed-book checks of a freshly loaded snapshot."""
        self._crc_dirty = True
        if msg.checksum and self.checksum is not None:
            self._crc = self.checksum(self.book)
            self._crc_dirty = False
            if self._crc != msg.checksum:
                raise ChecksumMismatch(f"checksum {msg.checksum} != local {self._crc} at seq {msg.seq}")
        if self.book.crossed():
            raise CrossedBook(f"best bid {self.book.bids.best()} >= best ask {self.book.asks.best()}")
