"""Builds the detector's :class:`TransferChecker` from the settings, and the live refresh task.

The snapshot (``transfers.snapshot``, default ``configs/transfers.json``) is read once at start: a
missing file logs a warning and leaves that layer empty, a malformed one is a config error that names
the file and the position. ``{"venues": {venue: {ASSET: [networks]}}}`` is the shape; other top-level
keys (the curated header) are ignored.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from scanner.config import ConfigError, Settings
from scanner.config_transfer import describe
from scanner.transfer.ccxt_source import refresh_loop
from scanner.transfer.model import Entries, TransferDataError, TransferTable, parse_entries
from scanner.transfer.route import TransferChecker

__all__ = ["build_checker", "describe", "load_snapshot", "refresh"]

log = logging.getLogger("scanner.transfer")


def load_snapshot(path: Path | None) -> Entries:
    if path is None:
        return {}
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        log.warning("transfer snapshot %s not found: transfer routes are unknown unless the config table "
                    "or a live refresh knows them", path)
        return {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"transfers.snapshot: {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or "venues" not in raw:
        raise ConfigError(f"transfers.snapshot: {path}: the top level must be an object with \"venues\"")
    try:
        return parse_entries(raw["venues"], f"{path}:venues")
    except TransferDataError as exc:
        raise ConfigError(f"transfers.snapshot: {exc}") from None


def build_checker(settings: Settings) -> TransferChecker:
    t, d = settings.transfers, settings.detector
    table = TransferTable(load_snapshot(t.snapshot), t.table, t.ttl_s)
    return TransferChecker(table, dict(t.identity), include_fee=d.transfer_mode == "include",
                           require_transfer=d.require_transfer, max_net_bps=d.max_net_bps)


def ccxt_ids(settings: Settings) -> dict[str, str]:
    """Our venue names → ccxt exchange ids (native venue names are ccxt ids)."""
    out = {name: name for name in settings.venues}
    out.update({c.name: c.exchange_id for c in settings.ccxt_venues.values()})
    return out


async def refresh(settings: Settings, checker: TransferChecker, stop: asyncio.Event) -> None:
    """The live layer: ccxt ``fetch_currencies`` per venue (only with ``transfers.refresh: true``)."""
    t = settings.transfers
    assets = {s.partition("/")[0] for s in settings.symbols}
    for ident in t.identity.values():
        assets |= set(ident.aliases)
    await refresh_loop(checker.table, ccxt_ids(settings), t.ccxt_options, assets, t.ttl_s, stop)
