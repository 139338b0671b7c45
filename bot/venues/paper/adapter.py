"""The paper venue: an ExecutionVenue that fills against any market-data books, never a real one.

It reads the same OrderBook objects the engine keeps (fed by whatever MarketData runs: the
simulator, a replay or a live venue) and must see every market event after the engine has
applied it (`on_market_event`). Fills, order updates and hourly funding go to the account sink
exactly as a real venue's stream would.
"""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal

import structlog

from bot.book import OrderBook
from bot.clock import NS_PER_SEC, Clock
from bot.domain import (
    ZERO,
    AccountEvent,
    BookDelta,
    BookSnapshot,
    Fill,
    MarketEvent,
    OracleUpdate,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    TimeInForce,
    Trade,
)
from bot.errors import OrderRejected, PostOnlyWouldCross
from bot.venues.paper.fills import (
    ConsumedLiquidity,
    FeeSchedule,
    RestingOrder,
    fill_crossed,
    fill_taker,
    funding_payment,
    join_queue,
    on_book_update,
    on_trade,
    post_only_would_cross,
)
from bot.venues.ports import AccountSink, Capabilities, VenueAccount

log = structlog.get_logger("paper")
class PaperVenue:
    """Simulated execution with queue-aware maker fills, book-walking taker fills and funding."""

    name = "paper"
    capabilities = Capabilities()

    def __init__(
        self,
        books: dict[str, OrderBook],
        fees: FeeSchedule,
        clock: Clock,
        funding_interval_secs: float = 3600.0,
    ) -> None:
        self._books = books
        self._fees = fees
        self._clock = clock
        self._funding_interval_ns = int(funding_interval_secs * NS_PER_SEC)
        self._positions: dict[str, Decimal] = {m: ZERO for m in books}
        self._consumed = {m: ConsumedLiquidity() for m in books}
        self._resting: dict[int, RestingOrder] = {}
        self._oracle: dict[str, tuple[Decimal, Decimal]] = {}
        self._funding_epoch: int | None = None
        self._sink: AccountSink = lambda event: None
        self._fill_seq = 0

    def restore_positions(self, positions: dict[str, Decimal]) -> None:
        """Start from positions rebuilt from the store (paper state persists like live state)."""
        self._positions.update(positions)

    def set_account_sink(self, sink: AccountSink) -> None:
        self._sink = sink

    def _emit(self, event: AccountEvent) -> None:
        if isinstance(event, Fill):
            self._positions[event.market] += event.size * event.side.sign
        self._sink(event)

    def _prefix(self, client_id: int) -> str:
        self._fill_seq += 1
        return f"paper-{client_id}-{self._fill_seq}"

    async def place(self, order: OrderRequest) -> None:
        """Accept, fill or rest an order; raises OrderRejected like a venue would."""
        book = self._books.get(order.market)
        if book is None:
            raise OrderRejected(self.name, "place", f"unknown market {order.market}")
        if order.reduce_only:
            self._check_reduce_only(order)
        now = self._clock.now_ns()
        if order.tif is TimeInForce.POST_ONLY:
            if post_only_would_cross(order, book):
                raise PostOnlyWouldCross(self.name, "place", "post-only order would cross")
            self._resting[order.client_id] = join_queue(order, book, self._prefix(order.client_id))
            self._emit(OrderUpdate(order.client_id, order.market, OrderStatus.ACKED, ZERO, now))
            return
        fills = fill_taker(order, book, self._fees, self._prefix(order.client_id), now,
                           self._consumed[order.market])
        filled = sum((f.size for f in fills), ZERO)
        for fill in fills:
            self._emit(fill)
        if filled >= order.size:
            self._emit(OrderUpdate(order.client_id, order.market, OrderStatus.FILLED, filled, now))
        elif order.tif is TimeInForce.IOC:
            self._emit(OrderUpdate(order.client_id, order.market, OrderStatus.CANCELLED, filled,
                                   now, "ioc_remainder"))
        else:
            rest = RestingOrder(order, book.size_at(order.side, order.price),
                                self._prefix(order.client_id), filled_size=filled)
            self._resting[order.client_id] = rest
            status = OrderStatus.PARTIALLY_FILLED if filled else OrderStatus.ACKED
            self._emit(OrderUpdate(order.client_id, order.market, status, filled, now))

    def _check_reduce_only(self, order: OrderRequest) -> None:
        position = self._positions.get(order.market, ZERO)
        if order.tif is not TimeInForce.IOC:
            raise OrderRejected(self.name, "place", "reduce-only is accepted only on IOC orders")
        if position == 0 or (position > 0) == (order.side.sign > 0) or order.size > abs(position):
            raise OrderRejected(self.name, "place", "reduce-only order would increase the position")

    async def cancel(self, client_id: int) -> bool:
        """Cancel a resting order; cancelling an unknown or finished order is a no-op report."""
        resting = self._resting.pop(client_id, None)
        market = resting.order.market if resting else ""
        filled = resting.filled_size if resting else ZERO
        self._emit(OrderUpdate(client_id, market, OrderStatus.CANCELLED, filled,
                               self._clock.now_ns(), "cancelled"))
        return resting is not None

    async def cancel_many(self, client_ids: list[int], *, all_open: bool = False
                          ) -> tuple[list[int], list[str]]:
        """Cancel each order (with `all_open`, every resting one too); nothing here can fail."""
        targets = list(client_ids) + ([c for c in self._resting if c not in client_ids] if all_open else [])
        return [c for c in targets if await self.cancel(c)], []

    async def open_orders(self) -> list[int]:
        return list(self._resting)

    async def account_snapshot(self, orders: Collection[int] = ()) -> VenueAccount:
        """The paper account lives in this process: its open orders and positions are all there is."""
        return VenueAccount(set(self._resting), positions=dict(self._positions))

    async def sweep_account(self) -> None:
        """Nothing to read back: every fill and order update already went to the sink."""

    @property
    def resting(self) -> dict[int, RestingOrder]:
        """The resting orders by client id (live view: read it, do not change it). While it is
        empty, book changes and trades cannot fill anything, so a caller may skip forwarding them
        (oracle updates still settle funding)."""
        return self._resting

    async def positions(self) -> dict[str, Decimal]:
        return dict(self._positions)

    def cached_positions(self) -> dict[str, Decimal]:
        return dict(self._positions)

    def on_market_event(self, event: MarketEvent) -> None:
        """Advance resting orders and funding from a market event the engine already applied."""
        kind = event.__class__  # exact classes: the domain events are final dataclasses
        if kind is BookDelta or kind is BookSnapshot:
            if self._resting:
                self.on_book_changed(event.market, event.ts_recv)  # type: ignore[union-attr]
        elif kind is Trade:
            if self._resting:
                self._on_trade(event)  # type: ignore[arg-type]
        elif kind is OracleUpdate:
            # Settle first: the rate stored is the one predicted for the hour that just ended (the
            # rate dated at this boundary); this update already carries the next hour's.
            if event.ts_recv // self._funding_interval_ns != self._funding_epoch:
                self._maybe_settle_funding(event.ts_recv, event.market, event.oracle_price)  # type: ignore[union-attr]
            self._oracle[event.market] = (event.oracle_price, event.next_funding_rate)  # type: ignore[union-attr]

    def on_book_changed(self, market: str, ts_recv: int = 0) -> None:
        """The shared book of `market` changed: queues ahead of our resting orders may shrink, and
        levels that moved through a resting order trade with it."""
        if not self._resting:
            return
        book = self._books[market]
        crossed: list[tuple[int, RestingOrder, Fill]] = []
        for client_id, resting in self._resting.items():
            if resting.order.market == market:
                on_book_update(resting, book)
                fill = fill_crossed(resting, book, self._fees, ts_recv or self._clock.now_ns(),
                                    self._consumed[market])
                if fill is not None:
                    crossed.append((client_id, resting, fill))
        for client_id, resting, fill in crossed:
            self._report_maker_fill(client_id, resting, fill)

    def _on_trade(self, trade: Trade) -> None:
        for client_id, resting in list(self._resting.items()):
            fill = on_trade(resting, trade, self._fees, trade.ts_recv)
            if fill is not None:
                self._report_maker_fill(client_id, resting, fill)

    def _report_maker_fill(self, client_id: int, resting: RestingOrder, fill: Fill) -> None:
        self._emit(fill)
        status = OrderStatus.FILLED if resting.is_filled else OrderStatus.PARTIALLY_FILLED
        if resting.is_filled:
            del self._resting[client_id]
        self._emit(OrderUpdate(client_id, fill.market, status, resting.filled_size, fill.ts_event))

    def _maybe_settle_funding(self, now_ns: int, market: str = "",
                              oracle_price: Decimal | None = None) -> None:
        """At the first oracle update of a new funding interval, settle every position at the rate
        predicted during the interval that ended, at the newest oracle price known."""
        epoch = now_ns // self._funding_interval_ns
        if self._funding_epoch is None:
            self._funding_epoch = epoch
            return
        if epoch == self._funding_epoch:
            return
        self._funding_epoch = epoch
        ts = epoch * self._funding_interval_ns
        for ticker, size in self._positions.items():
            if size and ticker in self._oracle:
                oracle, rate = self._oracle[ticker]
                if ticker == market and oracle_price is not None:
                    oracle = oracle_price
                self._emit(funding_payment(ticker, size, oracle, rate, ts))
