"""One row of the fault suite's table, and the table itself (``python -m tests.faults.report FILE``)."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson


@dataclass
class Row:
    """What a scenario injected, what it observed (named counts), its worst time to recover (s) and
    what it lost (the expected figure is 0)."""

    scenario: str
    injected: str = ""
    observed: dict[str, float] = field(default_factory=dict)
    recover_s: float | None = None
    lost: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def table(rows: list[dict[str, object]]) -> str:
    lines = ["| scenario | injected | observed | recover (s) | lost |", "|---|---|---|---|---|"]
    for r in rows:
        observed = r.get("observed") or {}
        assert isinstance(observed, dict)
        obs = ", ".join(f"{k} {v:g}" if isinstance(v, float | int) else f"{k} {v}" for k, v in observed.items())
        rec = r.get("recover_s")
        lines.append(f"| {r['scenario']} | {r.get('injected', '')} | {obs} | "
                     f"{'' if rec is None else f'{rec:.2f}'} | {r.get('lost', 0)} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.faults.report FILE.jsonl", file=sys.stderr)
        return 2
    path = Path(argv[0])
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()] if path.exists() else []
    if not rows:
        print(f"faults: no scenario rows in {path}", file=sys.stderr)
        return 1
    print(table(rows))
    return 0 if all(r.get("lost", 0) == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
