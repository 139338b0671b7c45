"""Hourly funding reaches the engine from the venue's REST funding payments (not on the stream)."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

from support.wait import eventually_async

from bot.book import OrderBook
from bot.domain import Fill, FundingPayment, OrderRequest, Side, TimeInForce
from bot.sim.accounts import sim_accounts
from bot.sim.exchange import SimExchange
from bot.sim.perp.records import ExchangeConfig
from bot.sim.server.indexer import IndexerServer
from bot.sim.server.node import NodeServer
from bot.telemetry import Metrics
from bot.venues.dydx.adapter import DydxVenue
from bot.venues.dydx.indexer_rest import IndexerRest
from bot.venues.dydx.node import NodeGateway
from bot.venues.sim.feed import default_params

ACCOUNT = sim_accounts()["dydx"]


async def test_funding_payments_are_polled_and_signed_like_the_chain() -> None:
    config = ExchangeConfig(funding_interval_ns=2_000_000_000)  # "hourly" every 2 s
    exchange = SimExchange([default_params("BTC-USD", 0.65)], 4, time.time_ns(), config)
    exchange.create_account(ACCOUNT["address"], Decimal(100_000))
    exchange.scenario.funding_spike_1h = Decimal("0.001")  # positive: longs pay
    indexer, node = IndexerServer(exchange), NodeServer(exchange, time.time_ns)
    await indexer.start()
    await node.start()
    gateway = NodeGateway(node.target, node.chain_id, ACCOUNT["mnemonic"], secure=False,
                          broadcasts_per_sec=50)
    venue = DydxVenue(IndexerRest(indexer.rest_url), indexer.ws_url, ("BTC-USD",), Metrics(),
                      gateway=gateway, account=(ACCOUNT["address"], 0))
    venue.funding_poll_secs = 0.2
    await venue.load_markets()
    venue.use_books({"BTC-USD": OrderBook("BTC-USD")})
    events: list[object] = []
    venue.set_account_sink(events.append)

    async def step() -> None:
        while True:
            indexer.publish(exchange.advance(time.time_ns()))
            await asyncio.sleep(0.02)

    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(step()), tg.create_task(venue.run(lambda e: None))]
            ask = await eventually_async(lambda: venue.books["BTC-USD"].best_ask(), timeout_secs=15)
            await venue.place(OrderRequest(1, "BTC-USD", Side.BUY, Decimal("0.05"), ask.price + 50,
                                           TimeInForce.IOC))
            await eventually_async(lambda: [e for e in events if isinstance(e, Fill)], timeout_secs=15)
            payments = await eventually_async(
                lambda: [e for e in events if isinstance(e, FundingPayment)], timeout_secs=15)
            for task in tasks:
                task.cancel()
    finally:
        await venue.close()
        await node.stop()
        await indexer.stop()
    first = payments[0]
    assert first.market == "BTC-USD" and first.position_size > 0 and first.rate > 0
    assert first.amount < 0  # a long pays a positive rate
    assert first.amount == -(first.position_size * first.oracle_price * first.rate)
