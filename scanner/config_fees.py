"""Parses the fee settings: the top-level ``fees`` section, each venue's ``fees`` block and the
optional API keys (scanner/credentials.py). Called once from :func:`scanner.config.from_dict`.

    fees: auto                      # or static (default); or the long form:
    fees: {mode: auto, timeout_s: 10, allow_withdraw_keys: false}
    venues:
      kucoin:
        taker_fee: 0.001            # venue-wide taker (existing key)
        fees:
          maker: 0.001              # venue-wide maker
          fee_currency: quote       # the buy fee is charged in: quote (added to cost) | base (coins received)
          symbols:                  # per-symbol overrides (KuCoin class B/C coins)
            ZEC/USDT: {taker: 0.002, maker: 0.002}
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from scanner.config import CcxtVenueSettings, ConfigError, VenueSettings, _bool, _decimal, _number
from scanner.credentials import CredentialError, load_credentials
from scanner.fees import DEFAULT_FEES, FEE_CURRENCIES, FEE_MODES, FeeSettings, VenueFees

SECTION_KEYS = {"mode", "timeout_s", "allow_withdraw_keys"}
VENUE_FEE_KEYS = {"maker", "fee_currency", "symbols"}
SYMBOL_FEE_KEYS = {"taker", "maker"}
MAX_FEE = Decimal("0.05")


def parse_fees(raw: dict[str, Any], venues: Mapping[str, VenueSettings],
               ccxt_venues: Mapping[str, CcxtVenueSettings], env: Mapping[str, str]) -> FeeSettings:
    sec = raw.get("fees", "static")
    if isinstance(sec, str):
        sec = {"mode": sec}
    if not isinstance(sec, dict):
        raise ConfigError(f"fees: must be static, auto or a mapping with {', '.join(sorted(SECTION_KEYS))}")
    for k in sec:
        if k not in SECTION_KEYS:
            raise ConfigError(f"fees.{k}: unknown setting; allowed: {', '.join(sorted(SECTION_KEYS))}")
    mode = sec.get("mode", "static")
    if mode not in FEE_MODES:
        raise ConfigError(f"fees.mode: must be one of {', '.join(FEE_MODES)}; got {mode!r}")
    raw_venues = raw.get("venues") or {}
    out: dict[str, VenueFees] = {}
    for name, vs in venues.items():
        out[name] = _venue_fees(name, vs.taker_fee, (raw_venues.get(name) or {}).get("fees"))
    for name, cs in ccxt_venues.items():
        out[name] = VenueFees(cs.taker_fee, cs.taker_fee, source="config")
    creds = {}
    for name in venues:
        try:
            c = load_credentials(name, env)
        except CredentialError as exc:
            raise ConfigError(str(exc)) from None
        if c is not None:
            creds[name] = c
    return FeeSettings(
        mode=str(mode),
        timeout_s=_number(sec.get("timeout_s", 10.0), "fees.timeout_s", 0.1, 300),
        allow_withdraw_keys=_bool(sec.get("allow_withdraw_keys", False), "fees.allow_withdraw_keys"),
        venues=out,
        credentials=creds,
    )


def _fee(v: Any, key: str) -> Decimal:
    d = _decimal(v, key)
    if not Decimal(0) <= d < MAX_FEE:
        raise ConfigError(f"{key}: must be a fraction in [0, 0.05) such as 0.001 for 0.1 %; got {v!r}")
    return d


def _venue_fees(name: str, taker: Decimal, block: Any) -> VenueFees:
    key = f"venues.{name}.fees"
    default = DEFAULT_FEES[name]
    if block is None:
        return VenueFees(taker, default.maker, source="config" if taker != default.taker else "default")
    if not isinstance(block, dict):
        raise ConfigError(f"{key}: must be a mapping with {', '.join(sorted(VENUE_FEE_KEYS))}")
    for k in block:
        if k not in VENUE_FEE_KEYS:
            raise ConfigError(f"{key}.{k}: unknown setting; allowed: {', '.join(sorted(VENUE_FEE_KEYS))} "
                              f"(the venue-wide taker is venues.{name}.taker_fee)")
    maker = _fee(block["maker"], f"{key}.maker") if "maker" in block else default.maker
    currency = block.get("fee_currency", "quote")
    if currency not in FEE_CURRENCIES:
        raise ConfigError(f"{key}.fee_currency: must be one of {', '.join(FEE_CURRENCIES)}; got {currency!r}")
    symbols: dict[str, tuple[Decimal, Decimal]] = {}
    sraw = block.get("symbols") or {}
    if not isinstance(sraw, dict):
        raise ConfigError(f"{key}.symbols: must map a symbol (BTC/USDT) to {{taker: ..., maker: ...}}")
    for sym, rates in sraw.items():
        skey = f"{key}.symbols.{sym}"
        if not isinstance(sym, str) or sym.count("/") != 1 or not all(sym.split("/")):
            raise ConfigError(f"{key}.symbols: {sym!r} is not a unified symbol like BTC/USDT")
        if not isinstance(rates, dict) or not rates:
            raise ConfigError(f"{skey}: must be a mapping with taker and/or maker")
        for k in rates:
            if k not in SYMBOL_FEE_KEYS:
                raise ConfigError(f"{skey}.{k}: unknown setting; allowed: maker, taker")
        t = _fee(rates["taker"], f"{skey}.taker") if "taker" in rates else taker
        m = _fee(rates["maker"], f"{skey}.maker") if "maker" in rates else maker
        symbols[sym.upper()] = (t, m)
    changed = taker != default.taker or maker != default.maker
    return VenueFees(taker, maker, str(currency), symbols, "config" if changed else "default")
