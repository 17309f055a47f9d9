"""Helpers for tests/test_dashboards.py: the dashboards and their exprs, the metric names the scanner
exports, a 200-answering webhook receiver, a temp demo config on free ports, and a Prometheus HTTP API
client. Waiting is polling with deadlines, never sleeping for synchronisation."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import yaml
from prometheus_client import CollectorRegistry

from scanner.redis_server import free_port
from scanner.sinks.metrics import Metrics

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GRAFANA = PROJECT_ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
METRIC_RE = re.compile(r"\bscanner_[a-z0-9_]+\b")
# Grafana's built-in interval variables, given values that suit a 1 s scrape interval.
BUILTINS = {"$__rate_interval": "15s", "$__interval": "5s", "$__range": "1m"}
T = TypeVar("T")


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def panel_exprs() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title / refId, expr) for every target of every panel."""
    out = []
    for path in DASHBOARDS:
        for panel in load(path)["panels"]:
            for target in panel.get("targets", []):
                out.append((path.name, f"{panel['title']} / {target['refId']}", str(target["expr"])))
    return out


def substitute(expr: str, symbol: str, venue: str) -> str:
    for k, v in BUILTINS.items():
        expr = expr.replace(k, v)
    return expr.replace("$symbol", re.escape(symbol)).replace("$venue", re.escape(venue))


def exported_names(registry: CollectorRegistry | None = None) -> set[str]:
    """Every series name the registry can expose (counters' ``_total``, histograms' ``_bucket``/``_sum``/
    ``_count``), from the family definitions, so unused labelled families count too."""
    names = set()
    for fam in (registry or Metrics().registry).collect():
        if fam.type == "counter":
            names.add(fam.name + "_total")
        elif fam.type == "histogram":
            names.update(fam.name + s for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(fam.name)
    return names


def scraped_names(text: str) -> set[str]:
    """Series names in a Prometheus text exposition."""
    return {m.group(0) for line in text.splitlines() if not line.startswith("#")
            for m in [re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)] if m}


def referenced_names(expr: str) -> set[str]:
    return set(METRIC_RE.findall(expr))


def poll(what: str, check: Callable[[], T | None], deadline_s: float, every_s: float = 0.25) -> T:
    """Call ``check`` until it returns something other than None; fail with ``what`` at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        got = check()
        if got is not None:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline_s:g} s waiting for {what}")
        time.sleep(every_s)  # the interval between polls of a condition that has a deadline


def http_get(url: str, timeout: float = 2.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body: bytes = r.read()
            return body.decode()
    except (urllib.error.URLError, OSError):
        return None


def http_post_json(url: str, body: dict[str, Any]) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        status: int = r.status
        return status


def prom_query(base: str, expr: str) -> list[dict[str, Any]] | None:
    """``/api/v1/query`` result vector, or None if Prometheus did not answer."""
    text = http_get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=5)
    if text is None:
        return None
    data = json.loads(text)
    if data.get("status") != "success":
        raise AssertionError(f"query failed: {expr}: {data.get('error')}")
    result: list[dict[str, Any]] = data["data"]["result"]
    return result


class _Ok(BaseHTTPRequestHandler):
    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received += 1
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def webhook_receiver() -> Iterator[str]:
    """A local HTTP server answering 200 to every POST; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def demo_config(tmp: Path, venues: list[str], redis_url: str, hook_url: str, secret_env: str) -> tuple[Path, int]:
    """configs/demo.yaml narrowed to ``venues`` with every simulator and the metrics endpoint on free
    ports, a private market cache, and two webhook targets: ``desk`` (a receiver answering 200) and
    ``down`` (a closed port, two attempts: every event is retried once, then dead-lettered)."""
    cfg = yaml.safe_load((PROJECT_ROOT / "configs" / "demo.yaml").read_text())
    for name in list(cfg["venues"]):
        if name not in venues:
            del cfg["venues"][name]
            continue
        port = free_port()
        for key in ("ws_url", "rest_url"):
            u = urllib.parse.urlsplit(cfg["venues"][name][key])
            cfg["venues"][name][key] = urllib.parse.urlunsplit(u._replace(netloc=f"127.0.0.1:{port}"))
    metrics_port = free_port()
    cfg["metrics"] = {"host": "127.0.0.1", "port": metrics_port}
    cfg["redis"] = {"url": redis_url}
    shutil.copytree(PROJECT_ROOT / "configs" / "markets", tmp / "markets")
    cfg["markets"] = {"refresh": True, "cache_dir": str(tmp / "markets")}
    cfg["log_level"] = "WARNING"
    cfg["webhooks"] = {"targets": {
        "desk": {"url": hook_url, "format": "json", "secret_env": secret_env, "timeout_s": 2},
        "down": {"url": f"http://127.0.0.1:{free_port()}/hook", "format": "json", "secret_env": secret_env,
                 "timeout_s": 1, "max_attempts": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.01},
    }}
    path = tmp / "demo.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path, metrics_port


def sim_port(config: Path, venue: str) -> int:
    cfg = yaml.safe_load(config.read_text())
    port = urllib.parse.urlsplit(str(cfg["venues"][venue]["rest_url"])).port
    assert port is not None
    return int(port)


def prometheus_config(tmp: Path, metrics_port: int) -> Path:
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "scanner", "scrape_interval": "1s", "scrape_timeout": "1s",
                            "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}],
    }))
    return path
