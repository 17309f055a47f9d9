"""``--plot FILE.png``: the top-of-book gross spread of each venue pair over recorded time, one subplot per
symbol (the busiest :data:`MAX_SYMBOLS`), one line per directed pair. Matplotlib (Agg backend, no display)
is imported only here, only when a plot is asked for."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from scanner.backtest.engine import BacktestResult, PairKey
from scanner.backtest.export import ExportError

MAX_SYMBOLS = 6
MAX_PAIRS = 8  # lines per subplot: the pairs with the widest spreads


def write_plot(result: BacktestResult, path: Path) -> int:
    """Draw the spread samples into ``path`` (PNG); returns the number of subplots (0: a note, no samples)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ExportError("--plot needs matplotlib: pip install 'scanner[backtest]'") from None
    by_symbol: dict[str, list[PairKey]] = {}
    for key in result.samples:
        by_symbol.setdefault(key[0], []).append(key)
    symbols = sorted(by_symbol, key=lambda s: -sum(len(result.samples[k]) for k in by_symbol[s]))[:MAX_SYMBOLS]
    n = max(1, len(symbols))
    fig, axes = plt.subplots(n, 1, figsize=(11, 3.2 * n), squeeze=False, sharex=False)
    try:
        if not symbols:
            ax = axes[0][0]
            ax.text(0.5, 0.5, "no symbol was quoted by two venues at the same time", ha="center", va="center")
            ax.set_axis_off()
        for ax, sym in zip((row[0] for row in axes), sorted(symbols), strict=False):
            keys = sorted(by_symbol[sym], key=lambda k: -max(g for _, g in result.samples[k]))[:MAX_PAIRS]
            for key in sorted(keys):
                pts = result.samples[key]
                ax.plot([datetime.fromtimestamp(t / 1e9, UTC) for t, _ in pts], [g for _, g in pts],
                        label=f"buy {key[1]} / sell {key[2]}", linewidth=1, marker=".", markersize=3,
                        drawstyle="steps-post")
            if result.last_ns > result.first_ns:
                ax.set_xlim(datetime.fromtimestamp(result.first_ns / 1e9, UTC),
                            datetime.fromtimestamp(result.last_ns / 1e9, UTC))
            ax.axhline(0.0, color="grey", linewidth=0.6)
            ax.set_title(f"{sym}: top-of-book gross spread")
            ax.set_ylabel("bps")
            ax.set_xlabel("UTC")
            ax.legend(loc="best", fontsize="small")
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=100)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc}") from None
    finally:
        plt.close(fig)
    return len(symbols)
