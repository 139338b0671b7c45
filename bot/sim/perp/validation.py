"""Perp order validation: the chain's ValidateBasic, ClobPair status, good-til windows, margin."""

from __future__ import annotations

from bot.clock import NS_PER_SEC
from bot.domain import (
    ZERO,
    Liquidity,
    Side,
)
from bot.sim.part import Part
from bot.sim.perp.records import (
    CODESPACE_SDK,
    ERR_DEPRECATED_FIELD,
    ERR_GOOD_TIL_BLOCK_EXCEEDS_SHORT_BLOCK_WINDOW,
    ERR_GOOD_TIL_BLOCK_TIME_EXCEEDS_STATEFUL_ORDER_TIME_WINDOW,
    ERR_HEIGHT_EXCEEDS_GOOD_TIL_BLOCK,
    ERR_INVALID_CLOB,
    ERR_INVALID_ORDER_FLAG,
    ERR_INVALID_ORDER_GOOD_TIL_BLOCK,
    ERR_INVALID_ORDER_QUANTUMS,
    ERR_INVALID_ORDER_SUBTICKS,
    ERR_INVALID_PLACE_ORDER,
    ERR_INVALID_REPLACEMENT,
    ERR_INVALID_STATEFUL_ORDER_GOOD_TIL_BLOCK_TIME,
    ERR_LONG_TERM_ORDERS_CANNOT_REQUIRE_IMMEDIATE_EXECUTION,
    ERR_NOT_IMPLEMENTED,
    ERR_ORDER_CONFLICTS_WITH_CLOB_PAIR_STATUS,
    ERR_ORDER_FULLY_FILLED,
    ERR_ORDER_IS_CANCELED,
    ERR_REDUCE_ONLY_DISABLED,
    ERR_STATEFUL_ORDER_COLLATERALIZATION_CHECK_FAILED,
    ERR_TIME_EXCEEDS_GOOD_TIL_BLOCK_TIME,
    ORDER_FLAGS_CONDITIONAL,
    ORDER_FLAGS_LONG_TERM,
    ORDER_FLAGS_SHORT_TERM,
    SDK_ERR_MEMPOOL_IS_FULL,
    STATEFUL_ORDER_WINDOW_SECS,
    ChainError,
    OrderRequest,
    OrderState,
    TimeInForce,
    clob,
)
from bot.sim.perp.state import (
    BookOrder,
    MarketState,
    SubaccountState,
)


class Validation(Part):
    """Order checks before matching (a part of SimExchange: it reads its state)."""

    # ---- validation --------------------------------------------------------------------------
    def _check_running(self) -> None:
        if self._scenario.chain_halted:
            raise ChainError(CODESPACE_SDK, SDK_ERR_MEMPOOL_IS_FULL,
                             "mempool is full: chain halted, no blocks are being produced")

    def _market(self, clob_pair_id: int) -> MarketState:
        if not 0 <= clob_pair_id < len(self._markets):
            raise clob(ERR_INVALID_CLOB, f"ClobPair ID {clob_pair_id} does not reference a valid CLOB")
        return self._markets[clob_pair_id]

    def _validate_basic(self, request: OrderRequest) -> tuple[MarketState, int, int]:
        """MsgPlaceOrder.ValidateBasic, then the ClobPair grid checks; returns (market, ticks, steps)."""
        oid, tif = request.order_id, request.time_in_force
        if tif is TimeInForce.FILL_OR_KILL:
            raise clob(ERR_DEPRECATED_FIELD, "Fill-or-kill has been deprecated")
        if request.size <= 0:
            raise clob(ERR_INVALID_ORDER_QUANTUMS, "order size quantums cannot be 0")
        if oid.order_flags == ORDER_FLAGS_SHORT_TERM:
            if not request.good_til_block:
                raise clob(ERR_INVALID_ORDER_GOOD_TIL_BLOCK, "order goodTilBlock cannot be 0")
        elif oid.order_flags in (ORDER_FLAGS_LONG_TERM, ORDER_FLAGS_CONDITIONAL):
            if not request.good_til_block_time:
                raise clob(ERR_INVALID_STATEFUL_ORDER_GOOD_TIL_BLOCK_TIME,
                            "stateful order goodTilBlockTime cannot be 0")
        else:
            raise clob(ERR_INVALID_ORDER_FLAG, f"invalid order flag {oid.order_flags}")
        if oid.order_flags == ORDER_FLAGS_LONG_TERM and tif is TimeInForce.IOC:
            raise clob(ERR_LONG_TERM_ORDERS_CANNOT_REQUIRE_IMMEDIATE_EXECUTION,
                        "Stateful orders cannot require immediate execution")
        if request.reduce_only and tif is not TimeInForce.IOC:
            raise clob(ERR_REDUCE_ONLY_DISABLED, "reduce only orders must be short term IOC orders")
        if request.price <= 0:
            raise clob(ERR_INVALID_ORDER_SUBTICKS, "order subticks cannot be 0 for this order type")
        if oid.order_flags == ORDER_FLAGS_CONDITIONAL:
            raise clob(ERR_NOT_IMPLEMENTED, "conditional orders are not supported by the simulator")
        market = self._market(oid.clob_pair_id)
        ticks, tick_rest = divmod(request.price, market.tick)
        if tick_rest:
            raise clob(ERR_INVALID_PLACE_ORDER, f"Order price {request.price} must be a multiple of "
                        f"the ClobPair's tick size {market.tick} (SubticksPerTick {market.chain[3]})")
        steps, step_rest = divmod(request.size, market.step)
        if step_rest or steps < 1:
            raise clob(ERR_INVALID_PLACE_ORDER, f"Order size {request.size} must be a multiple of "
                        f"the ClobPair's step size {market.step} (StepBaseQuantums {market.chain[2]})")
        return market, int(ticks), int(steps)

    def _validate_state(self, request: OrderRequest, market: MarketState) -> None:
        status = market.status
        if status != "ACTIVE" and not (
                (status == "POST_ONLY" and request.time_in_force is TimeInForce.POST_ONLY)
                or (status == "FINAL_SETTLEMENT" and request.reduce_only)):
            raise clob(ERR_ORDER_CONFLICTS_WITH_CLOB_PAIR_STATUS,
                        f"Order conflicts with ClobPair status {status}")
        if request.order_id.order_flags == ORDER_FLAGS_SHORT_TERM:
            assert request.good_til_block is not None
            self._check_good_til_block(request.good_til_block)
        else:
            assert request.good_til_block_time is not None
            self._check_good_til_block_time(request.good_til_block_time)

    def _check_good_til_block(self, good_til_block: int) -> None:
        if good_til_block <= self._height:
            raise clob(ERR_HEIGHT_EXCEEDS_GOOD_TIL_BLOCK,
                        f"GoodTilBlock {good_til_block} is less than or equal to the current "
                        f"blockHeight {self._height}")
        limit = self._height + self.config.short_block_window
        if good_til_block > limit:
            raise clob(ERR_GOOD_TIL_BLOCK_EXCEEDS_SHORT_BLOCK_WINDOW,
                        f"The GoodTilBlock {good_til_block} is further than ShortBlockWindow "
                        f"{self.config.short_block_window} blocks into the future (max {limit})")

    def _check_good_til_block_time(self, good_til_block_time: int) -> None:
        block_secs = self._block_time_ns // NS_PER_SEC
        if good_til_block_time <= block_secs:
            raise clob(ERR_TIME_EXCEEDS_GOOD_TIL_BLOCK_TIME,
                        f"GoodTilBlockTime {good_til_block_time} is less than or equal to the block "
                        f"time {block_secs}")
        if good_til_block_time > block_secs + STATEFUL_ORDER_WINDOW_SECS:
            raise clob(ERR_GOOD_TIL_BLOCK_TIME_EXCEEDS_STATEFUL_ORDER_TIME_WINDOW,
                        f"GoodTilBlockTime {good_til_block_time} is further than StatefulOrderTimeWindow "
                        f"({STATEFUL_ORDER_WINDOW_SECS} s) into the future")

    def _validate_short_term_id(self, request: OrderRequest, existing: BookOrder | None,
                                previous: BookOrder | None) -> None:
        """`existing`: the open order with this id; `previous`: the last order with it, open or not."""
        oid = request.order_id
        assert request.good_til_block is not None
        cancelled = self._short_cancels.get(oid)
        if cancelled is not None and cancelled >= request.good_til_block:
            raise clob(ERR_ORDER_IS_CANCELED, f"Attempt to place an order that is already canceled "
                        f"(cancel GoodTilBlock {cancelled})")
        if existing is None:
            if (previous is not None and previous.record.status is OrderState.FILLED
                    and (previous.record.request.good_til_block or 0) >= self._height):
                raise clob(ERR_ORDER_FULLY_FILLED, "Order is fully filled")
            return
        old = existing.record.request
        assert old.good_til_block is not None
        if (request.good_til_block <= old.good_til_block or request.side is not old.side
                or request.time_in_force is not old.time_in_force
                or request.reduce_only != old.reduce_only
                or (request.time_in_force is TimeInForce.IOC and existing.filled_steps > 0)):
            raise clob(ERR_INVALID_REPLACEMENT, "Replacing an existing order failed: a replacement needs "
                        "a greater GoodTilBlock and the same side, time in force and reduce-only")

    def _would_cross(self, m: MarketState, side: Side, ticks: int) -> bool:
        opposite = m.sim.shown(side.opposite())
        if not opposite:
            return False
        return ticks >= min(opposite) if side is Side.BUY else ticks <= max(opposite)

    def _check_margin(self, sub: SubaccountState, m: MarketState, side: Side, steps: int, ticks: int) -> None:
        """Reject an order that increases risk beyond initial margin if it filled in full at its price."""
        current = sub.positions.get(m.ticker)
        size_now = current.pos.size if current is not None else ZERO
        signed = m.size(steps) * side.sign
        after = size_now + signed
        if abs(after) <= abs(size_now):
            return  # risk-reducing orders are always allowed
        oracle = m.sim.oracle_price()
        # expected fill price: the limit, or the touch if that is better (marketable limits are wide)
        opposite = m.sim.shown(side.opposite())
        if opposite:
            ticks = min(ticks, min(opposite)) if side is Side.BUY else max(ticks, max(opposite))
        price = m.price(ticks)
        equity = self._equity(sub) + signed * (oracle - price) - self._fees.fee(price, abs(signed),
                                                                                 Liquidity.TAKER)
        required = self._initial_margin(sub) - abs(size_now) * oracle * m.imf + abs(after) * oracle * m.imf
        if required > equity:
            raise clob(ERR_STATEFUL_ORDER_COLLATERALIZATION_CHECK_FAILED,
                        f"Order collateralization check failed: initial margin {required} exceeds "
                        f"equity {equity}")

    def _reduce_only_limit(self, sub: SubaccountState, m: MarketState, side: Side) -> int:
        current = sub.positions.get(m.ticker)
        if current is None or current.pos.size * side.sign >= 0:
            return 0
        return int(abs(current.pos.size) / m.step)


