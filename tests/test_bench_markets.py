"""The load benchmark's synthetic markets (scanner/bench/synth_markets.py): every venue's own
instruments parser lists the cloned coins, on the template's price grid, and the simulator serves them."""

from __future__ import annotations

from pathlib import Path

from scanner.bench.live import VENUES10
from scanner.bench.synth_markets import write_markets
from scanner.markets import MarketMap
from scanner.sim.market import load_markets
from scanner.sim.server import SimCluster
from scanner.venues import VENUES


def test_every_venue_lists_the_clones_on_the_template_grid(tmp_path: Path) -> None:
    symbols = write_markets(list(VENUES10), 3, tmp_path)
    assert symbols == ["B001/USDT", "B002/USDT", "B003/USDT"]
    for venue in VENUES10:
        markets = {m.symbol: m for m in VENUES[venue].parse_instruments((tmp_path / f"{venue}.json").read_bytes())}
        eth = markets["ETH/USDT"]
        for sym in symbols:
            m = markets[sym]
            assert (m.base, m.quote, m.tick, m.lot) == (sym.split("/")[0], "USDT", eth.tick, eth.lot), venue
            assert m.venue_id != eth.venue_id and MarketMap(venue, list(markets.values())).by_symbol[sym] == m


async def test_the_simulators_serve_the_clones(tmp_path: Path) -> None:
    symbols = write_markets(["okx", "kraken"], 2, tmp_path)
    assert len(load_markets("okx", tmp_path)[0]) > len(load_markets("okx")[0])
    async with SimCluster(venues=["okx", "kraken"], symbols=symbols, tick_ms=0, markets_dir=tmp_path,
                          prices={s: 3400.0 for s in symbols}) as cluster:
        for venue in ("okx", "kraken"):
            bids, asks = cluster.venues[venue].book(symbols[0], 5)
            assert bids and asks and 3000 < float(bids[0][0]) < float(asks[0][0]) < 3800
