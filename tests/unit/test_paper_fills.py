from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.book import OrderBook
from bot.domain import (
    BookDelta,
    BookLevel,
    BookSnapshot,
    Liquidity,
    OrderRequest,
    Position,
    Side,
    TimeInForce,
    Trade,
)
from bot.venues.paper.fills import (
    ConsumedLiquidity,
    FeeSchedule,
    fill_taker,
    funding_payment,
    join_queue,
    on_book_update,
    on_trade,
    post_only_would_cross,
)

D = Decimal
M = "ETH-USD"
FEES = FeeSchedule()


def lv(price: str, size: str) -> BookLevel:
    return BookLevel(D(price), D(size))


@pytest.fixture
def book() -> OrderBook:
    b = OrderBook(M)
    b.apply_snapshot(BookSnapshot(
        M,
        (lv("2000", "1"), lv("1999", "2"), lv("1998", "3")),
        (lv("2001", "0.5"), lv("2002", "1"), lv("2003", "2")),
        1, 1,
    ))
    return b


def order(side: Side, size: str, price: str, tif: TimeInForce = TimeInForce.IOC,
          client_id: int = 7) -> OrderRequest:
    return OrderRequest(client_id, M, side, D(size), D(price), tif)


def trade(price: str, size: str, aggressor: Side) -> Trade:
    return Trade(M, D(price), D(size), aggressor, 5, 5)


def test_default_fees_are_dydx_tier1():
    assert FEES.maker_fee_rate == D("0.0001")
    assert FEES.taker_fee_rate == D("0.0005")
    assert FEES.fee(D(2000), D(2), Liquidity.TAKER) == D("2.0000")
    assert FEES.fee(D(2000), D(2), Liquidity.MAKER) == D("0.4000")
    assert FeeSchedule(maker_fee_rate=D("-0.00011")).fee(D(100), D(1), Liquidity.MAKER) < 0


def test_taker_walks_levels_with_exact_fees(book):
    fills = fill_taker(order(Side.BUY, "2", "2010"), book, FEES, "p1", 9, ConsumedLiquidity())
    assert [(f.price, f.size) for f in fills] == [(D(2001), D("0.5")), (D(2002), D(1)),
                                                  (D(2003), D("0.5"))]
    assert [f.fee for f in fills] == [D("2001") * D("0.5") * D("0.0005"), D("1.0010"),
                                      D("2003") * D("0.5") * D("0.0005")]
    assert {f.liquidity for f in fills} == {Liquidity.TAKER}
    assert [f.fill_id for f in fills] == ["p1:0", "p1:1", "p1:2"]
    assert all(f.ts_event == 9 and f.client_id == 7 and f.side is Side.BUY for f in fills)


def test_taker_respects_limit_and_never_rests(book):
    fills = fill_taker(order(Side.SELL, "5", "1999"), book, FEES, "p", 1, ConsumedLiquidity())
    assert [(f.price, f.size) for f in fills] == [(D(2000), D(1)), (D(1999), D(2))]
    assert fill_taker(order(Side.BUY, "1", "2000"), book, FEES, "q", 1, ConsumedLiquidity()) == []


def test_taker_does_not_mutate_book(book):
    fill_taker(order(Side.BUY, "1", "2001"), book, FEES, "p", 1, ConsumedLiquidity())
    assert book.best_ask() == lv("2001", "0.5")


def test_consumed_liquidity_is_not_filled_twice(book):
    consumed = ConsumedLiquidity()
    first = fill_taker(order(Side.BUY, "1", "2002"), book, FEES, "a", 1, consumed)
    assert sum(f.size for f in first) == D(1)
    second = fill_taker(order(Side.BUY, "1", "2002"), book, FEES, "b", 2, consumed)
    assert [(f.price, f.size) for f in second] == [(D(2002), D("0.5"))]
    assert fill_taker(order(Side.BUY, "1", "2002"), book, FEES, "c", 3, consumed) == []
    # the other side is tracked separately
    assert fill_taker(order(Side.SELL, "1", "2000"), book, FEES, "d", 4, consumed)


def test_consumed_liquidity_resets_when_level_is_restated(book):
    consumed = ConsumedLiquidity()
    fill_taker(order(Side.BUY, "0.5", "2001"), book, FEES, "a", 1, consumed)
    assert fill_taker(order(Side.BUY, "0.5", "2001"), book, FEES, "b", 2, consumed) == []
    book.apply_delta(BookDelta(M, (), (lv("2001", "0.8"),), 3, 3))
    again = fill_taker(order(Side.BUY, "1", "2001"), book, FEES, "c", 4, consumed)
    assert [(f.price, f.size) for f in again] == [(D(2001), D("0.8"))]


def test_consumed_liquidity_clear(book):
    consumed = ConsumedLiquidity()
    fill_taker(order(Side.BUY, "0.5", "2001"), book, FEES, "a", 1, consumed)
    consumed.clear()
    assert fill_taker(order(Side.BUY, "0.5", "2001"), book, FEES, "b", 2, consumed)


def test_taker_rejects_other_market(book):
    other = OrderRequest(1, "BTC-USD", Side.BUY, D(1), D(1), TimeInForce.IOC)
    with pytest.raises(ValueError):
        fill_taker(other, book, FEES, "x", 1, ConsumedLiquidity())


def test_post_only_cross_detection(book):
    assert post_only_would_cross(order(Side.BUY, "1", "2001"), book)
    assert not post_only_would_cross(order(Side.BUY, "1", "2000.5"), book)
    assert post_only_would_cross(order(Side.SELL, "1", "2000"), book)
    assert not post_only_would_cross(order(Side.SELL, "1", "2000.5"), book)
    assert not post_only_would_cross(order(Side.BUY, "1", "5000"), OrderBook(M))


def test_resting_order_fills_only_after_queue_ahead_traded(book):
    resting = join_queue(order(Side.BUY, "1", "1999", TimeInForce.POST_ONLY), book, "r")
    assert resting.queue_ahead == D(2)
    assert on_trade(resting, trade("1999", "1.5", Side.SELL), FEES, 10) is None
    assert resting.queue_ahead == D("0.5")
    fill = on_trade(resting, trade("1999", "0.75", Side.SELL), FEES, 11)
    assert fill is not None
    assert (fill.price, fill.size, fill.liquidity) == (D(1999), D("0.25"), Liquidity.MAKER)
    assert fill.fee == D(1999) * D("0.25") * D("0.0001")
    assert fill.fill_id == "r:0" and fill.ts_event == 11
    assert resting.remaining_size == D("0.75") and not resting.is_filled
    last = on_trade(resting, trade("1999", "5", Side.SELL), FEES, 12)
    assert last is not None and last.size == D("0.75") and last.fill_id == "r:1"
    assert resting.is_filled
    assert on_trade(resting, trade("1999", "5", Side.SELL), FEES, 13) is None


def test_resting_order_ignores_same_side_and_worse_prints(book):
    resting = join_queue(order(Side.SELL, "1", "2002", TimeInForce.POST_ONLY), book, "r")
    assert resting.queue_ahead == D(1)
    assert on_trade(resting, trade("2002", "9", Side.SELL), FEES, 1) is None  # same side
    assert on_trade(resting, trade("2001", "9", Side.BUY), FEES, 1) is None  # below our ask
    assert resting.queue_ahead == D(1)
    assert on_trade(resting, Trade("BTC-USD", D(2002), D(9), Side.BUY, 1, 1), FEES, 1) is None


def test_trade_through_price_fills_regardless_of_queue(book):
    resting = join_queue(order(Side.SELL, "1", "2002"), book, "r")
    fill = on_trade(resting, trade("2003", "0.4", Side.BUY), FEES, 1)
    assert fill is not None and fill.size == D("0.4") and fill.price == D(2002)
    assert resting.queue_ahead == 0


def test_queue_at_empty_level_fills_first_trade():
    b = OrderBook(M)
    b.apply_snapshot(BookSnapshot(M, (lv("10", "1"),), (lv("12", "1"),), 0, 0))
    resting = join_queue(order(Side.BUY, "2", "11"), b, "r")
    assert resting.queue_ahead == 0
    fill = on_trade(resting, trade("11", "0.5", Side.SELL), FEES, 1)
    assert fill is not None and fill.size == D("0.5")


def test_book_update_shrinks_queue_but_never_grows_it(book):
    resting = join_queue(order(Side.BUY, "1", "1998"), book, "r")
    assert resting.queue_ahead == D(3)
    book.apply_delta(BookDelta(M, (lv("1998", "1.2"),), (), 2, 2))
    on_book_update(resting, book)
    assert resting.queue_ahead == D("1.2")
    book.apply_delta(BookDelta(M, (lv("1998", "10"),), (), 3, 3))
    on_book_update(resting, book)
    assert resting.queue_ahead == D("1.2")


@pytest.mark.parametrize(
    ("size", "rate", "amount"),
    [
        ("2", "0.0001", "-0.4"),  # long pays a positive rate
        ("-2", "0.0001", "0.4"),  # short receives it
        ("2", "-0.0001", "0.4"),  # long receives a negative rate
        ("-2", "-0.0001", "-0.4"),
        ("0", "0.0001", "0"),
    ],
)
def test_funding_sign(size, rate, amount):
    pay = funding_payment(M, D(size), D("2000"), D(rate), 3_600_000_000_000)
    assert pay.amount == D(amount)
    assert (pay.market, pay.rate, pay.position_size, pay.oracle_price) == (
        M, D(rate), D(size), D("2000"))
    assert pay.ts_event == 3_600_000_000_000
    assert pay.amount != 0 or not pay.amount.is_signed()  # flat shows "0", not "-0"


def test_funding_exact_decimal():
    pay = funding_payment(M, D("0.0003"), D("61234.5"), D("0.000002375"), 0)
    assert pay.amount == D("-0.0003") * D("61234.5") * D("0.000002375")
    assert str(pay.amount) == "-0.00004362958125"


@given(st.lists(st.tuples(st.sampled_from(["1999", "1998", "2000"]),
                          st.decimals("0.01", "3", places=2)), max_size=30))
def test_resting_fills_never_exceed_order_size(prints):
    b = OrderBook(M)
    b.apply_snapshot(BookSnapshot(M, (lv("1999", "2"),), (lv("2001", "1"),), 0, 0))
    resting = join_queue(order(Side.BUY, "1.5", "1999"), b, "r")
    traded_at_or_through = D(0)
    total = D(0)
    for price, size in prints:
        fill = on_trade(resting, trade(price, str(size), Side.SELL), FEES, 1)
        if D(price) <= D(1999):
            traded_at_or_through += size
        if fill is not None:
            total += fill.size
    assert total == resting.filled_size <= D("1.5")
    assert total <= traded_at_or_through


def test_fills_fold_into_position(book):
    pos = Position(M)
    for f in fill_taker(order(Side.BUY, "1", "2002"), book, FEES, "p", 1, ConsumedLiquidity()):
        assert pos.apply_fill(f)
    assert pos.size == D(1)
    assert pos.avg_entry == D("2001.5")
