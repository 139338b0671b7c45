"""A live restart mid-carry follows what the venues hold, not the store's view from before the
downtime (bot.carry_start), against the simulator's real-protocol servers with the real clients
(dydx-v4-client and httpx for dYdX, httpx and websockets for Binance) and a real SQLite store.

A first daemon books a carry (0.2 BTC short on dYdX, its spot hedge bought on Binance) and stops.
While it is down the operator trades one leg by hand; the second daemon's start (App.start:
reconciliation, then the carry) commits the sleeve, the spot target and the hedge's owed spot from
the venues, and its services then send only the orders that bring the legs back together:

- the spot sold by hand: the carry is closed, the hedge buys nothing back, the perp short is bought
  back by the first decision;
- the perp bought back by hand: the carry stays open on the spot held, the perp short is sold again
  by the first decision, the hedge sends nothing (no doubled hedge);
- the first daemon stopped between its perp fill and its hedge: the carry stays at what the hedge
  owes, the hedge buys the rest, the perp is left alone (taken from the spot held, the carry would
  have been half as big: the perp bought back, then the hedge's buy sold again).

Both starts size on the venues' equity, not `paper.initial_equity_usd`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from support.sim import running_simulator
from support.wait import eventually_async

from bot.app import App
from bot.config import Settings, load
from bot.domain import OrderRequest, Side, TimeInForce
from bot.sim.runner import Simulator
from bot.sim.server.binance import sim_binance_credentials
from bot.sim.spot.records import NewOrder, OrderType
from bot.store import Store
from bot.strategy.carry import CarryWatch
from bot.strategy_state import StrategyRecord, save
from bot.telemetry import Metrics
from bot.venues.dydx.adapter import DydxVenue
from bot.venues.dydx.indexer_rest import IndexerRest
from bot.venues.dydx.node import NodeGateway

PERP, SPOT = "BTC-USD", "BTC-USDT"
CARRY = D("0.2")
KEY, SECRET = sim_binance_credentials()


def settings_for(sim: Simulator, tmp_path: Path) -> Settings:
    """Live on the running simulator: BTC-USD hedged on BTC-USDT, no directional target, a carry
    that never opens afresh and never closes on funding (what follows is the legs' doing alone)."""
    ep, account = sim.endpoints(), sim.accounts["dydx"]
    return load(
        None, env_file=None, state_dir=str(tmp_path), network="sim", trading="live", markets=[PERP],
        sim={"mode": "protocol"}, control={"port": 0}, watchdog={"enabled": False},
        dydx={"indexer_rest": ep["indexer_rest"], "indexer_ws": ep["indexer_ws"],
              "node_grpc": ep["node_grpc"], "chain_id": ep["chain_id"]},
        binance={"rest_url": ep["binance_rest"], "ws_url": ep["binance_ws"], "min_session_secs": 0.5},
        dydx_mnemonic=account["mnemonic"], binance_api_key=KEY, binance_api_secret=SECRET,
        paper={"initial_equity_usd": "1234"},  # a paper value the live start must not size on
        strategy={"targets": {}, "max_notional_usd": "200000",
                  "carry": {"entry_threshold_bps": "100000", "exit_threshold_bps": "-100000"}},
        execution={"twap_duration_secs": 2, "twap_slices": 1, "passive_when_funding_favours": False},
    )


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running_simulator(seed=31, step_secs=0.02, markets=(PERP,),
                                 account_equity_usd=D(50_000)) as simulator:
        yield simulator


async def perp_touch(sim: Simulator) -> tuple[D, D]:
    async with httpx.AsyncClient() as client:
        book = (await client.get(f"{sim.indexer.rest_url}/v4/orderbooks/perpetualMarket/{PERP}")).json()
    return D(book["bids"][0]["price"]), D(book["asks"][0]["price"])


async def venue_perp(sim: Simulator) -> D:
    positions = sim.exchange.positions(sim.accounts["dydx"]["address"])
    return sum((p.size for p in positions if p.ticker == PERP), D(0))


def btc_held(sim: Simulator) -> D:
    return sum((b.free + b.locked for b in sim.spot.balances(KEY) if b.asset == "BTC"), D(0))


async def booked_carry(sim: Simulator, settings: Settings, spot_size: D = CARRY) -> D:
    """The first daemon: its carry's orders reach both venues, it stops before their fills reach
    it, and its start books them from the venues (as after a crash); the hedge record and the
    strategy record are what its fills and its last evaluation would have left (`spot_size` below
    the carry: it stopped before its hedge was complete). Returns the spot the hedge owes."""
    app = await App.create(settings)
    try:
        store, perp_venue = app.store, app.orders.venue
        spot_venue = app.engine.order_managers[1].venue
        bid, _ = await perp_touch(sim)
        sell = OrderRequest(store.next_client_id(), PERP, Side.SELL, CARRY, bid * D("0.97"), TimeInForce.IOC)
        store.record_order(perp_venue.name, sell, time.time_ns())
        await perp_venue.place(sell)
        _, ask = await spot_venue.touch(SPOT)  # type: ignore[attr-defined]
        buy = OrderRequest(store.next_client_id(), SPOT, Side.BUY, spot_size,
                           (ask * D("1.03")).quantize(D("0.01")), TimeInForce.IOC)
        store.record_order(spot_venue.name, buy, time.time_ns())
        await spot_venue.place(buy)
        await eventually_async(lambda: sim.exchange.positions(sim.accounts["dydx"]["address"]), 15,
                               what="the perp sell filled")

        async def perp_fill_listed() -> bool:
            return bool((await perp_venue.account_snapshot([sell.client_id])).fills)

        for _ in range(100):  # the indexer lists the fill a block or two after the chain has it
            if await perp_fill_listed():
                break
            await asyncio.sleep(0.1)
        await app.start()
        state = app.engine.markets[PERP]
        assert state.position.size == -CARRY and state.spot is not None and state.spot.position.size > 0
        spot = state.spot.position.size if spot_size == CARRY else CARRY
        hedge = app.engine.hedges[PERP]
        app.engine.hedge_control.set(PERP, dataclasses.replace(hedge, required=spot, goal=spot))
        save(store, PERP, StrategyRecord(-1, CarryWatch(2, None), None))
    finally:
        await app._shutdown()
    return spot


async def by_hand_perp(sim: Simulator, side: Side, size: D) -> None:
    """The operator trades the subaccount from another client (a client id the store never saw)."""
    account = sim.accounts["dydx"]
    gateway = NodeGateway(sim.node.target, sim.node.chain_id, account["mnemonic"], secure=False,
                          broadcasts_per_sec=50)
    venue = DydxVenue(IndexerRest(sim.indexer.rest_url), sim.indexer.ws_url, (PERP,), Metrics(),
                      gateway=gateway, account=(account["address"], 0))
    try:
        await venue.load_markets()
        bid, ask = await perp_touch(sim)
        price = ask * D("1.03") if side is Side.BUY else bid * D("0.97")
        before = await venue_perp(sim)
        await venue.place(OrderRequest(4_000_001, PERP, side, size, price, TimeInForce.IOC))
        change = size if side is Side.BUY else -size
        for _ in range(150):
            if await venue_perp(sim) == before + change:
                break
            await asyncio.sleep(0.1)
        assert await venue_perp(sim) == before + change
        for _ in range(100):  # and the indexer lists its fill (what the next start reads)
            if any(f.client_id == 4_000_001 for f in (await venue.account_snapshot()).fills):
                break
            await asyncio.sleep(0.1)
    finally:
        await venue.close()


async def restarted(settings: Settings) -> tuple[App, list[dict[str, Any]]]:
    """The second daemon's start (App.start, as App.run does it before its services), with its logs."""
    app = await App.create(settings)
    with structlog.testing.capture_logs() as logs:
        await app.start()
    return app, logs


async def run_services(app: App, until: Any, timeout_secs: float = 40) -> None:
    """The daemon's services (as App.run) until `until()` holds; then its exit."""
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(s.run(), name=s.name) for s in app.services]
            try:
                await eventually_async(until, timeout_secs, interval_secs=0.1, what="the legs back together")
            finally:
                for task in tasks:
                    task.cancel()
    finally:
        with contextlib.suppress(Exception):
            await app._shutdown()


def bot_orders(store: Store, venue: str, since: int) -> list[tuple[Side, D]]:
    orders = [store.get_order(i) for i in range(since, store.next_client_id())]
    return [(o.side, o.size) for o in orders if o is not None and o.venue == venue]


async def test_spot_sold_by_hand_while_down_closes_the_carry_and_the_perp_follows(
        sim: Simulator, tmp_path: Path) -> None:
    settings = settings_for(sim, tmp_path)
    spot = await booked_carry(sim, settings)
    held = btc_held(sim)
    sim.spot.place_order(KEY, NewOrder("BTCUSDT", Side.SELL, OrderType.MARKET, quantity=held), time.time_ns())
    assert btc_held(sim) == 0  # the whole balance, the hedge with it, sold by hand

    app, logs = await restarted(settings)
    engine, state = app.engine, app.engine.markets[PERP]
    assert state.spot is not None and state.spot.position.size == 0  # booked down to the balance
    assert (state.carry_side, state.carry_size, state.spot.target) == (0, 0, 0)
    assert engine.hedges[PERP].required == 0  # nothing to buy back
    assert state.carry_watch == CarryWatch()
    (event,) = [e for e in logs if e["event"] == "carry_restored"]
    assert event["log_level"] == "warning" and D(event["spot_left_carry"]) == spot
    assert D(event["perp"]) == -CARRY and D(event["hedge_to_trade"]) == 0
    assert engine.accounts is not None and engine.accounts.ready
    assert engine.equity() > 40_000 and engine.equity() != settings.paper.initial_equity_usd

    first_id = app.store.next_client_id()
    await run_services(app, lambda: state.position.size == 0 and app.orders.parent(PERP) is None)
    with Store.open(settings.db_path) as store:
        assert sum(size for side, size in bot_orders(store, "dydx", first_id) if side is Side.BUY) >= CARRY
        assert bot_orders(store, "binance", first_id) == []  # the hedge bought nothing back
    assert await venue_perp(sim) == 0 and btc_held(sim) == 0


async def test_perp_closed_by_hand_while_down_keeps_the_carry_and_the_perp_is_sold_again(
        sim: Simulator, tmp_path: Path) -> None:
    settings = settings_for(sim, tmp_path)
    spot = await booked_carry(sim, settings)
    held = btc_held(sim)
    await by_hand_perp(sim, Side.BUY, CARRY)  # the short bought back by hand: the spot is orphaned

    app, logs = await restarted(settings)
    engine, state = app.engine, app.engine.markets[PERP]
    assert state.position.size == 0  # the manual fill, booked from the venue
    assert state.spot is not None and state.spot.position.size == spot
    assert (state.carry_side, state.carry_size, state.spot.target) == (-1, spot, spot)
    assert engine.hedges[PERP].required == spot  # the hedge owes what it holds: it sends nothing
    assert state.carry_watch.adverse_hours == 2  # the same open carry: its watch goes on
    (event,) = [e for e in logs if e["event"] == "carry_restored"]
    assert event["log_level"] == "warning" and D(event["perp_before"]) == -CARRY and D(event["perp"]) == 0
    assert D(event["hedge_to_trade"]) == 0

    first_id = app.store.next_client_id()
    with structlog.testing.capture_logs() as logs:
        await run_services(app, lambda: state.position.size == -spot and app.orders.parent(PERP) is None)
    # Sized on the venues' equity: no decision before both accounts were read (the Binance account
    # is valued once its book has a mid), never on the paper equity.
    events = [(e["event"], e.get("venue")) for e in logs]
    assert events.index(("decision", None)) > events.index(("account_read", "binance"))
    assert engine.accounts is not None and engine.accounts.ready
    assert engine.equity() > 100_000 and engine.equity() != settings.paper.initial_equity_usd
    with Store.open(settings.db_path) as store:
        assert [side for side, _ in bot_orders(store, "dydx", first_id)] and all(
            side is Side.SELL for side, _ in bot_orders(store, "dydx", first_id))
        assert bot_orders(store, "binance", first_id) == []  # no doubled hedge
    assert await venue_perp(sim) == -spot and btc_held(sim) == held


async def test_a_hedge_cut_short_by_the_stop_is_completed_and_the_perp_left_alone(
        sim: Simulator, tmp_path: Path) -> None:
    settings = settings_for(sim, tmp_path)
    owed = await booked_carry(sim, settings, spot_size=CARRY / 2)
    held = btc_held(sim)

    app, logs = await restarted(settings)
    engine, state = app.engine, app.engine.markets[PERP]
    assert state.spot is not None and 0 < state.spot.position.size < owed / 2 + D("0.001")
    assert (state.carry_side, state.carry_size, state.spot.target) == (-1, owed, owed)
    assert engine.hedges[PERP].required == owed
    (event,) = [e for e in logs if e["event"] == "carry_restored"]
    assert event["log_level"] == "info" and D(event["hedge_to_trade"]) == owed - state.spot.position.size

    first_id = app.store.next_client_id()
    await run_services(app, lambda: engine.hedges[PERP].mismatch(state.spot.position.size) * 65_000 > -20
                       and app.engine.order_managers[1].parent(SPOT) is None)
    with Store.open(settings.db_path) as store:
        assert bot_orders(store, "dydx", first_id) == []  # the perp already holds the carry
        bought = bot_orders(store, "binance", first_id)
        assert bought and all(side is Side.BUY for side, _ in bought)
    assert await venue_perp(sim) == -CARRY and btc_held(sim) > held
