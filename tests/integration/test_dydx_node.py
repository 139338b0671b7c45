"""The node gateway (our dydx-v4-client wrapper) against the simulator's node front-end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from bot.domain import OrderRequest, Side, TimeInForce
from bot.errors import OrderRejected, OrderStateUnknown, PostOnlyWouldCross, TransientVenueError
from bot.sim.accounts import sim_accounts
from bot.sim.exchange import SimExchange
from bot.sim.server.node import NodeServer
from bot.venues.dydx.node import SEQUENCE_ATTEMPTS, NodeGateway
from bot.venues.dydx.orders import MarketParams, to_venue_order
from bot.venues.sim.feed import default_params

ACCOUNT = sim_accounts()["dydx"]


@pytest.fixture
async def sim() -> AsyncIterator[tuple[SimExchange, NodeServer, NodeGateway]]:
    exchange = SimExchange([default_params("BTC-USD", 0.65)], 3, time.time_ns())
    exchange.create_account(ACCOUNT["address"], Decimal(100_000))
    server = NodeServer(exchange, time.time_ns)
    await server.start()
    gateway = NodeGateway(server.target, server.chain_id, ACCOUNT["mnemonic"], secure=False,
                          broadcasts_per_sec=50, timeout_secs=3)

    async def step() -> None:
        while True:
            exchange.advance(time.time_ns())
            await asyncio.sleep(0.02)

    async with asyncio.TaskGroup() as tg:
        stepper = tg.create_task(step())
        try:
            yield exchange, server, gateway
        finally:
            stepper.cancel()
            gateway.close()
    await server.stop()


def btc(exchange: SimExchange) -> MarketParams:
    m = exchange.markets()["BTC-USD"]
    return MarketParams(m.ticker, m.clob_pair_id, m.atomic_resolution, m.quantum_conversion_exponent,
                        m.step_base_quantums, m.subticks_per_tick)


def order(client_id: int, exchange: SimExchange, tif: TimeInForce, side: Side = Side.BUY,
          offset: Decimal = Decimal(-200), **kw) -> OrderRequest:  # type: ignore[no-untyped-def]
    bids, asks = exchange.book("BTC-USD")
    ref = bids[0][0] if side is Side.BUY else asks[0][0]
    price = ref + offset if side is Side.BUY else ref - offset
    return OrderRequest(client_id, "BTC-USD", side, Decimal("0.01"), price, tif, **kw)


async def test_short_term_long_term_cancel_and_batch_cancel(sim) -> None:  # type: ignore[no-untyped-def]
    exchange, _, gw = sim
    market = btc(exchange)
    height = await gw.latest_height()
    _, seq0 = await gw.refresh_account()

    short = to_venue_order(order(101, exchange, TimeInForce.POST_ONLY), market, height, int(time.time()))
    assert (await gw.place(short)).code == 0
    long_term = to_venue_order(order(102, exchange, TimeInForce.GTT), market, height, int(time.time()))
    assert (await gw.place(long_term)).code == 0
    # two stateful messages back to back: the local sequence must carry the second one
    long_two = to_venue_order(order(103, exchange, TimeInForce.GTT), market, height, int(time.time()))
    assert (await gw.place(long_two)).code == 0
    open_ids = {o.request.order_id.client_id for o in exchange.orders(ACCOUNT["address"], open_only=True)}
    assert {101, 102, 103} <= open_ids

    await gw.cancel(long_term, good_til_block_time=int(time.time()) + 60)
    second = to_venue_order(order(104, exchange, TimeInForce.POST_ONLY), market, height, int(time.time()))
    await gw.place(second)
    await gw.batch_cancel({market.clob_pair_id: [101, 104]}, await gw.latest_height() + 10)
    open_ids = {o.request.order_id.client_id for o in exchange.orders(ACCOUNT["address"], open_only=True)}
    assert open_ids == {103}
    assert exchange.account(ACCOUNT["address"])[1] == seq0 + 3  # three stateful txs


async def test_chain_rejections_are_typed(sim) -> None:  # type: ignore[no-untyped-def]
    exchange, _, gw = sim
    market = btc(exchange)
    height = await gw.latest_height()
    crossing = order(201, exchange, TimeInForce.POST_ONLY, offset=Decimal(300))  # bid above the ask
    with pytest.raises(PostOnlyWouldCross):
        await gw.place(to_venue_order(crossing, market, height, int(time.time())))
    stale = to_venue_order(order(202, exchange, TimeInForce.POST_ONLY), market, height - 50, int(time.time()))
    with pytest.raises(OrderRejected):
        await gw.place(stale)


async def test_sequence_mismatch_resyncs_and_resends(sim) -> None:  # type: ignore[no-untyped-def]
    exchange, _, gw = sim
    market = btc(exchange)
    height = await gw.latest_height()
    await gw.refresh_account()
    gw._sequence += 5  # type: ignore[operator]  # as if another process had signed with this key
    resting = to_venue_order(order(301, exchange, TimeInForce.GTT), market, height, int(time.time()))
    assert (await gw.place(resting)).code == 0  # the rejected tx did nothing: re-sent at once
    gw._sequence -= 1  # type: ignore[operator]  # another signer again, before the cancel
    assert (await gw.cancel(resting, good_til_block_time=int(time.time()) + 60)).code == 0
    assert not exchange.orders(gw.owner, open_only=True)


async def test_a_sequence_that_keeps_moving_fails_after_bounded_attempts(sim, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    exchange, _, gw = sim
    market = btc(exchange)
    height = await gw.latest_height()
    await gw.refresh_account()
    broadcast, attempts = gw._broadcast, []

    async def after_another_signer(message, op):  # type: ignore[no-untyped-def]
        attempts.append(op)
        gw._sequence += 7  # another signer used the key again before each attempt
        return await broadcast(message, op)

    monkeypatch.setattr(gw, "_broadcast", after_another_signer)
    with pytest.raises(TransientVenueError, match="sequence"):
        await gw.place(to_venue_order(order(302, exchange, TimeInForce.GTT), market, height,
                                      int(time.time())))
    assert len(attempts) == SEQUENCE_ATTEMPTS


async def test_unavailable_node_makes_the_order_state_unknown(sim) -> None:  # type: ignore[no-untyped-def]
    exchange, _, gw = sim
    market = btc(exchange)
    height = await gw.latest_height()
    await gw.refresh_account()
    exchange.scenario.grpc_unavailable = True
    with pytest.raises(OrderStateUnknown):
        await gw.place(to_venue_order(order(401, exchange, TimeInForce.POST_ONLY), market, height,
                                      int(time.time())))
    with pytest.raises(TransientVenueError):
        await gw.latest_height()
