"""Spread detection: books from Redis → fee-adjusted, depth-aware opportunities."""
