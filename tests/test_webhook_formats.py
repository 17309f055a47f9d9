"""Webhook bodies (scanner/webhooks/formats.py): the Standard Webhooks ``json`` envelope validated by
scanner/webhooks/schema/opportunity-event.schema.json, and Slack, Discord and Telegram bodies checked against each
platform's documented payload shape and limits.

Limits (documentation): Slack Block Kit: ≤ 50 blocks per message, section text ≤ 3000 chars, section
fields ≤ 10 of ≤ 2000 chars, header plain_text ≤ 150, context ≤ 10 elements. Discord embeds: title ≤ 256,
description ≤ 4096, ≤ 25 fields with name ≤ 256 and value ≤ 1024, footer ≤ 2048, all of these ≤ 6000 in
total. Telegram ``sendMessage``: text 1-4096 characters after entity parsing, ``parse_mode: HTML`` needs
``<``, ``>`` and ``&`` escaped. Lengths are checked in UTF-16 code units (never less than characters).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from scanner.config import DetectorSettings
from scanner.detect.detector import SpreadDetector
from scanner.model import Opportunity
from scanner.sinks.metrics import Metrics
from scanner.store.schema import BookView
from scanner.webhooks import formats
from scanner.webhooks.formats import FORMATS, SCHEMA_VERSION, RenderedBody, render, sample_event

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "scanner" / "webhooks" / "schema" / "opportunity-event.schema.json"
NOW = time.time_ns()
FEE = Decimal("0.001")


def units(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def body(fmt: str, event: dict[str, object], chat_id: str | None = "-1001234567890") -> dict[str, Any]:
    rendered = render(fmt, event, target_name="desk", chat_id=chat_id)
    assert isinstance(rendered, RenderedBody) and rendered.content_type == "application/json"
    out: dict[str, Any] = orjson.loads(rendered.body)
    return out


def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


# --- platform shape checks -----------------------------------------------------------------------------


def check_slack(p: dict[str, Any]) -> str:
    """Block Kit message: returns all visible text."""
    assert set(p) == {"text", "blocks"} and isinstance(p["text"], str) and 0 < units(p["text"]) <= 3000
    blocks = p["blocks"]
    assert isinstance(blocks, list) and 1 <= len(blocks) <= 50
    seen = [p["text"]]
    for b in blocks:
        if b["type"] == "header":
            assert set(b) == {"type", "text"} and b["text"]["type"] == "plain_text"
            assert 0 < units(b["text"]["text"]) <= 150
            seen.append(b["text"]["text"])
        elif b["type"] == "section":
            assert set(b) in ({"type", "text"}, {"type", "fields"})
            if "text" in b:
                assert b["text"]["type"] == "mrkdwn" and 0 < units(b["text"]["text"]) <= 3000
                seen.append(b["text"]["text"])
            else:
                assert 1 <= len(b["fields"]) <= 10
                for f in b["fields"]:
                    assert f["type"] == "mrkdwn" and 0 < units(f["text"]) <= 2000
                    seen.append(f["text"])
        else:
            assert b["type"] == "context" and 1 <= len(b["elements"]) <= 10
            for e in b["elements"]:
                assert e["type"] == "mrkdwn" and 0 < units(e["text"]) <= 3000
                seen.append(e["text"])
    for text in seen[:1] + seen[2:]:  # mrkdwn: only Slack's three escapes, never a raw < or >
        assert "<" not in text and ">" not in text
    return "\n".join(seen)


def check_discord(p: dict[str, Any]) -> dict[str, Any]:
    """Execute-webhook body with one embed: returns the embed."""
    assert set(p) == {"embeds", "allowed_mentions"} and p["allowed_mentions"] == {"parse": []}
    assert isinstance(p["embeds"], list) and len(p["embeds"]) == 1
    e: dict[str, Any] = p["embeds"][0]
    assert set(e) == {"title", "description", "color", "fields", "timestamp", "footer"}
    assert 0 < units(e["title"]) <= 256 and 0 < units(e["description"]) <= 4096
    assert isinstance(e["color"], int) and 0 <= e["color"] <= 0xFFFFFF
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", e["timestamp"])
    assert 0 < units(e["footer"]["text"]) <= 2048 and set(e["footer"]) == {"text"}
    assert len(e["fields"]) <= 25
    total = units(e["title"]) + units(e["description"]) + units(e["footer"]["text"])
    for f in e["fields"]:
        assert set(f) == {"name", "value", "inline"} and isinstance(f["inline"], bool)
        assert 0 < units(f["name"]) <= 256 and 0 < units(f["value"]) <= 1024
        total += units(f["name"]) + units(f["value"])
    assert total <= 6000
    return e


def check_telegram(p: dict[str, Any]) -> str:
    """sendMessage with parse_mode HTML: returns the text with its markup removed and entities decoded."""
    assert set(p) == {"chat_id", "text", "parse_mode", "disable_web_page_preview"}
    assert p["chat_id"] == "-1001234567890" and p["parse_mode"] == "HTML" and p["disable_web_page_preview"] is True
    text = p["text"]
    assert 0 < units(text) <= 4096
    tags = re.findall(r"<[^>]*>", text)
    assert set(tags) <= {"<b>", "</b>", "<i>", "</i>"}
    assert text.count("<b>") == text.count("</b>") and text.count("<i>") == text.count("</i>")
    plain = re.sub(r"</?[bi]>", "", text)
    assert "<" not in plain and ">" not in plain
    assert all(m in ("&lt;", "&gt;", "&amp;") for m in re.findall(r"&[^;\s]*;?", plain))
    return plain.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def check_all(event: dict[str, object]) -> None:
    validator().validate(body("json", event))
    check_slack(body("slack", event))
    check_discord(body("discord", event))
    check_telegram(body("telegram", event))


# --- real detector events ------------------------------------------------------------------------------


def view(venue: str, symbol: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> BookView:
    return BookView(venue, symbol, True, bids, asks, NOW // 1_000_000, NOW, float(bids[0][0]), float(asks[0][0]))


def detector_events() -> list[dict[str, object]]:
    """open, update, close of a same-quote pair and the open of a cross-quote pair, as read off the stream."""
    s = DetectorSettings(min_net_bps=Decimal(10), min_profit_quote=Decimal(0), max_book_age_ms=1000,
                         emit_interval_ms=0, quote_groups=(("USDT", "USDC"),))
    d = SpreadDetector({"okx": FEE, "binance": FEE}, s, Metrics())
    out: list[Opportunity] = []
    out += d.update(view("okx", "ETH/USDT", [("2999", "5")], [("3000.5", "1.5"), ("3001", "2")]), NOW)
    out += d.update(view("binance", "ETH/USDT", [("3020.25", "2"), ("3019", "1")], [("3021", "1")]), NOW)
    out += d.update(view("binance", "ETH/USDT", [("3019.5", "1")], [("3021", "1")]), NOW + 1_000_000)
    out += d.update(view("binance", "ETH/USDT", [("3000", "1")], [("3021", "1")]), NOW + 4_200_000_000)
    out += d.update(view("binance", "USDC/USDT", [("0.9999", "1000")], [("1.0001", "1000")]), NOW)
    out += d.update(view("okx", "BTC/USDC", [("99", "1")], [("100", "1"), ("100.5", "1")]), NOW)
    out += d.update(view("binance", "BTC/USDT", [("101.5", "1"), ("101", "1")], [("102", "1")]), NOW)
    events: list[dict[str, object]] = [orjson.loads(orjson.dumps(o.to_dict())) for o in out]
    return events


def test_real_detector_events_validate_and_render_within_every_platform_limit() -> None:
    events = detector_events()
    kinds = [(e["id"], e["event"]) for e in events]
    assert kinds == [("ETH/USDT|okx|binance", "open"), ("ETH/USDT|okx|binance", "update"),
                     ("ETH/USDT|okx|binance", "close"), ("BTC/USDC>BTC/USDT|okx|binance", "open")]
    assert events[3]["conversion"] is not None  # the cross-quote object is covered by the schema too
    for e in events:
        check_all(e)
    close = check_telegram(body("telegram", events[2]))
    assert "closed after 4.2 s, peak +" in close


def test_sample_event_validates_and_the_schema_version_matches() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["data"]["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    # every field Opportunity.to_dict() produces is documented and required
    assert set(schema["properties"]["data"]["required"]) == set(sample_event()) | {"schema_version"}
    check_all(sample_event())
    assert FORMATS == ("json", "slack", "discord", "telegram")


@pytest.mark.parametrize("breakage", [
    lambda d: d.pop("net_bps"),  # a field missing
    lambda d: d.update(size=0.42),  # money as a float, not an exact decimal string
    lambda d: d.update(profit_quote="1,000.5"),  # not a decimal
    lambda d: d.update(event="opened"),  # unknown lifecycle event
    lambda d: d.update(transfer_status="maybe"),
    lambda d: d.update(conversion={"symbol": "USDC/USDT"}),  # conversion without its figures
    lambda d: d.update(extra="field"),  # an undocumented field
    lambda d: d.update(schema_version="0.9"),
])
def test_a_broken_event_fails_schema_validation(breakage: Any) -> None:
    payload = body("json", sample_event())
    breakage(payload["data"])
    assert list(validator().iter_errors(payload)), payload["data"]


def test_envelope_type_must_match_the_data_event() -> None:
    payload = body("json", sample_event())
    payload["type"] = "opportunity.close"  # data.event is still "open"
    assert list(validator().iter_errors(payload))


def test_json_envelope_is_standard_webhooks_and_byte_stable() -> None:
    ev = sample_event(1_767_322_800_123_456_789)
    p = body("json", ev)
    assert set(p) == {"type", "timestamp", "data"} and p["type"] == "opportunity.open"
    assert p["timestamp"] == "2026-01-02T03:00:00.123456Z"  # detected_ns, exact to the microsecond
    assert p["data"] == {**ev, "schema_version": SCHEMA_VERSION}
    assert p["data"]["profit_quote"] == "51.256359" and p["data"]["size"] == "0.42"  # exact strings
    # a retry renders the same bytes (the signature and webhook-id stay meaningful)
    assert render("json", ev, target_name="a").body == render("json", dict(ev), target_name="b").body
    for kind in ("update", "close"):
        assert body("json", {**ev, "event": kind})["type"] == f"opportunity.{kind}"


def test_chat_headline_reads_at_a_glance() -> None:
    ev = sample_event()
    line = ("BTC/USDT buy OKX 64,210.1 → sell Bybit 64,390.0, 0.42 BTC, net +19.0 bps, +51.26 USDT, "
            "books 120/80 ms old")
    assert line in check_telegram(body("telegram", ev))
    assert check_slack(body("slack", ev)).startswith(line)
    assert check_discord(body("discord", ev))["description"] == line
    assert "Transfer:</b> open via BTC, withdrawal fee 0.0001 BTC" in body("telegram", ev)["text"]
    close = {**ev, "event": "close", "duration_ms": 4215.5, "peak_net_bps": "21.04"}
    text = check_telegram(body("telegram", close))
    assert "+51.26 USDT, closed after 4.2 s, peak +21.0 bps" in text and "books" not in text.split("\n")[1]
    assert check_discord(body("discord", close))["color"] != check_discord(body("discord", ev))["color"]


def test_numbers_have_thousands_separators_and_exact_decimals() -> None:
    opp = replace(_sample_opp(), buy_vwap="1234567.891234567891", sell_vwap="1234999", size="12345.000000000001",
                  profit_quote="2.675", net_bps="0.15", gross_bps="12.3456", buy_fee="0.00075")
    text = check_telegram(body("telegram", opp.to_dict()))
    # prices: 8 significant digits, half-even; sizes exact; the float round(2.675, 2) would give 2.67
    assert "buy OKX 1,234,567.9 → sell Bybit 1,234,999, 12,345.000000000001 BTC, net +0.2 bps, +2.68 USDT" in text
    assert "Net / gross: +0.15 / +12.3456 bps" in text and "Profit: +2.675 USDT" in text
    assert "fee 0.075%" in text
    tiny = check_telegram(body("telegram", replace(opp, profit_quote="0.0004").to_dict()))
    assert "+0.0004 USDT" in tiny  # never shown as +0.00 when it is not zero
    loss = check_telegram(body("telegram", replace(opp, profit_quote="-1234.5").to_dict()))
    assert "-1,234.50 USDT" in loss


def test_telegram_and_slack_escape_html_and_discord_escapes_markdown() -> None:
    opp = replace(_sample_opp(), symbol="A<B>&C/USDT", buy_venue="x<script>", id="A<B>&C/USDT|x<script>|bybit",
                  transfer_network="ERC_20 @everyone")
    ev = opp.to_dict()
    raw = body("telegram", ev)["text"]
    assert "A&lt;B&gt;&amp;C/USDT" in raw and "<script>" not in raw
    assert "A<B>&C/USDT buy x<script>" in check_telegram(body("telegram", ev))
    slack = check_slack(body("slack", ev))
    assert "A&lt;B&gt;&amp;C/USDT" in slack and "x&lt;script&gt;" in slack
    e = check_discord(body("discord", ev))
    assert "ERC\\_20 @everyone" in " ".join(f["value"] for f in e["fields"])  # mentions are disabled too


def test_very_long_names_are_clipped_within_every_limit() -> None:
    huge = "Z" * 10_000
    opp = replace(_sample_opp(), symbol=f"{huge}<&>/USDT", buy_venue="v" * 5000, sell_venue="🚀" * 5000,
                  id="i" * 20_000, transfer_network="&<" * 5000)
    ev = opp.to_dict()
    slack, discord, telegram = body("slack", ev), body("discord", ev), body("telegram", ev)
    check_slack(slack)
    e = check_discord(discord)
    plain = check_telegram(telegram)
    assert "…" in e["title"] and "…" in plain and "…" in slack["text"]
    assert "Opportunity open" in e["title"] and plain.startswith("Opportunity open")
    assert units(json.dumps(e, ensure_ascii=False)) < 8000  # nothing outside the counted fields grows
    validator().validate(body("json", ev))  # json carries the names unclipped


def test_the_whole_message_limits_hold_even_without_the_per_name_clip(monkeypatch: pytest.MonkeyPatch) -> None:
    # names no longer clipped to 64: only each platform's per-field and whole-message guards remain
    monkeypatch.setattr(formats, "NAME_MAX", 1_000_000)
    opp = replace(_sample_opp(), symbol="S" * 3000 + "/" + "Q" * 3000, buy_venue="<" * 3000, sell_venue="&" * 3000,
                  id="i" * 3000, transfer_network="n" * 3000, buy_integrity="b" * 3000, sell_integrity="s" * 3000,
                  conversion_symbol="C" * 3000, conversion_side="sell", conversion_in="1", conversion_out="1",
                  conversion_vwap="1", conversion_fee="0.001", conversion_levels=1)
    ev = {**opp.to_dict(), "event": "close", "peak_profit_quote": "9" * 900}
    check_slack(body("slack", ev))
    e = check_discord(body("discord", ev))
    assert len(e["fields"]) >= 1 and "…" in e["description"]
    raw = body("telegram", ev)["text"]
    plain = check_telegram(body("telegram", ev))
    assert plain.startswith("Opportunity close") and "…" in plain
    assert all(not line.endswith(":</b> ") for line in raw.split("\n"))  # no field clipped to nothing
    assert "<b>Buy:</b> &lt;&lt;" in raw


def test_bad_inputs_are_refused_with_the_target_named() -> None:
    ev = sample_event()
    with pytest.raises(ValueError, match=r"'desk'.*unknown format 'xml'"):
        render("xml", ev, target_name="desk")
    with pytest.raises(ValueError, match="telegram needs a chat_id"):
        render("telegram", ev, target_name="desk")
    with pytest.raises(ValueError, match="event kind"):
        render("json", {**ev, "event": "bogus"}, target_name="desk")


def _sample_opp() -> Opportunity:
    return Opportunity("BTC/USDT", "okx", "bybit", "0.42", "64210.1", "64390.0", "28.0174", "18.9967", "51.256359",
                       "0.0005", "0.0004", 120.0, 80.0, 2, 1, recv_ns=NOW, detected_ns=NOW, id="BTC/USDT|okx|bybit",
                       opened_ns=NOW, transfer_status="open", transfer_network="BTC", transfer_fee="0.0001")
