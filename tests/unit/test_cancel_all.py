"""Cancel-all (the exit, watchdog and kill path) on the paper venue: counts only cancels sent,
reports each failure by client id and goes on past it (issue 16, finding 5)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from support.clock import ManualClock

from bot.book import OrderBook
from bot.config import ExecutionSettings
from bot.domain import (
    BookLevel,
    BookSnapshot,
    MarketSpec,
    OrderRequest,
    OrderStatus,
    RiskMode,
    Side,
    TimeInForce,
)
from bot.errors import TransientVenueError
from bot.execution.orders import OrderManager
from bot.execution.twap import plan_twap
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.paper.adapter import PaperVenue
from bot.venues.paper.fills import FeeSchedule


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
    clock = ManualClock(1_000_000_000_000)
    venue = FlakyPaperVenue({"BTC-USD": book}, FeeSchedule(Decimal(0), Decimal(0)), clock)
    with Store.open(tmp_path / "s.sqlite") as store:
        manager = OrderManager(venue, store, Metrics(), ManualClock(1_000_000_000_000), ExecutionSettings())
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


async def test_a_held_parent_sends_nothing_until_released_and_cancel_parent_pulls_its_children(
        tmp_path: Path) -> None:
    book = OrderBook("BTC-USD")
    book.apply_snapshot(BookSnapshot("BTC-USD", (BookLevel(Decimal(60000), Decimal(5)),),
                                     (BookLevel(Decimal(60010), Decimal(5)),), 0, 0))
    spec = MarketSpec("BTC-USD", Decimal(1), Decimal("0.001"), Decimal("0.001"))
    clock = ManualClock(1_000_000_000_000)
    venue = FlakyPaperVenue({"BTC-USD": book}, FeeSchedule(Decimal(0), Decimal(0)), clock)
    settings = ExecutionSettings()
    with Store.open(tmp_path / "s.sqlite") as store:
        manager = OrderManager(venue, store, Metrics(), ManualClock(1_000_000_000_000), settings)
        venue.set_account_sink(manager.on_account_event)
        plan = plan_twap(spec, Decimal(0), Decimal("0.5"), settings, clock.now_ns(), 1)
        assert plan is not None
        plan = replace(plan, passive=True, post_only=True)
        manager.start_parent(plan, 1)
        parent = manager.hold("BTC-USD")
        assert parent is not None and manager.parent("BTC-USD") is None and manager.running() == []
        await manager.tick({"BTC-USD": book}, {"BTC-USD": spec}, RiskMode.NORMAL)
        assert await venue.open_orders() == []  # held: nothing sent
        manager.release("BTC-USD", parent)
        await manager.tick({"BTC-USD": book}, {"BTC-USD": spec}, RiskMode.NORMAL)
        resting = await venue.open_orders()
        assert len(resting) == 1 and list(parent.children) == resting

        newer = replace(plan, total=Decimal("0.2"))
        manager.hold("BTC-USD")
        manager.start_parent(newer, 2)  # a decision replaced it meanwhile: release keeps the new one
        manager.release("BTC-USD", parent)
        current = manager.parent("BTC-USD")
        assert current is not None and current.plan is newer

        venue.failing = resting[0]
        await manager.cancel_parent(parent)  # a failed cancel is logged, not raised
        assert await venue.open_orders() == resting
        venue.failing = 0
        await manager.cancel_parent(parent)
        assert await venue.open_orders() == []
