"""The opportunity lifecycle tracker on an injected clock: persistence, throttled updates, close figures."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

from scanner.detect.lifecycle import Key, OpportunityTracker, opportunity_id
from scanner.model import Opportunity

MS = 1_000_000
BASE = Opportunity("BTC/USDT", "okx", "binance", "1", "100", "101", "100", "79.8", "0.8", "0.001", "0.001",
                   0.0, 0.0, 1, 1, recv_ns=0, detected_ns=0)


def qualify(t: OpportunityTracker, now_ms: int, net: str = "79.8", size: str = "1",
            profit: str = "0.8") -> Opportunity | None:
    opp = replace(BASE, net_bps=net, size=size, profit_quote=profit, recv_ns=now_ms * MS, detected_ns=now_ms * MS)
    return t.qualify(opp, Decimal(net), Decimal(size), Decimal(profit), now_ms * MS)


def test_id_is_stable_and_directional() -> None:
    assert opportunity_id("BTC/USDT", "okx", "binance") == "BTC/USDT|okx|binance"
    assert opportunity_id("BTC/USDT", "binance", "okx") != opportunity_id("BTC/USDT", "okx", "binance")


def test_flicker_shorter_than_min_duration_emits_nothing_and_counts_too_short() -> None:
    short: list[Key] = []
    t = OpportunityTracker(min_duration_ms=300, emit_interval_ms=1000, on_too_short=short.append)
    assert qualify(t, 1000) is None
    assert qualify(t, 1200) is None  # 200 ms < 300: still pending
    assert t.poll(1250 * MS) == []
    assert t.drop(("BTC/USDT", "okx", "binance"), 1290 * MS, 1290 * MS) is None
    assert short == [("BTC/USDT", "okx", "binance")] and len(t) == 0


def test_open_update_close_with_duration_and_peaks() -> None:
    t = OpportunityTracker(min_duration_ms=300, emit_interval_ms=1000)
    key = ("BTC/USDT", "okx", "binance")
    assert qualify(t, 1000, net="20", size="2", profit="3") is None
    opened = qualify(t, 1300, net="30", size="1", profit="2")  # persisted 300 ms: opens now
    assert opened is not None and t.is_open(key)
    assert (opened.event, opened.id, opened.opened_ns, opened.duration_ms) == ("open", "BTC/USDT|okx|binance",
                                                                               1000 * MS, 300.0)
    assert (opened.net_bps, opened.peak_net_bps, opened.peak_size, opened.peak_profit_quote) == ("30", "30", "2", "3")
    assert qualify(t, 2000, net="25") is None  # 700 ms since the open: throttled
    update = qualify(t, 2300, net="10", size="0.5", profit="0.4")
    assert update is not None and (update.event, update.duration_ms, update.size) == ("update", 1300.0, "0.5")
    close = t.drop(key, 2800 * MS, 2799 * MS)
    assert close is not None
    assert (close.event, close.id, close.opened_ns, close.duration_ms) == ("close", opened.id, 1000 * MS, 1800.0)
    assert (close.size, close.profit_quote, close.recv_ns, close.detected_ns) == ("0.5", "0.4", 2799 * MS, 2800 * MS)
    assert (close.peak_net_bps, close.peak_size, close.peak_profit_quote) == ("30", "2", "3")
    assert t.drop(key, 2900 * MS, 2900 * MS) is None and not t.is_open(key)


def test_min_duration_zero_opens_at_once_and_interval_zero_updates_every_time() -> None:
    t = OpportunityTracker(min_duration_ms=0, emit_interval_ms=0)
    first = qualify(t, 5)
    assert first is not None and first.event == "open" and first.duration_ms == 0.0
    assert [e.event for e in (qualify(t, 5), qualify(t, 6)) if e is not None] == ["update", "update"]


def test_poll_opens_a_candidate_that_persisted_without_new_evaluations() -> None:
    t = OpportunityTracker(min_duration_ms=300, emit_interval_ms=1000)
    assert qualify(t, 1000) is None
    assert t.poll(1299 * MS) == []
    [opened] = t.poll(1300 * MS)
    assert (opened.event, opened.opened_ns, opened.duration_ms, opened.recv_ns) == ("open", 1000 * MS, 300.0,
                                                                                    1300 * MS)
    assert t.poll(1400 * MS) == []  # opened once
    close = t.drop(("BTC/USDT", "okx", "binance"), 1500 * MS, 1500 * MS)
    assert close is not None and close.event == "close" and close.duration_ms == 500.0


def test_evolve_is_dataclasses_replace() -> None:
    import dataclasses

    import pytest

    from scanner.model import Opportunity, evolve

    o = Opportunity("BTC/USDT", "okx", "binance", "1", "100", "101", "100", "80", "0.8", "0.001", "0.001", 1.5, 2.5,
                    1, 2, 5, 6, buy_symbol="BTC/USDT", conversion_levels=3)
    changes: dict[str, Any] = {"event": "update", "recv_ns": 9, "peak_size": "2", "transfer_status": "open"}
    e = evolve(o, **changes)
    assert e == dataclasses.replace(o, **changes) and hash(e) == hash(dataclasses.replace(o, **changes))
    assert e.to_dict() == dataclasses.replace(o, **changes).to_dict() and o.event == "open"  # o untouched
    with pytest.raises(TypeError):
        evolve(o, nope=1)
