"""deploy/prometheus: the config and alert rules pass promtool, the rule unit tests pass, and every
metric the rules use is one the scanner really exports."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from scanner.sinks.metrics import Metrics

PROM = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
# series Prometheus makes itself, not the scanner
BUILTIN_SERIES = {"up"}


def promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI (.ci/run installs Debian's prometheus package)")
        pytest.skip("promtool not installed (apt-get install prometheus): rules not checked")
    return tool


def run(*args: str) -> str:
    res = subprocess.run([promtool(), *args], cwd=PROM, capture_output=True, text=True, timeout=60, check=False)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    return out


def test_promtool_check_config_and_rules() -> None:
    assert "SUCCESS" in run("check", "config", "prometheus.yml")
    out = run("check", "rules", "rules.yml")
    assert f"SUCCESS: {len(alerts())} rules found" in out


def test_promtool_unit_tests_cover_every_alert() -> None:
    tests = yaml.safe_load((PROM / "rules_test.yml").read_text())
    covered: dict[str, set[bool]] = {}
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            covered.setdefault(check["alertname"], set()).add(bool(check["exp_alerts"]))
    for name in alerts():
        assert covered.get(name) == {True, False}, f"{name}: needs a firing and a silent case"
    assert "SUCCESS" in run("test", "rules", "rules_test.yml")


def alerts() -> dict[str, dict[str, object]]:
    doc = yaml.safe_load((PROM / "rules.yml").read_text())
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


def test_alerts_are_labelled_and_annotated() -> None:
    rules = alerts()
    assert {"ScannerFeedDown", "ScannerFeedStale", "ScannerBooksInvalid", "ScannerResyncStorm",
            "ScannerRedisErrors", "ScannerWebhookDeadLetters", "ScannerNoEvaluations",
            "ScannerDetectLatencyHigh"} <= set(rules)
    for name, rule in rules.items():
        labels, notes = rule["labels"], rule["annotations"]
        assert isinstance(labels, dict) and labels["severity"] in {"warning", "critical"}, name
        assert isinstance(notes, dict) and notes.get("summary") and notes.get("description"), name
        if "by (venue)" in str(rule["expr"]):
            assert "{{ $labels.venue }}" in notes["summary"], name


def exported_series() -> set[str]:
    """Series names in a scrape of a Metrics() with one sample in every labelled family."""
    m = Metrics()
    for metric in vars(m).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        child = metric.labels(*["x"] * len(metric._labelnames)) if metric._labelnames else metric
        if isinstance(child, Counter):
            child.inc()
        elif isinstance(child, Gauge):
            child.set(1)
        elif isinstance(child, Histogram):
            child.observe(0.01)
    m.add_book_source(lambda: [("okx", "BTC/USDT", 1, 1, True)])
    text = m.render().decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_every_metric_in_the_rules_is_exported() -> None:
    exported = exported_series()
    assert "scanner_book_valid" in exported and "scanner_detect_latency_seconds_bucket" in exported
    used: set[str] = set()
    for rule in alerts().values():
        expr = str(rule["expr"])
        used |= set(re.findall(r"\bscanner_[a-z0-9_]+", expr))
        used |= {n for n in BUILTIN_SERIES if re.search(rf"\b{n}\b(?!\s*\()", expr)}
    assert {"scanner_connections", "scanner_resyncs_total", "scanner_evaluations_total"} <= used
    missing = sorted(used - exported - BUILTIN_SERIES)
    assert not missing, f"rules.yml uses metrics the scanner does not export: {missing}"


def test_prometheus_scrapes_the_compose_services() -> None:
    conf = yaml.safe_load((PROM / "prometheus.yml").read_text())
    assert conf["rule_files"] == ["rules.yml"]
    targets = {t for job in conf["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert {"scanner-collect:9108", "scanner-detect:9108"} <= targets
