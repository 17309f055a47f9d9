"""Book checksums: OKX/Bitget interleaved signed CRC32 over exact level strings."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from scanner.book.l2 import L2Book, crc32_interleaved


def book_crc32_interleaved(book: L2Book, depth: int = 25) -> int:
    """The OKX/Bitget checksum of a book, straight from its level lists (no tuples built)."""
    b, a = book.bids, book.asks
    return crc32_interleaved(b.pxs, b.szs, a.pxs, a.szs, depth)


def okx_checksum(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]], depth: int = 25) -> int:
    """Signed CRC32 of ``bidPx:bidSz:askPx:askSz:...`` over the best ``depth`` levels (when one side runs
    out the other keeps going), as OKX (until 2026-06-23) and Bitget v2 send it. Strings are used exactly
    as the venue sent them; the same kernel as the books' (scanner/book/_core.c or pycore.py)."""
    return crc32_interleaved([b[0] for b in bids], [b[1] for b in bids], [a[0] for a in asks], [a[1] for a in asks],
                             depth)


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
