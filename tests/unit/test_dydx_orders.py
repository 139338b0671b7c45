from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from v4_proto.dydxprotocol.clob.order_pb2 import Order

from bot.domain import OrderRequest, Side, TimeInForce
from bot.errors import OrderRejected
from bot.venues.dydx.orders import (
    MarketParams,
    price_to_subticks,
    quantums_to_size,
    size_to_quantums,
    subticks_to_price,
    to_proto,
    to_venue_order,
)

BTC = MarketParams("BTC-USD", 0, -10, -9, 1_000_000, 100_000)
ETH = MarketParams("ETH-USD", 1, -9, -9, 1_000_000, 100_000)


def req(**kw) -> OrderRequest:  # type: ignore[no-untyped-def]
    base = {"client_id": 7, "market": "BTC-USD", "side": Side.BUY, "size": Decimal("0.0123"),
            "price": Decimal("64321.5"), "tif": TimeInForce.POST_ONLY}
    base.update(kw)
    return OrderRequest(**base)


def test_grid_matches_the_indexer() -> None:
    assert BTC.tick_size == Decimal(1) and BTC.step_size == Decimal("0.0001")
    assert ETH.tick_size == Decimal("0.1") and ETH.step_size == Decimal("0.001")


def test_worked_example_from_the_protocol_notes() -> None:
    assert size_to_quantums(Decimal("0.0123"), BTC) == 123_000_000
    assert price_to_subticks(Decimal("64321.5"), Side.BUY, BTC) == 6_432_100_000
    assert price_to_subticks(Decimal("64321.5"), Side.SELL, BTC) == 6_432_200_000  # sells round up


def test_float_trap_is_exact_here() -> None:
    # 0.29 x 1e10 in float lands one ulp low and the client loses a step.
    assert size_to_quantums(Decimal("0.29"), BTC) == 2_900_000_000


def test_below_one_step_is_refused_not_rounded_up() -> None:
    with pytest.raises(OrderRejected):
        size_to_quantums(Decimal("0.00005"), BTC)


def test_reduce_only_needs_ioc_and_gtt_goes_long_term() -> None:
    with pytest.raises(OrderRejected):
        to_venue_order(req(reduce_only=True), BTC, 100, 1_700_000_000)
    ioc = to_venue_order(req(tif=TimeInForce.IOC, reduce_only=True), BTC, 100, 1_700_000_000)
    assert ioc.order_flags == 0 and ioc.good_til_block == 110
    assert ioc.time_in_force == Order.TimeInForce.TIME_IN_FORCE_IOC
    gtt = to_venue_order(req(tif=TimeInForce.GTT), BTC, 100, 1_700_000_000)
    assert gtt.order_flags == 64 and gtt.good_til_block_time == 1_700_003_600 and gtt.good_til_block is None


def test_gtb_offset_stays_inside_both_windows() -> None:
    with pytest.raises(ValueError):
        to_venue_order(req(), BTC, 100, 0, gtb_offset=25)
    with pytest.raises(ValueError):
        to_venue_order(req(), BTC, 100, 0, gtb_offset=1)


def test_proto_carries_the_exact_integers() -> None:
    venue = to_venue_order(req(), BTC, 100, 0)
    proto = to_proto(venue, "dydx1abc", 0)
    assert proto.quantums == 123_000_000 and proto.subticks == 6_432_100_000
    assert proto.order_id.client_id == 7 and proto.order_id.subaccount_id.owner == "dydx1abc"
    assert proto.time_in_force == Order.TimeInForce.TIME_IN_FORCE_POST_ONLY


@given(steps=st.integers(1, 10**9), ticks=st.integers(1, 10**7))
def test_round_trip_on_grid_property(steps: int, ticks: int) -> None:
    for market in (BTC, ETH):
        size = market.step_size * steps
        price = market.tick_size * ticks
        assert quantums_to_size(size_to_quantums(size, market), market) == size
        for side in Side:
            assert subticks_to_price(price_to_subticks(price, side, market), market) == price


@given(size=st.decimals(Decimal("0.0001"), Decimal(1000), places=8),
       price=st.decimals(Decimal(1), Decimal(200000), places=4))
def test_rounding_is_passive_and_never_grows_size_property(size: Decimal, price: Decimal) -> None:
    q = quantums_to_size(size_to_quantums(size, BTC), BTC)
    assert q <= size and size - q < BTC.step_size
    assert subticks_to_price(price_to_subticks(price, Side.BUY, BTC), BTC) <= price
    assert subticks_to_price(price_to_subticks(price, Side.SELL, BTC), BTC) >= price
