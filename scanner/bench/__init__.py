"""Benchmarks run by `make bench`: figures to compare, never pass/fail tests."""
