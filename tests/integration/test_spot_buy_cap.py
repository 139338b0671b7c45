"""A spot hedge buy never asks for more than the free USDT pays for (bot.execution.buy_cap): the
engine over the simulator's Binance server with the real client and a real SQLite store (the
SpotHedge rig of test_spot_balance_truth); and the cap's arithmetic as a pure function (hypothesis).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from integration.test_spot_balance_truth import SpotHedge, eth_held

from bot.domain import OrderStatus, Side
from bot.execution.buy_cap import buyable
from bot.sim.server.binance import BinanceServer, sim_binance_credentials
from bot.sim.spot.exchange import SpotExchange
from bot.sim.spot.records import SpotConfig
from bot.store import Store

D = Decimal
KEY, _ = sim_binance_credentials()


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    config = SpotConfig(default_balances={"USDT": D(1_000)})  # a third of the 1 ETH (~3,000) the hedge owes
    srv = BinanceServer(SpotExchange(seed=11, start_ns=time.time_ns(), config=config), time.time_ns)
    await srv.start()
    yield srv
    await srv.stop()


def usdt_free(server: BinanceServer) -> Decimal:
    return next(b.free for b in server.spot.balances(KEY) if b.asset == "USDT")


async def test_the_hedge_buys_what_the_free_quote_pays_for_and_nothing_is_refused(
        server: BinanceServer, tmp_path: Path) -> None:
    with Store.open(tmp_path / "perpbot.sqlite") as store:
        h = await SpotHedge.open(server, store, tmp_path)
        with structlog.testing.capture_logs() as logs:
            await h.run(D(1))
        buys = h.orders(Side.BUY)
        assert buys and all(status is OrderStatus.FILLED for _, status in buys), buys  # none refused
        bought = sum((size for size, _ in buys), D(0))
        assert D("0.25") < bought < D("0.34")  # ~1,000 USDT at ~3,000, less the slippage margin
        assert D(0) <= usdt_free(server) < D(20)  # spent down to less than a lot at the margin
        assert eth_held(server) == bought * D("0.999")  # the commission is withheld in ETH
        hedge = h.engine.hedges["ETH-USD"]
        assert hedge.rejects == 0 and hedge.unwinds == 0
        capped = [e for e in logs if e["event"] == "hedge_buy_capped"]
        assert capped and D(capped[0]["wanted"]) == 1 and D(capped[0]["buyable"]) <= D("0.34"), capped


@given(free=st.decimals(min_value=0, max_value=10_000_000, places=2),
       price=st.decimals(min_value=D("0.01"), max_value=1_000_000, places=2),
       step=st.sampled_from([D("0.00001"), D("0.0001"), D("0.01"), D(1)]))
def test_buyable_is_the_most_lots_the_quote_pays_for(free: Decimal, price: Decimal, step: Decimal) -> None:
    most = buyable(free, price, step)
    assert most >= 0 and most % step == 0
    assert most * price <= free  # never more than the free quote
    assert (most + step) * price > free  # and not a lot less
