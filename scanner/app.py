"""Assembles the pipeline: ``scanner run`` (everything), ``collect``, ``detect``, ``check-config``.

Venues → collectors → BookStore (Redis) → detector → sinks. ``collect`` and ``detect`` run
the two halves in separate processes (or hosts) joined only by Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.exceptions import RedisError

from scanner import config as config_mod
from scanner.config import ConfigError, Settings
from scanner.detect.detector import detector_for
from scanner.detect.runner import run_detector
from scanner.fee_describe import describe_fees
from scanner.feed.collector import BookSink, VenueCollector
from scanner.feed.instruments import MarketsUnavailable, load_markets
from scanner.gcpolicy import GcPolicy
from scanner.sinks.http import HttpEndpoint
from scanner.sinks.metrics import Metrics
from scanner.sinks.opportunities import OpportunitySink
from scanner.sinks.readiness import collector_check, detector_check
from scanner.store.books import BookStore
from scanner.transfer import build as transfer_build
from scanner.venues import VENUES

if TYPE_CHECKING:
    from scanner.feed.ccxtpro import CcxtProCollector
    from scanner.feed.tap import FrameTap
    from scanner.web import WebView
    from scanner.webhooks.sender import WebhookDispatcher

log = logging.getLogger("scanner")

COLLECT, DETECT = "collect", "detect"
ROLES = {"run": {COLLECT, DETECT}, "collect": {COLLECT}, "detect": {DETECT}}


class Pipeline:
    """The running service. Tests drive it in-process; the CLI wraps it."""

    def __init__(self, settings: Settings, roles: set[str], metrics: Metrics | None = None,
                 latency_samples: int = 200_000) -> None:
        self.settings, self.roles = settings, roles
        self.metrics = metrics or Metrics()
        self.redis = Redis.from_url(settings.redis.url, socket_timeout=5, socket_connect_timeout=2,
                                    health_check_interval=10)
        self.http = HttpEndpoint(self.metrics, settings.metrics.host, settings.metrics.port)
        self.store = BookStore(settings.redis, self.metrics)
        self.gc = GcPolicy(self.metrics)
        self.collectors: dict[str, VenueCollector] = {}
        self.ccxt_collectors: dict[str, CcxtProCollector] = {}  # the ccxtpro:<id> long tail
        self.tap_factory: Callable[[VenueCollector], FrameTap] | None = None  # scanner record --with-pipeline
        self.detector = detector_for(settings, self.metrics)
        self.sink = OpportunitySink(settings.redis, self.metrics, latency_samples)
        self.webhooks = webhook_dispatcher(self.redis, settings, self.metrics) if DETECT in roles else None
        self.started = asyncio.Event()
        self.web: WebView | None = None  # the live web view on the metrics port (scanner/web/)
        if settings.web.enabled:
            from scanner.web import WebView

            self.web = WebView(settings, self.metrics, feed_in_process=COLLECT in roles)
            self.http.add_routes(self.web.routes)
        self.fee_urls: dict[str, dict[str, object]] = {}  # tests: ccxt urls["api"] per venue for keyed calls
        self.http.ready = (  # /readyz
            collector_check([*settings.venues, *settings.ccxt_venues], self.metrics.book_rows,
                            settings.detector.max_book_age_ms)
            if COLLECT in roles else detector_check(self.redis, self.detector.book_count))

    async def build_collectors(self) -> None:
        self.collectors.update(await make_collectors(self.settings, self.store, self.metrics))
        if self.tap_factory is not None:
            for c in self.collectors.values():
                c.set_tap(self.tap_factory(c))
        if self.settings.ccxt_venues:
            from scanner.feed.ccxtpro import CcxtProCollector  # imports ccxt.pro (~1 s): only when used

            for name, cs in self.settings.ccxt_venues.items():  # markets load in run(): never blocks the rest
                self.ccxt_collectors[name] = CcxtProCollector(cs, self.store, self.metrics)

    async def apply_keys(self) -> None:
        """API key permission checks and ``fees: auto`` (scanner/fee_auto.py); refuses withdraw keys."""
        if self.settings.fees.credentials:
            from scanner.fee_auto import apply_keys

            syms = {v.name: list(v.symbols) for v in self.settings.venues.values()}
            await apply_keys(self.settings.fees, self.detector.fee_model, syms, self.fee_urls)

    async def run(self, stop: asyncio.Event) -> None:
        await self.http.start()
        log.info("metrics at %s", self.http.url)
        if self.web is not None:
            log.info("web view at http://%s:%d/", self.http.host, self.http.port)
        try:
            await self.apply_keys()
            if COLLECT in self.roles:
                await self.build_collectors()
                if not self.collectors and not self.ccxt_collectors:
                    raise RuntimeError("no venue could be started; see the errors above")
            if self.webhooks is not None:  # groups exist before the first event is appended
                try:
                    await self.webhooks.setup()
                except (RedisError, OSError) as exc:  # the workers create them once Redis answers
                    log.error("webhooks: cannot create the outbox consumer groups yet: %s", exc)
                self.sink.outbox = (self.settings.webhooks.outbox_stream, self.settings.webhooks.outbox_maxlen)
            async with asyncio.TaskGroup() as tg:
                if self.webhooks is not None:
                    tg.create_task(self.webhooks.run(stop), name="webhooks")
                if self.web is not None:
                    tg.create_task(self.web.run(stop), name="web-view")
                if COLLECT in self.roles:
                    tg.create_task(self.store.run(stop), name="book-store")
                    for name, c in self.collectors.items():
                        tg.create_task(c.run(stop), name=f"collector-{name}")
                    for name, cc in self.ccxt_collectors.items():
                        tg.create_task(cc.run(stop), name=f"collector-{name}")
                if DETECT in self.roles:
                    if self.settings.transfers.refresh:  # live transfer status (ccxt fetch_currencies)
                        tg.create_task(transfer_build.refresh(self.settings, self.detector.transfers, stop),
                                       name="transfer-refresh")
                    local = self.store.listeners if COLLECT in self.roles else None  # books written here: in process
                    tg.create_task(run_detector(self.redis, self.settings.redis, self.detector, self.sink,
                                                self.metrics, stop, local), name="detector")
                # no full GC pass on the hot path (scanner/gcpolicy.py); start-up objects frozen
                self.gc.install()
                tg.create_task(self.gc.run(stop), name="gc-full-passes")
                self.started.set()
        finally:
            self.gc.uninstall()
            await self.http.stop()
            self.store.conn.close()
            self.sink.conn.close()
            await self.redis.aclose()


def webhook_dispatcher(redis: Redis, settings: Settings, metrics: Metrics) -> WebhookDispatcher | None:
    if not settings.webhooks.targets:
        return None
    from scanner.webhooks.sender import WebhookDispatcher

    return WebhookDispatcher(redis, settings.webhooks, metrics)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="configs/default.yaml", help="YAML settings file (default: %(default)s)")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: run until signalled)")


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("picows").setLevel(logging.WARNING)  # our own connect/close lines say the same
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # ccxt logs signed request headers (API key, passphrase) at DEBUG: never let them through,
    # whatever the scanner's own level (this also covers the ccxtpro:<id> collectors).
    logging.getLogger("ccxt").setLevel(max(logging.INFO, logging.getLogger("ccxt").level))


def load_settings(path: str) -> Settings | None:
    try:
        return config_mod.load(path)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return None


def main(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if settings is None:
        return 2
    if args.command == "check-config":
        print(describe(settings))
        return 0
    setup_logging(settings.log_level)
    # latency samples are for in-process benchmarks and tests: the service keeps none (flat RSS, make soak)
    return run_until_signalled(Pipeline(settings, ROLES[args.command], latency_samples=0).run, args.duration)


def run_until_signalled(body: Callable[[asyncio.Event], Awaitable[None]], duration: float) -> int:
    """Run ``body(stop)`` under uvloop until SIGINT/SIGTERM or ``duration`` seconds."""
    import uvloop

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if duration > 0:
            loop.call_later(duration, stop.set)
        await body(stop)

    try:
        uvloop.run(go())
    except Exception as exc:  # a fatal start-up problem: say it plainly
        log.error("stopped: %s", exc)
        return 1
    return 0


async def make_collectors(settings: Settings, sink: BookSink, metrics: Metrics) -> dict[str, VenueCollector]:
    """One collector per configured native venue whose markets load and list at least one configured symbol;
    the rest are logged and left out."""
    out: dict[str, VenueCollector] = {}
    for name, vs in settings.venues.items():
        spec = VENUES[name]
        try:
            markets = await load_markets(spec, vs, settings.markets)
        except MarketsUnavailable as exc:
            log.error("%s: left out: %s", name, exc)
            continue
        insts, missing = markets.resolve(vs.symbols)
        for sym in missing:
            log.warning("%s: does not list %s (or it is not trading); left out for this venue", name, sym)
        if not insts:
            log.error("%s: none of the configured symbols is listed; venue left out", name)
            continue
        out[name] = VenueCollector(spec, vs, insts, sink, metrics, {i: markets.by_id[i] for i in insts})
    return out


def describe(s: Settings) -> str:
    lines = [f"config {s.source}: OK", f"symbols: {', '.join(s.symbols)}"]
    for v in s.venues.values():
        lines.append(f"venue {v.name}: channel={v.channel} ws={v.ws_url} rest={v.rest_url} taker_fee={v.taker_fee} "
                     f"symbols={len(v.symbols)}")
    for c in s.ccxt_venues.values():  # options may hold API keys: their names only, never values
        lines.append(f"venue {c.name}: ccxt.pro {c.exchange_id} (integrity ccxt) depth={c.depth} "
                     f"limit={c.limit or 'default'} taker_fee={c.taker_fee} symbols={len(c.symbols)} "
                     f"options=[{', '.join(sorted(c.options))}] "
                     f"markets={'pre-seeded ' + str(len(c.markets)) if c.markets else 'load_markets'}")
    d = s.detector
    lines.append(f"detector: min_net_bps={d.min_net_bps} min_profit_quote={d.min_profit_quote} "
                 f"max_book_age_ms={d.max_book_age_ms} max_notional_quote={d.max_notional_quote} "
                 f"min_duration_ms={d.min_duration_ms} "
                 f"quote_groups={'/'.join('+'.join(g) for g in d.quote_groups) or 'none'}")
    lines.append(transfer_build.describe(s.transfers, d))
    lines.extend(describe_fees(s))
    lines.append(f"redis: {_redact(s.redis.url)} stream={s.redis.stream} channel={s.redis.channel}")
    lines.append(f"metrics: http://{s.metrics.host}:{s.metrics.port}/metrics")
    lines.append(f"web view: http://{s.metrics.host}:{s.metrics.port}/ history_s={s.web.history_s} "
                 f"max_rows={s.web.max_rows} max_clients={s.web.max_clients}" if s.web.enabled else "web view: off")
    lines.extend(t.describe() for t in s.webhooks.targets.values())  # origins only, never a URL or secret
    return "\n".join(lines)


def _redact(url: str) -> str:
    """Hide a password in a Redis URL (redis://user:secret@host → redis://user:***@host)."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0] if ":" in creds else ""
    return f"{scheme}://{user}:***@{host}"

