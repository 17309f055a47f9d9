"""The optional compiled modules' switch: one place that decides whether a C kernel is used.

``SCANNER_PURE_PYTHON=1`` turns every one off (the tests run both ways); a module that was not built
(``pip install`` without a C compiler: setup.py marks them optional) is simply absent. Either way the
caller falls back to its pure-Python twin, with the same results.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def compiled(module: str) -> ModuleType | None:
    """The compiled ``module`` (e.g. ``"scanner.book._core"``), or None when switched off or not built."""
    if os.environ.get("SCANNER_PURE_PYTHON") == "1":
        return None
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
