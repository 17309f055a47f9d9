"""Optional read-only API keys, from the environment or from secret files (Docker-secrets style).

Convention per venue ``<V>`` (the venue name upper-cased: ``OKX``, ``BINANCE``):
``<V>_API_KEY``, ``<V>_API_SECRET`` and, where the venue needs one, ``<V>_API_PASSPHRASE``. Each may
instead be given as ``<V>_API_KEY_FILE`` (and so on): a path whose content (trailing newline
dropped) is the value. Values are wrapped in :class:`Secret`, whose ``repr``/``str`` never shows
them; errors name the variable and the file, never the content. Keys are only ever used for
reading account fee rates and key permissions (scanner/fee_auto.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# venues whose API keys come with a passphrase (ccxt ``password``)
PASSPHRASE_VENUES = frozenset({"okx", "kucoin", "bitget"})
# venues with no key/secret pair to read rates with (Hyperliquid signs with a wallet)
NO_API_KEYS = frozenset({"hyperliquid"})


class CredentialError(ValueError):
    """A key set incompletely, twice, or unreadable; the message names the variable."""


class Secret:
    """A secret string that never shows itself: ``reveal()`` is the one way to the value."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str) -> None:
        self._value = value
        self.origin = origin  # "env OKX_API_KEY" or "file /run/secrets/okx_key (OKX_API_KEY_FILE)"

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(hidden, {self.origin})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class ApiCredentials:
    venue: str
    key: Secret
    secret: Secret
    passphrase: Secret | None = None

    def describe(self) -> str:
        """``api key: set (env OKX_API_KEY)``: where each part comes from, never a value."""
        parts = [f"api key: set ({self.key.origin})", f"secret ({self.secret.origin})"]
        if self.passphrase is not None:
            parts.append(f"passphrase ({self.passphrase.origin})")
        return ", ".join(parts)

    def ccxt_options(self) -> dict[str, str]:
        """The ccxt constructor fields. The result holds the values: never log it."""
        out = {"apiKey": self.key.reveal(), "secret": self.secret.reveal()}
        if self.passphrase is not None:
            out["password"] = self.passphrase.reveal()
        return out

    def values(self) -> list[str]:
        """Every secret value, to scrub from error text before it is logged."""
        return [s.reveal() for s in (self.key, self.secret, self.passphrase) if s is not None]


def env_prefix(venue: str) -> str:
    return venue.upper().replace(":", "_").replace("-", "_")


def _read(env: Mapping[str, str], var: str) -> Secret | None:
    direct, path = env.get(var), env.get(var + "_FILE")
    if direct and path:
        raise CredentialError(f"{var}: set both {var} and {var}_FILE; use one")
    if direct:
        return Secret(direct.strip(), f"env {var}")
    if path:
        try:
            value = Path(path).read_text().strip()
        except OSError as exc:
            raise CredentialError(f"{var}_FILE: cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise CredentialError(f"{var}_FILE: {path} is not UTF-8 text") from None
        if not value:
            raise CredentialError(f"{var}_FILE: {path} is empty")
        return Secret(value, f"file {path} ({var}_FILE)")
    return None


def load_credentials(venue: str, env: Mapping[str, str]) -> ApiCredentials | None:
    """The venue's keys, or None when none is configured. Half a set is an error."""
    if venue in NO_API_KEYS:
        return None
    p = env_prefix(venue)
    key, secret = _read(env, f"{p}_API_KEY"), _read(env, f"{p}_API_SECRET")
    passphrase = _read(env, f"{p}_API_PASSPHRASE")
    if key is None and secret is None and passphrase is None:
        return None
    if key is None or secret is None:
        missing = f"{p}_API_KEY" if key is None else f"{p}_API_SECRET"
        raise CredentialError(f"{missing}: {venue} API keys need both {p}_API_KEY and {p}_API_SECRET "
                              f"(or their _FILE forms)")
    if venue in PASSPHRASE_VENUES and passphrase is None:
        raise CredentialError(f"{p}_API_PASSPHRASE: {venue} API keys need a passphrase too")
    return ApiCredentials(venue, key, secret, passphrase)
