"""Per (symbol, buy venue, sell venue): can the base asset move from the buy venue to the sell
venue, on which network, at what fee; and is it the same asset on both venues?

Route: the networks both venues list for the asset (ids normalised). A network is ``open`` when
the buy venue's withdrawals and the sell venue's deposits are both open, ``closed`` when either is
closed, else ``unknown``. The cheapest open network wins (a known fee before an unknown one); with
none open, an unknown one is reported as ``unknown`` (never as open); when
every common network is closed the route is ``closed``. No data for either side, or no network in
common (lists may be incomplete), is ``unknown``.

Identity: a venue's ``aliases`` map its asset codes to the canonical ones (Hyperliquid ``UBTC`` →
``BTC``) before books are compared; ``deny`` lists symbols never compared on that venue. Where both
venues publish a contract address on a common network and the addresses differ, the pair is
``suspect_identity``; so is a walk whose net edge exceeds ``detector.max_net_bps``.

Routes depend on the table only, so they are computed once per (symbol, buy, sell) and kept until
the table changes; :meth:`TransferChecker.check` on the hot path is a dict lookup and a compare.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from scanner.detect.spread import BPS, Fill
from scanner.store.schema import BookView
from scanner.transfer.model import Network, Status, TransferTable

if TYPE_CHECKING:
    from scanner.config import DetectorSettings

Key = tuple[str, str, str]  # (symbol, buy venue, sell venue)


@dataclass(frozen=True, slots=True)
class Identity:
    """One venue's identity rules: its asset code → canonical code, and symbols never compared."""

    aliases: dict[str, str] = dataclasses.field(default_factory=dict)
    deny: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Route:
    status: Status
    network: str = ""
    fee: Decimal | None = None  # withdrawal fee in the base asset
    suspect: bool = False  # contract addresses differ on a common network


@dataclass(slots=True)
class Check:
    """The verdict on one walk: ``refusal`` (a scanner_refusals_total reason) or the figures to
    report; ``profit``/``net_bps`` have the withdrawal fee taken off in ``include`` mode. A value, made
    once per walk (not ``frozen``, whose ``__init__`` costs more than the check itself)."""

    refusal: str | None
    route: Route
    profit: Decimal
    net_bps: Decimal


UNKNOWN = Route("unknown")


class TransferChecker:
    def __init__(self, table: TransferTable, identity: dict[str, Identity], *, include_fee: bool = False,
                 require_transfer: bool = False, max_net_bps: Decimal = Decimal(500)) -> None:
        self.table, self.identity = table, identity
        self.include_fee, self.require_transfer, self.max_net_bps = include_fee, require_transfer, max_net_bps
        self._routes: dict[Key, Route] = {}
        self._version = table.version
        self._reverse = {v: {c: a for a, c in ident.aliases.items()} for v, ident in identity.items()}

    def canonical(self, view: BookView) -> BookView | None:
        """The book under its canonical symbol (aliases applied), or None if the venue denies it."""
        ident = self.identity.get(view.venue)
        if ident is None:
            return view
        if view.symbol in ident.deny:
            return None
        base, _, quote = view.symbol.partition("/")
        b, q = ident.aliases.get(base, base), ident.aliases.get(quote, quote)
        if (b, q) == (base, quote):
            return view
        return dataclasses.replace(view, symbol=f"{b}/{q}")

    def route(self, key: Key) -> Route:
        if self.table.version != self._version:
            self._routes.clear()
            self._version = self.table.version
        r = self._routes.get(key)
        if r is None:
            r = self._routes[key] = self._compute(key)
        return r

    def check(self, key: Key, fill: Fill) -> Check:
        r = self.route(key)
        profit, net = fill.profit, fill.net_bps
        if r.suspect or net > self.max_net_bps:
            return Check("suspect_identity", r, profit, net)
        if r.status == "closed":
            return Check("transfer_closed", r, profit, net)
        if r.status == "unknown" and self.require_transfer:
            return Check("transfer_unknown", r, profit, net)
        if self.include_fee:
            if r.fee is None:  # nothing to subtract: reporting the figure as if free would overstate it
                return Check("transfer_unknown", r, profit, net)
            profit = profit - r.fee * fill.sell_vwap
            net = profit / fill.net_cost * BPS
        return Check(None, r, profit, net)

    def _venue_asset(self, venue: str, asset: str) -> str:
        return self._reverse.get(venue, {}).get(asset, asset)

    def _compute(self, key: Key) -> Route:
        symbol, buy, sell = key
        asset = symbol.partition("/")[0]
        src = self.table.get(buy, self._venue_asset(buy, asset))
        dst = self.table.get(sell, self._venue_asset(sell, asset))
        if src is None or dst is None:
            return UNKNOWN
        return choose(src, dst)


def choose(src: tuple[Network, ...], dst: tuple[Network, ...]) -> Route:
    """The route from a venue listing ``src`` to one listing ``dst`` (see the module docstring)."""
    into = {n.network: n for n in dst}
    suspect = common = False
    best: dict[Status, list[tuple[bool, Decimal, str]]] = {"open": [], "unknown": []}
    for w in src:
        d = into.get(w.network)
        if d is None:
            continue
        common = True
        if w.contract and d.contract and not same_contract(w.contract, d.contract):
            suspect = True
        if "closed" in (w.withdraw, d.deposit):
            continue
        status: Status = "open" if (w.withdraw, d.deposit) == ("open", "open") else "unknown"
        best[status].append((w.withdraw_fee is None, w.withdraw_fee or Decimal(0), w.network))
    for status in ("open", "unknown"):
        if best[status]:
            unknown_fee, fee, net = min(best[status])
            return Route(status, net, None if unknown_fee else fee, suspect)
    return Route("closed" if common else "unknown", suspect=suspect)


def same_contract(a: str, b: str) -> bool:
    """EVM addresses (0x…) compare case-insensitively (checksum case); others exactly (base58)."""
    if a.startswith("0x") and b.startswith("0x"):
        return a.lower() == b.lower()
    return a == b


def no_transfer_data(settings: DetectorSettings) -> TransferChecker:
    """A checker with an empty table (every route unknown) and no identity rules, honouring the
    detector's cap and transfer settings: the default when the caller supplies none."""
    return TransferChecker(TransferTable({}, {}, 3600.0), {}, include_fee=settings.transfer_mode == "include",
                           require_transfer=settings.require_transfer, max_net_bps=settings.max_net_bps)
