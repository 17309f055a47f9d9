"""Command line: ``scanner run | collect | detect | simulate | demo | replay | record | backtest | check-config |
markets | history | webhooks``.

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
    "record": ("scanner.record", "capture every raw frame and REST snapshot the collectors receive (zstd JSON Lines)"),
    "backtest": ("scanner.backtest.cli", "captures through the parsers, books and detector: the opportunities"),
    "check-config": ("scanner.app", "validate a config file and print the effective settings"),
    "markets": ("scanner.markets_cli", "show which venues list a symbol; refresh the cached instrument lists"),
    "history": ("scanner.history", "summarise closed opportunities: top symbols and venue pairs"),
    "webhooks": ("scanner.webhooks.cli", "webhook targets: send a test event, list and replay dead letters"),
}


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """Only the chosen subcommand's module is imported (fast start, and one broken
    subcommand cannot break the others)."""
    ap = argparse.ArgumentParser(prog="scanner", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    rc: int = module.main(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
