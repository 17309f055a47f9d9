"""Venue-neutral message types shared by parsers, books, the store and the detector.

Prices and sizes stay the exact decimal strings the venue sent; nothing here converts
them to float, so checksums and money computed downstream stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any

# A level as received: [price, size, *venue extras]. Extras (OKX order counts) are ignored.
Level = list[str]


@dataclass(slots=True)
class BookMsg:
    """One order-book frame for one instrument, exactly as the venue sent it.

    ``seq``/``prev`` carry the venue's sequencing: OKX ``seqId``/``prevSeqId``;
    Binance ``u``/``U`` (last and first update id of the event). ``checksum`` is 0
    when the venue sent none (OKX since 2026-06-23 always sends 0).
    """

    inst: str  # the venue's instrument id, e.g. "BTC-USDT" (OKX) or "BTCUSDT" (Binance)
    snapshot: bool  # True: replaces the book; False: absolute-size diff
    bids: list[Level]
    asks: list[Level]
    seq: int
    prev: int
    checksum: int
    exch_ms: int  # exchange event time, unix ms (0 if the venue sent none)
    recv_ns: int  # local receive time, unix ns


@dataclass(slots=True)
class Control:
    """A non-book frame the connection loop may act on (acks, errors, pongs, notices)."""

    kind: str  # "subscribed" | "unsubscribed" | "error" | "pong" | "reconnect" | "info"
    inst: str = ""
    detail: str = ""


@dataclass(slots=True, unsafe_hash=True)
class Opportunity:
    """Buy ``size`` on ``buy_venue`` and sell it on ``sell_venue``; figures are exact decimals.

    A value: once made, never changed (the tracker, the sinks and the webhooks share one instance);
    :func:`evolve` makes a changed copy. Not ``frozen``: a frozen dataclass's ``__init__`` sets each of
    the 43 fields through ``object.__setattr__``, ~8x the cost of a plain one, paid two or three times
    per event on the detector's hot path."""

    symbol: str
    buy_venue: str
    sell_venue: str
    size: str  # base quantity
    buy_vwap: str
    sell_vwap: str
    gross_bps: str
    net_bps: str
    profit_quote: str
    buy_fee: str  # taker fee rates applied, as fractions
    sell_fee: str
    buy_book_age_ms: float
    sell_book_age_ms: float
    levels_buy: int
    levels_sell: int
    recv_ns: int  # receive time of the frame that triggered the evaluation
    detected_ns: int
    buy_integrity: str = "native"  # the books' integrity labels: "native" or "ccxt" (store/schema.py)
    sell_integrity: str = "native"
    # lifecycle (scanner/detect/lifecycle.py): stable id of the directed pair, event kind, when it first
    # qualified, how long it has lasted, and the peaks over its life
    id: str = ""  # "{symbol}|{buy_venue}|{sell_venue}"
    event: str = "open"  # "open" | "update" | "close"
    opened_ns: int = 0
    duration_ms: float = 0.0
    peak_net_bps: str = ""
    peak_size: str = ""
    peak_profit_quote: str = ""
    # fees (scanner/fees.py): base that reaches the sell venue (< size when the buy fee is taken in the
    # base asset), and the asset the buy fee is charged in ("quote" | "base")
    net_size: str = ""
    buy_fee_currency: str = "quote"
    # transfers (scanner/transfer/route.py): can the base asset move buy venue -> sell venue
    transfer_status: str = "unknown"  # "open" | "closed" | "unknown" (no data is never "open")
    transfer_network: str = ""  # normalised network id of the cheapest open route ("" if none)
    transfer_fee: str = ""  # its withdrawal fee in the base asset ("" if unknown)
    # cross-quote pairs (detector.quote_groups, scanner/detect/crossquote.py): the two books' symbols ("" when
    # both are ``symbol``) and the conversion of the sale proceeds back to the buy quote on the sell venue
    buy_symbol: str = ""
    sell_symbol: str = ""
    conversion_symbol: str = ""  # the stable-pair book used, e.g. "USDC/USDT"
    conversion_side: str = ""  # "sell" (proceeds are its base, sold into bids) | "buy" (its base bought at asks)
    conversion_in: str = ""  # proceeds converted, in the sell quote (after the sell fee)
    conversion_out: str = ""  # received, in the buy quote (after the conversion fee)
    conversion_vwap: str = ""  # the stable book's average price, before the fee
    conversion_fee: str = ""  # the sell venue's taker rate on the stable pair
    conversion_levels: int = 0

    @property
    def pair_symbol(self) -> str:
        """``symbol``, or ``"{buy_symbol}>{sell_symbol}"`` for a cross-quote pair (its lifecycle key)."""
        if self.sell_symbol and self.sell_symbol != self.symbol:
            return f"{self.symbol}>{self.sell_symbol}"
        return self.symbol

    def to_dict(self) -> dict[str, object]:
        return {
            "symbol": self.symbol,
            "buy_venue": self.buy_venue,
            "sell_venue": self.sell_venue,
            "size": self.size,
            "buy_vwap": self.buy_vwap,
            "sell_vwap": self.sell_vwap,
            "gross_bps": self.gross_bps,
            "net_bps": self.net_bps,
            "profit_quote": self.profit_quote,
            "buy_fee": self.buy_fee,
            "sell_fee": self.sell_fee,
            "buy_book_age_ms": round(self.buy_book_age_ms, 3),
            "sell_book_age_ms": round(self.sell_book_age_ms, 3),
            "levels_buy": self.levels_buy,
            "levels_sell": self.levels_sell,
            "recv_ns": self.recv_ns,
            "detected_ns": self.detected_ns,
            "buy_integrity": self.buy_integrity,
            "sell_integrity": self.sell_integrity,
            "id": self.id,
            "event": self.event,
            "opened_ns": self.opened_ns,
            "duration_ms": round(self.duration_ms, 3),
            "peak_net_bps": self.peak_net_bps,
            "peak_size": self.peak_size,
            "peak_profit_quote": self.peak_profit_quote,
            "net_size": self.net_size,
            "buy_fee_currency": self.buy_fee_currency,
            "transfer_status": self.transfer_status,
            "transfer_network": self.transfer_network,
            "transfer_fee": self.transfer_fee,
            "buy_symbol": self.buy_symbol or self.symbol,
            "sell_symbol": self.sell_symbol or self.symbol,
            "conversion": None if not self.conversion_symbol else {
                "symbol": self.conversion_symbol, "venue": self.sell_venue, "side": self.conversion_side,
                "amount_in": self.conversion_in, "amount_out": self.conversion_out, "vwap": self.conversion_vwap,
                "fee": self.conversion_fee, "levels": self.conversion_levels,
            },
        }


_OPP_NAMES = tuple(f.name for f in fields(Opportunity))
_OPP_FIELDS = frozenset(_OPP_NAMES)
_OPP_GET = attrgetter(*_OPP_NAMES)


def evolve(opp: Opportunity, **changes: Any) -> Opportunity:
    """``dataclasses.replace(opp, **changes)`` at a fraction of the cost (the detector makes one or two per
    event): every field passed to ``__init__`` positionally in one call, then the changes set. Opportunity
    has no ``__post_init__`` and no ``init=False`` field."""
    new = Opportunity(*_OPP_GET(opp))
    for name, value in changes.items():
        if name not in _OPP_FIELDS:
            raise TypeError(f"Opportunity has no field {name!r}")
        setattr(new, name, value)
    return new
