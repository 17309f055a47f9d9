"""Integrity failures that make a book unusable until it is resynchronised."""

from __future__ import annotations


class BookError(Exception):
    """The book can no longer be trusted; ``reason`` is the metrics label. A ``routine`` error
    (KuCoin's depth-limited snapshot running out) is an expected refresh, never backed off."""

    reason = "invalid"
    routine = False


class SequenceGap(BookError):
    reason = "seq_gap"


class ChecksumMismatch(BookError):
    reason = "checksum"


class CrossedBook(BookError):
    reason = "crossed"


class ParseError(Exception):
    """A frame that could not be understood; it is counted and skipped."""
