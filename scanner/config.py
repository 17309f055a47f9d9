"""Settings: YAML in ``configs/``, environment overrides, validation with errors that name the key.

Built once by the CLI and passed down; nothing else reads files or the environment.
Environment overrides (applied after the file):

    SCANNER_REDIS_URL       redis.url
    SCANNER_METRICS_HOST    metrics.host
    SCANNER_METRICS_PORT    metrics.port
    SCANNER_LOG_LEVEL       log_level
    SCANNER_SYMBOLS         symbols (comma-separated)

Long-tail venues: a venue key ``ccxtpro:<id>`` (``<id>`` one of ``ccxt.pro.exchanges``) is read
into :class:`CcxtVenueSettings` (``Settings.ccxt_venues``) and served by the generic ccxt.pro
adapter (``scanner/feed/ccxtpro.py``) instead of a native collector.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml

from scanner import config_quotes, config_transfer
from scanner.config_transfer import TransferSettings
from scanner.fees import CCXT_DEFAULT_TAKER, DEFAULT_FEES, FeeSettings
from scanner.venues import VENUES

if TYPE_CHECKING:
    from scanner.config_web import WebSettings
    from scanner.config_webhooks import WebhookSettings


class ConfigError(ValueError):
    """A bad setting; the message starts with the dotted key that is wrong."""


@dataclass(frozen=True)
class VenueSettings:
    name: str
    ws_url: str
    rest_url: str
    channel: str
    taker_fee: Decimal
    symbols: tuple[str, ...]
    watchdog_s: float
    ping_idle_s: float
    rest_weight_per_min: int
    max_instruments_per_conn: int


@dataclass(frozen=True)
class CcxtVenueSettings:
    """A ``ccxtpro:<id>`` venue. ``options`` go to the ccxt constructor unchanged (``urls`` for a
    simulator, maybe API keys): never logged or printed, hence ``repr=False``. ``markets``
    (ccxt unified market dicts) pre-seed the exchange with ``set_markets`` instead of its REST
    ``load_markets``. ``taker_fee`` defaults to :data:`scanner.fees.CCXT_DEFAULT_TAKER`, not to
    ccxt's market metadata, which is often stale."""

    name: str  # "ccxtpro:okx"
    exchange_id: str  # "okx"
    taker_fee: Decimal
    symbols: tuple[str, ...]
    depth: int  # levels per side converted from ccxt's book
    limit: int | None  # passed to watch_order_book_for_symbols (None: the venue's default); on some
    # venues it picks the channel (ccxt okx: 5 → books5, 1 → bbo-tbt)
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    markets: tuple[Mapping[str, Any], ...] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RedisSettings:
    url: str = "redis://127.0.0.1:6379/0"
    book_depth: int = 20
    book_ttl_ms: int = 30_000
    channel: str = "books"
    stream: str = "opportunities"
    stream_maxlen: int = 10_000
    history: str = "opportunity_history"  # closed opportunities only (``scanner history``)
    history_maxlen: int = 10_000


@dataclass(frozen=True)
class DetectorSettings:
    min_net_bps: Decimal = Decimal("5")
    min_profit_quote: Decimal = Decimal("1")
    max_book_age_ms: int = 5_000
    max_notional_quote: Decimal = Decimal("100000")
    emit_interval_ms: int = 1_000
    min_duration_ms: int = 0  # persistence before an opportunity opens (0: at once)
    max_net_bps: Decimal = Decimal("500")  # transfers (config_transfer.py): above it, suspect_identity
    transfer_mode: str = "ignore"  # "include": profit subtracts the withdrawal fee
    require_transfer: bool = False  # True: a route of unknown status is refused (transfer_unknown)
    quote_groups: tuple[tuple[str, ...], ...] = ()  # cross-quote comparison (config_quotes.py, detect/crossquote.py)


@dataclass(frozen=True)
class MetricsSettings:
    host: str = "127.0.0.1"
    port: int = 9108


@dataclass(frozen=True)
class MarketSettings:
    cache_dir: Path = Path("configs/markets")
    refresh: bool = True  # fetch instruments from the venue at start, falling back to the cache
    write_cache: bool = False  # rewrite the cache with what the venue returned (configs/ may be read-only)


@dataclass(frozen=True)
class Settings:
    symbols: tuple[str, ...]
    venues: dict[str, VenueSettings]
    redis: RedisSettings = field(default_factory=RedisSettings)
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    markets: MarketSettings = field(default_factory=MarketSettings)
    log_level: str = "INFO"
    source: str = ""
    ccxt_venues: dict[str, CcxtVenueSettings] = field(default_factory=dict)
    transfers: TransferSettings = field(default_factory=TransferSettings)
    fees: FeeSettings = field(default_factory=FeeSettings)  # scanner/config_fees.py
    webhooks: WebhookSettings = field(default_factory=lambda: _webhooks(None, {}))  # scanner/config_webhooks.py
    web: WebSettings = field(default_factory=lambda: _web(None))  # scanner/config_web.py


TOP_KEYS = {"symbols", "venues", "redis", "detector", "metrics", "markets", "log_level", "transfers"}
TOP_KEYS.add("fees")  # scanner/config_fees.py
TOP_KEYS.add("webhooks")  # scanner/config_webhooks.py
TOP_KEYS.add("web")  # scanner/config_web.py
VENUE_KEYS = {"fees", "enabled", "ws_url", "rest_url", "channel", "taker_fee", "symbols", "watchdog_s", "ping_idle_s",
              "rest_weight_per_min", "max_instruments_per_conn"}
CCXT_PREFIX = "ccxtpro:"
CCXT_VENUE_KEYS = {"enabled", "symbols", "taker_fee", "depth", "limit", "options", "markets"}
CCXT_DEFAULT_DEPTH = 20  # = redis.book_depth by default: deeper levels are never stored
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read, override from ``env`` (default: the process environment) and validate."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:  # a directory, no permission
        raise ConfigError(f"{p}: cannot read the config file: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    return from_dict(raw, os.environ if env is None else env, source=str(p))


def from_dict(raw: dict[str, Any], env: Mapping[str, str], source: str = "") -> Settings:
    _no_unknown(raw, TOP_KEYS, "")
    raw = _apply_env(raw, env)
    symbols = _symbols(raw.get("symbols"), "symbols")
    venues_raw = raw.get("venues")
    if not isinstance(venues_raw, dict) or not venues_raw:
        raise ConfigError("venues: must map at least one venue name to its settings")
    venues: dict[str, VenueSettings] = {}
    ccxt_venues: dict[str, CcxtVenueSettings] = {}
    for name, v in venues_raw.items():
        ccxt = isinstance(name, str) and name.startswith(CCXT_PREFIX)
        if not ccxt and name not in VENUES:
            raise ConfigError(f"venues.{name}: unknown venue; known: {', '.join(sorted(VENUES))} "
                              f"(or {CCXT_PREFIX}<id> for any ccxt.pro exchange)")
        v = v or {}
        if not isinstance(v, dict):
            raise ConfigError(f"venues.{name}: must be a mapping")
        _no_unknown(v, CCXT_VENUE_KEYS if ccxt else VENUE_KEYS, f"venues.{name}.")
        if not _bool(v.get("enabled", True), f"venues.{name}.enabled"):
            continue
        if ccxt:
            ccxt_venues[name] = _ccxt_venue(name, v, symbols)
        else:
            venues[name] = _venue(name, v, symbols)
    if not venues and not ccxt_venues:
        raise ConfigError("venues: every venue is disabled")
    return Settings(
        symbols=symbols,
        venues=venues,
        redis=_redis(_section(raw, "redis")),
        detector=config_quotes.with_quote_groups(config_transfer.detector_extras(
            _detector(_section(raw, "detector")), _section(raw, "detector")), _section(raw, "detector"), symbols),
        metrics=_metrics(_section(raw, "metrics")),
        markets=_markets(_section(raw, "markets")),
        log_level=_choice(str(raw.get("log_level", "INFO")).upper(), LOG_LEVELS, "log_level"),
        source=source,
        ccxt_venues=ccxt_venues,
        fees=_fees(raw, venues, ccxt_venues, env),
        transfers=config_transfer.parse(raw.get("transfers"), set(venues) | set(ccxt_venues)),
        webhooks=_webhooks(raw.get("webhooks"), env),
        web=_web(raw.get("web")),
    )


def _fees(raw: dict[str, Any], venues: dict[str, VenueSettings], ccxt_venues: dict[str, CcxtVenueSettings],
          env: Mapping[str, str]) -> FeeSettings:
    from scanner.config_fees import parse_fees  # it imports this module's helpers

    return parse_fees(raw, venues, ccxt_venues, env)


def _webhooks(raw: Any, env: Mapping[str, str]) -> WebhookSettings:
    from scanner.config_webhooks import parse_webhooks  # it imports this module's helpers

    return parse_webhooks(raw, env)


def _web(raw: Any) -> WebSettings:
    from scanner.config_web import parse_web  # it imports this module's helpers

    return parse_web(raw)


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    out = dict(raw)

    def put(section: str, key: str, value: Any) -> None:
        sec = dict(out.get(section) or {})
        sec[key] = value
        out[section] = sec

    if env.get("SCANNER_REDIS_URL"):
        put("redis", "url", env["SCANNER_REDIS_URL"])
    if env.get("SCANNER_METRICS_HOST"):
        put("metrics", "host", env["SCANNER_METRICS_HOST"])
    if env.get("SCANNER_METRICS_PORT"):
        put("metrics", "port", env["SCANNER_METRICS_PORT"])
    if env.get("SCANNER_LOG_LEVEL"):
        out["log_level"] = env["SCANNER_LOG_LEVEL"]
    if env.get("SCANNER_SYMBOLS"):
        out["symbols"] = [s.strip() for s in env["SCANNER_SYMBOLS"].split(",") if s.strip()]
    return out


def _venue(name: str, v: dict[str, Any], symbols: tuple[str, ...]) -> VenueSettings:
    spec, key = VENUES[name], f"venues.{name}."
    fee = DEFAULT_FEES[name].taker if "taker_fee" not in v else _decimal(v["taker_fee"], key + "taker_fee")
    if not Decimal(0) <= fee < Decimal("0.05"):
        raise ConfigError(f"{key}taker_fee: must be a fraction in [0, 0.05) such as 0.001 for 0.1 %; got {fee}")
    channels = spec.channels
    return VenueSettings(
        name=name,
        ws_url=_url(v.get("ws_url", spec.ws_url), key + "ws_url", ("ws://", "wss://")),
        rest_url=_url(v.get("rest_url", spec.rest_url), key + "rest_url", ("http://", "https://")).rstrip("/"),
        channel=_choice(v.get("channel", channels[0]), channels, key + "channel"),
        taker_fee=fee,
        symbols=_symbols(v["symbols"], key + "symbols") if "symbols" in v else symbols,
        watchdog_s=_number(v.get("watchdog_s", spec.watchdog_s), key + "watchdog_s", 0.1, 3600),
        ping_idle_s=_number(v.get("ping_idle_s", spec.ping_idle_s), key + "ping_idle_s", 0, 3600),
        rest_weight_per_min=int(_number(v.get("rest_weight_per_min", spec.rest_weight_per_min),
                                        key + "rest_weight_per_min", 1, 1e6)),
        max_instruments_per_conn=int(_number(v.get("max_instruments_per_conn", spec.max_instruments_per_conn),
                                             key + "max_instruments_per_conn", 1, 1024)),
    )


def _ccxt_exchanges() -> list[str]:
    import ccxt.pro  # imported only when a ccxtpro venue is configured: it takes most of a second

    return list(ccxt.pro.exchanges)


def _ccxt_venue(name: str, v: dict[str, Any], symbols: tuple[str, ...]) -> CcxtVenueSettings:
    key, ex_id = f"venues.{name}.", name[len(CCXT_PREFIX):]
    known = _ccxt_exchanges()
    if ex_id not in known:
        close = difflib.get_close_matches(ex_id, known, n=3, cutoff=0.6)
        hint = (f"did you mean {', '.join(CCXT_PREFIX + c for c in close)}?" if close
                else f"ccxt.pro has {len(known)} exchanges, see ccxt.pro.exchanges")
        raise ConfigError(f"venues.{name}: {ex_id!r} is not a ccxt.pro exchange; {hint}")
    fee = CCXT_DEFAULT_TAKER if "taker_fee" not in v else _decimal(v["taker_fee"], key + "taker_fee")
    if not Decimal(0) <= fee < Decimal("0.05"):
        raise ConfigError(f"{key}taker_fee: must be a fraction in [0, 0.05) such as 0.001 for 0.1 %; got {fee}")
    limit = v.get("limit")
    return CcxtVenueSettings(
        name=name,
        exchange_id=ex_id,
        taker_fee=fee,
        symbols=_symbols(v["symbols"], key + "symbols") if "symbols" in v else symbols,
        depth=_int(v.get("depth", CCXT_DEFAULT_DEPTH), key + "depth", 1, 1000),
        limit=None if limit is None else _int(limit, key + "limit", 1, 100_000),
        options=_ccxt_options(v.get("options", {}), ex_id, key + "options"),
        markets=None if v.get("markets") is None else _ccxt_markets(v["markets"], key + "markets"),
    )


def _ccxt_options(v: Any, ex_id: str, key: str) -> dict[str, Any]:
    """Constructor settings for the ccxt exchange: each key must be an attribute ccxt knows, so
    a typo (``url`` for ``urls``) fails here and not silently at run time. Values are never
    echoed in errors: they may hold API keys."""
    import ccxt.pro

    if not isinstance(v, dict):
        raise ConfigError(f"{key}: must be a mapping of ccxt constructor settings (urls, options, timeout, ...)")
    cls = getattr(ccxt.pro, ex_id)
    for k, val in v.items():
        if not isinstance(k, str) or not k:
            raise ConfigError(f"{key}: keys must be non-empty strings; got {k!r}")
        if k == "markets":
            raise ConfigError(f"{key}.markets: put pre-seeded markets in {key.rsplit('.', 1)[0]}.markets")
        if not hasattr(cls, k):
            close = difflib.get_close_matches(k, [a for a in dir(cls) if not a.startswith("_")], n=3)
            raise ConfigError(f"{key}.{k}: not a ccxt {ex_id} setting"
                              + (f"; did you mean {', '.join(close)}?" if close else ""))
        if k in ("urls", "options", "headers") and not isinstance(val, dict):
            raise ConfigError(f"{key}.{k}: must be a mapping")
    return dict(v)


def _ccxt_markets(v: Any, key: str) -> tuple[dict[str, Any], ...]:
    if not isinstance(v, list) or not v:
        raise ConfigError(f"{key}: must be a non-empty list of ccxt market dicts (id, symbol, base, quote, ...)")
    for i, m in enumerate(v):
        if not isinstance(m, dict) or not isinstance(m.get("id"), str) or not isinstance(m.get("symbol"), str):
            raise ConfigError(f"{key}[{i}]: must be a ccxt market dict with string id and symbol")
    return tuple(v)


def _redis(r: dict[str, Any]) -> RedisSettings:
    _no_unknown(r, set(RedisSettings.__dataclass_fields__), "redis.")
    d = RedisSettings()
    url = _url(r.get("url", d.url), "redis.url", ("redis://", "rediss://", "unix://"))
    from redis.connection import parse_url  # what Redis.from_url will do with it, checked now

    try:
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:  # its messages never hold the URL (which may carry a password)
        raise ConfigError(f"redis.url: not a valid Redis URL: {exc}") from None
    return RedisSettings(
        url=url,
        book_depth=int(_number(r.get("book_depth", d.book_depth), "redis.book_depth", 1, 400)),
        book_ttl_ms=int(_number(r.get("book_ttl_ms", d.book_ttl_ms), "redis.book_ttl_ms", 100, 86_400_000)),
        channel=_name(r.get("channel", d.channel), "redis.channel"),
        stream=_name(r.get("stream", d.stream), "redis.stream"),
        stream_maxlen=int(_number(r.get("stream_maxlen", d.stream_maxlen), "redis.stream_maxlen", 10, 10_000_000)),
        history=_name(r.get("history", d.history), "redis.history"),
        history_maxlen=_int(r.get("history_maxlen", d.history_maxlen), "redis.history_maxlen", 10, 10_000_000),
    )


def _detector(r: dict[str, Any]) -> DetectorSettings:
    _no_unknown(r, set(DetectorSettings.__dataclass_fields__), "detector.")
    d = DetectorSettings()
    return DetectorSettings(
        min_net_bps=_decimal(r.get("min_net_bps", d.min_net_bps), "detector.min_net_bps"),
        min_profit_quote=_decimal(r.get("min_profit_quote", d.min_profit_quote), "detector.min_profit_quote"),
        max_book_age_ms=int(_number(r.get("max_book_age_ms", d.max_book_age_ms), "detector.max_book_age_ms",
                                    1, 3_600_000)),
        max_notional_quote=_decimal(r.get("max_notional_quote", d.max_notional_quote),
                                    "detector.max_notional_quote", positive=True),
        emit_interval_ms=int(_number(r.get("emit_interval_ms", d.emit_interval_ms), "detector.emit_interval_ms",
                                     0, 3_600_000)),
        min_duration_ms=_int(r.get("min_duration_ms", d.min_duration_ms), "detector.min_duration_ms", 0, 3_600_000),
    )


def _metrics(r: dict[str, Any]) -> MetricsSettings:
    _no_unknown(r, set(MetricsSettings.__dataclass_fields__), "metrics.")
    d = MetricsSettings()
    host = r.get("host", d.host)
    if not isinstance(host, str) or not host:
        raise ConfigError(f"metrics.host: must be a host name or address; got {host!r}")
    return MetricsSettings(host=host, port=int(_number(r.get("port", d.port), "metrics.port", 0, 65535)))


def _markets(r: dict[str, Any]) -> MarketSettings:
    _no_unknown(r, {"cache_dir", "refresh", "write_cache"}, "markets.")
    d = MarketSettings()
    cache_dir = r.get("cache_dir", str(d.cache_dir))
    if not isinstance(cache_dir, str) or not cache_dir:
        raise ConfigError(f"markets.cache_dir: must be a directory path; got {cache_dir!r}")
    return MarketSettings(cache_dir=Path(cache_dir),
                          refresh=_bool(r.get("refresh", d.refresh), "markets.refresh"),
                          write_cache=_bool(r.get("write_cache", d.write_cache), "markets.write_cache"))


def _section(raw: dict[str, Any], key: str) -> dict[str, Any]:
    v = raw.get(key) or {}
    if not isinstance(v, dict):
        raise ConfigError(f"{key}: must be a mapping")
    return v


def _no_unknown(d: dict[str, Any], allowed: set[str], prefix: str) -> None:
    for k in d:
        if k not in allowed:
            raise ConfigError(f"{prefix}{k}: unknown setting; allowed: {', '.join(sorted(allowed))}")


def _symbols(v: Any, key: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not v:
        raise ConfigError(f"{key}: must be a non-empty list of unified symbols like BTC/USDT")
    out = []
    for i, s in enumerate(v):
        if not isinstance(s, str) or s.count("/") != 1 or not all(s.split("/")) or s != s.strip():
            raise ConfigError(f"{key}[{i}]: {s!r} is not a unified symbol like BTC/USDT")
        out.append(s.upper())
    if len(set(out)) != len(out):
        raise ConfigError(f"{key}: lists a symbol twice")
    return tuple(out)


def _decimal(v: Any, key: str, positive: bool = False) -> Decimal:
    if isinstance(v, bool) or not isinstance(v, int | float | str | Decimal):
        raise ConfigError(f"{key}: must be a number; got {v!r}")
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        raise ConfigError(f"{key}: must be a number; got {v!r}") from None
    if not d.is_finite() or (positive and d <= 0):
        raise ConfigError(f"{key}: must be a {'positive ' if positive else ''}finite number; got {v!r}")
    return d


def _number(v: Any, key: str, lo: float, hi: float) -> float:
    if isinstance(v, bool):
        raise ConfigError(f"{key}: must be a number; got {v!r}")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: must be a number; got {v!r}") from None
    if not lo <= f <= hi:
        raise ConfigError(f"{key}: must be between {lo:g} and {hi:g}; got {v!r}")
    return f


def _int(v: Any, key: str, lo: int, hi: int) -> int:
    f = _number(v, key, lo, hi)
    if f != int(f):
        raise ConfigError(f"{key}: must be a whole number; got {v!r}")
    return int(f)


def _bool(v: Any, key: str) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{key}: must be true or false; got {v!r}")
    return v


def _choice(v: Any, choices: tuple[str, ...], key: str) -> str:
    if v not in choices:
        raise ConfigError(f"{key}: must be one of {', '.join(choices)}; got {v!r}")
    return str(v)


def _url(v: Any, key: str, schemes: tuple[str, ...]) -> str:
    if not isinstance(v, str) or not v.startswith(schemes):
        shown = v.split("://", 1)[0] + "://***@" + v.rsplit("@", 1)[1] if isinstance(v, str) and "@" in v else v
        raise ConfigError(f"{key}: must be a URL starting with {' or '.join(schemes)}; got {shown!r}")
    if v.startswith("unix://"):
        return v
    parts = urlsplit(v)
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise ConfigError(f"{key}: the port must be a number from 0 to 65535") from None
    if not parts.hostname:
        raise ConfigError(f"{key}: has no host name")
    return v


def _name(v: Any, key: str) -> str:
    if not isinstance(v, str) or not v or any(c.isspace() for c in v):
        raise ConfigError(f"{key}: must be a non-empty name without spaces; got {v!r}")
    return v
