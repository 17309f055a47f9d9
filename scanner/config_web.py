"""Parses the ``web`` section (the live web view, scanner/web/). Called once from
:func:`scanner.config.from_dict`.

    web:
      enabled: true      # serve the page at http://<metrics.host>:<metrics.port>/
      history_s: 300     # spread chart window, seconds (one sample a second)
      max_rows: 500      # open opportunities kept for the table
      max_clients: 8     # concurrent live streams (/api/stream); more get 503
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scanner.config import ConfigError, _bool, _int, _no_unknown


@dataclass(frozen=True)
class WebSettings:
    enabled: bool = True
    history_s: int = 300
    max_rows: int = 500
    max_clients: int = 8


def parse_web(raw: Any) -> WebSettings:
    if raw is None:
        return WebSettings()
    if not isinstance(raw, dict):
        raise ConfigError("web: must be a mapping")
    _no_unknown(raw, set(WebSettings.__dataclass_fields__), "web.")
    d = WebSettings()
    return WebSettings(
        enabled=_bool(raw.get("enabled", d.enabled), "web.enabled"),
        history_s=_int(raw.get("history_s", d.history_s), "web.history_s", 10, 86_400),
        max_rows=_int(raw.get("max_rows", d.max_rows), "web.max_rows", 1, 100_000),
        max_clients=_int(raw.get("max_clients", d.max_clients), "web.max_clients", 1, 1_000),
    )
