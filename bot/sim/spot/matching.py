"""Spot matching: takers walk the model book, resting orders queue and fill, self-trade prevention."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from bot.domain import (
    ZERO,
    BookDelta,
    BookSnapshot,
    Fill,
    OrderRequest,
    Side,
    TimeInForce,
    Trade,
)
from bot.sim.part import Part
from bot.sim.spot.records import (
    HUGE,
    AccountState,
    ExecutionType,
    NewOrder,
    OrderType,
    SpotFill,
    SpotOrder,
    SpotOrderStatus,
    SpotTrade,
    SymbolState,
    round8,
)
from bot.venues.paper.fills import (
    RestingOrder,
    fill_taker,
    on_book_update,
    on_trade,
)


class Matching(Part):
    """Order matching of SpotExchange (a part of it: it reads and writes its state)."""

    # ---- matching -----------------------------------------------------------------------------

    def _market_size(self, st: SymbolState, req: NewOrder) -> tuple[Decimal, Decimal | None]:
        """Resolve a MARKET order to (quantity, worst price it reaches; None: the whole book)."""
        taken = st.consumed.taken(req.side, st.book)
        if req.quantity is not None:
            levels = st.book.walk(req.side, req.quantity, None, consumed=taken)
            if sum((lvl.size for lvl in levels), ZERO) < req.quantity:
                return req.quantity, None  # not enough depth: take everything, expire the rest
            return req.quantity, levels[-1].price
        step, remaining = st.spec.step_size, req.quote_order_qty or ZERO
        qty, limit = ZERO, None
        for lvl in st.book.walk(req.side, HUGE, None, consumed=taken):
            take = min(lvl.size, remaining / lvl.price // step * step)
            if take <= 0:
                break
            qty += take
            remaining -= take * lvl.price
            limit = lvl.price
            if take < lvl.size:
                break
        return qty, limit

    def _walk_cost(self, st: SymbolState, side: Side, qty: Decimal, limit: Decimal | None) -> Decimal:
        taken = st.consumed.taken(side, st.book)
        return sum((lvl.price * lvl.size for lvl in st.book.walk(side, qty, limit, consumed=taken)),
                   ZERO)

    def _available(self, st: SymbolState, side: Side, qty: Decimal, limit: Decimal | None) -> Decimal:
        taken = st.consumed.taken(side, st.book)
        return sum((lvl.size for lvl in st.book.walk(side, qty, limit, consumed=taken)), ZERO)

    def _take(self, st: SymbolState, order: SpotOrder, qty: Decimal, limit: Decimal | None,
              now: int) -> list[Fill]:
        """Walk the model book with the paper taker model; taken size is hidden until restated."""
        if limit is None:
            limit = HUGE if order.side is Side.BUY else ZERO
        request = OrderRequest(order.order_id, st.spec.symbol, order.side, qty, limit, TimeInForce.IOC)
        st.fill_calls += 1
        return fill_taker(request, st.book, self._fees, f"{st.spec.symbol}:{st.fill_calls}", now,
                          st.consumed)

    def _prevent_self_trade(self, st: SymbolState, order: SpotOrder, limit: Decimal | None, now: int,
                            touched: list[tuple[AccountState, str]]) -> None:
        """Expire resting account orders the new order would trade with (EXPIRE_MAKER)."""
        for other in list(st.resting):
            if other.side is order.side:
                continue
            crosses = limit is None or (other.price <= limit if order.side is Side.BUY
                                        else other.price >= limit)
            if crosses:
                self._close(other, SpotOrderStatus.EXPIRED, ExecutionType.TRADE_PREVENTION, now)
                acct = self._accounts[other.api_key]
                touched += [(acct, st.spec.base_asset), (acct, st.spec.quote_asset)]

    def _rest(self, st: SymbolState, order: SpotOrder) -> None:
        levels = st.bids if order.side is Side.BUY else st.asks
        request = OrderRequest(order.order_id, st.spec.symbol, order.side, order.orig_qty,
                               order.price, TimeInForce.GTT)
        # Queue behind everything shown at our price (model size net of consumption, and
        # earlier account orders).
        order.resting = RestingOrder(request, levels.get(order.price, ZERO), f"{order.order_id}",
                                     filled_size=order.executed_qty)
        order.is_working = True
        st.resting.append(order)

    def _apply_model(self, st: SymbolState, events: Iterable[object], now: int,
                     touched: list[tuple[AccountState, str]]) -> None:
        for ev in events:
            if isinstance(ev, BookSnapshot):
                st.book.apply_snapshot(ev)
            elif isinstance(ev, BookDelta):
                st.book.apply_delta(ev)
                for order in st.resting:
                    assert order.resting is not None
                    on_book_update(order.resting, st.book)
            elif isinstance(ev, Trade):
                self._pending.append(SpotTrade(st.spec.symbol, st.next_trade_id, ev.price, ev.size,
                                               ev.aggressor is Side.SELL, now))
                st.next_trade_id += 1
                for order in list(st.resting):
                    assert order.resting is not None
                    fill = on_trade(order.resting, ev, self._fees, now)
                    if fill is not None:
                        self._apply_fill(st, order, fill.price, fill.size, is_maker=True, now=now)
                        touched += [(self._accounts[order.api_key], st.spec.base_asset),
                                    (self._accounts[order.api_key], st.spec.quote_asset)]

    def _sweep(self, st: SymbolState, now: int, touched: list[tuple[AccountState, str]]) -> None:
        """Fill resting orders the model's opposite side moved through, at the order's price."""
        for order in list(st.resting):
            assert order.resting is not None
            remaining = order.orig_qty - order.executed_qty
            for f in self._take(st, order, remaining, order.price, now):
                order.resting.filled_size += f.size
                self._apply_fill(st, order, order.price, f.size, is_maker=True, now=now)
                touched += [(self._accounts[order.api_key], st.spec.base_asset),
                            (self._accounts[order.api_key], st.spec.quote_asset)]

    def _apply_fill(self, st: SymbolState, order: SpotOrder, price: Decimal, qty: Decimal, *,
                    is_maker: bool, now: int) -> SpotFill:
        spec, acct = st.spec, self._accounts[order.api_key]
        base, quote = acct.wallet(spec.base_asset), acct.wallet(spec.quote_asset)
        rate = self.config.maker_commission_rate if is_maker else self.config.taker_commission_rate
        notional = price * qty
        locks = order.type is not OrderType.MARKET
        if order.side is Side.BUY:
            commission, asset = round8(qty * rate), spec.base_asset
            if locks:  # the lock was at the limit price; a better price refunds the difference
                quote.locked -= order.price * qty
                quote.free += (order.price - price) * qty
            else:
                quote.free -= notional
            base.free += qty - commission
        else:
            commission, asset = round8(notional * rate), spec.quote_asset
            if locks:
                base.locked -= qty
            else:
                base.free -= qty
            quote.free += notional - commission
        acct.update_ns = now
        fill = SpotFill(spec.symbol, order.order_id, st.next_trade_id, order.side, price, qty,
                        notional, commission, asset, is_maker, now)
        st.next_trade_id += 1
        acct.trades.append(fill)
        order.executed_qty += qty
        order.cumm_quote_qty += notional
        order.update_ns = now
        filled = order.executed_qty >= order.orig_qty
        order.status = SpotOrderStatus.FILLED if filled else SpotOrderStatus.PARTIALLY_FILLED
        if filled and order.is_working:
            order.is_working = False
            st.resting.remove(order)
        self._pending.append(SpotTrade(spec.symbol, fill.trade_id, price, qty,
                                       (order.side is Side.BUY) == is_maker, now))
        self._report(order, ExecutionType.TRADE, now, fill=fill)
        return fill

    def _close(self, order: SpotOrder, status: SpotOrderStatus, exec_type: ExecutionType, now: int,
               cancel_client_id: str = "") -> None:
        """Cancel or expire an open order and release what is still locked for it."""
        st = self._symbols[order.symbol]
        acct = self._accounts[order.api_key]
        remaining = order.orig_qty - order.executed_qty
        if order.type is not OrderType.MARKET and remaining > 0:
            if order.side is Side.BUY:
                wallet, amount = acct.wallet(st.spec.quote_asset), remaining * order.price
            else:
                wallet, amount = acct.wallet(st.spec.base_asset), remaining
            wallet.locked -= amount
            wallet.free += amount
            acct.update_ns = now
        if order.is_working:
            order.is_working = False
            st.resting.remove(order)
        order.status = status
        order.update_ns = now
        if cancel_client_id:
            self._report(order, exec_type, now, client_order_id=cancel_client_id,
                         orig_client_order_id=order.client_order_id)
        else:
            self._report(order, exec_type, now)

