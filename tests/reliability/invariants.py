"""The invariants every fault case asserts, as plain checkers over the store and the venue's truth.

Each takes what it compares explicitly (the store, and what the venue says), so a case at the
order-manager level (venue truth read from the simulator's exchange core) and a case at daemon
level (venue truth read over the simulator's REST) share them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from decimal import Decimal

from bot.domain import ZERO, Fill
from bot.store import Store


def store_positions(fills: Iterable[Fill]) -> dict[str, Decimal]:
    """Signed position per market from fills (each fill id counted once)."""
    positions: dict[str, Decimal] = {}
    seen: set[str] = set()
    for fill in fills:
        if fill.fill_id in seen:
            continue
        seen.add(fill.fill_id)
        positions[fill.market] = positions.get(fill.market, ZERO) + fill.size * fill.side.sign
    return {m: size for m, size in positions.items() if size}


def assert_no_duplicate_client_id(sent_ids: Iterable[int], store: Store) -> None:
    """Every client id went to the venue at most once, and each was in the store before that."""
    counts = Counter(sent_ids)
    reused = sorted(cid for cid, n in counts.items() if n > 1)
    assert not reused, f"client ids sent more than once: {reused}"
    unrecorded = sorted(cid for cid in counts if store.get_order(cid) is None)
    assert not unrecorded, f"client ids sent without a store record: {unrecorded}"


def assert_positions_match(store: Store, venue_positions: dict[str, Decimal]) -> None:
    """The position the store's fills add up to equals the venue's, market by market."""
    ours = store_positions(store.fills())
    theirs = {m: s for m, s in venue_positions.items() if s}
    assert ours == theirs, f"store positions {ours} != venue positions {theirs}"


def assert_no_open_orders(store: Store, venue_open_ids: Iterable[int]) -> None:
    """Nothing is working at the venue and the store agrees."""
    venue_open = sorted(venue_open_ids)
    assert not venue_open, f"orders still open at the venue: {venue_open}"
    store_open = [(o.client_id, o.status.value) for o in store.open_orders()]
    assert not store_open, f"orders open in the store: {store_open}"


def assert_exposure_within(fills: Iterable[Fill], caps: dict[str, Decimal]) -> None:
    """The running position, fill by fill in event order, never goes beyond its cap."""
    running: dict[str, Decimal] = {}
    for fill in sorted(fills, key=lambda f: f.ts_event):
        size = running[fill.market] = running.get(fill.market, ZERO) + fill.size * fill.side.sign
        cap = caps.get(fill.market, ZERO)
        assert abs(size) <= cap, f"{fill.market} position {size} beyond its cap {cap} after {fill.fill_id}"


def assert_no_lost_fill(store: Store, venue_fills: dict[str, Decimal]) -> None:
    """Every fill the venue reports is in the store once, with its size; nothing is invented."""
    ours = {f.fill_id: f.size for f in store.fills()}
    missing = sorted(set(venue_fills) - set(ours))
    invented = sorted(set(ours) - set(venue_fills))
    assert not missing, f"{len(missing)} venue fills missing from the store: {missing[:5]}"
    assert not invented, f"{len(invented)} store fills the venue never reported: {invented[:5]}"
    wrong = {fid: (ours[fid], size) for fid, size in venue_fills.items() if ours[fid] != size}
    assert not wrong, f"fill sizes differ (store, venue): {wrong}"
