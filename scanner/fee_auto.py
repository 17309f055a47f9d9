"""Start-up work with the optional read-only API keys: key permission checks and ``fees: auto``.

For each venue with keys (scanner/credentials.py) a ccxt async exchange is made with them.
Where the venue reports a key's permissions (OKX ``GET /api/v5/account/config`` → ``perm``, e.g.
``read_only,trade``) a ``trade`` key is warned about loudly and a ``withdraw`` key refuses the start
unless ``fees.allow_withdraw_keys: true``. With ``fees: auto`` the account's own rates come from
ccxt's ``fetch_trading_fees`` (or ``fetch_trading_fee`` per symbol where that is all the venue has)
and go into the :class:`~scanner.fees.FeeModel`. Any failure is a warning naming the venue; the
configured rates stay. Error text is scrubbed of the key values before it is logged, and the
``ccxt`` logger is held at INFO (its DEBUG lines carry the signed request headers, key included).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from scanner.credentials import ApiCredentials
from scanner.fees import FeeModel, FeeSettings

log = logging.getLogger("scanner.fees")

# our venue name → ccxt id (Hyperliquid has no API keys: see credentials.NO_API_KEYS)
CCXT_IDS = {"okx": "okx", "binance": "binance", "bybit": "bybit", "coinbase": "coinbase", "kraken": "kraken",
            "gate": "gate", "kucoin": "kucoin", "bitget": "bitget", "htx": "htx", "mexc": "mexc"}


class KeyPermissionError(RuntimeError):
    """A key that may withdraw, without ``fees.allow_withdraw_keys``: the scanner refuses to start."""


def scrub(text: str, creds: ApiCredentials) -> str:
    for v in creds.values():
        if v:
            text = text.replace(v, "***")
    return text


def make_exchange(venue: str, creds: ApiCredentials, timeout_s: float,
                  urls: Mapping[str, Any] | None = None) -> Any:
    import ccxt.async_support as ccxt_async  # only when keys are configured

    ccxt_log = logging.getLogger("ccxt")  # ccxt logs signed request headers (the key) at DEBUG: never
    if ccxt_log.level < logging.INFO:
        ccxt_log.setLevel(logging.INFO)
    opts: dict[str, Any] = {**creds.ccxt_options(), "timeout": int(timeout_s * 1000), "enableRateLimit": False}
    if venue == "okx":
        opts["options"] = {"fetchMarkets": {"types": ["spot"]}}
    ex = getattr(ccxt_async, CCXT_IDS[venue])(opts)
    if urls:
        ex.urls["api"] = dict(urls)
    return ex


async def check_permissions(venue: str, ex: Any, allow_withdraw: bool) -> str | None:
    """The key's permissions where the venue reports them (OKX), else None. Raises on withdraw."""
    if venue != "okx":
        return None
    resp = await ex.private_get_account_config()
    data = (resp.get("data") or [{}])[0]
    perm = str(data.get("perm", ""))
    perms = {p.strip() for p in perm.split(",") if p.strip()}
    if "withdraw" in perms and not allow_withdraw:
        raise KeyPermissionError(f"{venue}: the API key has withdraw permission ({perm}); use a read-only key "
                                 f"or set fees.allow_withdraw_keys: true")
    if "trade" in perms or "withdraw" in perms:
        log.warning("%s: THE API KEY CAN TRADE%s (perm=%s); the scanner only reads: use a read-only key",
                    venue.upper(), " AND WITHDRAW" if "withdraw" in perms else "", perm)
    else:
        log.info("%s: API key permissions: %s", venue, perm or "(none reported)")
    return perm


async def fetch_rates(ex: Any, symbols: list[str]) -> dict[str, tuple[Decimal, Decimal]]:
    """(taker, maker) per symbol from the account, as exact Decimals of ccxt's numbers."""
    if ex.has.get("fetchTradingFees") is True:
        raw = await ex.fetch_trading_fees()
        items = [(s, raw[s]) for s in symbols if s in raw]
    else:
        await ex.load_markets()
        items = [(s, await ex.fetch_trading_fee(s)) for s in symbols if s in ex.markets]
    out = {}
    for sym, fee in items:
        t, m = fee.get("taker"), fee.get("maker")
        if t is not None and m is not None:
            out[sym] = (Decimal(str(t)), Decimal(str(m)))
    return out


async def apply_keys(fees: FeeSettings, model: FeeModel, symbols: Mapping[str, list[str]],
                     urls: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Run the permission checks and, with ``fees: auto``, install the account's rates in ``model``.
    ``urls`` (tests) replaces a venue's ccxt ``urls["api"]``. Raises :class:`KeyPermissionError`."""
    for venue, creds in fees.credentials.items():
        if venue not in CCXT_IDS:
            continue
        ex = make_exchange(venue, creds, fees.timeout_s, (urls or {}).get(venue))
        try:
            try:
                await asyncio.wait_for(check_permissions(venue, ex, fees.allow_withdraw_keys), fees.timeout_s)
            except KeyPermissionError:
                raise
            except Exception as exc:
                log.warning("%s: could not read the API key's permissions (key from %s): %s", venue,
                            creds.key.origin, scrub(f"{type(exc).__name__}: {exc}", creds))
            if fees.mode != "auto":
                continue
            try:
                rates = await asyncio.wait_for(fetch_rates(ex, symbols.get(venue, [])), fees.timeout_s)
            except Exception as exc:
                log.warning("%s: fees: auto failed, keeping the configured rates (key from %s): %s", venue,
                            creds.key.origin, scrub(f"{type(exc).__name__}: {exc}", creds))
                continue
            model.set_account(venue, rates)
            for sym, (t, m) in sorted(rates.items()):
                log.info("%s %s: account fees taker=%s maker=%s", venue, sym, t, m)
        finally:
            await ex.close()
