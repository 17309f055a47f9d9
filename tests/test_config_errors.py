"""Bad input at the edges (issue 8): malformed configs, unknown venues and symbols, bad API key settings.

Every malformed config goes through the real CLI entry point of each command that reads one (``run``,
``collect``, ``detect``, ``demo``, ``check-config``): the exit code is 2, stderr names the dotted key and
the problem, and no traceback escapes. A few run as real subprocesses to pin the process exit code.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scanner import cli

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("check-config", "run", "collect", "detect", "demo")
GOOD = "symbols: [BTC/USDT]\nvenues: {okx: {}, binance: {}}\n"
SECRET_LIKE = "hunter2-PLANTED-7f3a"  # never echoed, even in an error about its URL

# (id, YAML text, the key the error must name, the problem it must state)
CASES: list[tuple[str, str, str, str]] = [
    # wrong types
    ("symbols-a-string", "symbols: BTC/USDT\nvenues: {okx: {}}\n", "symbols:", "non-empty list"),
    ("symbol-not-unified", "symbols: [BTCUSDT]\nvenues: {okx: {}}\n", "symbols[0]:", "not a unified symbol"),
    ("symbol-twice", "symbols: [BTC/USDT, btc/usdt]\nvenues: {okx: {}}\n", "symbols:", "twice"),
    ("venues-a-list", "symbols: [BTC/USDT]\nvenues: [okx]\n", "venues:", "must map"),
    ("venue-a-string", GOOD.replace("okx: {}", "okx: fast"), "venues.okx:", "must be a mapping"),
    ("watchdog-word", GOOD.replace("okx: {}", "okx: {watchdog_s: fast}"), "venues.okx.watchdog_s:",
     "must be a number"),
    ("enabled-string", GOOD.replace("okx: {}", "okx: {enabled: 'yes'}"), "venues.okx.enabled:", "true or false"),
    ("redis-a-list", GOOD + "redis: [a]\n", "redis:", "must be a mapping"),
    ("metrics-port-word", GOOD + "metrics: {port: http}\n", "metrics.port:", "must be a number"),
    ("metrics-host-number", GOOD + "metrics: {host: 5}\n", "metrics.host:", "host name or address"),
    ("log-level", GOOD + "log_level: LOUD\n", "log_level:", "must be one of"),
    ("refresh-string", GOOD + "markets: {refresh: 'no'}\n", "markets.refresh:", "true or false"),
    ("cache-dir-list", GOOD + "markets: {cache_dir: [1]}\n", "markets.cache_dir:", "directory path"),
    ("fee-mode", GOOD + "fees: sometimes\n", "fees.mode:", "must be one of"),
    ("webhook-format", GOOD + "webhooks: {targets: {ops: {url: 'https://h/x', format: xml}}}\n",
     "webhooks.targets.ops.format:", "must be one of"),
    ("quote-groups", GOOD + "detector: {quote_groups: 5}\n", "detector.quote_groups:", "list of quote-code lists"),
    ("transfer-ttl", GOOD + "transfers: {ttl_s: 1}\n", "transfers.ttl_s:", "between 10 and 604800"),
    # unknown keys
    ("unknown-top", GOOD + "detectr: {}\n", "detectr:", "unknown setting"),
    ("unknown-venue-key", GOOD.replace("okx: {}", "okx: {wsurl: 'ws://h'}"), "venues.okx.wsurl:",
     "unknown setting"),
    ("unknown-redis-key", GOOD + "redis: {pasword: x}\n", "redis.pasword:", "unknown setting"),
    ("unknown-fees-key", GOOD + "fees: {mode: auto, timout_s: 3}\n", "fees.timout_s:", "unknown setting"),
    ("unknown-webhook-key", GOOD + "webhooks: {targets: {ops: {url: 'https://h/x', format: slack, colour: red}}}\n",
     "webhooks.targets.ops.colour:", "unknown setting"),
    # negative and out-of-range numbers
    ("negative-age", GOOD + "detector: {max_book_age_ms: -5}\n", "detector.max_book_age_ms:", "between 1 and"),
    ("negative-fee", GOOD.replace("okx: {}", "okx: {taker_fee: -0.001}"), "venues.okx.taker_fee:",
     "fraction in [0, 0.05)"),
    ("negative-depth", GOOD + "redis: {book_depth: -1}\n", "redis.book_depth:", "between 1 and 400"),
    ("negative-notional", GOOD + "detector: {max_notional_quote: -10}\n", "detector.max_notional_quote:",
     "positive"),
    ("negative-timeout", GOOD + "fees: {timeout_s: -1}\n", "fees.timeout_s:", "between 0.1 and 300"),
    ("nan", GOOD.replace("okx: {}", "okx: {watchdog_s: .nan}"), "venues.okx.watchdog_s:", "between"),
    ("inf", GOOD + "metrics: {port: .inf}\n", "metrics.port:", "between 0 and 65535"),
    ("port-too-big", GOOD + "metrics: {port: 70000}\n", "metrics.port:", "between 0 and 65535"),
    ("fractional-int", GOOD + "detector: {min_duration_ms: 2.5}\n", "detector.min_duration_ms:", "whole number"),
    # bad URLs
    ("ws-url-scheme", GOOD.replace("okx: {}", "okx: {ws_url: 'https://ws.okx.com'}"), "venues.okx.ws_url:",
     "ws:// or wss://"),
    ("ws-url-no-host", GOOD.replace("okx: {}", "okx: {ws_url: 'ws://'}"), "venues.okx.ws_url:", "no host name"),
    ("ws-url-port", GOOD.replace("okx: {}", "okx: {ws_url: 'ws://h:port/ws'}"), "venues.okx.ws_url:",
     "port must be a number"),
    ("rest-url-scheme", GOOD.replace("okx: {}", "okx: {rest_url: 'ws://h'}"), "venues.okx.rest_url:",
     "http:// or https://"),
    ("redis-url-scheme", GOOD + f"redis: {{url: 'http://u:{SECRET_LIKE}@h:6379'}}\n", "redis.url:",
     "redis:// or rediss://"),
    ("redis-url-port", GOOD + "redis: {url: 'redis://127.0.0.1:notaport/0'}\n", "redis.url:",
     "port must be a number"),
    ("redis-url-range", GOOD + f"redis: {{url: 'redis://:{SECRET_LIKE}@h:99999/0'}}\n", "redis.url:",
     "port must be a number from 0 to 65535"),
    ("redis-url-db", GOOD + "redis: {url: 'unix:///run/redis.sock?db=first'}\n", "redis.url:",
     "not a valid Redis URL: Invalid value for 'db'"),
    ("webhook-url", GOOD + "webhooks: {targets: {ops: {url: 'ftp://h/x', format: slack}}}\n",
     "webhooks.targets.ops.url:", "http:// or https://"),
    # missing required
    ("empty-file", "", "symbols:", "non-empty list"),
    ("no-venues", "symbols: [BTC/USDT]\n", "venues:", "at least one venue"),
    ("all-disabled", "symbols: [BTC/USDT]\nvenues: {okx: {enabled: false}}\n", "venues:", "every venue is disabled"),
    ("webhook-no-url", GOOD + "webhooks: {targets: {ops: {format: slack}}}\n", "webhooks.targets.ops.url:",
     "required"),
    ("webhook-unsigned-json", GOOD + "webhooks: {targets: {ops: {url: 'https://h/x', format: json}}}\n",
     "webhooks.targets.ops.secret_env:", "signed"),
    ("webhook-secret-env-unset", GOOD + "webhooks: {targets: {ops: {url: 'https://h/x', secret_env: NO_SUCH_VAR_8}}}\n",
     "webhooks.targets.ops.secret_env:", "NO_SUCH_VAR_8 is not set"),
    # unknown venue
    ("unknown-venue", "symbols: [BTC/USDT]\nvenues: {krakn: {}}\n", "venues.krakn:", "unknown venue"),
    ("unknown-ccxt-venue", "symbols: [BTC/USDT]\nvenues: {'ccxtpro:okxx': {}}\n", "venues.ccxtpro:okxx:",
     "not a ccxt.pro exchange; did you mean ccxtpro:okx"),
    ("unknown-identity-venue", GOOD + "transfers: {identity: {krakn: {deny: [PURR/USDC]}}}\n",
     "transfers.identity.krakn:", "not a configured venue"),
    # the file itself
    ("yaml-syntax", "symbols: [BTC/USDT\nvenues: {okx: {}}\n", "bad.yaml:", "not valid YAML"),
    ("yaml-tab", "symbols: [BTC/USDT]\nvenues:\n\tokx: {}\n", "bad.yaml:", "not valid YAML"),
    ("top-level-list", "- symbols\n- venues\n", "bad.yaml:", "top level must be a mapping"),
]


def _write(tmp_path: Path, text: str | bytes) -> Path:
    f = tmp_path / "bad.yaml"
    if isinstance(text, bytes):
        f.write_bytes(text)
    else:
        f.write_text(text)
    return f


def _run_all(path: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Each command's stderr; each must exit 2 without a traceback."""
    errs = []
    for command in COMMANDS:
        assert cli.main([command, "--config", path]) == 2, command
        out = capsys.readouterr()
        assert "Traceback" not in out.out + out.err, (command, out.err)
        assert out.err.startswith("config error: "), (command, out.err)
        errs.append(out.err)
    return errs


@pytest.mark.parametrize(("text", "key", "problem"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_config_names_key_and_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str], text: str, key: str,
                                                problem: str) -> None:
    for var in ("SCANNER_REDIS_URL", "SCANNER_METRICS_HOST", "SCANNER_METRICS_PORT", "SCANNER_LOG_LEVEL",
                "SCANNER_SYMBOLS"):
        monkeypatch.delenv(var, raising=False)
    for err in _run_all(str(_write(tmp_path, text)), capsys):
        message = err.removeprefix("config error: ")
        if key.endswith(".yaml:"):  # about the file: its path comes first
            assert message.startswith(str(tmp_path / key[:-1]) + ":"), err
        else:
            assert message.startswith(key + " "), err
        assert problem in message, err
        assert SECRET_LIKE not in err


def test_unreadable_config_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A directory, bytes that are not UTF-8, and a missing file: a message naming the path, no traceback."""
    (tmp_path / "dir.yaml").mkdir()
    cases = {str(tmp_path / "dir.yaml"): "cannot read the config file",
             str(_write(tmp_path, GOOD.encode() + b"# \xff\xfe\n")): "not UTF-8 text",
             str(tmp_path / "missing.yaml"): "does not exist"}
    for path, problem in cases.items():
        for err in _run_all(path, capsys):
            assert path in err and problem in err, err


@pytest.mark.parametrize("command", ["run", "check-config", "demo"])
def test_cli_process_exit_code_without_traceback(tmp_path: Path, command: str) -> None:
    """The installed entry point as a real process: exit status 2, one line on stderr, nothing else."""
    bad = _write(tmp_path, GOOD.replace("okx: {}", "okx: {ws_url: 'https://ws.okx.com'}"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCANNER_")}
    done = subprocess.run([sys.executable, "-m", "scanner", command, "--config", str(bad)], capture_output=True,
                          text=True, timeout=60, env=env, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "config error: venues.okx.ws_url: must be a URL starting with ws:// or wss://; got 'https://ws.okx.com'"]
    assert "Traceback" not in done.stdout


# API key settings (scanner/credentials.py): errors name the venue and the variable or file, never the value.
KEY, SECRET = "PLANTED-edges-key-93c1d0", "PLANTED-edges-secret-4e8f22"


def _key_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, case: str) -> tuple[str, str]:
    """Set up one broken key configuration; returns (the variable the error must name, the problem)."""
    for var in list(os.environ):
        if var.endswith(("_API_KEY", "_API_SECRET", "_API_PASSPHRASE", "_API_KEY_FILE", "_API_SECRET_FILE",
                         "_API_PASSPHRASE_FILE")):
            monkeypatch.delenv(var)
    if case == "half":
        monkeypatch.setenv("BINANCE_API_KEY", KEY)
        return "BINANCE_API_SECRET", "binance API keys need both BINANCE_API_KEY and BINANCE_API_SECRET"
    if case == "both":
        (tmp_path / "key").write_text(KEY)
        monkeypatch.setenv("BINANCE_API_KEY", KEY)
        monkeypatch.setenv("BINANCE_API_KEY_FILE", str(tmp_path / "key"))
        monkeypatch.setenv("BINANCE_API_SECRET", SECRET)
        return "BINANCE_API_KEY", "set both BINANCE_API_KEY and BINANCE_API_KEY_FILE"
    if case == "no-passphrase":
        monkeypatch.setenv("OKX_API_KEY", KEY)
        monkeypatch.setenv("OKX_API_SECRET", SECRET)
        return "OKX_API_PASSPHRASE", "okx API keys need a passphrase"
    if case == "missing-file":
        monkeypatch.setenv("BINANCE_API_KEY", KEY)
        monkeypatch.setenv("BINANCE_API_SECRET_FILE", str(tmp_path / "nope"))
        return "BINANCE_API_SECRET_FILE", f"cannot read {tmp_path / 'nope'}: No such file"
    if case == "empty-file":
        (tmp_path / "empty").write_text("\n")
        monkeypatch.setenv("BINANCE_API_KEY", KEY)
        monkeypatch.setenv("BINANCE_API_SECRET_FILE", str(tmp_path / "empty"))
        return "BINANCE_API_SECRET_FILE", f"{tmp_path / 'empty'} is empty"
    assert case == "binary-file"
    (tmp_path / "bin").write_bytes(SECRET.encode() + b"\xff\xfe")
    monkeypatch.setenv("BINANCE_API_KEY", KEY)
    monkeypatch.setenv("BINANCE_API_SECRET_FILE", str(tmp_path / "bin"))
    return "BINANCE_API_SECRET_FILE", "is not UTF-8 text"


@pytest.mark.parametrize("case", ["half", "both", "no-passphrase", "missing-file", "empty-file", "binary-file"])
def test_bad_api_key_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                              case: str) -> None:
    var, problem = _key_env(monkeypatch, tmp_path, case)
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    for err in _run_all(str(good), capsys):
        assert err.startswith(f"config error: {var}: "), err
        assert problem in err, err
        assert KEY not in err and SECRET not in err


async def test_symbol_a_venue_does_not_list(redis_url: str, market_cache: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """A configured symbol a venue does not list is a warning naming venue and symbol; the venue runs the
    rest. A venue that lists none of its symbols is left out, and with no venue left the start fails."""
    from scanner.app import COLLECT, Pipeline
    from scanner.config import from_dict

    def pipeline(symbols: list[str]) -> Pipeline:
        return Pipeline(from_dict({"symbols": symbols, "venues": {"okx": {}, "kraken": {}},
                                   "redis": {"url": redis_url}, "metrics": {"port": 0},
                                   "markets": {"cache_dir": str(market_cache), "refresh": False}}, {}), {COLLECT})

    caplog.set_level(logging.WARNING, logger="scanner")
    p = pipeline(["BTC/USDT", "NOSUCHCOIN/USDT"])
    await p.build_collectors()
    assert set(p.collectors) == {"okx", "kraken"}
    assert "okx: does not list NOSUCHCOIN/USDT" in caplog.text
    assert "kraken: does not list NOSUCHCOIN/USDT" in caplog.text
    assert "does not list BTC/USDT" not in caplog.text
    await p.redis.aclose()

    caplog.clear()
    p = pipeline(["NOSUCHCOIN/USDT"])
    with pytest.raises(RuntimeError, match="no venue could be started"):
        await p.run(asyncio.Event())
    assert "okx: none of the configured symbols is listed; venue left out" in caplog.text
