"""Builds the optional compiled kernels; everything else is in pyproject.toml.

- scanner/book/_core.c: book sides, checksums, text scanners (fallback: scanner/book/pycore.py);
- scanner/detect/_walk.c: the detector's depth walk in exact integers (fallback: the Decimal walk in
  scanner/detect/spread.py);
- scanner/venues/_mexc_pb.c: MEXC's protobuf depth frames in the layout the server writes (fallback:
  _decode_canonical in scanner/venues/mexc_pb.py).

``optional=True``: without a C compiler the install still succeeds and the pure-Python code runs
(same results, slower)."""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("scanner.book._core", ["scanner/book/_core.c"], optional=True, extra_compile_args=["-O2"]),
    Extension("scanner.detect._walk", ["scanner/detect/_walk.c"], optional=True, extra_compile_args=["-O2"]),
    Extension("scanner.venues._mexc_pb", ["scanner/venues/_mexc_pb.c"], optional=True, extra_compile_args=["-O2"]),
])
