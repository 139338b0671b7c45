"""The exit leaves no order open in the store that the venue has closed (the crash-recovery CI
failure: one order still NEW/ACKED after a clean SIGTERM, under load).

A SIGKILLed daemon leaves a resting post-only child (short-term, GoodTilBlock a few blocks
ahead) open in its store. If it expires before the next process exits, the exit's cancel-all
finds it neither open at the venue (no cancel goes to it) nor placed by this process (the
sweeps do not read it back): before the fix it stayed open in the store. The exit now ends with
the start-up reconciliation for whatever the store still holds open. The dYdX simulator's
servers with the real adapter (httpx, websockets, dydx-v4-client) and a real SQLite store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from bot.clock import SYSTEM_CLOCK
from bot.config import Settings
from bot.domain import OrderRequest, OrderStatus, Side, TimeInForce
from bot.execution.exit import cancel_and_settle
from bot.execution.orders import OrderManager
from bot.recovery import reconcile_venue
from bot.sim.accounts import sim_accounts
from bot.sim.exchange import SimExchange
from bot.sim.server.indexer import IndexerServer
from bot.sim.server.node import NodeServer
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.dydx.adapter import DydxVenue
from bot.venues.dydx.indexer_rest import IndexerRest
from bot.venues.dydx.node import NodeGateway
from bot.venues.sim.feed import default_params

ACCOUNT = sim_accounts()["dydx"]
MARKETS = ("BTC-USD",)


class Servers:
    def __init__(self, indexer: IndexerServer, node: NodeServer) -> None:
        self.indexer, self.node = indexer, node

    def venue(self, gtb_offset_blocks: int = 10) -> DydxVenue:
        """The adapter as a fresh process opens it (it knows no order placed before)."""
        gateway = NodeGateway(self.node.target, self.node.chain_id, ACCOUNT["mnemonic"], secure=False,
                              broadcasts_per_sec=50)
        return DydxVenue(IndexerRest(self.indexer.rest_url), self.indexer.ws_url, MARKETS, Metrics(),
                         gateway=gateway, account=(ACCOUNT["address"], 0),
                         gtb_offset_blocks=gtb_offset_blocks)

    async def open_ids(self) -> set[int]:
        venue = self.venue()
        try:
            return set(await venue.open_orders())
        finally:
            await venue.close()


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    exchange = SimExchange([default_params(t, 0.2) for t in MARKETS], 11, time.time_ns())
    exchange.create_account(ACCOUNT["address"], Decimal(100_000))
    indexer = IndexerServer(exchange)
    node = NodeServer(exchange, time.time_ns)
    await indexer.start()
    await node.start()

    async def step() -> None:
        while True:
            indexer.publish(exchange.advance(time.time_ns()))
            await asyncio.sleep(0.02)

    task = asyncio.create_task(step())
    try:
        yield Servers(indexer, node)
    finally:
        task.cancel()
        await node.stop()
        await indexer.stop()


async def rest_a_predecessors_child(servers: Servers, store: Store) -> int:
    """A post-only bid far below the touch, 3 blocks to live, recorded ACKED: then SIGKILL."""
    venue = servers.venue(gtb_offset_blocks=3)
    try:
        await venue.load_markets()
        bid, _ = await venue.touch("BTC-USD")
        assert bid is not None
        order = OrderRequest(store.next_client_id(), "BTC-USD", Side.BUY, Decimal("0.01"),
                             (bid * Decimal("0.8")).quantize(Decimal(1)), TimeInForce.POST_ONLY)
        store.record_order("dydx", order, time.time_ns())
        await venue.place(order)
        store.update_order(order.client_id, OrderStatus.ACKED, Decimal(0), time.time_ns())
    finally:
        await venue.close()
    return order.client_id


async def test_exit_closes_in_the_store_an_order_that_expired_before_it(servers: Servers,
                                                                        tmp_path: Path) -> None:
    with Store.open(tmp_path / "perpbot.sqlite") as store:
        child = await rest_a_predecessors_child(servers, store)
        assert child in await servers.open_ids()
        for _ in range(100):  # it expires by itself (GoodTilBlock) before the next process exits
            if child not in await servers.open_ids():
                break
            await asyncio.sleep(0.1)
        assert child not in await servers.open_ids()

        venue = servers.venue()
        manager = OrderManager(venue, store, Metrics(), SYSTEM_CLOCK, Settings().execution)
        venue.set_account_sink(manager.on_account_event)
        try:
            await venue.load_markets()
            errors = await cancel_and_settle(
                [manager], store, settle_secs=1.0,
                reconcile=lambda: reconcile_venue(store, venue, manager.on_account_event, dict, SYSTEM_CLOCK,
                                                  stage="exit"))
        finally:
            await venue.close()

        assert errors == []
        assert store.open_orders() == []
        stored = store.get_order(child)
        assert stored is not None and stored.status is OrderStatus.CANCELLED  # dYdX: an expiry is a cancel
        assert stored.reason.endswith("on exit"), stored.reason
