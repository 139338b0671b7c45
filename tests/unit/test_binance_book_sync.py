"""Binance's snapshot + diff-depth procedure (`DepthSync`): examples and hypothesis properties.

The properties drive `DepthSync` with a simulated venue: a true book changed by events with
contiguous update-id ranges, a client that joins the stream late, misses some events, and gets
REST snapshots of the true book at arbitrary points (older or newer than the stream). Whenever
`DepthSync` says the book is in sync, the client's book must equal the true book at that id.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.venues.binance.book_sync import DepthSync, Step

# ---- examples ---------------------------------------------------------------------------------


def test_documented_procedure_buffer_drop_first_then_chain() -> None:
    sync: DepthSync[str] = DepthSync()
    assert sync.on_diff(95, 99, "a") is Step.BUFFER
    assert sync.on_diff(100, 104, "b") is Step.BUFFER
    assert sync.on_diff(105, 107, "c") is Step.BUFFER
    assert sync.on_snapshot(101) == ["b", "c"]  # a: u <= lastUpdateId dropped; b: U <= 102 <= u
    assert sync.is_synced and sync.update_id == 107
    assert sync.on_diff(108, 110, "d") is Step.APPLY
    assert sync.on_diff(100, 104, "b") is Step.SKIP  # old news
    assert sync.on_diff(112, 115, "e") is Step.RESYNC  # 111 is missing
    assert not sync.is_synced and sync.has_buffered and sync.first_buffered_id == 112


def test_snapshot_older_than_the_buffer_is_refetched() -> None:
    sync: DepthSync[str] = DepthSync()
    sync.on_diff(100, 104, "a")
    assert sync.on_snapshot(98) is None  # 99 would be missing between snapshot and stream
    assert not sync.is_synced and sync.first_buffered_id == 100
    assert sync.on_snapshot(99) == ["a"]  # exactly adjacent is fine


def test_snapshot_newer_than_the_buffer_then_first_event_must_straddle() -> None:
    sync: DepthSync[str] = DepthSync()
    sync.on_diff(100, 104, "a")
    assert sync.on_snapshot(110) == []
    assert sync.update_id == 110
    assert sync.on_diff(105, 109, "b") is Step.SKIP
    assert sync.on_diff(110, 112, "c") is Step.APPLY  # U <= 111 <= u
    assert sync.on_diff(114, 115, "d") is Step.RESYNC


def test_empty_buffer_snapshot_and_first_event_gap() -> None:
    sync: DepthSync[str] = DepthSync()
    assert sync.on_snapshot(50) == []
    assert sync.on_diff(52, 53, "a") is Step.RESYNC  # 51 never seen


def test_after_the_first_event_ids_must_chain_exactly() -> None:
    sync: DepthSync[str] = DepthSync()
    sync.on_snapshot(10)
    assert sync.on_diff(9, 12, "a") is Step.APPLY
    assert sync.on_diff(12, 14, "overlap") is Step.RESYNC  # U must be previous u + 1


def test_buffer_keeps_only_a_contiguous_tail_and_is_bounded() -> None:
    sync: DepthSync[int] = DepthSync(max_buffer=3)
    for i in range(1, 6):
        sync.on_diff(i, i, i)
    assert sync.first_buffered_id == 4  # overflow restarted the buffer at 4
    sync.on_diff(9, 9, 9)  # not contiguous: 4..5 can never be bridged to 9
    assert sync.first_buffered_id == 9
    assert sync.on_snapshot(8) == [9]


def test_misuse_is_refused() -> None:
    sync: DepthSync[int] = DepthSync()
    with pytest.raises(ValueError):
        sync.on_diff(5, 4, 0)
    sync.on_snapshot(1)
    with pytest.raises(ValueError):
        sync.on_snapshot(2)
    with pytest.raises(ValueError):
        DepthSync(max_buffer=0)


# ---- properties -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    first_id: int
    final_id: int
    changes: tuple[tuple[int, int], ...]  # (price, size); size 0 deletes


@st.composite
def venues(draw: st.DrawFn) -> tuple[int, list[Event], dict[int, dict[int, int]]]:
    """A start id, events with contiguous id ranges, and the true book at every update id."""
    start = draw(st.integers(min_value=1, max_value=10**6))
    book: dict[int, int] = {}
    states: dict[int, dict[int, int]] = {start - 1: {}}
    events = []
    next_id = start
    for _ in range(draw(st.integers(min_value=1, max_value=30))):
        width = draw(st.integers(min_value=1, max_value=4))
        level = st.tuples(st.integers(0, 9), st.integers(0, 3))
        changes = tuple(draw(st.lists(level, min_size=1, max_size=4)))
        event = Event(next_id, next_id + width - 1, changes)
        events.append(event)
        for price, size in changes:
            if size:
                book[price] = size
            else:
                book.pop(price, None)
        states[event.final_id] = dict(book)
        next_id = event.final_id + 1
    return start, events, states


def apply(book: dict[int, int], event: Event) -> None:
    for price, size in event.changes:
        if size:
            book[price] = size
        else:
            book.pop(price, None)


def state_ids(start: int, events: list[Event]) -> list[int]:
    return [start - 1] + [e.final_id for e in events]


def drive(data: st.DataObject, start: int, events: list[Event], states: dict[int, dict[int, int]],
          join: int, drops: set[int], *, oldest: int) -> tuple[dict[int, int], DepthSync[Event], list[Step]]:
    """Run the procedure; assert the book equals the truth whenever DepthSync says it is in sync.

    `oldest`: index into the state ids of the oldest snapshot the venue may serve (`join` is the
    state just before the first streamed event).
    """
    ids = state_ids(start, events)
    sync: DepthSync[Event] = DepthSync()
    book: dict[int, int] | None = None
    steps: list[Step] = []

    def snapshot(now: int, t: int | None = None) -> None:
        nonlocal book
        # the REST snapshot may be older or newer than what the stream has delivered
        if t is None:
            t = data.draw(st.integers(min_value=max(0, oldest), max_value=min(len(ids) - 1, now + 3)))
        replay = sync.on_snapshot(ids[t])
        if replay is None:
            first = sync.first_buffered_id
            assert first is not None and ids[t] + 1 < first
            return
        book = dict(states[ids[t]])
        for event in replay:
            apply(book, event)

    for index in range(join, len(events)):
        if not sync.is_synced and data.draw(st.booleans()):
            snapshot(index + 1)
        if index in drops:
            continue
        event = events[index]
        step = sync.on_diff(event.first_id, event.final_id, event)
        steps.append(step)
        if step is Step.APPLY:
            assert book is not None
            apply(book, event)
        elif step is Step.RESYNC:
            book = None
        if sync.is_synced:
            assert sync.update_id is not None and book == states[sync.update_id]
    if not sync.is_synced:
        snapshot(len(ids) - 1, len(ids) - 1)  # the newest snapshot always synchronises
    assert sync.is_synced and sync.update_id is not None and book is not None
    assert book == states[sync.update_id]
    return book, sync, steps


@settings(max_examples=150, deadline=None)
@given(venue=venues(), data=st.data())
def test_without_losses_the_book_converges_with_no_resync(venue, data) -> None:  # type: ignore[no-untyped-def]
    start, events, states = venue
    join = data.draw(st.integers(min_value=0, max_value=len(events) - 1))
    book, sync, steps = drive(data, start, events, states, join, set(), oldest=join)
    assert Step.RESYNC not in steps
    assert sync.update_id == events[-1].final_id and book == states[events[-1].final_id]


@settings(max_examples=150, deadline=None)
@given(venue=venues(), data=st.data())
def test_with_losses_the_book_is_never_wrong_while_in_sync(venue, data) -> None:  # type: ignore[no-untyped-def]
    start, events, states = venue
    join = data.draw(st.integers(min_value=0, max_value=len(events) - 1))
    drops = set(data.draw(st.lists(st.integers(min_value=join, max_value=len(events) - 1), max_size=4)))
    # snapshots may even predate the stream (a gap the first event must reveal)
    _, _, steps = drive(data, start, events, states, join, drops, oldest=join - 1)
    if not drops and join == 0:
        assert Step.RESYNC not in steps


@given(st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=50), st.data())
def test_buffer_is_always_contiguous(widths: list[int], data: st.DataObject) -> None:
    sync: DepthSync[int] = DepthSync(max_buffer=8)
    next_id = 1
    for width in widths:
        next_id += data.draw(st.sampled_from([0, 0, 0, 2]))  # sometimes a gap
        sync.on_diff(next_id, next_id + width - 1, next_id)
        next_id += width
    first = sync.first_buffered_id
    assert first is not None
    replay = sync.on_snapshot(first - 1)
    assert replay is not None and replay[0] == first and len(replay) <= 8
