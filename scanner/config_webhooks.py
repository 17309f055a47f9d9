"""Parses the ``webhooks`` section (delivery: scanner/webhooks/). Called once from
:func:`scanner.config.from_dict`.

    webhooks:
      outbox_stream: webhook_outbox          # the Redis stream the detector appends every event to
      outbox_maxlen: 100000                  # XADD MAXLEN ~ (entries older than this are trimmed)
      dead_letter_stream: webhook_dead_letters
      consumer: scanner                      # consumer name in each target's group (keep it across restarts)
      claim_idle_s: 60                       # reclaim other consumers' entries pending this long
      targets:
        desk:
          url: https://hooks.example.com/arb # or url_env / url_file (chat webhook URLs carry tokens)
          format: json                       # json | slack | discord | telegram
          events: [open, close]              # default: open, update, close
          symbols: [BTC/USDT]                # default: all
          venues: [okx, bybit]               # both legs must be among them; default: all
          min_net_bps: 10
          min_profit_quote: "25"
          cooldown_s: 30                     # per opportunity id; close events always pass
          secret_env: DESK_WEBHOOK_SECRET    # or secret_file; json format: "whsec_<base64>"
          chat_id: "-100123"                 # telegram only
          max_in_flight: 8
          timeout_s: 10
          max_attempts: 8
          backoff_base_s: 1                  # full jitter: uniform(0, min(backoff_max_s, base * 2^n))
          backoff_max_s: 300
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from scanner.config import ConfigError, _decimal, _int, _no_unknown, _number, _symbols
from scanner.credentials import Secret

SECTION_KEYS = {"outbox_stream", "outbox_maxlen", "dead_letter_stream", "consumer", "claim_idle_s", "targets"}
TARGET_KEYS = {"url", "url_env", "url_file", "format", "events", "symbols", "venues", "min_net_bps",
               "min_profit_quote", "cooldown_s", "secret_env", "secret_file", "chat_id", "max_in_flight",
               "timeout_s", "max_attempts", "backoff_base_s", "backoff_max_s"}
WEBHOOK_FORMATS = ("json", "slack", "discord", "telegram")
EVENTS = ("open", "update", "close")
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class WebhookTarget:
    name: str
    url: Secret  # chat webhook URLs hold tokens: never logged, printed or put in errors
    format: str
    events: frozenset[str] = frozenset(EVENTS)
    symbols: frozenset[str] = frozenset()  # empty: every symbol
    venues: frozenset[str] = frozenset()  # empty: every venue
    min_net_bps: Decimal | None = None
    min_profit_quote: Decimal | None = None
    cooldown_s: float = 0.0
    secret: Secret | None = None  # json: the Standard Webhooks "whsec_<base64>" secret
    chat_id: str | None = None
    max_in_flight: int = 8
    timeout_s: float = 10.0
    max_attempts: int = 8
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0

    def describe(self) -> str:
        """One line for check-config: where the URL and secret come from, never their values."""
        f = [f"format={self.format}", f"url ({self.url.origin})", f"events={','.join(sorted(self.events))}"]
        if self.secret is not None:
            f.append(f"secret ({self.secret.origin})")
        f.append(f"max_in_flight={self.max_in_flight} max_attempts={self.max_attempts} cooldown_s={self.cooldown_s:g}")
        return f"webhook {self.name}: " + " ".join(f)


@dataclass(frozen=True)
class WebhookSettings:
    targets: dict[str, WebhookTarget] = field(default_factory=dict)
    outbox_stream: str = "webhook_outbox"
    outbox_maxlen: int = 100_000
    dead_letter_stream: str = "webhook_dead_letters"
    consumer: str = "scanner"
    claim_idle_s: float = 60.0


def parse_webhooks(raw: Any, env: Mapping[str, str]) -> WebhookSettings:
    if raw is None:
        return WebhookSettings()
    if not isinstance(raw, dict):
        raise ConfigError("webhooks: must be a mapping with targets: {NAME: {url, format, ...}}")
    _no_unknown(raw, SECTION_KEYS, "webhooks.")
    targets_raw = raw.get("targets") or {}
    if not isinstance(targets_raw, dict):
        raise ConfigError("webhooks.targets: must map a target name to its settings")
    targets = {}
    for name, t in targets_raw.items():
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ConfigError(f"webhooks.targets.{name}: a target name is letters, digits, _ or - (at most 64)")
        targets[name] = _target(name, t, env)
    return WebhookSettings(
        targets=targets,
        outbox_stream=_stream(raw.get("outbox_stream", "webhook_outbox"), "webhooks.outbox_stream"),
        outbox_maxlen=_int(raw.get("outbox_maxlen", 100_000), "webhooks.outbox_maxlen", 100, 100_000_000),
        dead_letter_stream=_stream(raw.get("dead_letter_stream", "webhook_dead_letters"),
                                   "webhooks.dead_letter_stream"),
        consumer=_stream(raw.get("consumer", "scanner"), "webhooks.consumer"),
        claim_idle_s=_number(raw.get("claim_idle_s", 60.0), "webhooks.claim_idle_s", 0, 86_400),
    )


def _stream(v: Any, key: str) -> str:
    if not isinstance(v, str) or not v.strip() or any(c.isspace() for c in v):
        raise ConfigError(f"{key}: must be a non-empty name without spaces; got {v!r}")
    return v


def _target(name: str, t: Any, env: Mapping[str, str]) -> WebhookTarget:
    key = f"webhooks.targets.{name}"
    if not isinstance(t, dict):
        raise ConfigError(f"{key}: must be a mapping with url and format")
    _no_unknown(t, TARGET_KEYS, f"{key}.")
    fmt = t.get("format", "json")
    if fmt not in WEBHOOK_FORMATS:
        raise ConfigError(f"{key}.format: must be one of {', '.join(WEBHOOK_FORMATS)}; got {fmt!r}")
    url = _one_secret(t, "url", key, env, required=True)
    assert url is not None
    if not url.reveal().startswith(("http://", "https://")):
        raise ConfigError(f"{key}.url: must be an http:// or https:// URL ({url.origin})")
    secret = _one_secret(t, "secret", key, env, required=False)
    if secret is not None:
        _check_whsec(secret, f"{key}.secret")
    elif fmt == "json":
        raise ConfigError(f"{key}.secret_env: the json format is signed; set secret_env or secret_file "
                          f"(a Standard Webhooks secret \"whsec_<base64>\")")
    chat_id = t.get("chat_id")
    if fmt == "telegram" and chat_id in (None, ""):
        raise ConfigError(f"{key}.chat_id: the telegram format needs the chat id to send to")
    if chat_id is not None and not isinstance(chat_id, str | int):
        raise ConfigError(f"{key}.chat_id: must be a string or number; got {chat_id!r}")
    events = t.get("events", list(EVENTS))
    if not isinstance(events, list) or not events or any(e not in EVENTS for e in events):
        raise ConfigError(f"{key}.events: must be a non-empty list of {', '.join(EVENTS)}; got {events!r}")
    venues = t.get("venues", [])
    if not isinstance(venues, list) or any(not isinstance(v, str) or not v for v in venues):
        raise ConfigError(f"{key}.venues: must be a list of venue names; got {venues!r}")
    base = _number(t.get("backoff_base_s", 1.0), f"{key}.backoff_base_s", 0.001, 3600)
    return WebhookTarget(
        name=name, url=url, format=str(fmt), events=frozenset(events),
        symbols=frozenset(_symbols(t["symbols"], f"{key}.symbols")) if t.get("symbols") else frozenset(),
        venues=frozenset(venues),
        min_net_bps=_decimal(t["min_net_bps"], f"{key}.min_net_bps") if "min_net_bps" in t else None,
        min_profit_quote=(_decimal(t["min_profit_quote"], f"{key}.min_profit_quote")
                          if "min_profit_quote" in t else None),
        cooldown_s=_number(t.get("cooldown_s", 0.0), f"{key}.cooldown_s", 0, 86_400),
        secret=secret,
        chat_id=None if chat_id is None else str(chat_id),
        max_in_flight=_int(t.get("max_in_flight", 8), f"{key}.max_in_flight", 1, 1000),
        timeout_s=_number(t.get("timeout_s", 10.0), f"{key}.timeout_s", 0.1, 300),
        max_attempts=_int(t.get("max_attempts", 8), f"{key}.max_attempts", 1, 100),
        backoff_base_s=base,
        backoff_max_s=_number(t.get("backoff_max_s", 300.0), f"{key}.backoff_max_s", base, 86_400),
    )


def _one_secret(t: dict[str, Any], what: str, key: str, env: Mapping[str, str], *, required: bool) -> Secret | None:
    """``what`` given inline (url only), by environment variable (``what_env``) or file (``what_file``)."""
    given = [k for k in (what, f"{what}_env", f"{what}_file") if k in t]
    if len(given) > 1:
        raise ConfigError(f"{key}.{given[1]}: set only one of {', '.join(given)}")
    if not given:
        if required:
            raise ConfigError(f"{key}.{what}: required (or {what}_env / {what}_file)")
        return None
    k = given[0]
    v = t[k]
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{key}.{k}: must be a non-empty string")
    if k == what:
        return Secret(v, f"config {key}.{k}")
    if k.endswith("_env"):
        value = env.get(v, "").strip()
        if not value:
            raise ConfigError(f"{key}.{k}: environment variable {v} is not set")
        return Secret(value, f"env {v}")
    try:
        value = Path(v).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{key}.{k}: cannot read {v}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{key}.{k}: {v} is not UTF-8 text") from None
    if not value:
        raise ConfigError(f"{key}.{k}: {v} is empty")
    return Secret(value, f"file {v}")


def _check_whsec(secret: Secret, key: str) -> None:
    value = secret.reveal()
    body = value.removeprefix("whsec_")
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not value.startswith("whsec_") or len(raw) < 16:
        raise ConfigError(f"{key}: ({secret.origin}) must be a Standard Webhooks secret \"whsec_<base64>\" "
                          f"of at least 16 bytes")
