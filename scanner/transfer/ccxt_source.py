"""Live transfer data from ccxt ``fetch_currencies`` (``ccxt.async_support``), refreshed on a TTL.

Per venue, each currency's ``networks`` become :class:`Network` entries: ccxt's ``deposit`` /
``withdraw`` booleans map to open/closed and ``None`` to unknown; ``fee`` and
``limits.withdraw.min`` are read through ``str`` (shortest repr) into Decimal; a contract address
is taken from the venue's raw ``info`` where it publishes one. A venue that cannot be reached, or
needs keys it was not given, logs one warning and keeps the older layers (config table, snapshot).
Constructor options (API keys) are never logged: errors are reported by exception type and message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from scanner.transfer.model import Network, TransferTable, normalise_network, status_of

log = logging.getLogger("scanner.transfer")

CONTRACT_KEYS = ("contractAddress", "contract_address", "ctAddr", "contract", "tokenAddress")


def _dec(v: Any) -> Decimal | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        return None
    return d if d.is_finite() and d >= 0 else None


def _contract(info: Any) -> str:
    if isinstance(info, Mapping):
        for k in CONTRACT_KEYS:
            v = info.get(k)
            if isinstance(v, str) and v.strip():
                return v.strip()
    return ""


def parse_currencies(currencies: Mapping[str, Any], assets: set[str] | None = None) -> dict[str, tuple[Network, ...]]:
    """ccxt's ``fetch_currencies`` result → {ASSET: networks}; ``assets`` limits what is kept."""
    out: dict[str, tuple[Network, ...]] = {}
    for code, cur in currencies.items():
        if not isinstance(cur, Mapping) or (assets is not None and code.upper() not in assets):
            continue
        nets = cur.get("networks") or {}
        parsed = []
        for name, n in nets.items() if isinstance(nets, Mapping) else ():
            if not isinstance(n, Mapping):
                continue
            limits = n.get("limits") or {}
            wd = limits.get("withdraw") if isinstance(limits, Mapping) else None
            parsed.append(Network(
                normalise_network(str(n.get("network") or name), code),
                status_of(n.get("deposit")), status_of(n.get("withdraw")),
                _dec(n.get("fee")), _dec(wd.get("min")) if isinstance(wd, Mapping) else None,
                _contract(n.get("info")),
            ))
        if parsed:
            out[code.upper()] = tuple(parsed)
    return out


def redact(msg: str, options: Mapping[str, Any]) -> str:
    """``msg`` with every string option value (API key, secret, password) replaced by ``***``."""
    for v in options.values():
        if isinstance(v, str) and len(v) >= 4:
            msg = msg.replace(v, "***")
    return msg


async def fetch_venue(exchange_id: str, options: Mapping[str, Any], assets: set[str],
                      timeout_s: float) -> dict[str, tuple[Network, ...]]:
    import ccxt.async_support as ccxt_async  # only when live refresh is on

    ex = getattr(ccxt_async, exchange_id)(dict(options))
    try:
        currencies = await asyncio.wait_for(ex.fetch_currencies(), timeout_s)
    finally:
        await ex.close()
    return parse_currencies(currencies or {}, assets)


async def refresh_loop(table: TransferTable, venues: Mapping[str, str], options: Mapping[str, Mapping[str, Any]],
                       assets: set[str], ttl_s: float, stop: asyncio.Event, timeout_s: float = 20.0) -> None:
    """Fetch every venue (``venues``: our name → ccxt id) now and every ``ttl_s / 2``; expire
    entries older than ``ttl_s`` so stale live data falls back to the config table and snapshot."""
    while not stop.is_set():
        for name, ex_id in venues.items():
            try:
                got = await fetch_venue(ex_id, options.get(name, {}), assets, timeout_s)
            except Exception as exc:  # unreachable, needs keys, rate limited: keep the older layers
                log.warning("%s: transfer status not refreshed (%s: %s); using the config table and "
                            "the snapshot", name, type(exc).__name__, redact(str(exc), options.get(name, {}))[:200])
                continue
            table.put_live(name, got, time.time_ns())
            log.info("%s: transfer status refreshed for %d assets", name, len(got))
        table.expire(time.time_ns())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), ttl_s / 2)
