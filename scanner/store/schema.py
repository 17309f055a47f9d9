"""The Redis book schema, shared by the writer (collectors) and the reader (detector).

Key      ``book:{<symbol>}:<venue>``   e.g. ``book:{BTC/USDT}:okx``. The ``{symbol}`` hash tag
         puts every venue's book of one symbol in the same Redis Cluster slot.
Value    orjson object, see :func:`encode_book`; written with a TTL (``redis.book_ttl_ms``).
Channel  ``redis.channel`` (default ``books``): every write is also PUBLISHed with the same
         payload, so the detector needs no extra GET.

``integrity`` says how far a book can be trusted: ``"native"`` (our own collector: the venue's
sequence chain and checksum verified by us) or ``"ccxt"`` (the generic ccxt.pro adapter: only
what ccxt checks, which varies by venue). Payloads without the field are native.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

import orjson

from scanner.book.l2 import L2Book, Pair

KEY_PREFIX = "book:"
INTEGRITY_NATIVE = "native"
INTEGRITY_CCXT = "ccxt"


def book_key(symbol: str, venue: str) -> str:
    return f"{KEY_PREFIX}{{{symbol}}}:{venue}"


def encode_book(venue: str, symbol: str, book: L2Book | None, depth: int, pub_ns: int,
                integrity: str = INTEGRITY_NATIVE) -> bytes:
    """``{"venue","symbol","valid","bids":[[px,sz]...],"asks":...,"seq","exch_ms","recv_ns","pub_ns",
    "integrity"}``.

    Prices/sizes are the venue's exact strings, best first, at most ``depth`` per side.
    ``exch_ms`` is the venue's timestamp of the last applied frame (0 if unknown),
    ``recv_ns`` its local receive time and ``pub_ns`` when this payload was written. A
    book that is resyncing is written with ``valid: false`` and no levels."""
    return encode_levels(venue, symbol, book, *levels_of(book, depth), pub_ns, integrity)


def levels_of(book: L2Book | None, depth: int) -> tuple[list[Pair], list[Pair]]:
    """The bids and asks a payload of ``book`` carries: the best ``depth`` each, none while it resyncs."""
    return (book.bids.top(depth), book.asks.top(depth)) if book is not None else ([], [])


def encode_levels(venue: str, symbol: str, book: L2Book | None, bids: list[Pair], asks: list[Pair], pub_ns: int,
                  integrity: str = INTEGRITY_NATIVE) -> bytes:
    """:func:`encode_book` with the levels already taken (``book.bids.top(depth)``...), so that the
    writer can build the same book's :func:`view_of` from them without taking them twice."""
    if book is None:
        return orjson.dumps({"venue": venue, "symbol": symbol, "valid": False, "bids": [], "asks": [],
                             "seq": 0, "exch_ms": 0, "recv_ns": 0, "pub_ns": pub_ns, "integrity": integrity})
    return orjson.dumps({
        "venue": venue, "symbol": symbol, "valid": True, "bids": bids, "asks": asks,
        "seq": book.seq, "exch_ms": book.exch_ms, "recv_ns": book.recv_ns, "pub_ns": pub_ns,
        "integrity": integrity,
    })


def view_of(venue: str, symbol: str, book: L2Book | None, bids: list[Pair], asks: list[Pair],
            integrity: str = INTEGRITY_NATIVE) -> BookView:
    """The :class:`BookView` that decoding :func:`encode_levels`' payload gives, made without the JSON
    round trip (the writer's in-process listeners). ``bids``/``asks`` are fresh lists, never mutated."""
    if book is None:
        return BookView(venue, symbol, False, [], [], 0, 0, 0.0, 0.0, integrity)
    return BookView(venue, symbol, True, bids, asks, book.exch_ms, book.recv_ns,
                    float(bids[0][0]) if bids else 0.0, float(asks[0][0]) if asks else 0.0, integrity)


def origin_of(venue: str, symbol: str) -> bytes:
    """:func:`origin` of every payload of this book."""
    return orjson.dumps({"venue": venue, "symbol": symbol})[:-1]


def origin(payload: bytes) -> bytes:
    """Which book a payload of :func:`encode_book` is, without parsing it: its leading
    ``{"venue":...,"symbol":...`` bytes (the same for every payload of one book)."""
    end = payload.find(b',"valid"')
    return payload if end < 0 else payload[:end]


@dataclass(slots=True)
class BookView:
    """A book as the detector sees it: exact levels plus floats for a cheap pre-check.

    The detector walks one book against several others and keeps it across many updates of the
    other venues, so the exact levels parsed to Decimal (filled as far as a walk reaches) and the
    asks' total notional are cached on the view (:func:`scanner.detect.spread.walk`); they are
    derived from ``bids``/``asks``, which are never mutated once a view is built."""

    venue: str
    symbol: str
    valid: bool
    bids: list[Pair]
    asks: list[Pair]
    exch_ms: int
    recv_ns: int
    best_bid: float
    best_ask: float
    integrity: str = INTEGRITY_NATIVE
    dec_bids: list[tuple[Decimal, Decimal]] = field(default_factory=list, init=False, repr=False, compare=False)
    dec_asks: list[tuple[Decimal, Decimal]] = field(default_factory=list, init=False, repr=False, compare=False)
    ask_notional: float = field(default=-1.0, init=False, repr=False, compare=False)  # -1: not computed yet
    # the detector's cache: usable until this time (ns; 0 never, -1 not computed yet), see SpreadDetector
    good_until: int = field(default=-1, init=False, repr=False, compare=False)

    def asks_notional_bound(self) -> float:
        """An upper bound of the quote the whole ask side costs (sum of price x size, as floats), or inf
        when a level is not a positive finite number; computed once."""
        if self.ask_notional < 0:
            self.ask_notional = _notional(self.asks)
        return self.ask_notional


def _notional(levels: list[Pair]) -> float:
    total = 0.0
    try:
        for px, qty in levels:
            p, q = float(px), float(qty)
            if not (0 < p < math.inf and 0 < q < math.inf):
                return math.inf
            total += p * q
    except (TypeError, ValueError):
        return math.inf
    return total


def _levels(raw: list[list[object]]) -> list[Pair]:
    """The payload's levels as (price, size) string pairs; orjson already gives str, other types are
    stringified as before (a level that is not a pair raises ValueError/TypeError)."""
    return [(p, s) if p.__class__ is str is s.__class__ else (str(p), str(s)) for p, s in raw]


def decode_book(payload: bytes | str) -> BookView:
    """Parse a payload written by :func:`encode_book`; raises ValueError if it is not one."""
    try:
        d = orjson.loads(payload)
        bids = _levels(d["bids"])
        asks = _levels(d["asks"])
        return BookView(
            str(d["venue"]), str(d["symbol"]), bool(d["valid"]), bids, asks, int(d["exch_ms"]), int(d["recv_ns"]),
            float(bids[0][0]) if bids else 0.0, float(asks[0][0]) if asks else 0.0,
            str(d.get("integrity", INTEGRITY_NATIVE)),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a book payload: {exc!r}") from None
