"""A spot hedge bought without the BNB discount and then closed in full, on the simulator's Binance
server with the real client, the order manager and the hedge planner, into a real SQLite store.

Binance takes a buy's commission in the base asset: the account is credited the size less the
commission. The store books that net size, so the close sells exactly what the account holds:
the account holds nothing but the hedge here (USDT only at the start), so a sell of the gross
size would be refused for an insufficient balance, and the position would never reach zero.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr
from support.wait import eventually_async

from bot.book import OrderBook
from bot.clock import SYSTEM_CLOCK
from bot.config import ExecutionSettings
from bot.domain import AccountEvent, Fill, OrderStatus, Position, RiskMode, Side
from bot.execution.hedge import plan_hedge
from bot.execution.orders import OrderManager
from bot.sim.server.binance import BinanceServer, sim_binance_credentials
from bot.sim.spot.exchange import SpotExchange
from bot.sim.spot.records import SpotConfig
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.binance.adapter import BinanceVenue, build_venue
from bot.venues.binance.config import BinanceSettings

D = Decimal
KEY, SECRET = sim_binance_credentials()
CASES = {"ETH-USDT": ("ETHUSDT", "ETH", D("0.5")),  # net of 0.1% on the lot step (0.0001)
         "BTC-USDT": ("BTCUSDT", "BTC", D("0.01234"))}  # net finer than the step (0.00001): dust


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    config = SpotConfig(default_balances={"USDT": D(100_000)})  # no base inventory to sell from
    srv = BinanceServer(SpotExchange(seed=7, start_ns=time.time_ns(), config=config), time.time_ns)
    await srv.start()
    yield srv
    await srv.stop()


def held(server: BinanceServer, asset: str) -> Decimal:
    return sum((b.free + b.locked for b in server.spot.balances(KEY) if b.asset == asset), D(0))


async def hedge_to(venue: BinanceVenue, manager: OrderManager, store: Store, position: Position,
                   goal: Decimal, seed: int) -> None:
    """One hedge parent from the spot position to `goal`, worked until the order manager ends it."""
    market = position.market
    spec, book = venue.specs()[market], venue.books[market]
    gap = goal - position.size
    levels = book.levels(Side.BUY if gap > 0 else Side.SELL, 20)
    plan = plan_hedge(spec, gap, position.size, levels, ExecutionSettings(), SYSTEM_CLOCK.now_ns(), seed)
    assert plan is not None
    manager.start_parent(plan, decision_id=seed)

    async def done() -> bool:
        await manager.tick(venue.books, venue.specs(), RiskMode.NORMAL)
        return market not in manager.parents and not store.open_orders()

    deadline = time.monotonic() + 20
    while not await done():
        assert time.monotonic() < deadline, f"hedge parent for {market} not done"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("market", sorted(CASES))
async def test_a_hedge_bought_with_base_commission_closes_to_what_the_account_holds(
        server: BinanceServer, tmp_path: Path, market: str) -> None:
    symbol, asset, size = CASES[market]
    settings = BinanceSettings(rest_url=server.rest_url, ws_url=server.ws_url, symbols={market: symbol})
    venue = build_venue(settings, Metrics(), api_key=SecretStr(KEY), api_secret=SecretStr(SECRET))
    await venue.load_markets()
    venue.use_books({market: OrderBook(market)})
    with Store.open(tmp_path / "perpbot.sqlite") as store:
        manager = OrderManager(venue, store, Metrics(), SYSTEM_CLOCK, ExecutionSettings())
        position = Position(market)
        fills: list[Fill] = []

        def sink(event: AccountEvent) -> None:  # the engine's part: the store, then the position
            manager.on_account_event(event)
            if isinstance(event, Fill) and position.apply_fill(event):
                fills.append(event)

        venue.set_account_sink(sink)
        async with asyncio.TaskGroup() as tg:
            streams = tg.create_task(venue.run(lambda e: None))
            try:
                await eventually_async(lambda: venue.user_stream and venue.user_stream.is_connected.is_set()
                                       and venue.books[market].mid() is not None)
                await hedge_to(venue, manager, store, position, size, seed=1)
                bought = position.size
                await eventually_async(lambda: held(server, asset) == position.size, timeout_secs=5)
                assert 0 < bought < size  # net of the commission withheld in the base asset
                assert sum((f.gross_size for f in fills), D(0)) == size  # the orders traded the whole size
                assert sum((f.withheld * f.price for f in fills), D(0)) == sum((f.fee for f in fills), D(0))

                await hedge_to(venue, manager, store, position, D(0), seed=2)
                await eventually_async(lambda: held(server, asset) == position.size, timeout_secs=5)
            finally:
                streams.cancel()
        await venue.close()
        orders = [o for o in map(store.get_order, range(store.next_client_id())) if o is not None]
        assert {o.side for o in orders} == {Side.BUY, Side.SELL}
        assert [o for o in orders if o.status is OrderStatus.REJECTED] == []  # no oversold close
        assert all(o.filled_size > 0 for o in orders), orders
        booked = sum((f.side.sign * f.size for f in store.fills(market)), D(0))
        assert booked == position.size == held(server, asset)  # the store is the account, to the unit
        assert 0 <= booked < venue.specs()[market].step_size  # closed: only dust no lot can sell
        if asset == "ETH":
            assert booked == 0
