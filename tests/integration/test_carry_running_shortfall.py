"""Spot that leaves the Binance account while the daemon runs leaves the carry, as it does when it
left while the daemon was down (bot.carry_start): the balance check books the store down to the
balance, the sleeve, the hedge's owed spot and its saved record shrink, the next decision buys the
perp back to the smaller carry and the hedge buys nothing back. A shortfall within the tolerance
(a buy's commission) is still bought back, and an order of ours working on the market keeps the
check off it. Against the simulator's real-protocol servers with the real clients and a real
SQLite store.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import structlog
from integration.test_carry_restart import (
    CARRY,
    KEY,
    PERP,
    SPOT,
    booked_carry,
    bot_orders,
    btc_held,
    run_services,
    settings_for,
    venue_perp,
)
from integration.test_spot_balance_truth import SpotHedge, eth_held, old_store_buy, resting_buy
from integration.test_spot_fills_truth import open_venue, store_position
from support.sim import running_simulator
from support.wait import eventually_async

from bot.app import App
from bot.clock import SYSTEM_CLOCK
from bot.domain import OrderStatus, Side
from bot.execution.hedge import HedgeState
from bot.execution.hedge_control import record
from bot.recovery import reconcile_venue
from bot.sim.runner import Simulator
from bot.sim.server.binance import BinanceServer
from bot.sim.spot.exchange import SpotExchange
from bot.sim.spot.records import NewOrder, OrderType, SpotConfig
from bot.store import Store
from bot.store.reconcile import ADJUSTMENT_PREFIX

LEFT = D("0.1")  # what stays in the account of the carry's spot leg


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running_simulator(seed=31, step_secs=0.02, markets=(PERP,),
                                 account_equity_usd=D(50_000)) as simulator:
        yield simulator


async def test_spot_sold_by_hand_while_running_shrinks_the_carry_and_the_perp_follows(
        sim: Simulator, tmp_path: Path) -> None:
    settings = settings_for(sim, tmp_path)
    await booked_carry(sim, settings)
    with structlog.testing.capture_logs() as start_logs:
        app = await App.create(settings)
        await app.start()
    (restored,) = [e for e in start_logs if e["event"] == "strategy_state_restored"]  # once, not twice
    assert restored["carry_side"] == -1
    engine, state = app.engine, app.engine.markets[PERP]
    assert state.spot is not None and (state.carry_side, state.carry_size) == (-1, state.spot.position.size)
    booked = state.spot.position.size  # the carry's leg (the account holds other BTC beside it)
    first_id = app.store.next_client_id()
    spot_venue: Any = engine.order_managers[1].venue

    async def sell_by_hand_once_running() -> None:
        await eventually_async(lambda: spot_venue.user_stream is not None
                               and spot_venue.user_stream.is_connected.is_set(), 15)
        await asyncio.sleep(1)  # the legs as the start left them: nothing to trade
        assert bot_orders(app.store, "binance", first_id) == [] and state.position.size == -CARRY
        sell = NewOrder("BTCUSDT", Side.SELL, OrderType.MARKET, quantity=btc_held(sim) - LEFT)
        sim.spot.place_order(KEY, sell, time.time_ns())
        assert btc_held(sim) == LEFT  # sold by hand while the daemon runs: half the hedge is gone

    settled_since: list[float] = []

    def settled_a_second() -> bool:
        """The carry shrunk and the perp bought back, for a second (a hedge buy-back would be sent)."""
        done = (seller.done() and state.carry_size == LEFT and state.position.size == -LEFT
                and app.orders.parent(PERP) is None)
        if not done:
            settled_since.clear()
        elif not settled_since:
            settled_since.append(time.monotonic())
        return done and time.monotonic() - settled_since[0] >= 1

    with structlog.testing.capture_logs() as logs:
        seller = asyncio.create_task(sell_by_hand_once_running())
        await run_services(app, settled_a_second)
    await seller

    assert (state.carry_side, state.spot.target) == (-1, LEFT)
    (event,) = [e for e in logs if e["event"] == "carry_left_account"]
    assert event["stage"] == "run" and D(event["carry_size"]) == LEFT
    assert D(event["spot_left_carry"]) == booked - LEFT
    assert any(e["event"] == "reconcile_store_exceeds_balance" and e["stage"] == "run" for e in logs)
    assert await venue_perp(sim) == -LEFT and btc_held(sim) == LEFT
    with Store.open(settings.db_path) as store:
        assert bot_orders(store, "binance", first_id) == []  # the hedge bought nothing back
        perp = bot_orders(store, "dydx", first_id)
        assert perp and all(side is Side.BUY for side, _ in perp), perp
        assert sum(size for _, size in perp) >= CARRY - LEFT
        assert D(json.loads(store.meta_get(f"hedge:{PERP}") or "{}")["required"]) == LEFT  # a restart owes
        assert store_position(store, SPOT) == LEFT


# ---- the engine's hedge on the simulator's Binance (real client): what the check must not do ---

@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    config = SpotConfig(default_balances={"USDT": D(100_000)})
    srv = BinanceServer(SpotExchange(seed=11, start_ns=time.time_ns(), config=config), time.time_ns)
    await srv.start()
    yield srv
    await srv.stop()


async def test_a_running_withdrawal_leaves_the_carry_and_an_order_working_defers_the_check(
        server: BinanceServer, tmp_path: Path) -> None:
    """The store books a 0.5 ETH carry leg (gross), the hedge owes it, and 0.2 ETH is withdrawn
    while the engine runs. With an order of ours working on the market nothing is booked down and
    the carry stays; once it is gone the balance check books the store down and the carry shrinks
    to what is held: the hedge buys nothing back."""
    with Store.open(tmp_path / "perpbot.sqlite") as store:
        gross = await old_store_buy(server, store, D("0.5"))
        store.meta_set(*record("ETH-USD", HedgeState("ETH-USD", "ETH-USDT", required=gross, goal=gross)))
        server.spot.withdraw(KEY, "ETH", D("0.2"))
        held = eth_held(server)
        resting = await resting_buy(server, store)  # a predecessor's, open in the store
        h = await SpotHedge.open(server, store, tmp_path)
        state = h.engine.markets["ETH-USD"]
        await h.run(None)
        assert store_position(store, "ETH-USDT") == gross  # not under a working order
        assert h.engine.hedges["ETH-USD"].required == gross and state.carry_size == gross
        assert not [f for f in store.fills("ETH-USDT") if f.fill_id.startswith(ADJUSTMENT_PREFIX)]

        venue = await open_venue(server)
        try:
            assert await venue.cancel(resting.client_id)
        finally:
            await venue.close()
        store.update_order(resting.client_id, OrderStatus.CANCELLED, D(0), time.time_ns())
        h = await SpotHedge.open(server, store, tmp_path)
        state = h.engine.markets["ETH-USD"]
        before = store.next_client_id()
        with structlog.testing.capture_logs() as logs:
            await h.run(None)
        assert store_position(store, "ETH-USDT") == held == eth_held(server)
        assert (state.carry_side, state.carry_size) == (-1, held)
        assert h.engine.hedges["ETH-USD"].required == held
        assert h.orders(Side.BUY, since=before) == []  # nothing bought back
        (event,) = [e for e in logs if e["event"] == "carry_left_account"]
        assert event["stage"] == "run" and D(event["spot_left_carry"]) == gross - held


async def test_the_exit_reconciliation_leaves_the_carry_too_so_the_next_start_buys_nothing_back(
        server: BinanceServer, tmp_path: Path) -> None:
    """The exit's reconciliation (App.reconcile("exit"): orders were still open) books the store
    down to a balance 0.2 ETH short: the saved hedge record owes what is held, so the next start
    (which sees no shortfall any more, the store being the balance) does not buy the 0.2 back."""
    with Store.open(tmp_path / "perpbot.sqlite") as store:
        gross = await old_store_buy(server, store, D("0.5"))
        store.meta_set(*record("ETH-USD", HedgeState("ETH-USD", "ETH-USDT", required=gross, goal=gross)))
        server.spot.withdraw(KEY, "ETH", D("0.2"))
        held = eth_held(server)
        h = await SpotHedge.open(server, store, tmp_path)
        engine = h.engine
        with structlog.testing.capture_logs() as logs:
            follow = partial(engine.hedge_control.spot_booked_down, stage="exit")
            report = await reconcile_venue(store, h.venue, engine.on_spot_account_event,
                                           engine.spot_positions, SYSTEM_CLOCK, compare_positions=False,
                                           stage="exit", booked_down=follow)
        await h.venue.close()
        assert D(report["spot_adjustments"]["ETH-USDT"]["adjusted"]) == gross - held
        (event,) = [e for e in logs if e["event"] == "carry_left_account"]
        assert event["stage"] == "exit" and D(event["hedge_owed"]) == held
        assert D(json.loads(store.meta_get("hedge:ETH-USD") or "{}")["required"]) == held

        again = await SpotHedge.open(server, store, tmp_path)  # the next start
        before = store.next_client_id()
        await again.run(None, start=True)
        assert again.engine.hedges["ETH-USD"].required == held
        assert again.engine.markets["ETH-USD"].carry_size == held
        assert again.orders(Side.BUY, since=before) == []
        assert store_position(store, "ETH-USDT") == held == eth_held(server)
