"""Start-up reconciliation core: which store rows close and which venue orders are cancelled."""

from hypothesis import given
from hypothesis import strategies as st

from bot.store.reconcile import reconcile_open_orders

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
