"""Command line: ``scanner run | collect | detect | simulate | demo | replay | check-config``.

The only module that reads argv; each subcommand lives in its own module exposing
``add_arguments(parser)`` and ``main(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, help)
    "run": ("scanner.app", "collectors + detector + sinks in one process"),
    "collect": ("scanner.app", "collectors only: venues → Redis"),
    "detect": ("scanner.app", "detector only: Redis books → opportunities"),
    "simulate": ("scanner.sim.cli", "serve protocol-faithful local venues"),
    "demo": ("scanner.demo", "simulators + full pipeline + metrics, offline"),
    "replay": ("scanner.replay", "feed a file of raw frames through a venue parser and book"),
    "check-config": ("scanner.app", "validate a config file and print the effective settings"),
}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="scanner", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod = importlib.import_module(module)
        mod.add_arguments(p, name) if _takes_name(mod) else mod.add_arguments(p)
    return ap


def _takes_name(mod: object) -> bool:
    return getattr(mod, "COMMAND_TAKES_NAME", False) is True


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    rc: int = module.main(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
