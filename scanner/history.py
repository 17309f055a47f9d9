"""``scanner history [--config F] [--top N]``: summarise the closed opportunities kept in Redis.

The sink appends every close event to the capped stream ``redis.history`` (``MAXLEN ~
redis.history_maxlen``). This reads all of it and prints the top symbols and the top venue
pairs (buy → sell) by count, each with its median duration and its total theoretical profit:
the sum of each opportunity's peak expected profit (``peak_profit_quote``: the best single
execution seen during its life, as each can be taken once), per quote currency.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, cast

import orjson
from redis import Redis
from redis.exceptions import RedisError

from scanner.app import load_settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="configs/default.yaml", help="settings (default: %(default)s)")
    p.add_argument("--top", type=int, default=10, help="rows per table (default: %(default)s)")


@dataclass(slots=True)
class Group:
    durations_ms: list[float] = field(default_factory=list)
    profit: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))  # quote → sum

    def add(self, duration_ms: float, quote: str, profit: Decimal) -> None:
        self.durations_ms.append(duration_ms)
        self.profit[quote] += profit


def summarise(events: Iterable[dict[str, Any]]) -> tuple[Group, dict[str, Group], dict[str, Group]]:
    """(everything, by symbol, by "buy → sell") over close events; others are ignored."""
    total = Group()
    by_symbol: defaultdict[str, Group] = defaultdict(Group)
    by_pair: defaultdict[str, Group] = defaultdict(Group)
    for e in events:
        if e.get("event") != "close":
            continue
        symbol = str(e.get("symbol", "?"))
        quote = symbol.split("/")[1] if "/" in symbol else "?"
        try:
            profit = Decimal(str(e.get("peak_profit_quote") or e.get("profit_quote") or 0))
        except InvalidOperation:
            profit = Decimal(0)
        duration = float(e.get("duration_ms", 0.0))
        for g in (total, by_symbol[symbol], by_pair[f"{e.get('buy_venue')} → {e.get('sell_venue')}"]):
            g.add(duration, quote, profit)
    return total, dict(by_symbol), dict(by_pair)


def _profit(g: Group) -> str:
    return " + ".join(f"{v.quantize(Decimal('0.0001')):,} {q}" for q, v in sorted(g.profit.items())) or "0"


def _table(title: str, groups: dict[str, Group], top: int) -> list[str]:
    rows = sorted(groups.items(), key=lambda kv: (-len(kv[1].durations_ms), kv[0]))[:top]
    width = max([len(title)] + [len(k) for k, _ in rows])
    lines = [f"{title:<{width}}  {'count':>7}  {'median s':>9}  total profit"]
    for name, g in rows:
        lines.append(f"{name:<{width}}  {len(g.durations_ms):>7}  {statistics.median(g.durations_ms) / 1e3:>9.3f}  "
                     f"{_profit(g)}")
    return lines


def render(events: Iterable[dict[str, Any]], top: int, source: str) -> str:
    total, by_symbol, by_pair = summarise(events)
    n = len(total.durations_ms)
    if n == 0:
        return f"no closed opportunities in {source}"
    head = (f"{n} closed opportunities in {source}: median duration "
            f"{statistics.median(total.durations_ms) / 1e3:.3f} s, total theoretical profit {_profit(total)}")
    return "\n".join([head, "", *_table("symbol", by_symbol, top), "", *_table("buy → sell", by_pair, top)])


def read_history(redis: Redis, name: str) -> list[dict[str, Any]]:
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], redis.xrange(name))
    out: list[dict[str, Any]] = []
    for _eid, fields in entries:
        try:
            out.append(orjson.loads(fields[b"data"]))
        except (KeyError, orjson.JSONDecodeError):
            continue
    return out


def main(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if settings is None:
        return 2
    redis = Redis.from_url(settings.redis.url, socket_timeout=10)
    try:
        events = read_history(redis, settings.redis.history)
    except (RedisError, OSError) as exc:
        print(f"history: cannot read {settings.redis.history} at {settings.redis.url}: {exc}", file=sys.stderr)
        return 1
    finally:
        redis.close()
    print(render(events, max(1, args.top), f"{settings.redis.history}"))
    return 0
