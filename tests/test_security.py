"""Security properties from issue 8: endpoints bind to loopback unless told otherwise, and every webhook
signature check compares in constant time. (The container's non-root ``USER`` is pinned by
tests/test_image.py::test_dockerfile_shape.)"""

from __future__ import annotations

import ast
import base64
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import standardwebhooks

from scanner.config import from_dict, load
from scanner.credentials import Secret
from scanner.sinks.http import HttpEndpoint
from scanner.sinks.metrics import Metrics
from scanner.webhooks import signing

ROOT = Path(__file__).resolve().parents[1]
# names that hold a signature, digest or MAC
SECRETISH = re.compile(r"sig|digest|hmac|(^|_)mac($|_)", re.IGNORECASE)


async def bound_address(host: str) -> str:
    ep = HttpEndpoint(Metrics(), host, 0)
    await ep.start()
    try:
        assert ep._runner is not None
        (addr, port, *_), = ep._runner.addresses
        assert port == ep.port != 0
        return str(addr)
    finally:
        await ep.stop()


async def test_endpoints_bind_to_loopback_by_default() -> None:
    base = {"symbols": ["BTC/USDT"], "venues": {"okx": {}}}
    assert from_dict(base, {}).metrics.host == "127.0.0.1"
    for name in ("default.yaml", "demo.yaml"):
        assert load(ROOT / "configs" / name, env={}).metrics.host == "127.0.0.1"
    assert await bound_address(from_dict(base, {}).metrics.host) == "127.0.0.1"


async def test_bind_address_is_configurable() -> None:
    base = {"symbols": ["BTC/USDT"], "venues": {"okx": {}}, "metrics": {"host": "127.0.0.2"}}
    assert await bound_address(from_dict(base, {}).metrics.host) == "127.0.0.2"
    in_container = from_dict(base, {"SCANNER_METRICS_HOST": "0.0.0.0"})  # deploy/Dockerfile's ENV
    assert await bound_address(in_container.metrics.host) == "0.0.0.0"


def non_constant_time_compares(source: str, filename: str) -> list[str]:
    """``==`` / ``!=`` where either side names a signature, digest or MAC."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Compare):
            continue
        if not any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
            continue
        sides = [node.left, *node.comparators]
        names = [n.id if isinstance(n, ast.Name) else n.attr if isinstance(n, ast.Attribute) else ""
                 for s in sides for n in ast.walk(s) if isinstance(n, ast.Name | ast.Attribute)]
        calls = [ast.unparse(s) for s in sides if isinstance(s, ast.Call)]
        if any(SECRETISH.search(n) for n in names) or any("hmac" in c or "digest" in c for c in calls):
            found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_compare_scan_catches_equality_on_digests() -> None:
    bad = ("def check(sig, expected):\n    return sig == expected\n"
           "def check2(h, body, key):\n    return h != hmac.new(key, body, 'sha256').hexdigest()\n"
           "def check3(msg, headers):\n    return msg.signature == headers['x']\n")
    assert len(non_constant_time_compares(bad, "bad.py")) == 3
    good = ("def check(sig, expected):\n    return hmac.compare_digest(sig, expected)\n"
            "def none(sig):\n    return sig is None\n")
    assert non_constant_time_compares(good, "good.py") == []


def test_no_signature_is_compared_with_equality() -> None:
    files = sorted((ROOT / "scanner").rglob("*.py")) + sorted((ROOT / "tests").glob("*helpers*.py"))
    assert len(files) > 50
    found = [hit for f in files for hit in non_constant_time_compares(f.read_text(), str(f.relative_to(ROOT)))]
    assert found == []
    verify = ast.unparse(ast.parse((ROOT / "scanner/webhooks/signing.py").read_text()))
    assert "hmac.compare_digest(" in verify


SECRET = Secret("whsec_" + base64.b64encode(b"edges-test-key-0123456789abcdef").decode(), "test")


def test_signatures_verify_and_tampering_does_not() -> None:
    body, msg_id, ts = b'{"event":"open","net_bps":"12.5"}', "msg_1-0_ops", 1_700_000_000
    hdrs = signing.headers(SECRET, msg_id, ts, body)
    sig = hdrs["webhook-signature"]
    assert signing.verify(SECRET, msg_id, ts, body, sig)
    assert signing.verify(SECRET, msg_id, ts, body, "v1,bm90LWl0 " + sig)  # key rotation: any entry may match
    tampered_sig = sig[:-4] + ("AAAA" if not sig.endswith("AAAA") else "BBBB")
    other = Secret("whsec_" + base64.b64encode(b"another-key-0123456789abcdefgh").decode(), "test")
    for args in ((msg_id, ts, body + b" ", sig), (msg_id, ts + 1, body, sig), ("msg_2-0_ops", ts, body, sig),
                 (msg_id, ts, body, tampered_sig), (msg_id, ts, body, ""), (msg_id, ts, body, "v1,é")):
        assert not signing.verify(SECRET, *args), args
    assert not signing.verify(other, msg_id, ts, body, sig)
    # the reference implementation agrees (it reads the timestamp against the clock: skip that check)
    wh = standardwebhooks.Webhook(SECRET.reveal())
    assert wh.sign(msg_id, _dt(ts), body.decode()) == sig


def _dt(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@pytest.mark.parametrize("header", ["v1", "v1,", "garbage", "v2," + "A" * 44])
def test_malformed_signature_headers_are_rejected(header: str) -> None:
    assert not signing.verify(SECRET, "m", 1, b"{}", header)
