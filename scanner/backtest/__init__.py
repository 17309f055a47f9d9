"""``scanner backtest``: replay captures through the real parsers, books and detector, and report."""
