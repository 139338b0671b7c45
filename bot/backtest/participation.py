"""A participation cap for candle backtests: taker orders may fill at most a share of the bar's volume.

The synthetic candle book is as deep as the depth model says, whatever the bar's traded volume;
in a thin bar a large account could take more than traded. This wrapper of the perp execution
venue caps what taker orders (IOC and resting limit orders alike, not post-only) fill per market
and per bar at `PARTICIPATION_CAP` of the bar's volume (base units, from the candle source's
`hooks["bars"]`): an order beyond the room left is sent for the room only (nothing when none is
left), and the venue's report of it reads as an IOC remainder cancelled with reason
`participation_cap`, as a venue reports a partial fill. Sources without bars (the simulator,
recordings) are not capped.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import ROUND_DOWN, Decimal
from typing import Any

from bot.domain import (
    ZERO,
    AccountEvent,
    Fill,
    MarketSpec,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    TimeInForce,
)
from bot.venues.ports import AccountSink

PARTICIPATION_CAP = Decimal("0.1")  # of the bar's volume, per market and bar


class CappedVenue:
    """An ExecutionVenue wrapper: taker fills per bar stay within the cap of the bar's volume."""

    def __init__(self, inner: Any, bars: dict[str, tuple[int, float]], specs: dict[str, MarketSpec],
                 clock: Any, cap: Decimal = PARTICIPATION_CAP) -> None:
        self.inner = inner
        self._specs = specs
        self.name = inner.name
        self.capabilities = inner.capabilities
        self._bars = bars  # market -> (bar start ns, bar volume), kept current by the source
        self._cap = cap
        self._clock = clock
        self._used: dict[str, tuple[int, Decimal]] = {}
        self._capped: dict[int, Decimal] = {}  # client id -> size asked for
        self._sink: AccountSink = lambda event: None
        self.capped_orders = 0

    def set_account_sink(self, sink: AccountSink) -> None:
        self._sink = sink
        self.inner.set_account_sink(self._on_event)

    def _room(self, market: str) -> Decimal | None:
        bar = self._bars.get(market)
        if bar is None:
            return None
        start, volume = bar
        used_start, used = self._used.get(market, (start, ZERO))
        if used_start != start:
            used = ZERO
        room = Decimal(repr(volume)) * self._cap - used
        spec = self._specs[market]
        room = (room / spec.step_size).to_integral_value(ROUND_DOWN) * spec.step_size
        return room if room >= spec.min_order_size else ZERO

    def _on_event(self, event: AccountEvent) -> None:
        if isinstance(event, Fill):
            bar = self._bars.get(event.market)
            if bar is not None:
                start = bar[0]
                used_start, used = self._used.get(event.market, (start, ZERO))
                self._used[event.market] = (start, (used if used_start == start else ZERO) + event.size)
        elif isinstance(event, OrderUpdate) and event.client_id in self._capped:
            asked = self._capped[event.client_id]
            if event.status in (OrderStatus.FILLED, OrderStatus.CANCELLED) and event.filled_size < asked:
                del self._capped[event.client_id]
                event = replace(event, status=OrderStatus.CANCELLED, reason="participation_cap")
        self._sink(event)

    async def place(self, order: OrderRequest) -> None:
        room = None if order.tif is TimeInForce.POST_ONLY else self._room(order.market)
        if room is None or order.size <= room:
            await self.inner.place(order)
            return
        self.capped_orders += 1
        self._capped[order.client_id] = order.size
        if room <= 0:
            self._on_event(OrderUpdate(order.client_id, order.market, OrderStatus.CANCELLED, ZERO,
                                       self._clock.now_ns(), "participation_cap"))
            return
        await self.inner.place(replace(order, size=room, tif=TimeInForce.IOC))

    async def cancel(self, client_id: int) -> Any:
        return await self.inner.cancel(client_id)

    async def open_orders(self) -> list[int]:
        return await self.inner.open_orders()

    async def positions(self) -> dict[str, Decimal]:
        return await self.inner.positions()
