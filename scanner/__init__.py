"""scanner: cross-exchange crypto arbitrage scanner (collectors → Redis → spread detector → sinks)."""

__version__ = "0.1.0"
