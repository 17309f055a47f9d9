"""Transfer feasibility and asset identity: network names, route choice, the detector's refusals
(transfer_closed, transfer_unknown, suspect_identity), the withdrawal fee in ``include`` mode
(hand-computed), aliases/deny, and the settings' validation errors."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from scanner.app import describe
from scanner.config import ConfigError, DetectorSettings, from_dict
from scanner.detect.detector import SpreadDetector
from scanner.model import Opportunity
from scanner.sinks.metrics import Metrics
from scanner.store.schema import BookView
from scanner.transfer.build import build_checker, load_snapshot
from scanner.transfer.ccxt_source import parse_currencies, redact
from scanner.transfer.model import Network, TransferTable, normalise_network, parse_entries
from scanner.transfer.route import Identity, TransferChecker, choose

FEE = Decimal("0.001")
PROJECT = Path(__file__).resolve().parents[1]


def net(network: str, w: str = "open", d: str = "open", fee: str | None = None, contract: str = "") -> dict[str, Any]:
    return {"network": network, "withdraw": w, "deposit": d, "withdraw_fee": fee, "contract": contract}


def view(venue: str, symbol: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]], now: int) -> BookView:
    return BookView(venue, symbol, True, bids, asks, now // 1_000_000, now, float(bids[0][0]), float(asks[0][0]))


def run_pair(table: dict[str, Any], *, buy: tuple[str, str] = ("okx", "BTC/USDT"),
             sell: tuple[str, str] = ("binance", "BTC/USDT"), ask: str = "100", bid: str = "101",
             identity: dict[str, Identity] | None = None, **kw: Any) -> tuple[list[Opportunity], Metrics]:
    """One okx ask level against one binance bid level (1 unit each), through the detector."""
    settings = DetectorSettings(**{"min_net_bps": Decimal(10), "min_profit_quote": Decimal("0.5"),
                                   "max_book_age_ms": 1000, **kw})
    checker = TransferChecker(TransferTable({}, parse_entries(table, "t"), 3600), identity or {},
                              include_fee=settings.transfer_mode == "include",
                              require_transfer=settings.require_transfer, max_net_bps=settings.max_net_bps)
    m = Metrics()
    d = SpreadDetector({"okx": FEE, "binance": FEE, "hyperliquid": FEE}, settings, m, checker)
    now = time.time_ns()
    d.update(view(buy[0], buy[1], [("1", "1")], [(ask, "1")], now), now)
    return d.update(view(sell[0], sell[1], [(bid, "1")], [("1000", "1")], now), now), m


def refusals(m: Metrics, reason: str, venue: str = "okx") -> float:
    return m.registry.get_sample_value("scanner_refusals_total", {"reason": reason, "venue": venue}) or 0.0


def test_network_names_are_normalised_across_venues() -> None:
    assert {normalise_network(n) for n in ("ERC20", "Ethereum", "ETH", "ethereum (erc20)")} == {"ETH"}
    assert {normalise_network(n) for n in ("TRC20", "TRX", "Tron", "TRON(TRC20)")} == {"TRX"}
    assert normalise_network("USDT-TRC20", "USDT") == "TRX"  # OKX chain ids carry the asset
    assert normalise_network("BTC-Bitcoin", "BTC") == "BTC"
    assert normalise_network("BEP20") == normalise_network("BSC") == "BSC"
    assert normalise_network("Arbitrum One") == "ARB"
    assert normalise_network("aptos") == "APTOS"  # not in the table: kept, upper-cased


def test_route_picks_the_cheapest_open_common_network() -> None:
    src = parse_entries({"okx": {"USDT": [net("ERC20", fee="3.5"), net("TRC20", fee="1.5"), net("SOL", fee="1"),
                                          net("BSC", fee="0.1")]}}, "t")[("okx", "USDT")]
    dst = parse_entries({"kraken": {"USDT": [net("ETH"), net("TRON"), net("Solana", d="closed")]}}, "t")[
        ("kraken", "USDT")]
    r = choose(src, dst)  # SOL is cheaper but deposits are closed; BSC is not common
    assert (r.status, r.network, r.fee, r.suspect) == ("open", "TRX", Decimal("1.5"), False)
    # an open network with a known fee beats one whose fee is unknown
    r2 = choose((Network("ETH", withdraw="open"), Network("TRX", withdraw="open", withdraw_fee=Decimal(9))),
                (Network("ETH", deposit="open"), Network("TRX", deposit="open")))
    assert (r2.network, r2.fee) == ("TRX", Decimal(9))


def test_unknown_status_is_never_reported_as_open() -> None:
    r = choose((Network("BTC", withdraw="open", withdraw_fee=Decimal("0.0001")),), (Network("BTC"),))
    assert (r.status, r.network) == ("unknown", "BTC")
    assert choose((Network("BTC", withdraw="open"),), (Network("LIGHTNING", deposit="open"),)).status == "unknown"
    # ccxt: None (not said) is unknown, False closed
    parsed = parse_currencies({"BTC": {"networks": {"BTC": {"deposit": None, "withdraw": False, "fee": 0.0002,
                                                            "limits": {"withdraw": {"min": 0.001}}}}},
                               "ETH": {"networks": {}}}, {"BTC", "ETH"})
    assert parsed == {"BTC": (Network("BTC", "unknown", "closed", Decimal("0.0002"), Decimal("0.001")),)}
    opps, m = run_pair({"okx": {"BTC": [net("BTC", fee="0.0001")]}, "binance": {"BTC": [net("BTC", d="unknown")]}})
    assert [(o.transfer_status, o.transfer_network, o.transfer_fee) for o in opps] == [("unknown", "BTC", "0.0001")]
    assert opps[0].to_dict()["transfer_status"] == "unknown"
    # with require_transfer the same pair is refused
    opps, m = run_pair({"okx": {"BTC": [net("BTC")]}, "binance": {"BTC": [net("BTC", d="unknown")]}},
                       require_transfer=True)
    assert opps == [] and refusals(m, "transfer_unknown") == 1
    # no data at all: reported as unknown by default
    opps, _ = run_pair({})
    assert [(o.transfer_status, o.transfer_network, o.transfer_fee) for o in opps] == [("unknown", "", "")]


def test_closed_withdrawals_are_refused() -> None:
    table = {"okx": {"BTC": [net("BTC", w="closed", fee="0.0001")]}, "binance": {"BTC": [net("BTC")]}}
    opps, m = run_pair(table)
    assert opps == [] and refusals(m, "transfer_closed") == 1
    table["okx"]["BTC"][0]["withdraw"] = "open"
    opps, m = run_pair(table)
    assert [(o.transfer_status, o.transfer_network, o.transfer_fee) for o in opps] == [("open", "BTC", "0.0001")]
    assert refusals(m, "transfer_closed") == 0


def test_a_withdrawal_fee_flips_a_marginal_case() -> None:
    # 1 @ 100 vs 101, fees 0.1 %: cost 100.1, proceeds 100.899, profit 0.799 (min_profit 0.5).
    # include: fee 0.003 BTC at the sell VWAP 101 = 0.303 → 0.496 < 0.5: refused.
    table = {"okx": {"BTC": [net("BTC", fee="0.003")]}, "binance": {"BTC": [net("BTC")]}}
    opps, m = run_pair(table, transfer_mode="ignore")
    assert [(o.profit_quote, o.transfer_fee) for o in opps] == [("0.799", "0.003")]
    opps, m = run_pair(table, transfer_mode="include")
    assert opps == [] and refusals(m, "below_min_profit") == 1
    # fee 0.002 → 0.202 off: profit 0.597, net 0.597 / 100.1 * 1e4 = 59.64036 bps
    table["okx"]["BTC"][0]["withdraw_fee"] = "0.002"
    opps, m = run_pair(table, transfer_mode="include")
    assert [(o.profit_quote, o.net_bps, o.transfer_fee) for o in opps] == [("0.597", "59.6404", "0.002")]
    # include with an unknown fee cannot price the transfer: refused, not reported as free
    table["okx"]["BTC"][0]["withdraw_fee"] = None
    opps, m = run_pair(table, transfer_mode="include")
    assert opps == [] and refusals(m, "transfer_unknown") == 1


def test_contract_mismatch_is_a_suspect_identity() -> None:
    usdt = "0xdAC17F958D2ee523a2206206994597C13D831ec7"
    table = {"okx": {"LINK": [net("ERC20", contract="0x514910771AF9Ca656af840dff83E8264EcF986CA")]},
             "binance": {"LINK": [net("ETH", contract=usdt)]}}
    opps, m = run_pair(table, buy=("okx", "LINK/USDT"), sell=("binance", "LINK/USDT"))
    assert opps == [] and refusals(m, "suspect_identity") == 1
    # the same address in another letter case (EIP-55 checksum) is the same token
    table["binance"]["LINK"][0]["contract"] = "0x514910771af9ca656af840dff83e8264ecf986ca"
    opps, _ = run_pair(table, buy=("okx", "LINK/USDT"), sell=("binance", "LINK/USDT"))
    assert [o.transfer_status for o in opps] == ["open"]


def test_max_net_bps_caps_absurd_spreads() -> None:
    # 100 vs 110: net (109.89 - 100.1) / 100.1 = 978 bps > 500
    opps, m = run_pair({}, bid="110")
    assert opps == [] and refusals(m, "suspect_identity") == 1
    opps, m = run_pair({}, bid="110", max_net_bps=Decimal(1000))
    assert [o.net_bps for o in opps] == ["978.022"] and refusals(m, "suspect_identity") == 0


def test_aliases_and_deny() -> None:
    ident = {"hyperliquid": Identity({"UBTC": "BTC"}, frozenset({"PURR/USDC"}))}
    table = {"hyperliquid": {"UBTC": [net("Bitcoin", fee="0.0002")]}, "binance": {"BTC": [net("BTC")]}}
    opps, _ = run_pair(table, buy=("hyperliquid", "UBTC/USDC"), sell=("binance", "BTC/USDC"), identity=ident)
    assert [(o.symbol, o.buy_venue, o.transfer_status, o.transfer_network, o.transfer_fee) for o in opps] == [
        ("BTC/USDC", "hyperliquid", "open", "BTC", "0.0002")]
    opps, _ = run_pair(table, buy=("hyperliquid", "UBTC/USDC"), sell=("binance", "BTC/USDC"))
    assert opps == []  # without the alias UBTC/USDC is never compared with BTC/USDC
    opps, m = run_pair({}, buy=("hyperliquid", "PURR/USDC"), sell=("binance", "PURR/USDC"), identity=ident)
    assert opps == [] and refusals(m, "suspect_identity", "hyperliquid") == 1


BASE: dict[str, Any] = {"symbols": ["BTC/USDT"], "venues": {"okx": {}, "hyperliquid": {}}}


@pytest.mark.parametrize(("extra", "message"), [
    ({"detector": {"transfer_mode": "always"}}, "detector.transfer_mode: must be one of include, ignore"),
    ({"detector": {"max_net_bps": -1}}, "detector.max_net_bps: must be a positive number"),
    ({"detector": {"require_transfer": "yes"}}, "detector.require_transfer: must be true or false"),
    ({"transfers": {"mode": "include"}}, "transfers.mode: unknown setting"),
    ({"transfers": {"identity": {"binance": {"deny": []}}}}, "transfers.identity.binance: not a configured venue"),
    ({"transfers": {"identity": {"hyperliquid": {"aliases": {"UBTC": "UBTC"}}}}},
     "transfers.identity.hyperliquid.aliases.UBTC: must map"),
    ({"transfers": {"identity": {"hyperliquid": {"deny": ["PURR"]}}}}, "transfers.identity.hyperliquid.deny[0]:"),
    ({"transfers": {"identity": {"hyperliquid": {"allow": []}}}}, "transfers.identity.hyperliquid.allow: unknown"),
    ({"transfers": {"table": {"okx": {"BTC": [{"network": "BTC", "withdraw": "yes"}]}}}},
     "transfers.table.okx.BTC[0].withdraw: must be one of open, closed, unknown"),
    ({"transfers": {"table": {"okx": {"BTC": [{"network": "BTC", "withdraw_fee": "-1"}]}}}},
     "transfers.table.okx.BTC[0].withdraw_fee: must be a finite amount >= 0"),
    ({"transfers": {"ttl_s": 1}}, "transfers.ttl_s: must be a number of seconds"),
])
def test_settings_errors_name_the_key(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        from_dict({**BASE, **extra}, {})


def test_settings_and_check_config_keep_ccxt_keys_secret() -> None:
    s = from_dict({**BASE, "detector": {"transfer_mode": "include", "max_net_bps": 300},
                   "transfers": {"refresh": True, "identity": {"hyperliquid": {"aliases": {"ubtc": "btc"}}},
                                 "ccxt_options": {"okx": {"apiKey": "KEY-abc123", "secret": "SECRET-xyz789"}}}}, {})
    assert (s.detector.transfer_mode, s.detector.max_net_bps, s.transfers.refresh) == ("include", Decimal(300), True)
    assert s.transfers.identity["hyperliquid"].aliases == {"UBTC": "BTC"}
    text = describe(s) + repr(s)
    assert "okx[apiKey, secret]" in text and "abc123" not in text and "xyz789" not in text
    assert redact("GET https://x/?k=KEY-abc123 failed", {"apiKey": "KEY-abc123"}) == "GET https://x/?k=*** failed"


def test_shipped_snapshot_is_curated_and_says_nothing_is_open() -> None:
    entries = load_snapshot(PROJECT / "configs" / "transfers.json")
    venues = {v for v, _ in entries}
    assert venues == {"okx", "binance", "bybit", "coinbase", "kraken", "gate", "kucoin", "bitget", "htx", "mexc",
                      "hyperliquid"}
    assert ("okx", "BTC") in entries and ("hyperliquid", "UBTC") in entries
    nets = [n for ns in entries.values() for n in ns]
    assert all(n.deposit == n.withdraw == "unknown" and n.withdraw_fee is None for n in nets)
    s = from_dict({**BASE, "transfers": {"snapshot": str(PROJECT / "configs" / "transfers.json")}}, {})
    assert build_checker(s).route(("BTC/USDT", "okx", "binance")).status == "unknown"
    with pytest.raises(ConfigError, match=r'^transfers\.snapshot: .* must be an object with "venues"'):
        load_snapshot(PROJECT / "configs" / "markets" / "okx.json")  # valid JSON, wrong shape


def test_bad_snapshot_entry_names_the_file_and_position(tmp_path: Path) -> None:
    bad = tmp_path / "t.json"
    bad.write_text('{"venues": {"okx": {"BTC": [{"network": "BTC", "deposit": "maybe"}]}}}')
    with pytest.raises(ConfigError, match=r"t\.json:venues\.okx\.BTC\[0\]\.deposit: must be one of"):
        load_snapshot(bad)
    assert load_snapshot(tmp_path / "missing.json") == {}  # a warning, the other layers still serve
