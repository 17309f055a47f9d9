"""The fee model: tiers and per-symbol overrides change the result, a buy fee taken in the base
asset changes net size and profit (hand-computed multi-level walks), config validation, and API keys
that never show their values."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from scanner.config import ConfigError, DetectorSettings, from_dict
from scanner.credentials import CredentialError, Secret, load_credentials
from scanner.detect.detector import SpreadDetector
from scanner.detect.spread import walk
from scanner.fees import FeeModel, VenueFees
from scanner.sinks.metrics import Metrics
from scanner.store.schema import BookView

F = Decimal("0.001")
ZERO = Decimal(0)


def cfg(venues: dict[str, Any], env: dict[str, str] | None = None, **top: Any) -> Any:
    return from_dict({"symbols": ["BTC/USDT", "ZEC/USDT"], "venues": venues, **top}, env or {})


def test_tier_change_changes_and_flips_the_result() -> None:
    asks, bids = [("100", "1"), ("100.2", "1")], [("100.5", "1"), ("100.3", "1")]
    # regular tier 0.1 % both sides: 1 @ 100 vs 100.5: cost 100.1, yield 100.3995 (+29.9 bps), take 1;
    # 100.2 * 1.001 = 100.3002 > 100.3 * 0.999 = 100.1997: stop. profit 100.3995 - 100.1 = 0.2995
    f = walk(asks, bids, F, F, ZERO)
    assert f is not None and f.size == Decimal(1) and f.profit == Decimal("0.2995")
    # a VIP tier at 0.02 %: the second level pays too: 100.2 * 1.0002 = 100.22004 < 100.3 * 0.9998 = 100.27994
    # size 2, cost 200.2, proceeds 200.8; 200.8 * 0.9998 - 200.2 * 1.0002 = 200.75984 - 200.24004 = 0.5198
    vip = Decimal("0.0002")
    g = walk(asks, bids, vip, vip, ZERO)
    assert g is not None and (g.size, g.levels_buy, g.levels_sell) == (Decimal(2), 2, 2)
    assert (g.net_cost, g.net_proceeds, g.profit) == (Decimal("200.24004"), Decimal("200.75984"), Decimal("0.5198"))
    # KuCoin's class C rate (0.3 %) on both sides: 100 * 1.003 = 100.3 > 100.5 * 0.997 = 100.1985: nothing survives
    c = Decimal("0.003")
    assert walk(asks, bids, c, c, ZERO) is None


def test_per_symbol_override_from_config_reaches_the_model() -> None:
    s = cfg({"kucoin": {"fees": {"maker": 0.0008, "symbols": {"ZEC/USDT": {"taker": 0.003, "maker": 0.003}}}},
             "okx": {"taker_fee": 0.0005}})
    m = s.fees.model()
    assert (m.taker("kucoin", "BTC/USDT"), m.maker("kucoin", "BTC/USDT")) == (F, Decimal("0.0008"))
    assert m.rates("kucoin", "ZEC/USDT").source == "config symbol" and m.taker("kucoin", "ZEC/USDT") == Decimal("0.003")
    assert m.rates("okx", "BTC/USDT").taker == Decimal("0.0005") and m.rates("okx", "BTC/USDT").source == "config"
    assert m.maker("okx", "BTC/USDT") == Decimal("0.0008")  # DEFAULT_FEES okx maker
    # the account's fetched rates (fees: auto) win over everything configured
    m.set_account("kucoin", {"ZEC/USDT": (Decimal("0.0015"), Decimal("0.001"))})
    assert m.rates("kucoin", "ZEC/USDT").source == "account" and m.taker("kucoin", "ZEC/USDT") == Decimal("0.0015")
    assert m.pair("ZEC/USDT", "kucoin", "okx").buy == Decimal("0.0015")


def test_buy_fee_in_base_changes_net_size_and_profit() -> None:
    asks, bids = [("100", "1"), ("100.1", "2")], [("101", "0.999"), ("100.8", "5")]
    # fee in base, keep 0.999: buy 1 @ 100 → 0.999 reaches B, sold @ 101 (101 * 0.999 * 0.999 = 100.798 > 100);
    # buy 2 @ 100.1 → 1.998 sold @ 100.8. size 3, net size 2.997, cost 300.2 (no quote fee),
    # proceeds 100.899 + 201.3984 = 302.2974, * 0.999 = 301.9951026; profit 1.7951026
    b = walk(asks, bids, F, F, ZERO, buy_fee_in_base=True)
    assert b is not None
    assert (b.size, b.net_size, b.cost, b.proceeds) == (Decimal(3), Decimal("2.997"), Decimal("300.2"),
                                                        Decimal("302.2974"))
    assert (b.net_cost, b.net_proceeds, b.profit) == (Decimal("300.2"), Decimal("301.9951026"), Decimal("1.7951026"))
    assert (b.levels_buy, b.levels_sell) == (2, 2)
    # fee in quote (the same books): 0.999 @ 100 vs 101, 0.001 @ 100 vs 100.8, 2 @ 100.1 vs 100.8: size 3
    # sold in full; cost 300.2 * 1.001 = 300.5002, proceeds 302.5998 * 0.999 = 302.2972002; profit 1.7970002
    q = walk(asks, bids, F, F, ZERO)
    assert q is not None and q.size == q.net_size == Decimal(3)
    assert (q.net_cost, q.net_proceeds, q.profit) == (Decimal("300.5002"), Decimal("302.2972002"),
                                                      Decimal("1.7970002"))


def test_buy_fee_in_base_bid_level_binds_and_notional_cap() -> None:
    # fee 0.2 % in base (keep 0.998), sell fee 0: bid 0.499 binds: buy 0.499 / 0.998 = 0.5 @ 100 (exact)
    # then 99 * 0.998 = 98.802 < 100: stop. size 0.5, net size 0.499, cost 50, proceeds 50.399, profit 0.399
    f = walk([("100", "3")], [("101", "0.499"), ("99", "5")], Decimal("0.002"), ZERO, ZERO, buy_fee_in_base=True)
    assert f is not None and (f.size, f.net_size, f.profit) == (Decimal("0.5"), Decimal("0.499"), Decimal("0.399"))
    # a 30 quote cap: buy 0.3, 0.2994 sold @ 101 = 30.2394; profit 0.2394
    g = walk([("100", "3")], [("101", "0.499")], Decimal("0.002"), ZERO, ZERO, Decimal(30), buy_fee_in_base=True)
    assert g is not None and (g.size, g.net_size, g.profit) == (Decimal("0.3"), Decimal("0.2994"), Decimal("0.2394"))


def bv(venue: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]], now: int) -> BookView:
    return BookView(venue, "BTC/USDT", True, bids, asks, now // 1_000_000, now, float(bids[0][0]), float(asks[0][0]))


def test_detector_reports_net_size_and_fee_currency_from_the_model() -> None:
    model = FeeModel({"okx": VenueFees(F, F, "base"), "binance": VenueFees(F, F)})
    d = SpreadDetector({"okx": F, "binance": F}, DetectorSettings(min_net_bps=ZERO, min_profit_quote=ZERO),
                       Metrics(), fee_model=model)
    now = time.time_ns()
    d.update(bv("okx", [("99", "1")], [("100", "1"), ("100.1", "2")], now), now)
    out = d.update(bv("binance", [("101", "0.999"), ("100.8", "5")], [("102", "1")], now), now)
    o = next(x for x in out if x.buy_venue == "okx")
    # the base-fee walk above: 3 bought, 2.997 sold, profit 1.7951026
    assert (o.size, o.net_size, o.profit_quote, o.buy_fee_currency) == ("3", "2.997", "1.7951026", "base")
    assert o.to_dict()["net_size"] == "2.997"


@pytest.mark.parametrize(("venues", "top", "error"), [
    ({"okx": {"fees": {"fee_currency": "usd"}}}, {}, "venues.okx.fees.fee_currency: must be one of quote, base"),
    ({"okx": {"fees": {"taker": 0.001}}}, {}, "venues.okx.fees.taker: unknown setting"),
    ({"okx": {"fees": {"maker": 0.5}}}, {}, "venues.okx.fees.maker: must be a fraction in [0, 0.05)"),
    ({"okx": {"fees": {"symbols": {"BTCUSDT": {"taker": 0.001}}}}}, {}, "venues.okx.fees.symbols: 'BTCUSDT'"),
    ({"okx": {"fees": {"symbols": {"BTC/USDT": {"takr": 0.001}}}}}, {}, "venues.okx.fees.symbols.BTC/USDT.takr"),
    ({"okx": {}}, {"fees": "live"}, "fees.mode: must be one of static, auto"),
    ({"okx": {}}, {"fees": {"mode": "auto", "allow_withdraw": True}}, "fees.allow_withdraw: unknown setting"),
    ({"okx": {}}, {"fees": {"allow_withdraw_keys": "yes"}}, "fees.allow_withdraw_keys: must be true or false"),
])
def test_bad_fee_settings_name_the_key(venues: dict[str, Any], top: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError) as e:
        cfg(venues, **top)
    assert str(e.value).startswith(error), str(e.value)


def test_fees_auto_short_form() -> None:
    assert cfg({"okx": {}}, fees="auto").fees.mode == "auto"
    assert cfg({"okx": {}}).fees.mode == "static"


def test_credentials_from_env_and_files_never_show_the_value(tmp_path: Path) -> None:
    plant = "PLANTED-k3y-9f8e7d"
    (tmp_path / "secret").write_text(plant + "-secret\n")
    env = {"BINANCE_API_KEY": plant, "BINANCE_API_SECRET_FILE": str(tmp_path / "secret")}
    c = load_credentials("binance", env)
    assert c is not None and c.secret.reveal() == plant + "-secret" and c.key.reveal() == plant
    assert plant not in repr(c) and plant not in str(c.key) and plant not in c.describe()
    assert c.describe() == (f"api key: set (env BINANCE_API_KEY), secret (file {tmp_path / 'secret'} "
                            f"(BINANCE_API_SECRET_FILE))")
    s = cfg({"binance": {}}, env)
    assert plant not in repr(s) and s.fees.credentials["binance"].key == Secret(plant, "x")
    assert load_credentials("binance", {}) is None


@pytest.mark.parametrize(("env", "error"), [
    ({"OKX_API_KEY": "k"}, "OKX_API_SECRET: okx API keys need both"),
    ({"OKX_API_KEY": "k", "OKX_API_SECRET": "s"}, "OKX_API_PASSPHRASE: okx API keys need a passphrase"),
    ({"OKX_API_KEY": "k", "OKX_API_KEY_FILE": "/x"}, "OKX_API_KEY: set both"),
    ({"OKX_API_KEY_FILE": "/nonexistent/key", "OKX_API_SECRET": "s"}, "OKX_API_KEY_FILE: cannot read /nonexistent"),
])
def test_incomplete_keys_are_config_errors_without_values(env: dict[str, str], error: str) -> None:
    with pytest.raises(CredentialError) as e:
        load_credentials("okx", env)
    assert str(e.value).startswith(error)
    with pytest.raises(ConfigError) as ce:
        cfg({"okx": {}}, env)
    assert str(ce.value).startswith(error) and "=s" not in str(ce.value)
