"""Parses ``detector.quote_groups`` (cross-quote comparison, scanner/detect/crossquote.py); called
once from ``config.from_dict``.

    symbols: [BTC/USDT, BTC/USDC, USDC/USDT]
    detector:
      quote_groups: [[USDT, USDC]]   # compare BTC/USDT with BTC/USDC, converting at USDC/USDT

Without it (the default) books are compared only within one unified symbol, so USDT, USDC and USD
books are never mixed. Each group lists at least two known quote codes; a code belongs to one group
at most. Every two codes of a group need their stable pair (``USDC/USDT`` or ``USDT/USDC``) in the
top-level ``symbols``: the detector converts on that book, so the collectors must collect it (it is
required, not added silently). Errors name the key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any, TypeVar

KNOWN_QUOTES = ("USDT", "USDC", "USD", "FDUSD", "DAI", "TUSD", "USDE", "PYUSD", "EUR")

D = TypeVar("D")


def _error(msg: str) -> ValueError:
    from scanner.config import ConfigError  # config imports this module

    return ConfigError(msg)


def parse(raw: Any, symbols: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """The validated groups (upper-case codes), ``()`` when unset."""
    key = "detector.quote_groups"
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _error(f"{key}: must be a list of quote-code lists like [[USDT, USDC]]; got {raw!r}")
    seen: dict[str, int] = {}
    groups: list[tuple[str, ...]] = []
    for i, g in enumerate(raw):
        gkey = f"{key}[{i}]"
        if not isinstance(g, list) or len(g) < 2:
            raise _error(f"{gkey}: must list at least two quote codes like [USDT, USDC]; got {g!r}")
        codes: list[str] = []
        for c in g:
            code = c.upper() if isinstance(c, str) else c
            if code not in KNOWN_QUOTES:
                raise _error(f"{gkey}: {c!r} is not a known quote code; known: {', '.join(KNOWN_QUOTES)}")
            if code in codes:
                raise _error(f"{gkey}: lists {code} twice")
            if code in seen:
                raise _error(f"{gkey}: {code} is already in {key}[{seen[code]}]; a code belongs to one group")
            seen[code] = i
            codes.append(code)
        for a, b in combinations(codes, 2):
            if f"{a}/{b}" not in symbols and f"{b}/{a}" not in symbols:
                raise _error(f"{gkey}: converting between {a} and {b} needs their stable-pair book: "
                             f"add {b}/{a} or {a}/{b} to symbols")
        groups.append(tuple(codes))
    return tuple(groups)


def with_quote_groups(detector: D, raw: Mapping[str, Any], symbols: Sequence[str]) -> D:
    """``detector`` (a DetectorSettings) with ``quote_groups`` read from the ``detector`` section."""
    return dataclasses.replace(detector, quote_groups=parse(raw.get("quote_groups"), symbols))  # type: ignore[type-var]
