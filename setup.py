"""Builds the optional compiled book core (scanner/book/_core.c); everything else is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds and scanner.book.l2 falls back
to the pure-Python kernels in scanner/book/pycore.py (same semantics, slower)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("scanner.book._core", ["scanner/book/_core.c"], optional=True,
                             extra_compile_args=["-O2"])])
