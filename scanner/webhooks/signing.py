"""Standard Webhooks signing (https://www.standardwebhooks.com/).

Each request carries ``webhook-id`` (stable for one event and one target, across retries and
replays, so receivers can deduplicate), ``webhook-timestamp`` (unix seconds of this attempt) and
``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed with the
base64-decoded part of the ``whsec_<base64>`` secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from scanner.credentials import Secret


def secret_key(secret: Secret) -> bytes:
    """The HMAC key: the base64 after ``whsec_`` (validated by scanner/config_webhooks.py)."""
    return base64.b64decode(secret.reveal().removeprefix("whsec_"))


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret: Secret, msg_id: str, timestamp: int, body: bytes, header: str) -> bool:
    """A receiver's check of a ``webhook-signature`` header (space-separated ``v1,<base64>`` entries):
    True when one of them is this body's signature. Compared in constant time (``hmac.compare_digest``)."""
    expected = signature(secret_key(secret), msg_id, timestamp, body).encode()
    return any(hmac.compare_digest(expected, part.encode()) for part in header.split() if part.isascii())


def headers(secret: Secret | None, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers (no signature when the target has no secret)."""
    out = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if secret is not None:
        out["webhook-signature"] = signature(secret_key(secret), msg_id, timestamp, body)
    return out


def webhook_id(entry_id: str, target: str) -> str:
    """Stable per (outbox entry, target): the same on every retry, after a restart and on replay."""
    return f"msg_{entry_id}_{target}"
