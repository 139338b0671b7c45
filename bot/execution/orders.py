"""The order manager: turns plans into venue orders, persists every transition before acting.

It is the only module that calls an ExecutionVenue. Client ids come from the store's
allocator and the order is written to the store before it is sent, so a crash between the
two leaves a NEW row that start-up reconciliation resolves against the venue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import structlog

from bot.book import OrderBook
from bot.clock import Clock
from bot.config import ExecutionSettings
from bot.domain import (
    AccountEvent,
    Fill,
    MarketSpec,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    RiskMode,
    TimeInForce,
)
from bot.errors import OrderRejected, OrderStateUnknown, TransientVenueError
from bot.execution.twap import TwapPlan, size_child
from bot.ledger import slippage_cost_usd
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.ports import ExecutionVenue

log = structlog.get_logger("orders")


@dataclass(slots=True)
class ActiveParent:
    plan: TwapPlan
    decision_id: int
    sent: Decimal = Decimal(0)
    filled: Decimal = Decimal(0)
    child_ids: set[int] = field(default_factory=set)


class OrderManager:
    """Drives TWAP parents into IOC children on one venue and folds venue events into the store."""

    def __init__(
        self,
        venue: ExecutionVenue,
        store: Store,
        metrics: Metrics,
        clock: Clock,
        settings: ExecutionSettings,
    ) -> None:
        self.venue = venue
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._settings = settings
        self.parents: dict[str, ActiveParent] = {}
        self._child_parent: dict[int, ActiveParent] = {}
        # Mid when each open order was sent; fills are charged slippage against it.
        self._arrival_mid: dict[int, Decimal] = {}
        self.slippage_usd: dict[str, Decimal] = {}  # per market, since start (> 0: a cost)

    def start_parent(self, plan: TwapPlan, decision_id: int) -> None:
        """Replace any running parent for the market with a new plan."""
        old = self.parents.pop(plan.market, None)
        if old is not None:
            log.info("parent_replaced", market=plan.market, filled=str(old.filled))
        self.parents[plan.market] = ActiveParent(plan, decision_id)

    async def tick(self, books: dict[str, OrderBook], specs: dict[str, MarketSpec],
                   risk_mode: RiskMode) -> None:
        """Send the children that are due now."""
        now = self._clock.now_ns()
        for market, parent in list(self.parents.items()):
            if now > parent.plan.end_ns or parent.filled >= parent.plan.total:
                self._finish(market, parent, now)
                continue
            if risk_mode is RiskMode.HALTED or (
                risk_mode is RiskMode.REDUCE_ONLY and not parent.plan.reduce_only
            ):
                continue
            wanted = parent.plan.due_by(now) - parent.sent
            book = books[market]
            levels = book.levels(parent.plan.side.opposite(), 20)
            child = size_child(parent.plan.side, wanted, levels, specs[market], self._settings)
            if child is None:
                continue
            order = OrderRequest(
                client_id=self._store.next_client_id(),
                market=market,
                side=child.side,
                size=child.size,
                price=child.limit_price,
                tif=TimeInForce.IOC,
                reduce_only=parent.plan.reduce_only,
            )
            parent.sent += child.size
            parent.child_ids.add(order.client_id)
            self._child_parent[order.client_id] = parent
            await self.submit(order, book.mid())

    def _finish(self, market: str, parent: ActiveParent, now_ns: int) -> None:
        del self.parents[market]
        log.info("parent_done", market=market, total=str(parent.plan.total),
                 filled=str(parent.filled), complete=parent.filled >= parent.plan.total)

    async def submit(self, order: OrderRequest, arrival_mid: Decimal | None = None) -> None:
        """Persist the intent, then send it; never resend blindly after an ambiguous failure.

        `arrival_mid` is the book's mid when the order was decided, for slippage attribution.
        """
        self._store.record_order(self.venue.name, order, self._clock.now_ns())
        if arrival_mid is not None:
            self._arrival_mid[order.client_id] = arrival_mid
        self._metrics.orders.labels(self.venue.name, OrderStatus.NEW.value).inc()
        log.info("order_submitted", client_order_id=order.client_id, market=order.market,
                 side=order.side.value, size=str(order.size), price=str(order.price),
                 tif=order.tif.value, reduce_only=order.reduce_only)
        try:
            await self.venue.place(order)
        except OrderRejected as exc:
            self._transition(order.client_id, OrderStatus.REJECTED, Decimal(0), str(exc))
        except TransientVenueError as exc:
            self._transition(order.client_id, OrderStatus.REJECTED, Decimal(0), f"not sent: {exc}")
        except OrderStateUnknown as exc:
            # Left NEW on purpose: reconciliation queries the venue by client id.
            log.warning("order_state_unknown", client_order_id=order.client_id, error=str(exc))

    def on_account_event(self, event: AccountEvent) -> None:
        """Fold a venue event into the store and the parent it belongs to (idempotent)."""
        if isinstance(event, OrderUpdate):
            self._transition(event.client_id, event.status, event.filled_size, event.reason)
        elif isinstance(event, Fill):
            if not self._store.record_fill(self.venue.name, event):
                return
            self._metrics.fills.labels(self.venue.name, event.market).inc()
            mid = self._arrival_mid.get(event.client_id)
            if mid is not None:
                cost = slippage_cost_usd(event.side, event.price, event.size, mid)
                self.slippage_usd[event.market] = self.slippage_usd.get(event.market, Decimal(0)) + cost
            parent = self._child_parent.get(event.client_id)
            if parent is not None:
                parent.filled += event.size

    def _transition(self, client_id: int, status: OrderStatus, filled: Decimal, reason: str) -> None:
        if self._store.update_order(client_id, status, filled, self._clock.now_ns(), reason):
            self._metrics.orders.labels(self.venue.name, status.value).inc()
            log.info("order_" + status.value.lower(), client_order_id=client_id,
                     filled=str(filled), reason=reason or None)
        if not status.is_open:
            self._arrival_mid.pop(client_id, None)
            parent = self._child_parent.pop(client_id, None)
            if parent is not None and status is not OrderStatus.FILLED:
                # Unfilled remainder goes back to the parent's schedule.
                parent.sent -= self._unfilled(client_id)

    def _unfilled(self, client_id: int) -> Decimal:
        stored = self._store.get_order(client_id)
        return Decimal(0) if stored is None else stored.size - stored.filled_size

    async def cancel_all(self) -> list[int]:
        """Stop every parent and cancel every open order of ours on the venue."""
        self.parents.clear()
        cancelled = []
        for stored in self._store.open_orders(self.venue.name):
            await self.venue.cancel(stored.client_id)
            cancelled.append(stored.client_id)
        for client_id in await self.venue.open_orders():
            if client_id not in cancelled:
                await self.venue.cancel(client_id)
                cancelled.append(client_id)
        return cancelled
