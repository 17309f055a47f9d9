"""Entry point for `python -m scanner`."""

from scanner.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
