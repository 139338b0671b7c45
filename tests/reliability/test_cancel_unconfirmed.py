"""A cancel the venue accepted but never executed (a tx dropped from the mempool) or whose
confirmation never arrived: the order manager asks again instead of waiting forever.

On the simulator a resting child is usually filled or crossed within a second, so the race
cannot be staged there reliably; this drives the order manager against a venue that accepts
everything and reports nothing, on a fake clock.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from support.clock import ManualClock

from bot.book import OrderBook
from bot.config import ExecutionSettings
from bot.domain import BookLevel, BookSnapshot, MarketSpec, OrderRequest, RiskMode, Side, TimeInForce
from bot.execution.orders import CANCEL_RESEND_NS, OrderManager
from bot.execution.twap import TwapPlan
from bot.store import Store
from bot.telemetry import Metrics

MARKET = "ETH-USD"
SEC = 1_000_000_000


class MuteVenue:
    """Accepts every order and cancel, confirms nothing."""

    name = "dydx"

    def __init__(self) -> None:
        self.placed: list[OrderRequest] = []
        self.cancels: list[int] = []

    async def place(self, order: OrderRequest) -> None:
        self.placed.append(order)

    async def cancel(self, client_id: int) -> None:
        self.cancels.append(client_id)

    async def open_orders(self) -> list[int]:
        return []


async def test_an_unconfirmed_cancel_is_sent_again(tmp_path: Path) -> None:
    clock, venue = ManualClock(1_700_000_000 * SEC), MuteVenue()
    book = OrderBook(MARKET)
    book.apply_snapshot(BookSnapshot(MARKET, (BookLevel(Decimal(3000), Decimal(50)),),
                                     (BookLevel(Decimal("3000.5"), Decimal(50)),), 0, 0))
    specs = {MARKET: MarketSpec(MARKET, Decimal("0.1"), Decimal("0.001"), Decimal("0.001"))}
    with Store.open(tmp_path / "s.sqlite") as store:
        manager = OrderManager(venue, store, Metrics(), clock, ExecutionSettings(passive_timeout_secs=600))
        start = clock.now
        plan = TwapPlan(MARKET, Side.BUY, Decimal(1), False, (start,), (Decimal(1),), start + 600 * SEC,
                        passive=True)
        manager.start_parent(plan, decision_id=0)
        await manager.tick({MARKET: book}, specs, RiskMode.NORMAL)
        (child,) = venue.placed
        assert child.tif is TimeInForce.POST_ONLY
        for _ in range(3):  # pulled in REDUCE_ONLY; no confirmation comes
            await manager.tick({MARKET: book}, specs, RiskMode.REDUCE_ONLY)
            await clock.sleep(0.5)
        assert venue.cancels == [child.client_id]  # pending: not hammered every tick
        await clock.sleep(CANCEL_RESEND_NS / SEC)
        await manager.tick({MARKET: book}, specs, RiskMode.REDUCE_ONLY)
        assert venue.cancels == [child.client_id, child.client_id]
        assert len(venue.placed) == 1  # nothing new while the old child may still be working
