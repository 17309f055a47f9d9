"""Transfer data: per (venue, asset) the networks it can be deposited and withdrawn on.

A :class:`Network` carries a network id normalised across venues (:func:`normalise_network`),
deposit and withdraw status (``open``, ``closed`` or ``unknown``: absence of data is ``unknown``,
never ``open``), the withdrawal fee and minimum in the asset (exact Decimal, ``None`` when not
known) and the token's contract address when the venue publishes one.

Entries come from three layers, newest first (:class:`TransferTable`): ccxt ``fetch_currencies``
(``ccxt_source.py``, expiring after a TTL), the ``transfers.table`` config fallback and the
curated offline snapshot ``configs/transfers.json``. A layer replaces a whole (venue, asset) entry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

Status = Literal["open", "closed", "unknown"]
STATUSES: tuple[Status, ...] = ("open", "closed", "unknown")

# Spellings venues and ccxt use for one chain -> the id used here. Keys are upper-cased with spaces,
# "-", "_" and "()" removed before lookup; anything not listed is kept upper-cased as it came.
NETWORK_ALIASES: dict[str, str] = {
    **dict.fromkeys(("ETH", "ERC20", "ETHEREUM", "ETHEREUMERC20", "ETHERC20"), "ETH"),
    **dict.fromkeys(("TRX", "TRC20", "TRON", "TRONTRC20", "TRXTRC20"), "TRX"),
    **dict.fromkeys(("BSC", "BEP20", "BNBSMARTCHAIN", "BNBSMARTCHAINBEP20", "BSCBEP20"), "BSC"),
    **dict.fromkeys(("BNB", "BEP2", "BNBBEACONCHAIN", "BNBBEACONCHAINBEP2"), "BNB"),
    **dict.fromkeys(("SOL", "SOLANA", "SPL"), "SOL"),
    **dict.fromkeys(("BTC", "BITCOIN"), "BTC"),
    **dict.fromkeys(("XRP", "RIPPLE", "XRPL"), "XRP"),
    **dict.fromkeys(("DOGE", "DOGECOIN"), "DOGE"),
    **dict.fromkeys(("ADA", "CARDANO"), "ADA"),
    **dict.fromkeys(("BCH", "BITCOINCASH"), "BCH"),
    **dict.fromkeys(("ZEC", "ZCASH"), "ZEC"),
    **dict.fromkeys(("ARB", "ARBITRUM", "ARBONE", "ARBITRUMONE", "ARBEVM"), "ARB"),
    **dict.fromkeys(("OP", "OPTIMISM", "OPETH"), "OP"),
    **dict.fromkeys(("MATIC", "POLYGON", "POL", "POLYGONPOS"), "POLYGON"),
    **dict.fromkeys(("AVAXC", "AVAXCCHAIN", "CCHAIN", "AVALANCHECCHAIN"), "AVAXC"),
    **dict.fromkeys(("BASE", "BASEETH"), "BASE"),
    **dict.fromkeys(("HYPERLIQUID", "HYPERCORE", "HYPE", "HL"), "HYPERLIQUID"),
    **dict.fromkeys(("HYPEREVM", "HYPERLIQUIDEVM"), "HYPEREVM"),
}
_STRIP = re.compile(r"[\s\-_()]")


def normalise_network(name: str, asset: str = "") -> str:
    """One id per chain whatever the venue calls it: ``ERC20``/``Ethereum``/``ETH`` → ``ETH``,
    ``TRC20``/``TRON`` → ``TRX``. OKX-style ``USDT-TRC20`` (asset prefix) is read as ``TRC20``."""
    raw = name.strip().upper()
    if asset and raw.startswith(asset.upper() + "-") and len(raw) > len(asset) + 1:
        raw = raw[len(asset) + 1:]
    key = _STRIP.sub("", raw)
    return NETWORK_ALIASES.get(key, key)


@dataclass(frozen=True, slots=True)
class Network:
    network: str  # normalised id
    deposit: Status = "unknown"
    withdraw: Status = "unknown"
    withdraw_fee: Decimal | None = None  # in the asset
    withdraw_min: Decimal | None = None
    contract: str = ""  # token contract address, "" when not published


Entries = dict[tuple[str, str], tuple[Network, ...]]  # (venue, asset code as the venue spells it)


class TransferDataError(ValueError):
    """Bad transfer data; the message starts with the key (config path or file position)."""


def status_of(v: Any) -> Status:
    """ccxt's booleans (None: not said) or our strings, as a status."""
    if v is True:
        return "open"
    if v is False:
        return "closed"
    return "unknown"


def parse_entries(raw: Any, key: str) -> Entries:
    """``{venue: {ASSET: [{network, deposit, withdraw, withdraw_fee, withdraw_min, contract}]}}``
    (the config table and the snapshot share this shape). Errors name ``key`` and the position."""
    if not isinstance(raw, Mapping):
        raise TransferDataError(f"{key}: must map venue names to {{ASSET: [networks]}}")
    out: Entries = {}
    for venue, assets in raw.items():
        vkey = f"{key}.{venue}"
        if not isinstance(venue, str) or not isinstance(assets, Mapping):
            raise TransferDataError(f"{vkey}: must map asset codes to lists of networks")
        for asset, nets in assets.items():
            akey = f"{vkey}.{asset}"
            if not isinstance(asset, str) or not asset or not isinstance(nets, list):
                raise TransferDataError(f"{akey}: must be a list of networks")
            out[(venue, asset.upper())] = tuple(_network(n, asset, f"{akey}[{i}]") for i, n in enumerate(nets))
    return out


_NET_KEYS = {"network", "deposit", "withdraw", "withdraw_fee", "withdraw_min", "contract"}


def _network(n: Any, asset: str, key: str) -> Network:
    if not isinstance(n, Mapping) or not isinstance(n.get("network"), str) or not n["network"]:
        raise TransferDataError(f"{key}: must be a mapping with a network name")
    for k in n:
        if k not in _NET_KEYS:
            raise TransferDataError(f"{key}.{k}: unknown field; allowed: {', '.join(sorted(_NET_KEYS))}")
    st: dict[str, Status] = {}
    for k in ("deposit", "withdraw"):
        v = n.get(k, "unknown")
        if v not in STATUSES:
            raise TransferDataError(f"{key}.{k}: must be one of open, closed, unknown; got {v!r}")
        st[k] = v
    contract = n.get("contract") or ""
    if not isinstance(contract, str):
        raise TransferDataError(f"{key}.contract: must be a string")
    return Network(normalise_network(n["network"], asset), st["deposit"], st["withdraw"],
                   _amount(n.get("withdraw_fee"), f"{key}.withdraw_fee"),
                   _amount(n.get("withdraw_min"), f"{key}.withdraw_min"), contract)


def _amount(v: Any, key: str) -> Decimal | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise TransferDataError(f"{key}: must be a decimal amount (a string such as \"0.0001\") or null")
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        raise TransferDataError(f"{key}: must be a decimal amount; got {v!r}") from None
    if not d.is_finite() or d < 0:
        raise TransferDataError(f"{key}: must be a finite amount >= 0; got {v!r}")
    return d


class TransferTable:
    """The three layers: live ccxt entries (each with its fetch time, dropped after ``ttl_s``),
    the config fallback, the snapshot. ``version`` changes whenever the live layer does, so
    callers can drop cached routes."""

    def __init__(self, snapshot: Entries, fallback: Entries, ttl_s: float) -> None:
        self.snapshot, self.fallback, self.ttl_ns = snapshot, fallback, int(ttl_s * 1e9)
        self.live: dict[tuple[str, str], tuple[int, tuple[Network, ...]]] = {}
        self.version = 0

    def put_live(self, venue: str, entries: Mapping[str, tuple[Network, ...]], now_ns: int) -> None:
        for asset, nets in entries.items():
            self.live[(venue, asset.upper())] = (now_ns, nets)
        self.version += 1

    def expire(self, now_ns: int) -> None:
        old = [k for k, (t, _) in self.live.items() if now_ns - t > self.ttl_ns]
        for k in old:
            del self.live[k]
        if old:
            self.version += 1

    def get(self, venue: str, asset: str) -> tuple[Network, ...] | None:
        """The newest entry for (venue, asset), or None when no layer knows it."""
        k = (venue, asset.upper())
        if k in self.live:
            return self.live[k][1]
        if k in self.fallback:
            return self.fallback[k]
        return self.snapshot.get(k)
