"""Start-up reconciliation: which store rows close, which venue orders are cancelled, which spot
balance falls short of the store."""

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from bot.domain import Fill, Liquidity, Position, Side
from bot.recovery import balance_shortfalls
from bot.store.reconcile import balance_adjustment, reconcile_open_orders

IDS = st.sets(st.integers(min_value=1, max_value=50))


@given(IDS, IDS)
def test_every_order_open_at_the_venue_is_cancelled_and_the_others_close_in_the_store(
        stored: set[int], venue: set[int]) -> None:
    fixes = reconcile_open_orders(stored, venue)
    assert set(fixes.close_in_store) == stored - venue
    # A predecessor's child still working is cancelled even when the store holds it open.
    assert set(fixes.cancel_at_venue) == venue
    assert list(fixes.close_in_store) == sorted(fixes.close_in_store)
    assert list(fixes.cancel_at_venue) == sorted(fixes.cancel_at_venue)


def test_a_predecessors_working_child_is_cancelled_not_left_alone() -> None:
    fixes = reconcile_open_orders([7, 8], [8, 9])
    assert fixes.close_in_store == (7,) and fixes.cancel_at_venue == (8, 9)


def test_a_spot_long_beyond_the_balance_is_a_shortfall_commission_dust_is_not() -> None:
    booked = {"BTC-USDT": Decimal("0.02"), "ETH-USDT": Decimal("0.5"), "SOL-USDT": Decimal(0)}
    held = {"BTC-USDT": Decimal("0.01"), "ETH-USDT": Decimal("0.4995"), "SOL-USDT": Decimal(3)}
    # BTC booked twice (the account holds half); ETH short by a buy's base-asset commission.
    assert balance_shortfalls(booked, held) == {"BTC-USDT": {"store": "0.02", "venue": "0.01"}}
    assert balance_shortfalls({"BTC-USDT": Decimal("0.01")}, {}) == {
        "BTC-USDT": {"store": "0.01", "venue": "0"}}
    assert balance_shortfalls({"BTC-USDT": Decimal("0.01")}, {"BTC-USDT": Decimal(5)}) == {}  # inventory


SIZES = st.decimals(min_value=Decimal("0.00001"), max_value=Decimal(100), places=5)
PRICES = st.decimals(min_value=Decimal(1), max_value=Decimal(100_000), places=2)


@given(st.lists(st.tuples(SIZES, PRICES), min_size=1, max_size=5), st.decimals(
    min_value=Decimal(-1), max_value=Decimal(600), places=5))
def test_the_adjustment_books_a_long_down_to_the_balance_and_realises_nothing(
        buys: list[tuple[Decimal, Decimal]], held: Decimal) -> None:
    position = Position("BTC-USDT")
    for i, (size, price) in enumerate(buys):
        position.apply_fill(Fill(f"f{i}", i + 1, "BTC-USDT", Side.BUY, price, size, Decimal(0),
                                 Liquidity.TAKER, i))
    before, entry = position.size, position.avg_entry
    adjustment = balance_adjustment(position, held, 99)
    if before <= held:
        assert adjustment is None  # inventory the bot never traded: nothing to correct
        return
    assert adjustment is not None and adjustment.client_id == 0 and adjustment.fee == 0
    assert position.apply_fill(adjustment)
    assert position.size == max(held, Decimal(0))
    assert position.realised_pnl == 0 and (position.avg_entry == entry or position.size == 0)
    assert balance_adjustment(position, held, 100) is None
