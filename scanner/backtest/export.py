"""Backtest exports: one row per opportunity (closed, or still open at the end) as CSV or Parquet.

Prices, sizes and profits stay the exact decimal strings the detector made; times are integer ns plus a UTC
ISO column. Parquet needs pyarrow, imported only when asked for (the ``backtest`` extra).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from scanner.backtest.engine import BacktestResult
from scanner.backtest.report import iso, lifetimes

COLUMNS = ("id", "symbol", "buy_venue", "sell_venue", "state", "opened_ns", "opened_utc", "ended_ns",
           "duration_ms", "peak_net_bps", "peak_profit_quote", "peak_size", "net_bps", "gross_bps", "size",
           "profit_quote", "buy_vwap", "sell_vwap", "buy_fee", "sell_fee", "transfer_status")
INT_COLUMNS = {"opened_ns", "ended_ns"}
FLOAT_COLUMNS = {"duration_ms"}


class ExportError(RuntimeError):
    """The export cannot be written (missing optional dependency, unwritable path)."""


def rows(result: BacktestResult) -> list[dict[str, Any]]:
    """One dict per opportunity, in :data:`COLUMNS` order; ``state`` is ``closed`` or ``open`` (at the end)."""
    out: list[dict[str, Any]] = []
    for o in lifetimes(result):
        out.append({
            "id": o.id, "symbol": o.pair_symbol, "buy_venue": o.buy_venue, "sell_venue": o.sell_venue,
            "state": "closed" if o.event == "close" else "open", "opened_ns": o.opened_ns,
            "opened_utc": iso(o.opened_ns), "ended_ns": o.detected_ns, "duration_ms": round(o.duration_ms, 3),
            "peak_net_bps": o.peak_net_bps, "peak_profit_quote": o.peak_profit_quote, "peak_size": o.peak_size,
            "net_bps": o.net_bps, "gross_bps": o.gross_bps, "size": o.size, "profit_quote": o.profit_quote,
            "buy_vwap": o.buy_vwap, "sell_vwap": o.sell_vwap, "buy_fee": o.buy_fee, "sell_fee": o.sell_fee,
            "transfer_status": o.transfer_status,
        })
    out.sort(key=lambda r: (r["opened_ns"], r["id"]))
    return out


def write_csv(result: BacktestResult, path: Path) -> int:
    """Write the rows as CSV with a header line; returns the number of rows."""
    data = rows(result)
    try:
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(data)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc}") from None
    return len(data)


def write_parquet(result: BacktestResult, path: Path) -> int:
    """Write the rows as Parquet (decimal figures as strings, ns as int64); returns the number of rows."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ExportError("--parquet needs pyarrow: pip install 'scanner[backtest]'") from None
    data = rows(result)

    def typ(col: str) -> Any:
        return pa.int64() if col in INT_COLUMNS else pa.float64() if col in FLOAT_COLUMNS else pa.string()

    schema = pa.schema([(c, typ(c)) for c in COLUMNS])
    table = pa.table({c: [r[c] for r in data] for c in COLUMNS}, schema=schema)
    try:
        pq.write_table(table, path)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc}") from None
    return len(data)
