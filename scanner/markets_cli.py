"""``scanner markets``: the per-venue symbol maps behind every collector.

    scanner markets show BTC/USDT            which venues list a symbol, under which native id
    scanner markets show --venue kraken      every market one venue lists
    scanner markets refresh [--venues a,b]   re-download the instruments snapshots in configs/markets/

``show`` reads the cached snapshots (offline). ``refresh`` fetches each venue's public
instruments endpoint (the config's ``rest_url`` when the venue is configured there, else the
venue's public URL), checks that the body parses into markets, and only then replaces the
cached file (atomically); a venue that cannot be reached keeps its old snapshot and makes the
command exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from scanner.book.errors import ParseError
from scanner.config import ConfigError
from scanner.config import load as load_config
from scanner.feed.instruments import fetch_instruments
from scanner.markets import Market, MarketMap, cache_path
from scanner.venues import VENUES

DEFAULT_CACHE = Path("configs/markets")


def _csv(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    show = sub.add_parser("show", help="which venues list a symbol, and under which id")
    show.add_argument("symbol", nargs="?", help="unified symbol, e.g. BTC/USDT (omit with --venue to list a venue)")
    show.add_argument("--venue", help="only this venue")
    show.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ref = sub.add_parser("refresh", help="download the venues' instruments into the cache")
    ref.add_argument("--venues", type=_csv, default=None, help="comma list (default: every native venue)")
    ref.add_argument("--config", default=None, help="take rest_url overrides from this config file")
    ref.add_argument("--cache-dir", type=Path, default=None,
                     help="where to write (default: the config's markets.cache_dir, else configs/markets)")


def load_cached(cache_dir: Path, venues: list[str] | None = None) -> dict[str, MarketMap]:
    """Every cached venue snapshot that exists and parses (others are skipped)."""
    out: dict[str, MarketMap] = {}
    for name in venues or sorted(VENUES):
        path = cache_path(cache_dir, name)
        try:
            out[name] = MarketMap(name, VENUES[name].parse_instruments(path.read_bytes()))
        except (OSError, ParseError):
            continue
    return out


def _row(m: Market) -> str:
    state = "trading" if m.active else "HALTED"
    alias = f"  (streamed as {m.stream_id})" if m.stream_id and m.stream_id != m.venue_id else ""
    return (f"{m.venue:<12} {m.venue_id:<14} {m.symbol:<14} tick={m.tick:<12} lot={m.lot:<12} min={m.min_size:<10} "
            f"{state}{alias}")


def show(args: argparse.Namespace) -> int:
    if args.venue and args.venue not in VENUES:
        print(f"markets: unknown venue {args.venue!r}; known: {', '.join(sorted(VENUES))}", file=sys.stderr)
        return 2
    if not args.symbol and not args.venue:
        print("markets show: give a symbol (e.g. BTC/USDT) or --venue", file=sys.stderr)
        return 2
    maps = load_cached(args.cache_dir, [args.venue] if args.venue else None)
    if not maps:
        print(f"markets: no cached snapshots in {args.cache_dir}", file=sys.stderr)
        return 1
    rows: list[Market] = []
    for mm in maps.values():
        if args.symbol:
            m = mm.by_symbol.get(args.symbol.upper())
            if m is not None:
                rows.append(m)
        else:
            rows.extend(sorted(mm.by_symbol.values(), key=lambda m: m.symbol))
    if not rows:
        where = args.venue or f"any of {len(maps)} venues"
        print(f"{args.symbol} is not listed on {where} (cache {args.cache_dir})")
        return 1
    for m in rows:
        print(_row(m))
    if args.symbol:
        missing = sorted(set(maps) - {m.venue for m in rows})
        if missing:
            print(f"not listed on: {', '.join(missing)}")
    return 0


async def refresh_one(name: str, rest_url: str, cache_dir: Path) -> tuple[bool, str]:
    """Fetch, parse and (only if it parsed into at least one market) replace the cache."""
    spec = VENUES[name]
    url = rest_url + spec.instruments_path
    try:
        body = await fetch_instruments(spec, url)
        markets = spec.parse_instruments(body)
    except (ParseError, OSError, TimeoutError) as exc:
        return False, f"{name}: FAILED from {url}: {exc}; the cached snapshot is kept"
    except Exception as exc:  # aiohttp.ClientError and friends
        return False, f"{name}: FAILED from {url}: {type(exc).__name__}: {exc}; the cached snapshot is kept"
    if not markets:
        return False, f"{name}: {url} returned no markets; the cached snapshot is kept"
    path = cache_path(cache_dir, name)
    try:
        before = len(spec.parse_instruments(path.read_bytes()))
    except (OSError, ParseError):
        before = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(body)
    tmp.replace(path)
    return True, f"{name}: {len(markets)} markets (was {before}) -> {path}"


async def refresh(args: argparse.Namespace) -> int:
    rest: dict[str, str] = {}
    cache_dir: Path = args.cache_dir or DEFAULT_CACHE
    if args.config:
        try:
            settings = load_config(args.config)
        except ConfigError as exc:
            print(f"config error: {exc}", file=sys.stderr)
            return 2
        rest = {name: v.rest_url for name, v in settings.venues.items()}
        cache_dir = args.cache_dir or settings.markets.cache_dir
    names = args.venues or sorted(VENUES)
    unknown = [n for n in names if n not in VENUES]
    if unknown:
        print(f"markets: unknown venue(s) {', '.join(unknown)}; known: {', '.join(sorted(VENUES))}", file=sys.stderr)
        return 2
    results = await asyncio.gather(*(refresh_one(n, rest.get(n, VENUES[n].rest_url), cache_dir) for n in names))
    for _ok, line in results:
        print(line, flush=True)
    return 0 if all(ok for ok, _ in results) else 1


def main(args: argparse.Namespace) -> int:
    if args.action == "show":
        return show(args)
    return asyncio.run(refresh(args))
