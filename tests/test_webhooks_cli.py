"""Webhook settings (errors name the key; secrets never shown), Standard Webhooks signing checked
with the ``standardwebhooks`` library, and ``scanner webhooks test | dead | replay``."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from scanner import cli
from scanner.app import describe
from scanner.config import ConfigError, Settings, from_dict
from scanner.credentials import Secret
from scanner.webhooks import signing
from scanner.webhooks.cli import send_test
from tests.webhook_helpers import SECRET_ENV, Receiver, new_secret

BASE: dict[str, Any] = {"symbols": ["BTC/USDT"], "venues": {"okx": {}}}


def settings_with(redis_url: str, url: str, secret: str, **target: Any) -> Settings:
    return from_dict({**BASE, "redis": {"url": redis_url}, "webhooks": {"targets": {"desk": {
        "url": url, "format": "json", "secret_env": SECRET_ENV, **target}}}}, {SECRET_ENV: secret})


def test_signature_verifies_with_standardwebhooks_and_tampering_fails() -> None:
    secret = new_secret()
    body = b'{"type":"opportunity.open","data":{"profit_quote":"49.80"}}'
    h = signing.headers(Secret(secret, "test"), "msg_1-0_desk", 1_700_000_000, body)
    assert h["webhook-signature"].startswith("v1,")
    wh = Webhook(secret)
    with pytest.raises(WebhookVerificationError):  # an old timestamp is refused by the library...
        wh.verify(body, h)
    h = signing.headers(Secret(secret, "test"), "msg_1-0_desk", int(time.time()), body)
    assert wh.verify(body, h) == orjson.loads(body)  # ...a fresh one verifies
    with pytest.raises(WebhookVerificationError):
        wh.verify(body.replace(b"49.80", b"49.81"), h)
    assert signing.webhook_id("1-0", "desk") == "msg_1-0_desk"


def test_defaults_and_no_webhooks() -> None:
    s = from_dict(BASE, {})
    assert s.webhooks.targets == {} and s.webhooks.outbox_stream == "webhook_outbox"
    s = from_dict({**BASE, "webhooks": {"targets": {"chat": {
        "url_env": "SLACK_URL", "format": "slack"}}}}, {"SLACK_URL": "https://hooks.slack.test/T0/B0/tok3n"})
    t = s.webhooks.targets["chat"]
    assert (t.format, t.events, t.max_in_flight, t.max_attempts, t.timeout_s, t.secret) == \
        ("slack", frozenset({"open", "update", "close"}), 8, 8, 10.0, None)
    text = describe(s) + repr(s)
    assert "tok3n" not in text and "url (env SLACK_URL)" in text


@pytest.mark.parametrize(("target", "env", "key"), [
    ({"format": "json", "secret_env": "S"}, {"S": "whsec_" + base64.b64encode(b"k" * 24).decode()},
     "webhooks.targets.desk.url"),
    ({"url": "https://x.test", "format": "teams"}, {}, "webhooks.targets.desk.format"),
    ({"url": "https://x.test"}, {}, "webhooks.targets.desk.secret_env"),
    ({"url": "https://x.test", "secret_env": "S"}, {"S": "not-a-whsec-secret"}, "webhooks.targets.desk.secret"),
    ({"url": "https://x.test", "secret_env": "S"}, {}, "webhooks.targets.desk.secret_env"),
    ({"url": "https://x.test", "format": "telegram"}, {}, "webhooks.targets.desk.chat_id"),
    ({"url": "ftp://x.test", "format": "slack"}, {}, "webhooks.targets.desk.url"),
    ({"url": "https://x.test", "format": "slack", "events": ["opened"]}, {}, "webhooks.targets.desk.events"),
    ({"url": "https://x.test", "format": "slack", "max_in_flight": 0}, {}, "webhooks.targets.desk.max_in_flight"),
    ({"url": "https://x.test", "format": "slack", "min_net_bps": "x"}, {}, "webhooks.targets.desk.min_net_bps"),
    ({"url": "https://x.test", "format": "slack", "retries": 3}, {}, "webhooks.targets.desk.retries"),
    ({"url": "https://x.test", "url_env": "U", "format": "slack"}, {"U": "https://y.test"},
     "webhooks.targets.desk.url_env"),
])
def test_errors_name_the_key_and_never_the_secret(target: dict[str, Any], env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_dict({**BASE, "webhooks": {"targets": {"desk": target}}}, env)
    assert str(err.value).startswith(key), str(err.value)
    assert "not-a-whsec-secret" not in str(err.value)


def test_secret_file_and_unknown_section_key(tmp_path: Path) -> None:
    f = tmp_path / "secret"
    secret = new_secret()
    f.write_text(secret + "\n")
    s = from_dict({**BASE, "webhooks": {"targets": {"d": {"url": "https://x.test", "secret_file": str(f)}}}}, {})
    t = s.webhooks.targets["d"]
    assert t.secret is not None and t.secret.reveal() == secret and secret not in describe(s) + repr(s)
    with pytest.raises(ConfigError, match=r"^webhooks\.outbox"):
        from_dict({**BASE, "webhooks": {"outbox": "x"}}, {})


async def test_webhooks_test_sends_a_signed_sample(capsys: pytest.CaptureFixture[str]) -> None:
    secret = new_secret()
    rx = await Receiver(secret).start()
    try:
        s = settings_with("redis://127.0.0.1:1/0", rx.url, secret)
        assert await send_test(s.webhooks.targets["desk"]) == 0
    finally:
        await rx.stop()
    assert len(rx.arrivals) == 1 and rx.bad_signatures == 0
    assert orjson.loads(rx.arrivals[0].body)["type"] == "opportunity.open"
    out = capsys.readouterr().out
    assert "desk: HTTP 200" in out and secret not in out


def test_cli_dead_and_replay_arguments(redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**BASE, "redis": {"url": redis_url}, "webhooks": {"targets": {"desk": {
        "url": "https://x.test/hook", "format": "slack"}}}}))
    assert cli.main(["webhooks", "--config", str(cfg), "dead"]) == 0
    assert "0 dead letter(s)" in capsys.readouterr().out
    assert cli.main(["webhooks", "--config", str(cfg), "replay"]) == 2  # ids or --all
    assert cli.main(["webhooks", "--config", str(cfg), "dead", "--target", "nope"]) == 2
    assert cli.main(["webhooks", "--config", str(cfg), "replay", "--all"]) == 0
    assert "replayed 0, still failing 0" in capsys.readouterr().out
