"""Perp matching: account takers against model levels and resting orders, fills, the model's hooks."""

from __future__ import annotations

from bot.domain import (
    ZERO,
    Fill,
    MarketEvent,
    Position,
    Side,
)
from bot.domain import OrderRequest as DomainOrder
from bot.sim.event_drafts import trade as make_trade
from bot.sim.market import PreEmitHook, TakerHook
from bot.sim.part import Part
from bot.sim.perp.records import (
    ORDER_FLAGS_SHORT_TERM,
    REMOVAL_SELF_TRADE,
    FillRecord,
    OrderState,
    uuid5,
)
from bot.sim.perp.state import (
    DOMAIN_TIF,
    LIQUIDITY,
    BookOrder,
    MarketState,
    PositionState,
    SubaccountState,
)
from bot.venues.paper.fills import (
    join_queue,
    on_book_update,
    on_trade,
)


class Matching(Part):
    """Matching of SimExchange (a part of it: it reads and writes its state)."""

    # ---- matching ----------------------------------------------------------------------------
    def _match(self, order: BookOrder, ts: int) -> None:
        """Fill `order` as a taker: model levels and other accounts' orders by price-time priority."""
        m, side = order.market, order.record.request.side
        maker_side = side.opposite()
        bg = m.sim.background(maker_side)
        over = m.sim.overlay(maker_side)
        makers_by_price = m.book[maker_side]
        buy = side is Side.BUY
        limit = order.price_ticks
        while order.remaining_steps > 0 and order.is_open:
            best_bg = (min(bg) if buy else max(bg)) if bg else None
            best_acct = (min(over) if buy else max(over)) if over else None
            candidates = [p for p in (best_bg, best_acct) if p is not None]
            if not candidates:
                break
            price = min(candidates) if buy else max(candidates)
            if (price > limit) if buy else (price < limit):
                break
            traded = 0
            makers = list(makers_by_price.get(price, ()))
            if makers:
                first = makers[0].resting
                assert first is not None
                ahead = min(int(first.queue_ahead / m.step), bg.get(price, 0))
                traded += self._take_background(order, price, min(ahead, order.remaining_steps), ts)
                for maker in makers:
                    if order.remaining_steps <= 0:
                        break
                    if maker.sub is order.sub:
                        self._remove(maker, OrderState.CANCELED, REMOVAL_SELF_TRADE, ts)
                        continue
                    qty = min(order.remaining_steps, maker.remaining_steps)
                    self._fill(maker, price, qty, "MAKER", ts)
                    self._fill(order, price, qty, "TAKER", ts)
                    traded += qty
            if order.remaining_steps > 0 and bg.get(price, 0) > 0:
                traded += self._take_background(order, price, order.remaining_steps, ts)
            if traded:
                trade = make_trade(m.ticker, m.price(price), m.size(traded), side, ts)
                self._record_trade(m, trade, price, traded)
                self._events.append(trade)
            elif not makers:
                break  # nothing left at the best price (should not happen)
        self._events.extend(m.sim.flush(ts))

    def _take_background(self, order: BookOrder, price: int, steps: int, ts: int) -> int:
        """Take up to `steps` of the model's size at exactly `price`; fill `order`; shrink queues."""
        if steps <= 0:
            return 0
        m, side = order.market, order.record.request.side
        got = sum(s for _, s in m.sim.take(side, steps, price))
        if got:
            self._fill(order, price, got, "TAKER", ts)
            for maker in m.book[side.opposite()].get(price, ()):
                resting = maker.resting
                assert resting is not None
                resting.queue_ahead = max(ZERO, resting.queue_ahead - m.size(got))
        return got

    def _rest(self, order: BookOrder) -> None:
        m, request = order.market, order.record.request
        side = request.side
        domain = DomainOrder(request.order_id.client_id, m.ticker, side, m.size(order.size_steps),
                             m.price(order.price_ticks), DOMAIN_TIF[request.time_in_force],
                             request.reduce_only)
        assert m.view is not None
        order.resting = join_queue(domain, m.view, order.record.uid)  # type: ignore[arg-type]
        order.resting.filled_size = m.size(order.filled_steps)
        m.book[side].setdefault(order.price_ticks, []).append(order)
        self._set_overlay(m, side, order.price_ticks)
        oid = request.order_id
        self._open[oid] = order
        if oid.order_flags == ORDER_FLAGS_SHORT_TERM:
            assert request.good_til_block is not None
            self._short_expiry.setdefault(request.good_til_block, []).append(order)
        else:
            self._stateful_open[order.record.uid] = order

    def _set_overlay(self, m: MarketState, side: Side, ticks: int) -> None:
        orders = m.book[side].get(ticks)
        m.sim.set_overlay(side, ticks, sum(o.remaining_steps for o in orders) if orders else 0)

    def _unbook(self, order: BookOrder) -> None:
        """Take a resting order off the book (overlay and price level)."""
        if order.resting is None:
            return
        m, side = order.market, order.record.request.side
        level = m.book[side].get(order.price_ticks)
        if level is not None:
            if order in level:
                level.remove(order)
            if not level:
                del m.book[side][order.price_ticks]
        self._set_overlay(m, side, order.price_ticks)
        order.resting = None

    def _remove(self, order: BookOrder, status: OrderState, reason: str | None, ts: int) -> None:
        self._unbook(order)
        self._finish(order, status, reason, ts)

    def _finish(self, order: BookOrder, status: OrderState, reason: str | None, ts: int) -> None:
        oid = order.record.request.order_id
        if self._open.get(oid) is order:
            del self._open[oid]
        self._stateful_open.pop(order.record.uid, None)
        record = order.record
        record.status = status
        record.removal_reason = reason
        record.updated_at_height = self._height
        record.updated_ns = ts
        self._touch(order)

    def _fill(self, order: BookOrder, ticks: int, steps: int, liquidity: str, ts: int) -> None:
        """Book one fill of `order` (already matched): order, fill record, position, USDC."""
        m, sub = order.market, order.sub
        price, size = m.price(ticks), m.size(steps)
        fee = self._fees.fee(price, size, LIQUIDITY[liquidity])
        order.filled_steps += steps
        record = order.record
        record.total_filled = m.size(order.filled_steps)
        record.updated_at_height = self._height
        record.updated_ns = ts
        request = record.request
        self._fill_seq += 1
        fill = FillRecord(uuid5(f"fill-{self._fill_seq}"), record.uid,
                          sub.owner, sub.number, m.ticker, request.side, liquidity, price, size, fee,
                          request.client_metadata, self._height, ts)
        self._apply_fill(sub, m, fill, request.order_id.client_id)
        if order.resting is not None:
            order.resting.filled_size = size_now = m.size(order.filled_steps)
            assert size_now <= order.resting.order.size
            self._set_overlay(m, request.side, order.price_ticks)
        if order.remaining_steps <= 0:
            self._unbook(order)
            self._finish(order, OrderState.FILLED, None, ts)
        else:
            if record.status is OrderState.BEST_EFFORT_OPENED:
                record.status = OrderState.OPEN
            self._touch(order)

    def _apply_fill(self, sub: SubaccountState, m: MarketState, fill: FillRecord, client_id: int) -> None:
        holder = sub.positions.get(m.ticker)
        if holder is None:
            holder = sub.positions[m.ticker] = PositionState(Position(m.ticker))
        pos = holder.pos
        realised_before = pos.realised_pnl
        pos.apply_fill(Fill(fill.fill_id, client_id, m.ticker, fill.side, fill.price, fill.size,
                            fill.fee, LIQUIDITY[fill.liquidity], fill.ts_ns))
        sub.usdc += pos.realised_pnl - realised_before - fill.fee
        sub.fills.append(fill)
        changes = self._changes_for(sub)
        changes.fills.append(fill)
        changes.positions[m.ticker] = None
        if pos.size == 0:
            self._close_position(sub, m.ticker, "CLOSED")

    def _close_position(self, sub: SubaccountState, ticker: str, status: str) -> None:
        holder = sub.positions[ticker]
        holder.status = status
        sub.history.append(self._position_record(sub, ticker))
        self._changes_for(sub).positions[ticker] = None
        del sub.positions[ticker]

    # ---- hooks called from inside SimMarket.step ---------------------------------------------
    def _taker_hook(self, m: MarketState) -> TakerHook:
        sim = m.sim
        over_bids, over_asks = sim.overlay(Side.BUY), sim.overlay(Side.SELL)
        best_level = sim.best_level

        def hook(is_buy: bool, want: int, now_ns: int, events: list[MarketEvent]) -> bool:
            if is_buy:
                if not over_asks:
                    return False
                price = min(over_asks)
                best = best_level(Side.SELL)
                if best is not None and best < price:
                    return False
                maker_side = Side.SELL
            else:
                if not over_bids:
                    return False
                price = max(over_bids)
                best = best_level(Side.BUY)
                if best is not None and best > price:
                    return False
                maker_side = Side.BUY
            self._taker_at_account_level(m, maker_side, price, want, now_ns, events)
            return True

        return hook

    def _taker_at_account_level(self, m: MarketState, maker_side: Side, price: int, want: int,
                                now_ns: int, events: list[MarketEvent]) -> None:
        """A Poisson taker hits a touch where account orders rest: the paper model fills them."""
        sim = m.sim
        bg = sim.background(maker_side)
        bg_at = bg.get(price, 0)
        bg_avail = bg_at if len(bg) > 1 else max(0, bg_at - sim.min_steps)
        printed = min(want, bg_avail + sim.overlay(maker_side).get(price, 0))
        if printed <= 0:
            return
        aggressor = maker_side.opposite()
        volume = m.size(printed)
        filled_steps = 0
        assert m.view is not None
        for maker in list(m.book[maker_side].get(price, ())):
            resting = maker.resting
            if resting is None or volume <= 0:
                continue
            on_book_update(resting, m.view)  # type: ignore[arg-type]
            fill = on_trade(resting, make_trade(m.ticker, m.price(price), volume, aggressor, now_ns),
                            self._fees, now_ns)
            if fill is None:
                continue
            steps = int(fill.size / m.step)
            volume -= fill.size
            filled_steps += steps
            self._fill(maker, price, steps, "MAKER", now_ns)
        bg_taken = min(bg_avail, printed - filled_steps)
        if bg_taken > 0:
            sim.reduce_level(maker_side, price, bg_taken)
        total = filled_steps + bg_taken
        if total > 0:
            events.append(make_trade(m.ticker, m.price(price), m.size(total), aggressor, now_ns))
            m.add_volume(now_ns, price * total)  # (its id: _step_markets, with the model's trades)
            events.extend(sim.flush(now_ns))

    def _uncross_hook(self, m: MarketState) -> PreEmitHook:
        sim = m.sim
        over_bids, over_asks = sim.overlay(Side.BUY), sim.overlay(Side.SELL)

        def hook(now_ns: int, events: list[MarketEvent]) -> None:
            if not over_bids and not over_asks:  # no account order rests in this market
                return
            # Cheap test first: the model's real touch is at or behind its target touch.
            best_bid, best_ask = sim.model_touch()
            if over_bids and max(over_bids) >= best_ask:
                self._uncross(m, Side.BUY, now_ns, events)
            if over_asks and min(over_asks) <= best_bid:
                self._uncross(m, Side.SELL, now_ns, events)

        return hook

    def _uncross(self, m: MarketState, maker_side: Side, now_ns: int, events: list[MarketEvent]) -> None:
        """The model's levels moved through resting account orders: those orders fill as makers."""
        sim = m.sim
        over = sim.overlay(maker_side)
        opposite = sim.background(maker_side.opposite())
        taker_side = maker_side.opposite()
        is_bid = maker_side is Side.BUY
        while over and opposite:
            price = max(over) if is_bid else min(over)
            best = min(opposite) if is_bid else max(opposite)
            if (best > price) if is_bid else (best < price):
                break
            progressed = False
            for maker in list(m.book[maker_side].get(price, ())):
                # the model's crossing orders are the takers, but in the book they are the levels
                # our maker order consumes: take them as if our order were the aggressor
                got = sum(s for _, s in sim.take(maker_side, maker.remaining_steps, price))
                if not got:
                    break
                progressed = True
                self._fill(maker, price, got, "MAKER", now_ns)
                events.append(make_trade(m.ticker, m.price(price), m.size(got), taker_side, now_ns))
                m.add_volume(now_ns, price * got)
            if not progressed:
                break

