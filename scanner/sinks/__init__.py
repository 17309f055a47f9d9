"""Outputs downstream of the books: metrics, the opportunities stream and log lines."""
