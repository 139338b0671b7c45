"""The dYdX venue end to end on the simulator: real websockets, httpx and dydx-v4-client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from support.wait import eventually_async

from bot.book import OrderBook
from bot.domain import Fill, OrderRequest, OrderStatus, OrderUpdate, Side, TimeInForce
from bot.errors import OrderRejected
from bot.sim.accounts import sim_accounts
from bot.sim.exchange import SimExchange
from bot.sim.server.indexer import IndexerServer
from bot.sim.server.node import NodeServer
from bot.telemetry import Metrics
from bot.venues.dydx.adapter import DydxVenue
from bot.venues.dydx.indexer_rest import IndexerRest
from bot.venues.dydx.node import NodeGateway
from bot.venues.sim.feed import default_params

ACCOUNT = sim_accounts()["dydx"]
MARKETS = ("BTC-USD", "ETH-USD")


@pytest.fixture
async def venue() -> AsyncIterator[tuple[DydxVenue, SimExchange, list[object]]]:
    exchange = SimExchange([default_params(t, 0.65) for t in MARKETS], 11, time.time_ns())
    exchange.create_account(ACCOUNT["address"], Decimal(100_000))
    indexer = IndexerServer(exchange)
    node = NodeServer(exchange, time.time_ns)
    await indexer.start()
    await node.start()
    gateway = NodeGateway(node.target, node.chain_id, ACCOUNT["mnemonic"], secure=False,
                          broadcasts_per_sec=50)
    venue = DydxVenue(IndexerRest(indexer.rest_url), indexer.ws_url, MARKETS, Metrics(), gateway=gateway,
                      account=(ACCOUNT["address"], 0))
    await venue.load_markets()
    venue.use_books({t: OrderBook(t) for t in MARKETS})
    account_events: list[object] = []
    venue.set_account_sink(account_events.append)

    async def step() -> None:
        while True:
            indexer.publish(exchange.advance(time.time_ns()))
            await asyncio.sleep(0.02)

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(step()), tg.create_task(venue.run(lambda e: None))]
        try:
            await eventually_async(lambda: all(b.best_bid() for b in venue.books.values()))
            await eventually_async(lambda: venue.feed
                             and all(s.confirmed for s in venue.feed.subscriptions.values()))
            yield venue, exchange, account_events
        finally:
            for task in tasks:
                task.cancel()
            await venue.close()
    await node.stop()
    await indexer.stop()


def updates(events: list[object], client_id: int) -> list[OrderUpdate]:
    return [e for e in events if isinstance(e, OrderUpdate) and e.client_id == client_id]


async def test_place_fill_cancel_round_trip(venue) -> None:  # type: ignore[no-untyped-def]
    dydx, _, events = venue
    book = dydx.books["BTC-USD"]
    best_bid, best_ask = book.best_bid(), book.best_ask()
    assert best_bid and best_ask
    resting = OrderRequest(1, "BTC-USD", Side.BUY, Decimal("0.01"), best_bid.price - 50,
                           TimeInForce.POST_ONLY)
    await dydx.place(resting)
    await eventually_async(lambda: updates(events, 1))
    assert updates(events, 1)[0].status is OrderStatus.ACKED
    assert 1 in await dydx.open_orders()

    taker = OrderRequest(2, "BTC-USD", Side.BUY, Decimal("0.02"), best_ask.price + 20, TimeInForce.IOC)
    await dydx.place(taker)
    fills = await eventually_async(lambda: [e for e in events if isinstance(e, Fill) and e.client_id == 2])
    assert sum(f.size for f in fills) > 0 and all(f.fee > 0 for f in fills)
    await eventually_async(lambda: any(u.status in (OrderStatus.FILLED, OrderStatus.CANCELLED)
                                 for u in updates(events, 2)))
    positions = await dydx.positions()
    assert positions.get("BTC-USD") == sum(f.size for f in fills)

    await dydx.cancel(1)
    await eventually_async(lambda: any(u.status is OrderStatus.CANCELLED for u in updates(events, 1)))
    assert 1 not in await dydx.open_orders()


async def test_long_term_order_and_stateful_cancel(venue) -> None:  # type: ignore[no-untyped-def]
    dydx, _, events = venue
    bid = dydx.books["ETH-USD"].best_bid()
    assert bid
    order = OrderRequest(10, "ETH-USD", Side.BUY, Decimal("0.1"), bid.price - 20, TimeInForce.GTT)
    await dydx.place(order)
    await eventually_async(lambda: updates(events, 10))
    await dydx.cancel(10)
    await eventually_async(lambda: any(u.status is OrderStatus.CANCELLED for u in updates(events, 10)))


async def test_bad_orders_are_refused_before_signing(venue) -> None:  # type: ignore[no-untyped-def]
    dydx, _, _ = venue
    with pytest.raises(OrderRejected):
        await dydx.place(OrderRequest(20, "BTC-USD", Side.BUY, Decimal("0.00001"), Decimal(100),
                                      TimeInForce.IOC))
    with pytest.raises(OrderRejected):
        await dydx.place(OrderRequest(21, "BTC-USD", Side.SELL, Decimal("0.01"), Decimal(100),
                                      TimeInForce.POST_ONLY, reduce_only=True))
    with pytest.raises(OrderRejected):
        await dydx.place(OrderRequest(22, "SOL-USD", Side.SELL, Decimal("1"), Decimal(100), TimeInForce.IOC))


async def test_a_sweep_pages_back_through_a_burst_of_fills(venue, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """More fills than one REST page since the last sweep: the sweep reads them all."""
    dydx, exchange, events = venue
    monkeypatch.setattr("bot.venues.dydx.adapter.SWEEP_PAGE", 4)
    book = dydx.books["BTC-USD"]
    for client_id in range(10, 22):  # IOCs across the touch: one or more fills each, several blocks
        side = Side.BUY if client_id % 2 else Side.SELL
        touch = book.best_ask() if side is Side.BUY else book.best_bid()
        assert touch is not None
        price = touch.price + 200 if side is Side.BUY else touch.price - 200
        await dydx.place(OrderRequest(client_id, "BTC-USD", side, Decimal("0.003"), price, TimeInForce.IOC))
        await asyncio.sleep(0.05)
    at_venue = {f.fill_id for f in exchange.fills(ACCOUNT["address"], 0, limit=10_000)}
    await eventually_async(lambda: len({e.fill_id for e in events if isinstance(e, Fill)}) >= len(at_venue))
    assert len(at_venue) > 2 * 4  # more than two pages

    events.clear()
    dydx._swept_height = 0  # as on a fresh start (the adapter's own sweeps already ran)
    read, _ = await dydx.sweep_account()
    assert read == len(at_venue)  # it reads back to the oldest fill, page by page
    assert {e.fill_id for e in events if isinstance(e, Fill)} == at_venue
    again, _ = await dydx.sweep_account()
    assert again < read  # the next one stops at the block the last one reached


async def test_a_fill_whose_order_came_after_the_sweeps_orders_read_keeps_its_client_id(  # type: ignore[no-untyped-def]
    venue, monkeypatch,
) -> None:
    """A sweep reads the orders, then the fills. An order placed and filled between the two reads
    (a loaded machine widens the gap) must still go out with our client id: a fill reported with
    none is stored under it for good (the stream's copy is a duplicate), so no parent counts it
    and no hedge follows it."""
    dydx, exchange, events = venue
    real_orders = dydx.rest.orders
    pending = [40]

    async def orders_then_a_fill(*args, **kwargs):  # type: ignore[no-untyped-def]
        rows = await real_orders(*args, **kwargs)
        if pending:
            client_id = pending.pop()
            before = len(exchange.fills(ACCOUNT["address"], 0, limit=10_000))
            touch = dydx.books["BTC-USD"].best_ask()
            assert touch is not None
            await dydx.place(OrderRequest(client_id, "BTC-USD", Side.BUY, Decimal("0.003"), touch.price + 200,
                                          TimeInForce.IOC))
            await eventually_async(lambda: len(exchange.fills(ACCOUNT["address"], 0, limit=10_000)) > before)
        return rows

    monkeypatch.setattr(dydx.rest, "orders", orders_then_a_fill)
    await dydx.sweep_account()
    assert not pending
    ours = {f.fill_id for f in exchange.fills(ACCOUNT["address"], 0, limit=10_000)}
    reported = [e for e in events if isinstance(e, Fill) and e.fill_id in ours]
    assert reported and all(f.client_id == 40 for f in reported), reported
