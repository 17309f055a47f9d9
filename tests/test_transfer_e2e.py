"""End to end on the simulators: a symbol whose buy venue has withdrawals closed (test-local
transfer table) is refused as ``transfer_closed`` while a real spread on another symbol reaches
the Redis stream with its transfer network and fee. Waits are on the stream and simulator ticks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from redis.asyncio import Redis

from scanner import config_transfer
from scanner.sim.server import SimCluster
from tests.pipeline_helpers import metric, next_opportunities, running, settings_for, until, until_event

TABLE = {
    "okx": {"BTC": [{"network": "BTC", "deposit": "open", "withdraw": "closed", "withdraw_fee": "0.0001"}],
            "ETH": [{"network": "ERC20", "deposit": "open", "withdraw": "open", "withdraw_fee": "0.002"},
                    {"network": "Arbitrum One", "deposit": "open", "withdraw": "open", "withdraw_fee": "0.0001"}]},
    "binance": {"BTC": [{"network": "BTC", "deposit": "open", "withdraw": "open"}],
                "ETH": [{"network": "ETH", "deposit": "open", "withdraw": "open"},
                        {"network": "ARBITRUM", "deposit": "closed", "withdraw": "open"}]},
}


async def test_closed_withdrawals_refused_and_open_route_reported(redis_url: str, market_cache: Path) -> None:
    async with SimCluster(venues=["okx", "binance"], symbols=["BTC/USDT", "ETH/USDT"], tick_ms=50, seed=11) as sims:
        sims.freeze()
        # both symbols: buy on OKX, sell on Binance, well above fees
        sims.set_book("okx", "BTC/USDT", bids=[["64990", "1"]], asks=[["65000", "0.5"]])
        sims.set_book("binance", "BTC/USDT", bids=[["65200", "0.5"]], asks=[["65210", "1"]])
        sims.set_book("okx", "ETH/USDT", bids=[["2990", "1"]], asks=[["3000", "1"]])
        sims.set_book("binance", "ETH/USDT", bids=[["3010", "1"]], asks=[["3020", "1"]])
        settings = settings_for(sims, redis_url, market_cache)
        settings = dataclasses.replace(settings, transfers=config_transfer.parse(
            {"snapshot": "", "table": TABLE}, {"okx", "binance"}))
        r = Redis.from_url(redis_url, socket_timeout=30)
        async with running(settings) as p:
            opened = await until_event(r, "0", "open")
            await until(lambda: metric(p, "scanner_refusals_total", {"reason": "transfer_closed", "venue": "okx"}) >= 1,
                        sims, "the BTC pair to be refused as transfer_closed")
            o = opened[-1][1]
            # Arbitrum is cheaper but Binance deposits there are closed: Ethereum it is
            assert (o["symbol"], o["buy_venue"], o["sell_venue"]) == ("ETH/USDT", "okx", "binance")
            assert (o["transfer_status"], o["transfer_network"], o["transfer_fee"]) == ("open", "ETH", "0.002")
            everything = await next_opportunities(r, "0", wait_s=1)  # the BTC refusal is counted by now
            assert everything and {e["symbol"] for _, e in everything} == {"ETH/USDT"}
            assert metric(p, "scanner_refusals_total", {"reason": "transfer_closed", "venue": "binance"}) == 0
        await r.aclose()
