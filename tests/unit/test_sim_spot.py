"""SpotExchange (pure): filters, balances, order types, commissions, depth ids, determinism."""

import hashlib
from dataclasses import replace
from decimal import Decimal

import pytest

from bot.book import OrderBook
from bot.clock import NS_PER_SEC
from bot.domain import BookDelta, BookSnapshot, Side
from bot.sim.spot.exchange import SpotExchange
from bot.sim.spot.records import (
    AccountPosition,
    DepthUpdate,
    ExecutionReport,
    ExecutionType,
    NewOrder,
    OrderType,
    SpotError,
    SpotEvent,
    SpotOrderStatus,
    SpotSymbol,
    SpotTimeInForce,
    default_symbols,
)

D = Decimal
START_NS = 1_700_000_000 * NS_PER_SEC
STEP_NS = 100_000_000
KEY = "test-key"
BTC = "BTCUSDT"
GTC, IOC, FOK = SpotTimeInForce.GTC, SpotTimeInForce.IOC, SpotTimeInForce.FOK


@pytest.fixture
def ex() -> SpotExchange:
    spot = SpotExchange(seed=7, start_ns=START_NS)
    spot.create_account(KEY)
    return spot


def limit(side: Side, qty: str, price: Decimal | str, tif: SpotTimeInForce | None = GTC,
          type_: OrderType = OrderType.LIMIT, cid: str | None = None) -> NewOrder:
    return NewOrder(BTC, side, type_, quantity=D(qty), price=D(price), time_in_force=tif,
                    new_client_order_id=cid)


def balance(ex: SpotExchange, asset: str) -> tuple[Decimal, Decimal]:
    b = next(b for b in ex.balances(KEY) if b.asset == asset)
    return b.free, b.locked


def touch(ex: SpotExchange, symbol: str = BTC) -> tuple[Decimal, Decimal]:
    _, bid, ask = ex.book_ticker(symbol)
    assert bid is not None and ask is not None
    return bid.price, ask.price


def rejected(ex: SpotExchange, req: NewOrder) -> SpotError:
    with pytest.raises(SpotError) as info:
        ex.place_order(KEY, req, START_NS)
    return info.value


def run(ex: SpotExchange, steps: int, start_ns: int = START_NS) -> list[SpotEvent]:
    events: list[SpotEvent] = []
    for k in range(1, steps + 1):
        events += ex.advance(start_ns + k * STEP_NS)
    return events


# ---- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(("req", "code", "msg"), [
    (limit(Side.BUY, "0.001", "50000.005"), -1013, "Filter failure: PRICE_FILTER"),
    (limit(Side.BUY, "0.000015", "50000"), -1013, "Filter failure: LOT_SIZE"),
    (limit(Side.BUY, "0.000001", "50000"), -1013, "Filter failure: LOT_SIZE"),
    (limit(Side.BUY, "0.00001", "50000"), -1013, "Filter failure: NOTIONAL"),  # 0.50 USDT < 5
    (NewOrder(BTC, Side.BUY, OrderType.MARKET, quote_order_qty=D("1")), -1013, "Filter failure: NOTIONAL"),
    (replace(limit(Side.BUY, "0.001", "50000"), symbol="DOGEUSDT"), -1121, "Invalid symbol."),
    (limit(Side.BUY, "0.001", "50000", tif=None), -1102,
     "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed."),
    (limit(Side.BUY, "0.001", "50000", type_=OrderType.LIMIT_MAKER), -1106,
     "Parameter 'timeInForce' sent when not required."),
    (NewOrder(BTC, Side.BUY, OrderType.MARKET), -1102,
     "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"),
    (NewOrder(BTC, Side.BUY, OrderType.MARKET, quantity=D("0.001"), price=D("50000")), -1106,
     "Parameter 'price' sent when not required."),
])
def test_rejections_carry_binance_codes(ex: SpotExchange, req: NewOrder, code: int, msg: str):
    before = ex.balances(KEY)
    err = rejected(ex, req)
    assert (err.code, err.msg, err.http_status) == (code, msg, 400)
    assert ex.balances(KEY) == before
    assert not ex.open_orders(KEY)


def test_insufficient_balance_is_rejected_without_side_effects(ex: SpotExchange):
    bid, _ = touch(ex)
    err = rejected(ex, limit(Side.BUY, "2", bid - 100))  # 2 BTC x ~60k > 100k USDT
    assert (err.code, err.msg) == (-2010, "Account has insufficient balance for requested action.")
    err = rejected(ex, limit(Side.SELL, "1.5", bid + 100))  # 1 BTC only
    assert err.code == -2010
    assert balance(ex, "USDT") == (D("100000"), 0)
    assert ex.drain_events() == []


def test_unknown_account_is_rejected_with_401(ex: SpotExchange):
    with pytest.raises(SpotError) as info:
        ex.place_order("nobody", limit(Side.BUY, "0.001", "50000"), START_NS)
    assert (info.value.code, info.value.http_status) == (-2015, 401)


# ---- balances ---------------------------------------------------------------------------------


def test_limit_orders_lock_and_cancel_unlocks_exactly(ex: SpotExchange):
    bid, ask = touch(ex)
    buy, fills = ex.place_order(KEY, limit(Side.BUY, "0.5", bid - 100, cid="b1"), START_NS)
    assert fills == [] and buy.status is SpotOrderStatus.NEW and buy.is_working
    assert balance(ex, "USDT") == (D("100000") - (bid - 100) * D("0.5"), (bid - 100) * D("0.5"))
    sell, _ = ex.place_order(KEY, limit(Side.SELL, "0.25", ask + 100), START_NS)
    assert balance(ex, "BTC") == (D("0.75"), D("0.25"))
    assert {o.order_id for o in ex.open_orders(KEY, BTC)} == {buy.order_id, sell.order_id}

    cancelled, cancel_id = ex.cancel_order(KEY, BTC, START_NS, orig_client_order_id="b1")
    assert cancelled.status is SpotOrderStatus.CANCELED and cancel_id != "b1"
    assert balance(ex, "USDT") == (D("100000"), 0)
    assert [c.status for c, _ in ex.cancel_open_orders(KEY, BTC, START_NS)] == [SpotOrderStatus.CANCELED]
    assert balance(ex, "BTC") == (D("1"), 0)
    assert ex.open_orders(KEY) == []
    reports = [e for e in ex.drain_events() if isinstance(e, ExecutionReport)]
    cancel = next(r for r in reports if r.order.client_order_id == "b1"
                  and r.execution_type is ExecutionType.CANCELED)
    assert (cancel.client_order_id, cancel.orig_client_order_id) == (cancel_id, "b1")


def test_cancel_and_query_unknown_orders(ex: SpotExchange):
    with pytest.raises(SpotError) as info:
        ex.cancel_order(KEY, BTC, START_NS, order_id=999)
    assert (info.value.code, info.value.msg) == (-2011, "Unknown order sent.")
    with pytest.raises(SpotError) as info:
        ex.get_order(KEY, BTC, orig_client_order_id="nope")
    assert (info.value.code, info.value.msg) == (-2013, "Order does not exist.")
    with pytest.raises(SpotError) as info:
        ex.cancel_open_orders(KEY, BTC, START_NS)
    assert info.value.code == -2011


def test_client_order_id_is_unique_among_open_orders(ex: SpotExchange):
    bid, _ = touch(ex)
    first, _ = ex.place_order(KEY, limit(Side.BUY, "0.001", bid - 50, cid="dup"), START_NS)
    assert rejected(ex, limit(Side.BUY, "0.001", bid - 60, cid="dup")).msg == "Duplicate order sent."
    assert ex.get_order(KEY, BTC, orig_client_order_id="dup").order_id == first.order_id
    ex.cancel_order(KEY, BTC, START_NS, order_id=first.order_id)
    again, _ = ex.place_order(KEY, limit(Side.BUY, "0.001", bid - 60, cid="dup"), START_NS)
    assert ex.get_order(KEY, BTC, orig_client_order_id="dup").order_id == again.order_id
    assert ex.get_order(KEY, BTC, order_id=first.order_id).status is SpotOrderStatus.CANCELED


# ---- order types ------------------------------------------------------------------------------


def test_limit_maker_is_rejected_if_it_would_take(ex: SpotExchange):
    bid, ask = touch(ex)
    err = rejected(ex, limit(Side.BUY, "0.001", ask, tif=None, type_=OrderType.LIMIT_MAKER))
    assert (err.code, err.msg) == (-2010, "Order would immediately match and take.")
    err = rejected(ex, limit(Side.SELL, "0.001", bid, tif=None, type_=OrderType.LIMIT_MAKER))
    assert err.code == -2010
    order, fills = ex.place_order(KEY, limit(Side.BUY, "0.001", bid, tif=None,
                                             type_=OrderType.LIMIT_MAKER), START_NS)
    assert fills == [] and order.status is SpotOrderStatus.NEW and order.is_working
    _, ask_levels = ex.depth(BTC)[1:]
    bids = ex.depth(BTC)[1]
    assert bids[0].price == bid and ask_levels[0].price == ask  # joined the touch, not crossed


def test_ioc_takes_what_it_can_and_expires_the_rest(ex: SpotExchange):
    _, ask = touch(ex)
    at_touch = ex.depth(BTC)[2][0].size
    qty = at_touch + D("0.1")
    order, fills = ex.place_order(KEY, limit(Side.BUY, str(qty), ask, tif=IOC), START_NS)
    assert order.status is SpotOrderStatus.EXPIRED and not order.is_working
    assert [(f.price, f.qty, f.is_maker) for f in fills] == [(ask, at_touch, False)]
    assert order.executed_qty == at_touch
    free, locked = balance(ex, "USDT")
    assert locked == 0 and free == D("100000") - ask * at_touch
    assert ex.depth(BTC)[2][0].price > ask  # the touch it took is gone from the public book


def test_fok_fills_completely_or_not_at_all(ex: SpotExchange):
    _, ask = touch(ex)
    at_touch = ex.depth(BTC)[2][0].size
    order, fills = ex.place_order(KEY, limit(Side.BUY, str(at_touch + D("0.1")), ask, tif=FOK), START_NS)
    assert fills == [] and order.status is SpotOrderStatus.EXPIRED and order.executed_qty == 0
    assert balance(ex, "USDT") == (D("100000"), 0)
    order, fills = ex.place_order(KEY, limit(Side.BUY, str(at_touch), ask, tif=FOK), START_NS)
    assert order.status is SpotOrderStatus.FILLED and sum(f.qty for f in fills) == at_touch


def test_gtc_crossing_takes_then_rests_the_remainder(ex: SpotExchange):
    _, ask = touch(ex)
    at_touch = ex.depth(BTC)[2][0].size
    order, fills = ex.place_order(KEY, limit(Side.BUY, str(at_touch + D("0.1")), ask), START_NS)
    assert order.status is SpotOrderStatus.PARTIALLY_FILLED and order.is_working
    assert sum(f.qty for f in fills) == at_touch
    bids = ex.depth(BTC)[1]
    assert (bids[0].price, bids[0].size) == (ask, D("0.1"))  # now the best bid
    assert balance(ex, "USDT")[1] == ask * D("0.1")


def test_market_buy_by_quote_order_qty(ex: SpotExchange):
    order, fills = ex.place_order(
        KEY, NewOrder(BTC, Side.BUY, OrderType.MARKET, quote_order_qty=D("1000")), START_NS)
    spent = sum(f.quote_qty for f in fills)
    assert order.status is SpotOrderStatus.FILLED
    assert spent == order.cumm_quote_qty <= D("1000")
    assert D("1000") - spent < fills[-1].price * D("0.00001")  # within one step of the target
    assert order.executed_qty % D("0.00001") == 0 and order.orig_quote_order_qty == D("1000")
    commission = sum(f.commission for f in fills)
    assert all(f.commission_asset == "BTC" and not f.is_maker for f in fills)
    assert commission == (order.executed_qty * D("0.001")).quantize(D("1e-8"))
    assert balance(ex, "USDT") == (D("100000") - spent, 0)
    assert balance(ex, "BTC") == (D("1") + order.executed_qty - commission, 0)


def test_market_sell_pays_commission_in_quote(ex: SpotExchange):
    order, fills = ex.place_order(
        KEY, NewOrder(BTC, Side.SELL, OrderType.MARKET, quantity=D("0.2")), START_NS)
    proceeds = sum(f.quote_qty for f in fills)
    commission = sum(f.commission for f in fills)
    assert order.status is SpotOrderStatus.FILLED and order.executed_qty == D("0.2")
    assert all(f.commission_asset == "USDT" for f in fills)
    assert commission == sum((f.quote_qty * D("0.001")).quantize(D("1e-8")) for f in fills)
    assert balance(ex, "BTC") == (D("0.8"), 0)
    assert balance(ex, "USDT") == (D("100000") + proceeds - commission, 0)


def test_market_sell_by_quote_order_qty(ex: SpotExchange):
    order, fills = ex.place_order(
        KEY, NewOrder(BTC, Side.SELL, OrderType.MARKET, quote_order_qty=D("600")), START_NS)
    assert order.status is SpotOrderStatus.FILLED
    assert order.cumm_quote_qty <= D("600") and D("600") - order.cumm_quote_qty < fills[-1].price * D("1e-5")


def test_self_trade_prevention_expires_the_resting_order(ex: SpotExchange):
    _, ask = touch(ex)
    resting, _ = ex.place_order(KEY, limit(Side.SELL, "0.01", ask + 5), START_NS)
    ex.place_order(KEY, limit(Side.BUY, "0.001", ask + 5, tif=IOC), START_NS)
    expired = ex.get_order(KEY, BTC, order_id=resting.order_id)
    assert expired.status is SpotOrderStatus.EXPIRED
    reports = [e for e in ex.drain_events() if isinstance(e, ExecutionReport)
               and e.order.order_id == resting.order_id]
    assert reports[-1].execution_type is ExecutionType.TRADE_PREVENTION
    assert balance(ex, "BTC")[1] == 0


# ---- resting orders and the model's flow ------------------------------------------------------


def wide_spread() -> list[SpotSymbol]:
    btc = default_symbols()[0]
    return [replace(btc, model=replace(btc.model, spread_ticks=400, annual_vol=0.05, jump_per_sec=0.0))]


def test_resting_order_fills_as_maker_from_taker_flow():
    ex = SpotExchange(seed=3, start_ns=START_NS, symbols=wide_spread())
    ex.create_account(KEY)
    bid, ask = touch(ex)
    price = bid + (ask - bid) / 2  # inside the spread: first in the queue
    order, _ = ex.place_order(KEY, limit(Side.BUY, "0.02", price.quantize(D("0.01"))), START_NS)
    ex.drain_events()
    fills = []
    for k in range(1, 3000):
        for ev in ex.advance(START_NS + k * STEP_NS):
            if isinstance(ev, ExecutionReport) and ev.fill is not None:
                fills.append(ev.fill)
        if ex.get_order(KEY, BTC, order_id=order.order_id).status is SpotOrderStatus.FILLED:
            break
    assert sum(f.qty for f in fills) == D("0.02")
    assert all(f.is_maker and f.price == order.price and f.commission_asset == "BTC" for f in fills)
    assert balance(ex, "USDT") == (D("100000") - order.price * D("0.02"), 0)
    assert balance(ex, "BTC") == (D("1") + D("0.02") - sum(f.commission for f in fills), 0)


def test_public_book_is_never_crossed_with_resting_orders(ex: SpotExchange):
    for k in range(1, 400):
        now = START_NS + k * STEP_NS
        ex.advance(now)
        if k % 20 == 0:
            bid, ask = touch(ex)
            ex.place_order(KEY, limit(Side.BUY, "0.01", bid), now)
            ex.place_order(KEY, limit(Side.SELL, "0.01", ask), now)
        _, bids, asks = ex.depth(BTC)
        assert bids[0].price < asks[0].price


# ---- depth update ids -------------------------------------------------------------------------


def test_depth_updates_are_contiguous_and_rebuild_the_book(ex: SpotExchange):
    last_id, bids, asks = ex.depth(BTC)
    book = OrderBook(BTC)
    book.apply_snapshot(BookSnapshot(BTC, tuple(bids), tuple(asks), 0, 0))
    for k in range(1, 300):
        now = START_NS + k * STEP_NS
        if k % 25 == 0:
            ex.place_order(KEY, NewOrder(BTC, Side.BUY, OrderType.MARKET, quantity=D("0.05")), now)
            bid, _ = touch(ex)
            ex.place_order(KEY, limit(Side.BUY, "0.02", bid), now)
        for ev in ex.advance(now):
            if isinstance(ev, DepthUpdate) and ev.symbol == BTC:
                assert ev.first_update_id == last_id + 1 and ev.final_update_id >= ev.first_update_id
                last_id = ev.final_update_id
                assert book.apply_delta(BookDelta(BTC, ev.bids, ev.asks, 0, 0))
    final_id, bids, asks = ex.depth(BTC)
    assert final_id == last_id
    assert book.levels(Side.BUY, 10_000) == bids and book.levels(Side.SELL, 10_000) == asks


def test_every_update_id_is_one_level_change(ex: SpotExchange):
    for ev in run(ex, 50):
        if isinstance(ev, DepthUpdate):
            assert ev.final_update_id - ev.first_update_id + 1 == len(ev.bids) + len(ev.asks)


# ---- determinism and accounting ---------------------------------------------------------------


def scripted(seed: int) -> str:
    ex = SpotExchange(seed=seed, start_ns=START_NS)
    ex.create_account(KEY)
    events: list[SpotEvent] = []
    for k in range(1, 250):
        now = START_NS + k * STEP_NS
        if k % 20 == 0:
            bid, ask = touch(ex)
            ex.place_order(KEY, limit(Side.BUY, "0.01", bid), now)
            ex.place_order(KEY, NewOrder(BTC, Side.SELL, OrderType.MARKET, quantity=D("0.01")), now)
            ex.place_order(KEY, limit(Side.SELL, "0.02", ask + 1, tif=IOC), now)
        events += ex.advance(now)
    return hashlib.sha256(repr(events).encode()).hexdigest()


def test_same_seed_same_events():
    assert scripted(11) == scripted(11)
    assert scripted(11) != scripted(12)


def test_balances_move_only_by_fills_and_commissions(ex: SpotExchange):
    buy_q, sell_q = D(0), D(0)
    base_delta, quote_delta = D(0), D(0)
    for k in range(1, 800):
        now = START_NS + k * STEP_NS
        if k % 40 == 0:
            bid, ask = touch(ex)
            # market first: it would expire our own resting asks (self-trade prevention)
            ex.place_order(KEY, NewOrder(BTC, Side.BUY, OrderType.MARKET, quote_order_qty=D("50")), now)
            bid, ask = touch(ex)
            ex.place_order(KEY, limit(Side.BUY, "0.01", bid), now)
            ex.place_order(KEY, limit(Side.SELL, "0.01", ask), now)
        for ev in ex.drain_events() + ex.advance(now):
            if isinstance(ev, ExecutionReport) and ev.fill is not None:
                f = ev.fill
                if f.side is Side.BUY:
                    buy_q += f.qty
                    base_delta += f.qty - f.commission
                    quote_delta -= f.quote_qty
                else:
                    sell_q += f.qty
                    base_delta -= f.qty
                    quote_delta += f.quote_qty - f.commission
    if ex.open_orders(KEY):
        ex.cancel_open_orders(KEY, BTC, START_NS + 800 * STEP_NS)
    assert buy_q > 0 and sell_q > 0
    assert balance(ex, "BTC") == (D("1") + base_delta, 0)
    assert balance(ex, "USDT") == (D("100000") + quote_delta, 0)


def test_account_positions_follow_balance_changes(ex: SpotExchange):
    bid, _ = touch(ex)
    ex.place_order(KEY, limit(Side.BUY, "0.01", bid - 10), START_NS)
    positions = [e for e in ex.drain_events() if isinstance(e, AccountPosition)]
    assert positions[-1].api_key == KEY
    usdt = next(b for b in positions[-1].balances if b.asset == "USDT")
    assert (usdt.free, usdt.locked) == balance(ex, "USDT")


def test_market_steps_must_be_monotonic_but_actions_may_run_ahead(ex: SpotExchange):
    later = START_NS + 5 * STEP_NS
    bid, _ = touch(ex)
    ex.place_order(KEY, limit(Side.BUY, "0.001", bid - 10), later)
    ex.advance(START_NS + STEP_NS)  # the runner's step read the clock before the request
    assert ex.now_ns == later
    ex.advance(START_NS + 6 * STEP_NS)
    with pytest.raises(ValueError, match="backwards"):
        ex.advance(START_NS + 2 * STEP_NS)
