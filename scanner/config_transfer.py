"""Settings of transfer feasibility and asset identity (``scanner/transfer/``), read from the
top-level ``transfers`` section and three ``detector`` keys; called from ``config.from_dict``.

    detector:
      transfer_mode: ignore      # include: profit subtracts the withdrawal fee (valued at the sell VWAP)
      require_transfer: false    # true: a route of unknown status is refused (transfer_unknown)
      max_net_bps: 500           # a net edge above this is refused as suspect_identity
    transfers:
      snapshot: configs/transfers.json   # curated offline layer ("" for none)
      refresh: false             # true: ccxt fetch_currencies per venue, every ttl_s / 2
      ttl_s: 3600                # live entries older than this fall back to table / snapshot
      table: {okx: {BTC: [{network: BTC, deposit: open, withdraw: open, withdraw_fee: "0.0001"}]}}
      identity: {hyperliquid: {aliases: {UBTC: BTC}, deny: [PURR/USDC]}}
      ccxt_options: {binance: {apiKey: ..., secret: ...}}   # never logged or printed

Errors name the key. ``ccxt_options`` values are never echoed (they hold API keys).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

from scanner.transfer.model import Entries, TransferDataError, parse_entries
from scanner.transfer.route import Identity

TRANSFER_MODES = ("ignore", "include")
TRANSFER_KEYS = {"snapshot", "refresh", "ttl_s", "table", "identity", "ccxt_options"}
DETECTOR_KEYS = ("transfer_mode", "require_transfer", "max_net_bps")


def _error(msg: str) -> ValueError:
    """A ``config.ConfigError`` (imported here, not at the top: config imports this module)."""
    from scanner.config import ConfigError

    return ConfigError(msg)


@dataclass(frozen=True)
class TransferSettings:
    snapshot: Path | None = Path("configs/transfers.json")
    refresh: bool = False
    ttl_s: float = 3600.0
    table: Entries = field(default_factory=dict)
    identity: dict[str, Identity] = field(default_factory=dict)
    ccxt_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)


D = TypeVar("D")


def detector_extras(detector: D, raw: Mapping[str, Any]) -> D:
    """``detector`` (a DetectorSettings) with the three transfer keys read from ``raw``."""
    mode = raw.get("transfer_mode", "ignore")
    if mode not in TRANSFER_MODES:
        raise _error(f"detector.transfer_mode: must be one of include, ignore; got {mode!r}")
    require = raw.get("require_transfer", False)
    if not isinstance(require, bool):
        raise _error(f"detector.require_transfer: must be true or false; got {require!r}")
    cap = raw.get("max_net_bps", 500)
    try:
        cap_d = Decimal(str(cap)) if not isinstance(cap, bool) else Decimal("NaN")
    except InvalidOperation:
        cap_d = Decimal("NaN")
    if not cap_d.is_finite() or cap_d <= 0:
        raise _error(f"detector.max_net_bps: must be a positive number of bps; got {cap!r}")
    return dataclasses.replace(detector, transfer_mode=mode, require_transfer=require,  # type: ignore[type-var]
                               max_net_bps=cap_d)


def parse(raw: Any, venues: set[str]) -> TransferSettings:
    """The ``transfers`` section; ``venues`` are the configured venue names (for identity keys)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise _error("transfers: must be a mapping")
    for k in raw:
        if k not in TRANSFER_KEYS:
            raise _error(f"transfers.{k}: unknown setting; allowed: {', '.join(sorted(TRANSFER_KEYS))}")
    d = TransferSettings()
    snap = raw.get("snapshot", str(d.snapshot))
    if not isinstance(snap, str):
        raise _error(f"transfers.snapshot: must be a file path or \"\"; got {snap!r}")
    refresh = raw.get("refresh", d.refresh)
    if not isinstance(refresh, bool):
        raise _error(f"transfers.refresh: must be true or false; got {refresh!r}")
    ttl = raw.get("ttl_s", d.ttl_s)
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 10 <= ttl <= 604_800:
        raise _error(f"transfers.ttl_s: must be a number of seconds between 10 and 604800; got {ttl!r}")
    try:
        table = parse_entries(raw.get("table") or {}, "transfers.table")
    except TransferDataError as exc:
        raise _error(str(exc)) from None
    opts = raw.get("ccxt_options") or {}
    if not isinstance(opts, Mapping) or not all(isinstance(v, Mapping) for v in opts.values()):
        raise _error("transfers.ccxt_options: must map venue names to ccxt constructor settings")
    return TransferSettings(Path(snap) if snap else None, refresh, float(ttl), table,
                            _identity(raw.get("identity") or {}, venues), {str(k): dict(v) for k, v in opts.items()})


def _identity(raw: Any, venues: set[str]) -> dict[str, Identity]:
    if not isinstance(raw, Mapping):
        raise _error("transfers.identity: must map venue names to {aliases, deny}")
    out: dict[str, Identity] = {}
    for venue, v in raw.items():
        key = f"transfers.identity.{venue}"
        if venue not in venues:
            raise _error(f"{key}: not a configured venue; configured: {', '.join(sorted(venues))}")
        if not isinstance(v, Mapping):
            raise _error(f"{key}: must be a mapping with aliases and/or deny")
        for k in v:
            if k not in ("aliases", "deny"):
                raise _error(f"{key}.{k}: unknown setting; allowed: aliases, deny")
        aliases = v.get("aliases") or {}
        if not isinstance(aliases, Mapping):
            raise _error(f"{key}.aliases: must map the venue's asset code to the canonical one")
        for a, c in aliases.items():
            if not _code(a) or not _code(c) or a == c:
                raise _error(f"{key}.aliases.{a}: must map an asset code (UBTC) to a different "
                                          f"canonical code (BTC); got {a!r}: {c!r}")
        deny = v.get("deny") or []
        if not isinstance(deny, list):
            raise _error(f"{key}.deny: must be a list of symbols like PURR/USDC")
        for i, s in enumerate(deny):
            if not isinstance(s, str) or s.count("/") != 1 or not all(s.split("/")):
                raise _error(f"{key}.deny[{i}]: {s!r} is not a unified symbol like BTC/USDT")
        out[str(venue)] = Identity({str(a).upper(): str(c).upper() for a, c in aliases.items()},
                                   frozenset(s.upper() for s in deny))
    return out


def _code(v: Any) -> bool:
    return isinstance(v, str) and bool(v) and "/" not in v and not any(c.isspace() for c in v)


def describe(t: TransferSettings, detector: Any) -> str:
    """The ``check-config`` line: ccxt option names only, never their values."""
    opts = ", ".join(f"{v}[{', '.join(sorted(o))}]" for v, o in sorted(t.ccxt_options.items()))
    return (f"transfers: mode={detector.transfer_mode} require_transfer={str(detector.require_transfer).lower()} "
            f"max_net_bps={detector.max_net_bps} snapshot={t.snapshot or 'none'} refresh={str(t.refresh).lower()} "
            f"ttl_s={t.ttl_s:g} table={len(t.table)} entries identity={sorted(t.identity)} ccxt_options=[{opts}]")
