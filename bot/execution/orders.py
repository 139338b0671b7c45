"""The order manager: turns plans into venue orders, persists every transition before acting.

It is the only module that calls an ExecutionVenue. Client ids come from the store's
allocator and the order is written to the store before it is sent, so a crash between the
two leaves a NEW row that start-up reconciliation resolves against the venue.

Venue events are folded through the state machine in `execution.state` (duplicates and stale
reports change nothing), the new state is written to the store, and only then does the manager
act on it (parent bookkeeping, metrics, the log line). Taker parents send marketable-limit IOC
children (`twap.size_child`); passive parents keep one post-only child at the touch
(`passive.plan_passive`), re-pegged by cancel/replace: the replacement is placed only once the
venue confirmed the cancel, so a late fill on the old child never doubles the size working.
Every place and cancel that `tick()` sends takes a token from the venue's rate-limit bucket;
`cancel_all` (the kill path) is never throttled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal

import structlog

from bot.book import OrderBook
from bot.clock import NS_PER_SEC, Clock
from bot.config import ExecutionSettings
from bot.domain import (
    ZERO,
    AccountEvent,
    Fill,
    MarketSpec,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    RiskMode,
    Side,
    TimeInForce,
)
from bot.errors import BotError, OrderRejected, OrderStateUnknown, TransientVenueError
from bot.execution.passive import CancelChild, PassiveAction, RestingChild, plan_passive
from bot.execution.read_back import read_back_unanswered
from bot.execution.state import OrderState, apply_update
from bot.execution.twap import TwapPlan, size_child
from bot.ledger import slippage_cost_usd
from bot.ratelimit import TokenBucket
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.ports import ExecutionVenue

log = structlog.get_logger("orders")
BOOK_LEVELS = 20
# A cancel the venue has not confirmed after this long is sent again: its confirmation may have
# been lost (a stalled or dropped stream). Cancelling twice is harmless; waiting forever is not.
CANCEL_RESEND_NS = 3_000_000_000
CLIENT_ID_BLOCK = 64  # client ids reserved per store write
_UNCAPPED = Decimal("Infinity")


@dataclass(slots=True)
class Child:
    """One child order of a parent, as far as the parent's schedule is concerned."""

    client_id: int
    size: Decimal
    price: Decimal
    tif: TimeInForce
    filled: Decimal = ZERO  # max(cumulative size the venue reported, sum of fills seen)
    fills_seen: Decimal = ZERO
    is_open: bool = True
    is_cancel_pending: bool = False
    cancel_sent_ns: int = 0
    sent_ns: int = 0
    read_ns: int = 0  # when it was last read back from the venue (0: never)

    @property
    def committed(self) -> Decimal:
        """Size this child takes from the parent: all of it while open, what filled once done."""
        return self.size if self.is_open else self.filled


@dataclass(slots=True)
class ActiveParent:
    plan: TwapPlan
    decision_id: int
    filled: Decimal = ZERO
    children: dict[int, Child] = field(default_factory=dict)
    arrival_price: Decimal | None = None  # mid at the parent's first tick (passive chase anchor)
    waiting_since_ns: int | None = None  # when the current passive wait began

    @property
    def sent(self) -> Decimal:
        return sum((c.committed for c in self.children.values()), ZERO)

    @property
    def child_ids(self) -> set[int]:
        return set(self.children)

    def resting(self) -> Child | None:
        """The open post-only child, if any (a passive parent works at most one)."""
        for child in self.children.values():
            if child.is_open and child.tif is TimeInForce.POST_ONLY:
                return child
        return None


class OrderManager:
    """Drives TWAP parents into children on one venue and folds venue events into the store."""

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
        self._never_cross = settings.model_copy(update={"urgency": "low"})  # post-only plans
        self.parents: dict[str, ActiveParent] = {}
        self._child_parent: dict[int, tuple[ActiveParent, Child]] = {}
        # Last known state of orders this process touched; others are read from the store.
        self._states: dict[int, OrderState] = {}
        # Mid when each open order was sent; fills are charged slippage against it.
        self._arrival_mid: dict[int, Decimal] = {}
        self.slippage_usd: dict[str, Decimal] = {}  # per market, since start (> 0: a cost)
        # Per market, since start: base the venue kept as commission, what the positions lack
        # against what the orders traded (Fill.withheld; Binance spot buys).
        self.withheld: dict[str, Decimal] = {}
        self._bucket = TokenBucket.full(settings.max_orders_per_sec, clock.now_ns())
        self._orphans: list[int] = []  # open children of replaced parents, cancelled next tick
        self._sending = asyncio.Lock()  # held from recording intents until the venue answered them
        self.throttled = 0  # venue calls deferred by the rate limit
        self._client_ids: Iterator[int] = iter(())
        self._new_orders = metrics.orders.labels(venue.name, OrderStatus.NEW.value)
        # The last check before the venue: (order, signed size working on its market with it) ->
        # why the risk limits forbid it, or None. A refused order is rejected here, never sent.
        self.guard: Callable[[OrderRequest, Decimal], str | None] | None = None

    def start_parent(self, plan: TwapPlan, decision_id: int) -> None:
        """Replace any running parent for the market with a new plan."""
        old = self.parents.pop(plan.market, None)
        if old is not None:
            log.info("parent_replaced", market=plan.market, filled=str(old.filled))
            self._orphans += [c.client_id for c in old.children.values()
                              if c.is_open and c.tif is not TimeInForce.IOC]
        self.parents[plan.market] = ActiveParent(plan, decision_id)

    def parent(self, market: str) -> ActiveParent | None:
        """The running parent of a market, if any."""
        return self.parents.get(market)

    def running(self) -> list[tuple[str, ActiveParent]]:
        """(market, parent) for every running parent."""
        return list(self.parents.items())

    def working(self, market: str) -> Decimal:
        """Signed size our open children on `market` may still trade, whichever parent sent them:
        an IOC child of a finished, replaced or held parent that the venue has not answered yet
        (a slow ack, a late user stream, a delayed send) can still fill."""
        return sum((p.plan.side.sign * (c.size - c.filled) for p, c in self._child_parent.values()
                    if c.is_open and p.plan.market == market), ZERO)

    def parent_of(self, client_id: int) -> ActiveParent | None:
        """The parent that sent a child still tracked: running, or ended with the child open or
        with fills of it not yet seen."""
        entry = self._child_parent.get(client_id)
        return entry[0] if entry is not None else None

    async def read_back_unanswered(self, market: str, now_ns: int) -> None:
        """Read back from the venue the IOC children on `market` it has not answered for a while
        (`bot.execution.read_back`): their answer was lost."""
        children = [c for p, c in self._child_parent.values() if p.plan.market == market]
        await read_back_unanswered(self.venue, market, children, now_ns, self._transition, self.order_state)

    def decisions_tracked(self) -> set[int]:
        """The decisions whose parents may still report: running, held or ended with children tracked."""
        running = {p.decision_id for p in self.parents.values()}
        return running | {p.decision_id for p, _child in self._child_parent.values()}

    async def cancel_working(self, market: str, keep: Side | None = None) -> None:
        """Cancel every open child on `market` but those on side `keep`, IOC ones too (one not yet
        at the venue or not yet answered may still fill); cancelling one that ended is a no-op."""
        for child in self._children_against(market, keep):
            if child.is_open and not child.is_cancel_pending:
                await self._cancel(child.client_id)

    def cancellable(self, market: str, keep: Side | None = None) -> bool:
        """`cancel_working(market, keep)` has an open child to cancel (none already being cancelled)."""
        return any(c.is_open and not c.is_cancel_pending for c in self._children_against(market, keep))

    def _children_against(self, market: str, keep: Side | None) -> list[Child]:
        return [c for p, c in self._child_parent.values()
                if p.plan.market == market and p.plan.side is not keep]

    def hold(self, market: str) -> ActiveParent | None:
        """Take a market's parent out of the schedule (its children are left as they are)."""
        return self.parents.pop(market, None)

    def release(self, market: str, parent: ActiveParent) -> None:
        """Put a held parent back, unless a decision started a new one meanwhile."""
        self.parents.setdefault(market, parent)

    async def cancel_parent(self, parent: ActiveParent) -> None:
        """Cancel the resting children of a held parent (IOC children end by themselves)."""
        for child in parent.children.values():
            if child.is_open and child.tif is not TimeInForce.IOC:
                try:
                    await self.venue.cancel(child.client_id)
                except BotError as exc:
                    log.warning("order_cancel_failed", client_order_id=child.client_id, error=str(exc))

    def _take_token(self, now_ns: int) -> bool:
        self._bucket, ok = self._bucket.take(now_ns)
        if not ok:
            self.throttled += 1
        return ok

    async def tick(self, books: dict[str, OrderBook], specs: dict[str, MarketSpec],
                   risk_mode: RiskMode, caps: Mapping[str, Decimal] | None = None) -> None:
        """Send the children that are due now; keep passive children pegged.

        `caps`: per market, the most that new children may add to what is already working
        (a hedged perp leg's headroom under its mismatch limit); markets absent are uncapped.
        """
        caps = caps or {}
        now = self._clock.now_ns()
        due: list[OrderRequest] = []
        mids: list[Decimal | None] = []
        while self._orphans and self._take_token(now):
            await self._cancel(self._orphans.pop())
        for market, parent in list(self.parents.items()):
            if now > parent.plan.end_ns or parent.filled >= parent.plan.total:
                await self._finish(market, parent)
                continue
            blocked = risk_mode is RiskMode.HALTED or (
                risk_mode is RiskMode.REDUCE_ONLY and not parent.plan.reduce_only
            )
            book = books[market]
            if parent.arrival_price is None:
                parent.arrival_price = book.mid()
            if parent.plan.passive:
                await self._tick_passive(parent, book, specs[market], now, blocked,
                                         caps.get(market, _UNCAPPED))
                continue
            if blocked:
                continue
            wanted = min(parent.plan.due_by(now) - parent.sent, caps.get(market, _UNCAPPED))
            levels = book.levels(parent.plan.side.opposite(), BOOK_LEVELS)
            child = size_child(parent.plan.side, wanted, levels, specs[market], self._settings)
            if child is None or not self._take_token(now):
                continue
            due.append(self._new_child(parent, child.size, child.limit_price, TimeInForce.IOC))
            mids.append(book.mid())
        if due:  # every market's taker child of this tick: one store commit for all of them
            await self._submit_children(due, mids)

    def next_wake_ns(self, now_ns: int) -> int | None:
        """The earliest time after `now_ns` at which `tick()` compares the time differently: a
        parent's end, its next slice, a passive wait's timeout or the window's tail, a cancel's
        resend. Until then a tick on the same books, orders and fills does what one at `now_ns`
        does (backtests fold such ticks, `runner._fold_worked`); None: no such time ahead.
        Orphans and the rate limit's refill are read only when something is sent: not covered."""
        wakes: list[int] = []
        timeout_ns = int(self._settings.passive_timeout_secs * NS_PER_SEC)
        for parent in self.parents.values():
            plan = parent.plan
            wakes.append(plan.end_ns + 1)  # `now > end_ns` finishes it
            wakes += [t for t in plan.slice_due_ns if t > now_ns]
            if plan.passive:
                wakes.append(_deadline_ns(plan))
                if parent.waiting_since_ns is not None:
                    wakes.append(parent.waiting_since_ns + timeout_ns)
                for child in parent.children.values():
                    if child.is_open and child.is_cancel_pending:
                        wakes.append(child.cancel_sent_ns + CANCEL_RESEND_NS)
        return min((t for t in wakes if t > now_ns), default=None)

    async def _tick_passive(self, parent: ActiveParent, book: OrderBook, spec: MarketSpec,
                            now_ns: int, blocked: bool, cap: Decimal) -> None:
        resting = parent.resting()
        if (resting is not None and resting.is_cancel_pending
                and now_ns - resting.cancel_sent_ns >= CANCEL_RESEND_NS and self._take_token(now_ns)):
            log.warning("order_cancel_unconfirmed", client_order_id=resting.client_id)
            await self._cancel(resting.client_id)
            return
        if blocked:
            # No new exposure in this risk mode: pull the resting child, send nothing.
            if resting is not None and not resting.is_cancel_pending and self._take_token(now_ns):
                await self._cancel(resting.client_id)
            return
        if parent.arrival_price is None:
            return
        view = None
        if resting is not None:
            view = RestingChild(resting.client_id, resting.price, resting.size - resting.filled,
                                resting.is_cancel_pending)
        actions = plan_passive(
            parent.plan.side, min(parent.plan.due_by(now_ns) - parent.sent, cap), view,
            book.levels(Side.BUY, BOOK_LEVELS), book.levels(Side.SELL, BOOK_LEVELS),
            parent.arrival_price, parent.waiting_since_ns, now_ns,
            spec, self._never_cross if parent.plan.post_only else self._settings, _deadline_ns(parent.plan),
        )
        await self._perform(parent, actions, book, spec, now_ns)

    async def _perform(self, parent: ActiveParent, actions: list[PassiveAction], book: OrderBook,
                       spec: MarketSpec, now_ns: int) -> None:
        """Carry out a passive plan in order; a replacement waits for its cancel to be confirmed."""
        cancelled: list[Child] = []
        for action in actions:
            if not self._take_token(now_ns):
                return
            if isinstance(action, CancelChild):
                entry = self._child_parent.get(action.client_id)
                if entry is not None:
                    cancelled.append(entry[1])
                await self._cancel(action.client_id)
                continue
            if any(c.is_open for c in cancelled):
                return  # not confirmed yet (a real venue answers later): re-plan next tick
            # The parent's schedule is re-read after the cancel: what the old child filled counts.
            size = min(action.size, parent.plan.due_by(now_ns) - parent.sent)
            size = (size / spec.step_size).to_integral_value(rounding=ROUND_DOWN) * spec.step_size
            if size < spec.min_order_size:
                return
            if action.tif is TimeInForce.IOC:
                parent.waiting_since_ns = None  # the wait ends by crossing
            elif parent.waiting_since_ns is None:
                parent.waiting_since_ns = now_ns  # a re-peg keeps the clock running
            await self._place_child(parent, size, action.price, action.tif, book)

    async def _place_child(self, parent: ActiveParent, size: Decimal, price: Decimal,
                           tif: TimeInForce, book: OrderBook) -> None:
        await self._submit_children([self._new_child(parent, size, price, tif)], [book.mid()])

    def _new_child(self, parent: ActiveParent, size: Decimal, price: Decimal,
                   tif: TimeInForce) -> OrderRequest:
        """Register a child of `parent` and return its order (not yet recorded or sent)."""
        # dYdX accepts reduce-only only on IOC: a passive exit is kept reduce-only by the bot,
        # which never sizes a child beyond the parent's remaining reduction.
        order = OrderRequest(
            client_id=self.next_client_id(),
            market=parent.plan.market,
            side=parent.plan.side,
            size=size,
            price=price,
            tif=tif,
            reduce_only=parent.plan.reduce_only and tif is TimeInForce.IOC,
        )
        child = Child(order.client_id, size, price, tif, sent_ns=self._clock.now_ns())
        parent.children[order.client_id] = child
        self._child_parent[order.client_id] = (parent, child)
        return order

    async def _submit_children(self, orders: list[OrderRequest], mids: list[Decimal | None]) -> None:
        async with self._sending:
            try:
                self._store.record_orders(self.venue.name, orders, self._clock.now_ns())
            except Exception:
                # The store refused the record (locked, full), so nothing was sent: the size goes
                # back to the parents' schedules instead of waiting on phantom children.
                for order in orders:
                    parent, _child = self._child_parent.pop(order.client_id)
                    del parent.children[order.client_id]
                raise
            for order, mid in zip(orders, mids, strict=True):
                self._opened(order, mid)
            for order in orders:
                if not self._refused(order):
                    await self._send(order)

    async def quiesce(self) -> None:
        """Let the orders being sent get their venue's answer, then send no more (the exit calls
        this before cancelling the daemon's tasks: an intent cut off mid-place has an outcome
        nobody can read back, which the exit's cancel-and-settle could not close)."""
        await self._sending.acquire()

    async def _cancel(self, client_id: int) -> None:
        entry = self._child_parent.get(client_id)
        if entry is not None:
            entry[1].is_cancel_pending = True
            entry[1].cancel_sent_ns = self._clock.now_ns()
        log.info("order_cancel_requested", client_order_id=client_id)
        try:
            await self.venue.cancel(client_id)
        except (OrderRejected, TransientVenueError, OrderStateUnknown) as exc:
            # The order may still be working: the next tick plans (and cancels) again.
            if entry is not None:
                entry[1].is_cancel_pending = False
            log.warning("order_cancel_failed", client_order_id=client_id, error=str(exc))

    async def _finish(self, market: str, parent: ActiveParent) -> None:
        del self.parents[market]
        for child in parent.children.values():
            if not child.is_open:
                self._child_parent.pop(child.client_id, None)
            elif child.tif is not TimeInForce.IOC and not child.is_cancel_pending:
                await self._cancel(child.client_id)
        log.info("parent_done", market=market, total=str(parent.plan.total),
                 filled=str(parent.filled), complete=parent.filled >= parent.plan.total)

    async def submit(self, order: OrderRequest, arrival_mid: Decimal | None = None) -> None:
        """Persist the intent, then send it; never resend blindly after an ambiguous failure.

        `arrival_mid` is the book's mid when the order was decided, for slippage attribution.
        """
        await self.submit_many((order,), arrival_mid)

    async def submit_many(self, orders: Sequence[OrderRequest], arrival_mid: Decimal | None = None) -> None:
        """Persist several intents in one transaction (group commit), then send them in order.

        If the store refuses the write, nothing is sent and the error propagates.
        """
        async with self._sending:
            self._store.record_orders(self.venue.name, orders, self._clock.now_ns())
            for order in orders:
                self._opened(order, arrival_mid)
            for order in orders:
                if not self._refused(order, order.side.sign * order.size):
                    await self._send(order)

    def _refused(self, order: OrderRequest, unlisted: Decimal = ZERO) -> bool:
        """Reject, unsent, an order the guard forbids (an invariant broken upstream: said loudly).
        The guard sees what works on the market with it (`unlisted`: the order's own size when it
        is no tracked child); without a guard nothing is summed."""
        if self.guard is None:
            return False
        reason = self.guard(order, self.working(order.market) + unlisted)
        if reason is None:
            return False
        log.error("order_refused_limit", client_order_id=order.client_id, market=order.market,
                  side=order.side.value, size=str(order.size), reason=reason)
        self._transition(order.client_id, OrderStatus.REJECTED, ZERO, f"refused: {reason}")
        return True

    def _opened(self, order: OrderRequest, arrival_mid: Decimal | None) -> None:
        """Bookkeeping for a recorded, not yet sent, order."""
        self._states[order.client_id] = OrderState(OrderStatus.NEW, ZERO)
        if arrival_mid is not None:
            self._arrival_mid[order.client_id] = arrival_mid
        self._new_orders.inc()
        log.info("order_submitted", client_order_id=order.client_id, market=order.market,
                 side=order.side.value, size=str(order.size), price=str(order.price),
                 tif=order.tif.value, reduce_only=order.reduce_only)

    async def _send(self, order: OrderRequest) -> None:
        try:
            await self.venue.place(order)
        except OrderRejected as exc:
            self._transition(order.client_id, OrderStatus.REJECTED, ZERO, str(exc))
        except TransientVenueError as exc:
            self._transition(order.client_id, OrderStatus.REJECTED, ZERO, f"not sent: {exc}")
        except OrderStateUnknown as exc:
            # Left NEW on purpose: reconciliation queries the venue by client id.
            log.warning("order_state_unknown", client_order_id=order.client_id, error=str(exc))

    def next_client_id(self) -> int:
        """A fresh client id from a block reserved in the store (one write per block, not per id).

        Ids of a block left unused when the process stops are skipped, never reused.
        """
        client_id = next(self._client_ids, None)
        if client_id is None:
            self._client_ids = iter(self._store.reserve_client_ids(CLIENT_ID_BLOCK))
            client_id = next(self._client_ids)
        return client_id

    def on_account_event(self, event: AccountEvent, meta: tuple[str, str] | None = None) -> None:
        """Fold a venue event into the store and the parent it belongs to (idempotent).

        `meta`: state a fill changes that must be stored with it, in its transaction: (key, value).
        """
        if isinstance(event, OrderUpdate):
            self._transition(event.client_id, event.status, event.filled_size, event.reason)
        elif isinstance(event, Fill):
            if not self._store.record_fill(self.venue.name, event, meta):
                return
            self._metrics.fills.labels(self.venue.name, event.market).inc()
            # What the order traded (a commission withheld in the base is no unfilled remainder).
            traded = event.gross_size
            if event.withheld:
                kept = event.side.sign * event.withheld
                self.withheld[event.market] = self.withheld.get(event.market, ZERO) + kept
            mid = self._arrival_mid.get(event.client_id)
            if mid is not None:
                cost = slippage_cost_usd(event.side, event.price, traded, mid)
                self.slippage_usd[event.market] = self.slippage_usd.get(event.market, ZERO) + cost
            entry = self._child_parent.get(event.client_id)
            if entry is not None:
                parent, child = entry
                parent.filled += traded
                child.fills_seen += traded
                child.filled = max(child.filled, child.fills_seen)
                if (not child.is_open and child.fills_seen >= child.filled
                        and self.parents.get(parent.plan.market) is not parent):
                    del self._child_parent[event.client_id]  # the last fill its final state announced

    def order_state(self, client_id: int) -> OrderState | None:
        """The last known state of an order (memory first, then the store)."""
        state = self._states.get(client_id)
        if state is None:
            stored = self._store.get_order(client_id)
            if stored is not None:
                state = OrderState(stored.status, stored.filled_size)
        return state

    def _transition(self, client_id: int, status: OrderStatus, filled: Decimal, reason: str) -> None:
        current = self.order_state(client_id)
        if current is None:
            log.warning("order_update_unknown", client_order_id=client_id, status=status.value)
            return
        step = apply_update(current, status, filled)
        if not step.is_change:
            return  # a duplicate or a stale report: nothing to persist, nothing to do
        # Persist first: a crash after this line loses nothing, before it the venue re-reports.
        self._store.update_order(client_id, step.after.status, step.after.filled,
                                 self._clock.now_ns(), reason)
        if step.after.is_terminal:
            self._states.pop(client_id, None)  # the store answers for finished orders
        else:
            self._states[client_id] = step.after
        if step.after.status is not step.before.status:
            self._metrics.orders.labels(self.venue.name, step.after.status.value).inc()
            log.info("order_" + step.after.status.value.lower(), client_order_id=client_id,
                     filled=str(step.after.filled), reason=reason or None)
        entry = self._child_parent.get(client_id)
        if entry is not None:
            parent, child = entry
            child.filled = max(child.filled, step.after.filled)
            if step.became_terminal:
                # Unfilled remainder goes back to the parent's schedule (Child.committed).
                child.is_open = child.is_cancel_pending = False
                if step.after.status is OrderStatus.FILLED and child.tif is TimeInForce.POST_ONLY:
                    parent.waiting_since_ns = None
                if self.parents.get(parent.plan.market) is not parent and child.fills_seen >= child.filled:
                    del self._child_parent[client_id]  # its parent is done: nothing to account
        if step.became_terminal:
            self._arrival_mid.pop(client_id, None)

    async def cancel_all(self, *, all_open: bool = False) -> tuple[list[int], list[str]]:
        """Stop every parent and cancel every open order of ours on the venue (see `cancel_all`)."""
        self.parents.clear()
        self._orphans.clear()
        report = await cancel_all(self.venue, self._store, all_open=all_open)
        return report.cancelled, report.errors


@dataclass(frozen=True, slots=True)
class CancelReport:
    """What a cancel-everything did on one venue."""

    cancelled: list[int]  # client ids a cancel was sent (accepted) for
    errors: list[str]  # one per failure: an order's cancel, or the venue's open-order listing
    ours: set[int]  # the orders of ours it went for: open in the store, or listed and known to it


async def cancel_all(venue: ExecutionVenue, store: Store, *, all_open: bool = False) -> CancelReport:
    """Cancel every open order of ours on a venue: the one path of exit, watchdog, kill and kill --direct.

    Ours: open in the store, or listed open by the venue and known to the store (a closed row
    whose order still works). With `all_open`, the venue's other open orders too. Venues that
    cancel in bulk (`cancel_many`) get one call; others one cancel each. A failed cancel does
    not stop the rest.
    """
    errors: list[str] = []
    ours = {o.client_id for o in store.open_orders(venue.name)}
    listed: list[int] = []
    try:
        listed = await venue.open_orders()
    except BotError as exc:
        errors.append(f"open orders: {exc}")
    ours |= {cid for cid in listed if store.get_order(cid) is not None}
    if venue.capabilities.batch_cancel:
        sent, failed = await venue.cancel_many(sorted(ours), all_open=all_open)
        return CancelReport(list(sent), errors + list(failed), ours)
    targets = sorted(ours) + ([cid for cid in listed if cid not in ours] if all_open else [])
    cancelled: list[int] = []
    for client_id in targets:
        try:
            if await venue.cancel(client_id):
                cancelled.append(client_id)
        except BotError as exc:
            errors.append(f"cancel {client_id}: {exc}")
    return CancelReport(cancelled, errors, ours)


def _deadline_ns(plan: TwapPlan) -> int:
    """Start of the window's tail: half a slice interval before its end, urgent parents cross."""
    start = plan.slice_due_ns[0]
    return plan.end_ns - (plan.end_ns - start) // (2 * len(plan.slice_due_ns))
