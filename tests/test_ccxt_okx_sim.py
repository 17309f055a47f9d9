"""A real third-party client against the OKX simulator: ccxt.pro's ``okx`` subscribes to ``books``
on the simulator (markets handed over with ``set_markets``, no REST), keeps its own book from the
snapshot and the seqId-chained updates, and must end up with exactly the simulator's book."""

from __future__ import annotations

import asyncio

import ccxt.pro

from scanner.sim.server import SimCluster, SimConfig
from tests.pipeline_helpers import as_floats, ccxt_markets

SYMBOLS = ["BTC/USDT", "ETH/USDT"]


async def test_ccxt_pro_okx_keeps_the_simulators_book() -> None:
    config = SimConfig(okx_keepalive_s=0.2)
    async with SimCluster(venues=["okx"], symbols=SYMBOLS, seed=3, tick_ms=25, config=config) as cluster:
        port = cluster.okx.port
        ex = ccxt.pro.okx({"urls": {"api": {"ws": f"ws://127.0.0.1:{port}/ws/v5"}}})
        try:
            ex.set_markets(ccxt_markets(cluster.okx.markets))
            nonces = []
            for _ in range(6):
                ob = await asyncio.wait_for(ex.watch_order_book("BTC/USDT"), 10)
                nonces.append(ob["nonce"])
            assert len(set(nonces)) > 1  # it followed live updates, not just the snapshot
            cluster.freeze()
            target = cluster.seq("okx", "BTC/USDT")
            while ob["nonce"] != target:  # frozen: keep-alives arrive, the state no longer moves
                ob = await asyncio.wait_for(ex.watch_order_book("BTC/USDT"), 10)
            bids, asks = cluster.book("okx", "BTC/USDT")
            assert len(ob["bids"]) == len(bids) == 400
            assert ob["bids"] == as_floats(bids)
            assert ob["asks"] == as_floats(asks)
            assert [r.path for r in cluster.okx.requests] == ["/ws/v5/public"]  # no REST at all
        finally:
            await ex.close()
