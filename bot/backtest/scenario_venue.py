"""A venue wrapper for backtests under stress scenarios: orders fail, are rejected or are delayed."""

from __future__ import annotations

from decimal import Decimal

from bot.domain import ZERO, OrderRequest, OrderStatus, OrderUpdate
from bot.errors import OrderRejected, TransientVenueError
from bot.venues.ports import AccountSink, ExecutionVenue

from .clock import SimClock
from .scenarios import StressModel, is_rejected


class ScenarioVenue:
    """An ExecutionVenue wrapper that lets scenarios fail, reject or delay orders."""

    def __init__(self, inner: ExecutionVenue, stress: StressModel, leg: str, clock: SimClock) -> None:
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self._stress = stress
        self._leg = leg
        self._clock = clock
        self._sink: AccountSink = lambda event: None
        self.delayed: list[tuple[int, OrderRequest]] = []

    def set_account_sink(self, sink: AccountSink) -> None:
        self._sink = sink
        self.inner.set_account_sink(sink)

    async def place(self, order: OrderRequest) -> None:
        if self._leg == "perp" and self._stress.halted:
            raise TransientVenueError(self.name, "place", "chain halted: no blocks")
        if is_rejected(order.client_id, self._stress.reject_rate[self._leg]):
            raise OrderRejected(self.name, "place", "rejected by scenario")
        if self._leg == "spot" and self._stress.hedge_delay_ns:
            self.delayed.append((self._clock.now_ns() + self._stress.hedge_delay_ns, order))
            return
        await self.inner.place(order)

    async def release(self, now_ns: int) -> None:
        """Send delayed orders that are due (a rejection then arrives as an order update)."""
        due = [o for t, o in self.delayed if t <= now_ns]
        self.delayed = [(t, o) for t, o in self.delayed if t > now_ns]
        for order in due:
            try:
                await self.inner.place(order)
            except OrderRejected as exc:
                self._sink(OrderUpdate(order.client_id, order.market, OrderStatus.REJECTED, ZERO, now_ns,
                                       str(exc)))

    async def cancel(self, client_id: int) -> bool:
        self.delayed = [(t, o) for t, o in self.delayed if o.client_id != client_id]
        return await self.inner.cancel(client_id)

    async def open_orders(self) -> list[int]:
        return await self.inner.open_orders()

    async def positions(self) -> dict[str, Decimal]:
        return await self.inner.positions()
