"""The fault-injection suite (issue 8): every scenario runs on the simulators with a real Redis and
records what it injected, what it observed (counts), how long recovery took and what was lost.

``make test`` runs the suite at its fast scale; ``make faults`` runs it at full scale
(``FAULTS_FULL=1``: faults kept up for a minute where the issue says so) and prints the table the
scenarios recorded (``FAULTS_REPORT``: a JSON Lines file, one row per scenario)."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import orjson
import pytest

from tests.faults.report import Row

FULL = os.environ.get("FAULTS_FULL", "") not in ("", "0")


def scaled(fast: float, full: float) -> float:
    """A duration (or count) for the current scale: ``fast`` in ``make test``, ``full`` in ``make faults``."""
    return full if FULL else fast


@pytest.fixture
def fault_report(request: pytest.FixtureRequest) -> Iterator[Row]:
    """The test's row of the scenario table; appended to ``FAULTS_REPORT`` when the test passes."""
    row = Row(scenario=request.node.name)
    yield row
    path = os.environ.get("FAULTS_REPORT")
    rep = getattr(request.node, "rep_call", None)
    if path and rep is not None and rep.passed:
        with Path(path).open("ab") as f:
            f.write(orjson.dumps(row.as_dict()) + b"\n")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep
