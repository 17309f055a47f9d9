"""Synthetic market files for load benchmarks: every venue lists the same N extra coins.

The shipped snapshots (configs/markets) list 13 coins, and not every venue lists every pair, so
"10 venues x 50 symbols" cannot be built from them. This clones each venue's own ETH/USDT
instrument record N times, renaming the coin (ETH -> B001, eth -> b001, ...), and writes the
venue's instruments file unchanged otherwise. The simulators serve these files (``scanner simulate
--markets-dir``) and the collectors download them from the simulators (``markets.refresh``), so
both sides parse them with the venue's real instruments parser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from scanner.markets import shipped_markets_dir
from scanner.venues import VENUES

TEMPLATE_BASE = "ETH"
TEMPLATE_PRICE = 3400.0  # the simulator's ETH mid: the clones trade on ETH's tick and lot grid


def coin(i: int) -> str:
    return f"B{i:03d}"


def _clone(node: Any, n: int) -> int:
    """Append n renamed copies of every ETH/USDT record found in lists of dicts; returns how many lists grew."""
    grown = 0
    if isinstance(node, dict):
        for v in list(node.values()):
            grown += _clone(v, n)
        keyed = [(k, v) for k, v in node.items()  # Kraken: pair name -> record (a record holds no dicts)
                 if isinstance(v, dict) and not any(isinstance(x, dict) for x in v.values()) and _is_template(v)]
        for k, rec in keyed:
            raw = orjson.dumps(rec).decode()
            for i in range(1, n + 1):
                node[_rename(k, coin(i))] = orjson.loads(_rename(raw, coin(i)))
        grown += bool(keyed)
    elif isinstance(node, list):
        for v in list(node):
            grown += _clone(v, n)
        records = [e for e in node if isinstance(e, dict) and _is_template(e)]
        for rec in records:
            raw = orjson.dumps(rec).decode()
            for i in range(1, n + 1):
                node.append(orjson.loads(_rename(raw, coin(i))))
        grown += bool(records)
    return grown


def _rename(text: str, c: str) -> str:
    return text.replace(TEMPLATE_BASE, c).replace(TEMPLATE_BASE.lower(), c.lower())


def _is_template(rec: dict[str, Any]) -> bool:
    text = orjson.dumps(rec).decode()
    return ("ETH" in text or "eth" in text) and ("USDT" in text or "usdt" in text) and "ETHW" not in text and (
        "BTC" not in text and "btc" not in text)


def write_markets(venues: list[str], n: int, out: Path, source: Path | None = None) -> list[str]:
    """Write ``<venue>.json`` for each venue into ``out`` with ``n`` cloned coins; returns the
    unified symbols (``B001/USDT`` ...) that every given venue lists afterwards."""
    src = source or shipped_markets_dir()
    out.mkdir(parents=True, exist_ok=True)
    common: set[str] | None = None
    for v in venues:
        tree = orjson.loads((src / f"{v}.json").read_bytes())
        _clone(tree, n)
        body = orjson.dumps(tree)
        (out / f"{v}.json").write_bytes(body)
        have = {m.symbol for m in VENUES[v].parse_instruments(body)} if VENUES[v].instruments_path else set()
        common = have if common is None else common & have
    wanted = [f"{coin(i)}/USDT" for i in range(1, n + 1)]
    return [s for s in wanted if common and s in common]
