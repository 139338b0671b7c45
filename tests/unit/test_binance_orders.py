"""Domain orders -> Binance spot order parameters: order types, the filter grid, refusals."""

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain import OrderRequest, Side, TimeInForce
from bot.errors import OrderRejected
from bot.venues.binance.orders import SpotSpec, floor_qty, format_decimal, round_price, to_spot_order

D = Decimal
BTC = SpotSpec("BTC-USDT", "BTCUSDT", "BTC", "USDT", tick_size=D("0.01"), step_size=D("0.00001"),
               min_qty=D("0.00001"), min_notional=D("5"), min_price=D("0.01"), max_price=D("1000000"),
               max_qty=D("9000"), max_notional=D("9000000"))
ODD = SpotSpec("X-USDT", "XUSDT", "X", "USDT", tick_size=D("0.05"), step_size=D("0.1"), min_qty=D("0.3"),
               min_notional=D("1"), min_price=D("0.02"))


def req(**kw) -> OrderRequest:  # type: ignore[no-untyped-def]
    base: dict[str, Any] = {"client_id": 7, "market": "BTC-USDT", "side": Side.BUY, "size": D("0.0123"),
            "price": D("60000.123"), "tif": TimeInForce.IOC}
    base.update(kw)
    return OrderRequest(**base)


@pytest.mark.parametrize(("tif", "order_type", "time_in_force"), [
    (TimeInForce.IOC, "LIMIT", "IOC"),
    (TimeInForce.POST_ONLY, "LIMIT_MAKER", None),
    (TimeInForce.GTT, "LIMIT", "GTC"),
])
def test_time_in_force_maps_to_binance_order_types(tif: TimeInForce, order_type: str,
                                                    time_in_force: str | None) -> None:
    order = to_spot_order(req(tif=tif), BTC)
    assert (order.type, order.time_in_force) == (order_type, time_in_force)
    params = order.params()
    assert params["type"] == order_type and params.get("timeInForce") == time_in_force
    assert ("timeInForce" in params) is (time_in_force is not None)


def test_params_are_plain_decimals_with_our_client_id() -> None:
    params = to_spot_order(req(price=D("60000.00"), size=D("0.01000")), BTC).params()
    assert params == {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC",
                      "quantity": "0.01", "price": "60000", "newClientOrderId": "pb-7",
                      "newOrderRespType": "ACK"}
    assert format_decimal(D("5E+4")) == "50000" and format_decimal(D("0.000010")) == "0.00001"


def test_buys_round_down_sells_round_up_and_size_floors() -> None:
    buy = to_spot_order(req(side=Side.BUY, price=D("60000.129"), size=D("0.012349")), BTC)
    sell = to_spot_order(req(side=Side.SELL, price=D("60000.121"), size=D("0.012349")), BTC)
    assert (buy.price, sell.price) == (D("60000.12"), D("60000.13"))
    assert buy.quantity == sell.quantity == D("0.01234")
    on_grid = to_spot_order(req(price=D("60000.12")), BTC)
    assert on_grid.price == D("60000.12")


def test_grid_is_relative_to_the_filter_minimums() -> None:
    # PRICE_FILTER: (price - minPrice) % tickSize == 0; LOT_SIZE: (qty - minQty) % stepSize == 0
    assert round_price(D("1.00"), Side.BUY, ODD) == D("0.97")
    assert round_price(D("1.00"), Side.SELL, ODD) == D("1.02")
    assert floor_qty(D("1.05"), ODD) == D("1.0")
    assert floor_qty(D("0.29"), ODD) == 0


@pytest.mark.parametrize(("kw", "reason"), [
    ({"size": D("0.000009")}, "minQty"),
    ({"size": D("0.00008"), "price": D("60000")}, "minNotional"),  # 4.8 USDT
    ({"size": D("9001")}, "maxQty"),
    ({"price": D("2000000")}, "PRICE_FILTER"),
    ({"size": D("200"), "price": D("50000")}, "maxNotional"),
    ({"size": D("0")}, "positive"),
    ({"price": D("-1")}, "positive"),
])
def test_orders_the_filters_would_refuse_are_refused_before_signing(kw: dict[str, Decimal],
                                                                    reason: str) -> None:
    with pytest.raises(OrderRejected, match=reason):
        to_spot_order(req(**kw), BTC)


def test_market_mismatch_is_a_bug() -> None:
    with pytest.raises(ValueError):
        to_spot_order(req(market="ETH-USDT"), BTC)


prices = st.decimals(min_value=D("0.01"), max_value=D("999999"), places=4, allow_nan=False)
sizes = st.decimals(min_value=D("0.0001"), max_value=D("100"), places=7, allow_nan=False)


@given(price=prices, size=sizes, side=st.sampled_from(Side), tif=st.sampled_from(TimeInForce))
def test_accepted_orders_pass_the_venue_filters(price: Decimal, size: Decimal, side: Side,
                                                tif: TimeInForce) -> None:
    try:
        order = to_spot_order(req(price=price, size=size, side=side, tif=tif), BTC)
    except OrderRejected:
        return
    assert (order.price - BTC.min_price) % BTC.tick_size == 0
    assert (order.quantity - BTC.min_qty) % BTC.step_size == 0
    assert BTC.min_qty <= order.quantity <= size
    assert order.price * order.quantity >= BTC.min_notional
    # never more aggressive than asked, and never more than one tick away
    if side is Side.BUY:
        assert price - BTC.tick_size < order.price <= price
    else:
        assert price <= order.price < price + BTC.tick_size
    assert size - order.quantity < BTC.step_size
