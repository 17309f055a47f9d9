"""Webhook bodies for one opportunity event: the ``json`` payload and the Slack, Discord and Telegram messages.

``json`` follows the Standard Webhooks payload structure::

    {"type": "opportunity.open", "timestamp": "2026-01-02T03:04:05.123456Z",
     "data": {...every field of Opportunity.to_dict()..., "schema_version": "1.0"}}

``type`` is ``opportunity.<event>`` (open, update, close); ``timestamp`` is the event's ``detected_ns`` in
UTC, so a body rendered again for a retry or a replay is byte-identical. ``data`` is validated by
``scanner/webhooks/schema/opportunity-event.schema.json`` (JSON Schema draft 2020-12). Money and sizes stay the exact
decimal strings the detector produced.

The chat formats put the whole opportunity on one line readable at a glance, e.g.
``BTC/USDT buy OKX 64,210.1 → sell Bybit 64,390.0, 0.42 BTC, net +18.3 bps, +49.80 USDT, books 120/80 ms old``,
then the exact figures as fields. Every number is formatted from its decimal string (never through a
float). Each body stays within the platform's documented limits (Slack blocks, Discord embeds, Telegram
``sendMessage``), measured in UTF-16 code units (never more than code points, so safe everywhere);
dynamic text is clipped with ``…`` before it could break a limit, and escaped after clipping without
ever cutting an escape sequence.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

import orjson

from scanner.model import Opportunity

SCHEMA_VERSION = "1.0"
FORMATS = ("json", "slack", "discord", "telegram")
EVENTS = ("open", "update", "close")
CONTENT_TYPE = "application/json"

# documented platform limits
SLACK_SECTION_TEXT_MAX = 3000  # section block text
SLACK_HEADER_TEXT_MAX = 150  # header block plain_text
SLACK_FIELDS_MAX = 10  # section block fields
SLACK_FIELD_TEXT_MAX = 2000  # each field's text
SLACK_BLOCKS_MAX = 50  # blocks per message
SLACK_CONTEXT_ELEMENTS_MAX = 10
DISCORD_TITLE_MAX = 256
DISCORD_DESCRIPTION_MAX = 4096
DISCORD_FIELDS_MAX = 25
DISCORD_FIELD_NAME_MAX = 256
DISCORD_FIELD_VALUE_MAX = 1024
DISCORD_FOOTER_MAX = 2048
DISCORD_TOTAL_MAX = 6000  # title + description + field names and values + footer, per message
TELEGRAM_TEXT_MAX = 4096
NAME_MAX = 64  # a symbol, venue or network name in a headline: longer ones are clipped first

_COLORS = {"open": 0x2ECC71, "update": 0x3498DB, "close": 0x95A5A6}
_VENUE_NAMES = {"okx": "OKX", "binance": "Binance", "bybit": "Bybit", "coinbase": "Coinbase", "kraken": "Kraken",
                "gate": "Gate", "kucoin": "KuCoin", "bitget": "Bitget", "htx": "HTX", "mexc": "MEXC",
                "hyperliquid": "Hyperliquid"}


@dataclass(frozen=True)
class RenderedBody:
    body: bytes
    content_type: str


def render(fmt: str, event: dict[str, object], *, target_name: str, chat_id: str | None = None) -> RenderedBody:
    """The HTTP body for ``event`` (an ``Opportunity.to_dict()``) in format ``fmt``.

    ``chat_id`` is required for ``telegram`` (the ``sendMessage`` target). Raises ValueError for an
    unknown format, an event that is not open/update/close, or a telegram target without a chat id.
    """
    kind = event.get("event")
    if kind not in EVENTS:
        raise ValueError(f"webhook target {target_name!r}: event kind {kind!r} is not one of {', '.join(EVENTS)}")
    payload: dict[str, object]
    if fmt == "json":
        payload = json_payload(event)
    elif fmt == "slack":
        payload = slack_payload(event, target_name)
    elif fmt == "discord":
        payload = discord_payload(event, target_name)
    elif fmt == "telegram":
        if not chat_id:
            raise ValueError(f"webhook target {target_name!r}: format telegram needs a chat_id")
        payload = telegram_payload(event, target_name, chat_id)
    else:
        raise ValueError(f"webhook target {target_name!r}: unknown format {fmt!r}, "
                         f"expected one of {', '.join(FORMATS)}")
    return RenderedBody(orjson.dumps(payload), CONTENT_TYPE)


def json_payload(event: dict[str, object]) -> dict[str, object]:
    """The Standard Webhooks envelope; ``data`` is the event with ``schema_version`` added."""
    return {"type": f"opportunity.{event['event']}", "timestamp": iso_utc(_event_ns(event)),
            "data": {**event, "schema_version": SCHEMA_VERSION}}


def sample_event(now_ns: int | None = None) -> dict[str, object]:
    """A realistic ``open`` event (BTC/USDT, OKX → Bybit), for ``scanner webhooks test``."""
    now = time.time_ns() if now_ns is None else now_ns
    return Opportunity(
        symbol="BTC/USDT", buy_venue="okx", sell_venue="bybit", size="0.42", buy_vwap="64210.1",
        sell_vwap="64390.0", gross_bps="28.0174", net_bps="18.9967", profit_quote="51.256359",
        buy_fee="0.0005", sell_fee="0.0004", buy_book_age_ms=120.0, sell_book_age_ms=80.0, levels_buy=2,
        levels_sell=1, recv_ns=now - 1_500_000, detected_ns=now, id="BTC/USDT|okx|bybit", event="open",
        opened_ns=now, peak_net_bps="18.9967", peak_size="0.42", peak_profit_quote="51.256359", net_size="0.42",
        transfer_status="open", transfer_network="BTC", transfer_fee="0.0001",
    ).to_dict()


# --- chat formats ----------------------------------------------------------------------------------------


def slack_payload(event: dict[str, object], target_name: str) -> dict[str, object]:
    """Block Kit: ``text`` (notification fallback) and header, headline, fields and context blocks."""
    headline, fields, title, footer = _summary(event, target_name)
    blocks: list[dict[str, object]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _fit(title, SLACK_HEADER_TEXT_MAX)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _fit(headline, SLACK_SECTION_TEXT_MAX, _slack_esc)}},
    ]
    items = [f"*{name}*\n" + _fit(value, SLACK_FIELD_TEXT_MAX - len(name) - 3, _slack_esc) for name, value in fields]
    for start in range(0, len(items), SLACK_FIELDS_MAX):
        blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": t}
                                                     for t in items[start:start + SLACK_FIELDS_MAX]]})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn",
                                                    "text": _fit(footer, SLACK_SECTION_TEXT_MAX, _slack_esc)}]})
    return {"text": _fit(headline, SLACK_SECTION_TEXT_MAX, _slack_esc), "blocks": blocks[:SLACK_BLOCKS_MAX]}


def discord_payload(event: dict[str, object], target_name: str) -> dict[str, object]:
    """One embed; mentions disabled so no text in an event can ping anyone."""
    headline, fields, title, footer = _summary(event, target_name)
    t = _fit(title, DISCORD_TITLE_MAX, _discord_esc)
    f = _fit(footer, DISCORD_FOOTER_MAX)  # footers are not markdown
    budget = DISCORD_TOTAL_MAX - _units(t) - _units(f)
    d = _fit(headline, min(DISCORD_DESCRIPTION_MAX, budget // 2), _discord_esc)
    budget -= _units(d)
    embed_fields: list[dict[str, object]] = []
    for name, value in fields[:DISCORD_FIELDS_MAX]:
        n = _fit(name, DISCORD_FIELD_NAME_MAX, _discord_esc)
        v = _fit(value, min(DISCORD_FIELD_VALUE_MAX, budget - _units(n)), _discord_esc)
        if not v or budget - _units(n) - _units(v) < 0:
            break
        budget -= _units(n) + _units(v)
        embed_fields.append({"name": n, "value": v, "inline": True})
    embed = {"title": t, "description": d, "color": _COLORS[str(event["event"])], "fields": embed_fields,
             "timestamp": iso_utc(_event_ns(event)), "footer": {"text": f}}
    return {"embeds": [embed], "allowed_mentions": {"parse": []}}


def telegram_payload(event: dict[str, object], target_name: str, chat_id: str) -> dict[str, object]:
    """``sendMessage`` with ``parse_mode: HTML``: a bold title, the headline, one line per field."""
    headline, fields, title, footer = _summary(event, target_name)
    parts = [f"<b>{_fit(title, 256, _html)}</b>", _fit(headline, 1500, _html)]
    parts += [f"<b>{_fit(name, 64, _html)}:</b> {_fit(value, 256, _html)}" for name, value in fields]
    parts.append(f"<i>{_fit(footer, 256, _html)}</i>")
    text, used = [], 0
    for part in parts:  # whole lines only, so no tag or entity is ever cut
        if used + _units(part) + 1 > TELEGRAM_TEXT_MAX:
            break
        text.append(part)
        used += _units(part) + 1
    return {"chat_id": chat_id, "text": "\n".join(text), "parse_mode": "HTML", "disable_web_page_preview": True}


def _summary(ev: dict[str, object], target_name: str) -> tuple[str, list[tuple[str, str]], str, str]:
    """(headline, [(field name, value)], title, footer) of one event, as plain unescaped text."""
    kind = str(ev["event"])
    symbol, buy_symbol, sell_symbol = (_name(ev.get(k)) for k in ("symbol", "buy_symbol", "sell_symbol"))
    base, _, quote = symbol.partition("/")
    label = symbol if buy_symbol in ("", sell_symbol) else f"{buy_symbol} → {sell_symbol}"
    bv, sv = _venue(ev.get("buy_venue")), _venue(ev.get("sell_venue"))
    head = (f"{label} buy {bv} {_price(ev.get('buy_vwap'))} → sell {sv} {_price(ev.get('sell_vwap'))}, "
            f"{_qty(ev.get('size'))} {base}, net {_signed(ev.get('net_bps'), 1)} bps, "
            f"{_money(ev.get('profit_quote'))} {quote}")
    if kind == "close":
        head += (f", closed after {_seconds(ev.get('duration_ms'))} s, "
                 f"peak {_signed(ev.get('peak_net_bps') or ev.get('net_bps'), 1)} bps")
    else:
        head += f", books {_ms(ev.get('buy_book_age_ms'))}/{_ms(ev.get('sell_book_age_ms'))} ms old"
    size = f"{_qty(ev.get('size'))} {base}"
    if ev.get("net_size") and ev.get("net_size") != ev.get("size"):
        size += f" ({_qty(ev.get('net_size'))} {base} reach {sv})"
    fields = [
        ("Buy", f"{bv} {_price(ev.get('buy_vwap'))}, fee {_pct(ev.get('buy_fee'))}, "
                f"{_levels(ev.get('levels_buy'))}"),
        ("Sell", f"{sv} {_price(ev.get('sell_vwap'))}, fee {_pct(ev.get('sell_fee'))}, "
                 f"{_levels(ev.get('levels_sell'))}"),
        ("Size", size),
        ("Net / gross", f"{_signed(ev.get('net_bps'))} / {_signed(ev.get('gross_bps'))} bps"),
        ("Profit", f"{_signed(ev.get('profit_quote'))} {quote}"),
        ("Books", f"{_ms(ev.get('buy_book_age_ms'))} / {_ms(ev.get('sell_book_age_ms'))} ms old "
                  f"({ev.get('buy_integrity')} / {ev.get('sell_integrity')})"),
    ]
    transfer = _transfer(ev, base)
    if transfer:
        fields.append(("Transfer", transfer))
    conv = ev.get("conversion")
    if isinstance(conv, dict):
        fields.append(("Conversion", f"{_name(conv.get('symbol'))} {conv.get('side')} on {_venue(conv.get('venue'))} "
                                     f"at {_price(conv.get('vwap'))}: {_qty(conv.get('amount_in'))} → "
                                     f"{_qty(conv.get('amount_out'))} {quote}, fee {_pct(conv.get('fee'))}"))
    if kind != "open":
        fields.append(("Lifetime", f"{_seconds(ev.get('duration_ms'))} s, peak {_signed(ev.get('peak_net_bps'))} bps, "
                                   f"{_signed(ev.get('peak_profit_quote'))} {quote}"))
    title = f"Opportunity {kind}: {label} {bv} → {sv}"
    footer = f"{_name(ev.get('id'), 200)} · {iso_utc(_event_ns(ev))} · webhook {_name(target_name)}"
    return head, fields, title, footer


def _levels(n: object) -> str:
    return "1 level" if n == 1 else f"{_raw(n)} levels"


def _transfer(ev: dict[str, object], base: str) -> str:
    status = ev.get("transfer_status")
    if status == "open":
        out = "open"
        if ev.get("transfer_network"):
            out += f" via {_name(ev.get('transfer_network'))}"
        if ev.get("transfer_fee"):
            out += f", withdrawal fee {_qty(ev.get('transfer_fee'))} {base}"
        return out
    return "closed" if status == "closed" else ""


# --- numbers: always from the exact decimal strings ------------------------------------------------------


def _dec(v: object) -> Decimal | None:
    if isinstance(v, bool) or v is None or v == "":
        return None
    try:
        d = Decimal(str(v))
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def _raw(v: object) -> str:
    return _name(v)


def _qty(v: object) -> str:
    """Exact, thousands-separated: ``1234.50`` → ``1,234.50``."""
    d = _dec(v)
    return _raw(v) if d is None else format(d, ",f")


def _price(v: object, significant: int = 8) -> str:
    """Thousands-separated; more than ``significant`` digits are rounded half-even (``64,210.123``)."""
    d = _dec(v)
    if d is None:
        return _raw(v)
    places = max(0, significant - 1 - d.adjusted())
    exponent = d.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        d = d.quantize(Decimal(1).scaleb(-places), ROUND_HALF_EVEN).normalize()
        if d == d.to_integral():
            d = d.quantize(Decimal(1))
    return format(d, ",f")


def _signed(v: object, places: int | None = None) -> str:
    """``+18.3`` / ``-2.0``; exact when ``places`` is None."""
    d = _dec(v)
    if d is None:
        return _raw(v) or "?"
    if places is not None:
        d = d.quantize(Decimal(1).scaleb(-places), ROUND_HALF_EVEN)
    return format(d, "+,f")


def _money(v: object) -> str:
    """Two decimals (``+49.80``), or exact when that would round a non-zero amount to zero."""
    d = _dec(v)
    if d is not None and d != 0 and d.quantize(Decimal("0.01"), ROUND_HALF_EVEN) == 0:
        return _signed(v)
    return _signed(v, 2)


def _ms(v: object) -> str:
    d = _dec(v)
    return _raw(v) if d is None else format(d.quantize(Decimal(1), ROUND_HALF_EVEN), ",f")


def _seconds(duration_ms: object) -> str:
    d = _dec(duration_ms)
    return _raw(duration_ms) if d is None else format((d / 1000).quantize(Decimal("0.1"), ROUND_HALF_EVEN), ",f")


def _pct(fraction: object) -> str:
    d = _dec(fraction)
    if d is None:
        return _raw(fraction)
    pct = (d * 100).normalize()
    return f"{format(pct.quantize(Decimal(1)) if pct == pct.to_integral() else pct, 'f')}%"


# --- text: names, clipping, escaping ---------------------------------------------------------------------


def _name(v: object, limit: int | None = None) -> str:
    return _clip("" if v is None else str(v), NAME_MAX if limit is None else limit)


def _venue(v: object) -> str:
    name = "" if v is None else str(v)
    return _VENUE_NAMES.get(name, _name(name))


def _units(s: str) -> int:
    """Length in UTF-16 code units (what Telegram counts; never less than code points)."""
    return len(s.encode("utf-16-le")) // 2


def _clip(s: str, limit: int) -> str:
    """``s`` cut to at most ``limit`` UTF-16 units, ending in ``…`` when cut."""
    if _units(s) <= limit:
        return s
    if limit <= 0:
        return ""
    out, used = [], 0
    for ch in s:
        w = 2 if ord(ch) > 0xFFFF else 1
        if used + w > limit - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def _fit(text: str, limit: int, esc: Callable[[str], str] = str) -> str:
    """``esc(text clipped)`` within ``limit`` units: clips the plain text (never an escape) until it fits."""
    budget = limit
    while budget > 0:
        out = esc(_clip(text, budget))
        size = _units(out)
        if size <= limit:
            return out
        budget = min(budget - 1, budget * limit // size)  # escapes expand the text: shrink in proportion
    return ""


def _html(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_esc(s: str) -> str:
    """Slack's three control characters; ``*`` markup in our own field labels is kept."""
    return _html(s)


def _discord_esc(s: str) -> str:
    """Markdown characters of dynamic text shown literally (``→`` and plain words are untouched)."""
    for ch in ("\\", "`", "|", "~", "_", "*"):
        s = s.replace(ch, "\\" + ch)
    return s


def _event_ns(ev: dict[str, object]) -> int:
    for key in ("detected_ns", "recv_ns"):
        v = ev.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return time.time_ns()


def iso_utc(ns: int) -> str:
    """``2026-01-02T03:04:05.123456Z`` from unix nanoseconds, without float rounding."""
    sec, rem = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rem // 1000:06d}Z"
