"""deploy/k8s/: every manifest valid for Kubernetes (``kubernetes-validate``, strict), the ServiceMonitor
(a CRD it has no schema for) checked structurally, and the ConfigMap's configs loadable by the scanner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from scanner import config as config_mod

K8S = Path(__file__).resolve().parents[1] / "deploy" / "k8s"
GROUPS = {"group-a": {"okx", "binance", "bybit", "coinbase"}, "group-b": {"kraken", "gate", "kucoin", "bitget"},
          "group-c": {"htx", "mexc", "hyperliquid"}}


def docs() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        out.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return out


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in docs() if d["kind"] == kind]


def test_manifests_validate() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (dev extra)")
    checked = 0
    for d in docs():
        if d["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: no schema in kubernetes-validate, checked in test_servicemonitor
        kv.validate(d, "1.30.0", strict=True)
        checked += 1
    assert checked >= 9


def test_servicemonitor_selects_the_metrics_service() -> None:
    (sm,) = by_kind("ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    svc = next(s for s in by_kind("Service") if s["metadata"]["name"] == "scanner-metrics")
    labels = svc["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] in {p["name"] for p in svc["spec"]["ports"]} and ep["path"] == "/metrics"


def test_deployments_probes_resources_security() -> None:
    deps = {d["metadata"]["name"]: d for d in by_kind("Deployment")}
    assert set(deps) == {f"collect-{g}" for g in GROUPS} | {"detect"}
    for name, d in deps.items():
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        (c,) = pod["containers"]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"], name
        assert c["args"][0] == ("detect" if name == "detect" else "collect"), name
    (sts,) = by_kind("StatefulSet")
    assert sts["metadata"]["name"] == "redis"


def test_configmap_configs_load_and_shard_venues(tmp_path: Path) -> None:
    (cm,) = by_kind("ConfigMap")
    (secret,) = by_kind("Secret")
    assert all(v in ("", None) or "://" in v for v in secret["stringData"].values())  # placeholders only
    for group, venues in GROUPS.items():
        path = tmp_path / f"{group}.yaml"
        path.write_text(cm["data"][f"{group}.yaml"])
        assert set(config_mod.load(str(path)).venues) == venues, group
    path = tmp_path / "detect.yaml"
    path.write_text(cm["data"]["detect.yaml"])
    assert set(config_mod.load(str(path)).venues) == set().union(*GROUPS.values())
