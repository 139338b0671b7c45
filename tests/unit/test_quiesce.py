"""The exit waits for orders in flight: an intent cut off mid-place is one nobody can settle."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from support.clock import ManualClock
from support.wait import eventually_async

from bot.book import OrderBook
from bot.config import ExecutionSettings
from bot.domain import BookLevel, BookSnapshot, OrderRequest, OrderStatus, Side, TimeInForce
from bot.execution.orders import OrderManager
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.paper.adapter import PaperVenue
from bot.venues.paper.fills import FeeSchedule


class SlowPaperVenue(PaperVenue):
    """The paper venue whose place waits for the test, as a slow broadcast does."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.entered = asyncio.Event()
        self.proceed = asyncio.Event()

    async def place(self, order: OrderRequest) -> None:
        self.entered.set()
        await self.proceed.wait()
        await super().place(order)


def _order(client_id: int) -> OrderRequest:
    return OrderRequest(client_id, "BTC-USD", Side.BUY, Decimal("0.1"), Decimal(90), TimeInForce.POST_ONLY)


async def test_quiesce_waits_for_the_place_in_flight_then_sends_nothing_more(tmp_path: Path) -> None:
    book = OrderBook("BTC-USD")
    book.apply_snapshot(BookSnapshot("BTC-USD", (BookLevel(Decimal(100), Decimal(5)),),
                                     (BookLevel(Decimal(101), Decimal(5)),), 0, 0))
    clock = ManualClock(1_000_000_000_000)
    venue = SlowPaperVenue({"BTC-USD": book}, FeeSchedule(Decimal(0), Decimal(0)), clock)
    with Store.open(tmp_path / "s.sqlite") as store:
        manager = OrderManager(venue, store, Metrics(), clock, ExecutionSettings())
        venue.set_account_sink(manager.on_account_event)
        sending = asyncio.create_task(manager.submit(_order(1)))
        await venue.entered.wait()
        quiet = asyncio.create_task(manager.quiesce())
        await asyncio.sleep(0.05)
        assert not quiet.done()  # the place has not answered yet
        venue.proceed.set()
        await asyncio.wait_for(quiet, 5)
        await sending
        stored = store.get_order(1)
        assert stored is not None and stored.status is OrderStatus.ACKED  # its outcome is known

        late = asyncio.create_task(manager.submit(_order(2)))
        await asyncio.sleep(0.05)
        assert not late.done() and store.get_order(2) is None  # not even recorded
        late.cancel()
        await eventually_async(late.done)
        assert await venue.open_orders() == [1]
