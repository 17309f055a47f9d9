"""The optional compiled modules as built, for the tests that hold them against their pure-Python twins.

Unlike :func:`scanner.compiled.compiled`, ``SCANNER_PURE_PYTHON`` does not hide them here: a test compares
the two either way. A module that was not built (no C compiler at install) is None and its tests skip.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest


def built(module: str) -> ModuleType | None:
    """``module`` (e.g. ``"scanner.book._core"``) imported, or None when it was not built."""
    try:
        return importlib.import_module(module)
    except ImportError:  # pragma: no cover - only without a C compiler
        return None


def needs_built(mod: ModuleType | None, module: str) -> pytest.MarkDecorator:
    """Skip a test when ``mod`` (what :func:`built` gave for ``module``) is missing."""
    return pytest.mark.skipif(mod is None, reason=f"{module} is not built (no C compiler at install)")
