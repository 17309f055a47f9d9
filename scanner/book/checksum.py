"""Book checksums: OKX/Bitget interleaved signed CRC32 over exact level strings."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from scanner.book.l2 import L2Book, crc32_interleaved


def crc32_signed(text: str) -> int:
    v = zlib.crc32(text.encode())
    return v - (1 << 32) if v & 0x80000000 else v


def interleaved_payload(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]], depth: int = 25) -> str:
    """``bidPx:bidSz:askPx:askSz:...`` over the best ``depth`` levels; when one side runs
    out the other keeps going. Strings are used exactly as the venue sent them."""
    parts: list[str] = []
    nb, na = min(len(bids), depth), min(len(asks), depth)
    for i in range(max(nb, na)):
        if i < nb:
            b = bids[i]
            parts.append(b[0])
            parts.append(b[1])
        if i < na:
            a = asks[i]
            parts.append(a[0])
            parts.append(a[1])
    return ":".join(parts)


def book_crc32_interleaved(book: L2Book, depth: int = 25) -> int:
    """:func:`okx_checksum` straight from a book's level lists (the hot path: no tuples built)."""
    b, a = book.bids, book.asks
    return crc32_interleaved(b.pxs, b.szs, a.pxs, a.szs, depth)


def okx_checksum(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]], depth: int = 25) -> int:
    """Signed CRC32 as OKX (until 2026-06-23) and Bitget v2 send it."""
    return crc32_signed(interleaved_payload(bids, asks, depth))


class _KrakenText(dict[tuple[str, str], str]):
    """``(price, size)`` -> the level's checksum text; levels recur, so each is formatted once."""

    def __missing__(self, level: tuple[str, str]) -> str:
        px, sz = level
        text = self[level] = px.replace(".", "").lstrip("0") + sz.replace(".", "").lstrip("0")
        return text


_KRAKEN_TEXT = _KrakenText()
_KRAKEN_TEXT_MAX = 200_000


def kraken_payload(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]], depth: int = 10) -> str:
    """Kraken (v1 and v2): the best ``depth`` asks (ascending) then bids (descending), each
    level as price then size with ``.`` removed and leading zeros stripped, no separators."""
    if len(_KRAKEN_TEXT) > _KRAKEN_TEXT_MAX:
        _KRAKEN_TEXT.clear()
    text = _KRAKEN_TEXT.__getitem__
    return "".join(map(text, asks[:depth])) + "".join(map(text, bids[:depth]))


def kraken_checksum(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]], depth: int = 10) -> int:
    """Unsigned CRC32 of :func:`kraken_payload`, as Kraken sends it (v2 ``checksum``, v1 ``c``)."""
    return zlib.crc32(kraken_payload(bids, asks, depth).encode())
