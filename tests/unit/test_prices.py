"""bounded_price: the one capped limit price (children, hedges, unwinds, kill and flatten)."""

from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain import Side
from bot.execution.prices import bounded_price


def test_a_buy_rounds_down_and_a_sell_up_onto_the_tick() -> None:
    assert bounded_price(Side.BUY, D("60000"), D(10), D("0.01")) == D("60060.00")
    assert bounded_price(Side.SELL, D("60000.03"), D(10), D("1")) == D(59941)


def test_kill_and_flatten_prices_no_longer_round_past_the_cap() -> None:
    # Kill and flatten used to round half-even: 1.0012 x 1.0005 = 1.0017006 went to 1.002 (a buy
    # above its cap) and 1.0 x 0.9993 = 0.9993 to 0.999 (a sell below it).
    assert bounded_price(Side.BUY, D("1.0012"), D(5), D("0.001")) == D("1.001")
    assert bounded_price(Side.SELL, D("1.0"), D(7), D("0.001")) == D("1.000")


ticks = st.sampled_from([D("1"), D("0.5"), D("0.1"), D("0.01"), D("0.001"), D("0.00001"), D("25")])
touches = st.decimals(min_value=D("0.001"), max_value=D("1000000"), places=5)
caps = st.decimals(min_value=D("0"), max_value=D("5000"), places=2)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([Side.BUY, Side.SELL]), touches, caps, ticks)
def test_never_crosses_the_cap_and_stays_on_the_tick_grid(side: Side, touch: D, cap_bps: D, tick: D) -> None:
    price = bounded_price(side, touch, cap_bps, tick)
    limit = touch * (1 + cap_bps / 10_000) if side is Side.BUY else touch * (1 - cap_bps / 10_000)
    assert price % tick == 0  # on the grid
    if side is Side.BUY:
        assert price <= limit and limit - price < tick  # inward, and by less than one tick
    else:
        assert price >= limit and price - limit < tick
