"""The live web view in a real browser: headless Chromium (over the DevTools Protocol, tests/browser.py)
opens the page of a running pipeline against two simulators, waits until the opportunity table has the
forced BTC/USDT row and the spread chart has drawn, checks that event text is inserted as text, sorts
the table, and saves a screenshot to test-artifacts/webview.png."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from tests.browser import Browser, chromium_path
from tests.conftest import PROJECT_ROOT
from tests.faults.infra_helpers import SYMBOL, set_open
from tests.web_helpers import web_pipeline

SCREENSHOT = PROJECT_ROOT / "test-artifacts" / "webview.png"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

READY = """
new Promise((resolve, reject) => {
  const rows = () => [...document.querySelectorAll("#opps tbody tr")];
  const ok = () => rows().some((tr) => tr.cells[0].textContent === %(symbol)s)
    && document.getElementById("chart").dataset.drawn === "1";
  const done = () => resolve({
    rows: rows().map((tr) => [...tr.cells].map((td) => td.textContent)),
    lines: Number(document.getElementById("chart").dataset.lines),
    legend: [...document.querySelectorAll("#legend li")].map((li) => li.textContent),
    status: document.getElementById("status").dataset.state,
  });
  if (ok()) return done();
  const obs = new MutationObserver(() => { if (ok()) { obs.disconnect(); done(); } });
  obs.observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
  setTimeout(() => { obs.disconnect(); reject(new Error("page not ready: rows=" + JSON.stringify(
    rows().map((tr) => tr.textContent)) + " drawn=" + document.getElementById("chart").dataset.drawn)); }, %(ms)d);
})
"""

ESCAPED = """
new Promise((resolve, reject) => {
  const find = () => [...document.querySelectorAll("#opps tbody tr")].find((tr) => tr.dataset.id === %(id)s);
  const done = (tr) => resolve({cell: tr.cells[4].textContent, elements: tr.querySelectorAll("b, img").length});
  if (find()) return done(find());
  const obs = new MutationObserver(() => { const tr = find(); if (tr) { obs.disconnect(); done(tr); } });
  obs.observe(document.body, { subtree: true, childList: true });
  setTimeout(() => { obs.disconnect(); reject(new Error("the injected row never appeared")); }, %(ms)d);
})
"""

SORT = """
(() => {
  const th = document.querySelector('#opps th[data-key="symbol"]');
  th.click();
  const first = [...document.querySelectorAll("#opps tbody tr")].map((tr) => tr.cells[0].textContent);
  th.click();
  const second = [...document.querySelectorAll("#opps tbody tr")].map((tr) => tr.cells[0].textContent);
  return {first, second, cls: th.className};
})()
"""


async def test_page_shows_opportunities_and_draws_the_chart(redis_url: str, market_cache: Path,
                                                            tmp_path: Path) -> None:
    if chromium_path() is None:
        pytest.skip("chromium not found: apt-get install chromium")
    async with web_pipeline(redis_url, market_cache) as run:
        set_open(run.sims, True)
        async with Browser(tmp_path / "chromium-profile") as browser:
            await browser.open(run.base + "/")
            ready: dict[str, Any] = await browser.evaluate(READY % {"symbol": orjson.dumps(SYMBOL).decode(),
                                                                    "ms": 30_000}, wait_s=40)
            row = next(r for r in ready["rows"] if r[0] == SYMBOL)
            assert row[1:3] == ["okx", "binance"] and float(row[4]) > 0 and float(row[5]) > 0
            assert ready["lines"] >= 1 and "okx → binance" in ready["legend"] and ready["status"] == "live"

            png = await browser.screenshot(SCREENSHOT)

            # event text goes in as text: markup in a field shows as characters, never as elements
            r = Redis.from_url(redis_url)
            try:
                oid = "ZZZ/USDT|okx|binance"
                ev = {"id": oid, "event": "open", "symbol": "ZZZ/USDT", "buy_venue": "okx", "sell_venue": "binance",
                      "size": "1", "net_bps": "<b>9</b><img src=x>", "profit_quote": "1", "opened_ns": time.time_ns(),
                      "transfer_status": "open"}
                await r.xadd("opportunities", {"data": orjson.dumps(ev)})
            finally:
                await r.aclose()
            esc = await browser.evaluate(ESCAPED % {"id": orjson.dumps(oid).decode(), "ms": 15_000}, wait_s=20)
            assert esc == {"cell": "<b>9</b><img src=x>", "elements": 0}

            sort = await browser.evaluate(SORT)
            assert sort["first"] == sorted(sort["first"]) and sort["second"] == sorted(sort["second"], reverse=True)
            assert "sorted-desc" in sort["cls"] and SYMBOL in sort["first"]
    assert png.startswith(PNG_MAGIC) and len(png) > 20_000
    assert SCREENSHOT.read_bytes() == png
