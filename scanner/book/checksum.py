"""Book checksums: OKX/Bitget interleaved signed CRC32 over exact level strings."""

from __future__ import annotations

import zlib
from collections.abc import Sequence


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


def okx_checksum(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]], depth: int = 25) -> int:
    """Signed CRC32 as OKX (until 2026-06-23) and Bitget v2 send it."""
    return crc32_signed(interleaved_payload(bids, asks, depth))
