"""Cancel-all (the exit, watchdog and kill path) on the paper venue: counts only cancels sent,
reports each failure by client id and goes on past it (issue 16, finding 5)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from bot.book import OrderBook
from bot.config import ExecutionSettings
from bot.domain import BookLevel, BookSnapshot, OrderRequest, OrderStatus, Side, TimeInForce
from bot.errors import TransientVenueError
from bot.execution.orders import OrderManager
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.paper.adapter import PaperVenue
from bot.venues.paper.fills import FeeSchedule


class Clock:
    def now_ns(self) -> int:
        return 1_000_000_000_000


class FlakyPaperVenue(PaperVenue):
    """The paper venue, with the cancel of one order failing as a venue outage would."""

    failing: int = 0

    async def cancel(self, client_id: int) -> bool:
        if client_id == self.failing:
            raise TransientVenueError("paper", f"cancel {client_id}", "HTTP 503")
        return await super().cancel(client_id)


async def test_a_failed_cancel_is_reported_and_the_others_still_go(tmp_path: Path) -> None:
    book = OrderBook("BTC-USD")
    book.apply_snapshot(BookSnapshot("BTC-USD", (BookLevel(Decimal(100), Decimal(5)),),
                                     (BookLevel(Decimal(101), Decimal(5)),), 0, 0))
    venue = FlakyPaperVenue({"BTC-USD": book}, FeeSchedule(Decimal(0), Decimal(0)), Clock())
    with Store.open(tmp_path / "s.sqlite") as store:
        manager = OrderManager(venue, store, Metrics(), Clock(), ExecutionSettings())
        venue.set_account_sink(manager.on_account_event)
        resting = [OrderRequest(manager.next_client_id(), "BTC-USD", Side.BUY, Decimal("0.1"),
                                Decimal(90 - i), TimeInForce.POST_ONLY) for i in range(3)]
        await manager.submit_many(resting)
        gone = OrderRequest(manager.next_client_id(), "BTC-USD", Side.BUY, Decimal("0.1"), Decimal(80),
                            TimeInForce.POST_ONLY)
        store.record_order("paper", gone, 0)  # recorded, never at the venue (a crash before sending)
        venue.failing = resting[0].client_id

        cancelled, errors = await manager.cancel_all()

        assert sorted(cancelled) == sorted(o.client_id for o in resting[1:])  # not `gone`: nothing sent
        assert len(errors) == 1 and str(resting[0].client_id) in errors[0] and "503" in errors[0]
        assert await venue.open_orders() == [resting[0].client_id]
        for order in resting[1:]:
            stored = store.get_order(order.client_id)
            assert stored is not None and stored.status is OrderStatus.CANCELLED
