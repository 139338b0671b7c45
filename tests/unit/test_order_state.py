"""Order state machine, rate-limit bucket, and the order manager folding shuffled venue events."""

from __future__ import annotations

import asyncio
import tempfile
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from support.clock import ManualClock

from bot.book import OrderBook
from bot.config import ExecutionSettings
from bot.domain import (
    AccountEvent,
    BookLevel,
    BookSnapshot,
    Fill,
    MarketSpec,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    RiskMode,
    Side,
    TimeInForce,
    Trade,
)
from bot.execution.orders import ActiveParent, Child, OrderManager
from bot.execution.state import ALLOWED, TERMINAL, OrderState, apply_update, is_allowed
from bot.execution.twap import TwapPlan
from bot.ratelimit import TokenBucket
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.paper.adapter import PaperVenue
from bot.venues.paper.fills import FeeSchedule

SEC = 1_000_000_000
MARKET = "BTC-USD"


# ---- the pure state machine ---------------------------------------------------------------


def test_table_terminal_states_are_final() -> None:
    for status in TERMINAL:
        assert ALLOWED[status] == frozenset()
    assert is_allowed(OrderStatus.NEW, OrderStatus.ACKED)
    assert not is_allowed(OrderStatus.PARTIALLY_FILLED, OrderStatus.ACKED)
    assert not is_allowed(OrderStatus.FILLED, OrderStatus.CANCELLED)


def test_apply_update_ignores_stale_and_duplicate_reports() -> None:
    partial = OrderState(OrderStatus.PARTIALLY_FILLED, Decimal("0.2"))
    assert not apply_update(partial, OrderStatus.ACKED, Decimal(0)).is_change
    assert not apply_update(partial, OrderStatus.PARTIALLY_FILLED, Decimal("0.1")).is_change
    grew = apply_update(partial, OrderStatus.PARTIALLY_FILLED, Decimal("0.3"))
    assert grew.is_change and grew.after == OrderState(OrderStatus.PARTIALLY_FILLED, Decimal("0.3"))
    done = apply_update(partial, OrderStatus.CANCELLED, Decimal("0.2"))
    assert done.became_terminal
    late = apply_update(done.after, OrderStatus.PARTIALLY_FILLED, Decimal("0.25"))
    assert late.after == OrderState(OrderStatus.CANCELLED, Decimal("0.25"))  # a late fill still counts


statuses = st.sampled_from(list(OrderStatus))
fills = st.decimals(min_value=0, max_value=10, places=2)


@given(st.lists(st.tuples(statuses, fills), max_size=20))
def test_apply_update_never_moves_backwards(updates: list[tuple[OrderStatus, Decimal]]) -> None:
    state = OrderState(OrderStatus.NEW, Decimal(0))
    for status, filled in updates:
        step = apply_update(state, status, filled)
        after = step.after
        assert after.filled >= state.filled
        assert after.status is state.status or is_allowed(state.status, after.status)
        if state.is_terminal:
            assert after.status is state.status
        state = after


def test_token_bucket_limits_and_refills() -> None:
    bucket = TokenBucket.full(Decimal(2), 0)
    oks = []
    for _ in range(3):
        bucket, ok = bucket.take(0)
        oks.append(ok)
    assert oks == [True, True, False]
    bucket, ok = bucket.take(SEC // 2)  # half a second at 2/s: one token back
    assert ok
    bucket, ok = bucket.take(SEC // 2)
    assert not ok
    assert bucket.refilled(100 * SEC).tokens == 2  # never above capacity


# ---- the order manager over shuffled, duplicated, delayed events ----------------------------


class SilentVenue:
    """Accepts every order and says nothing: the test delivers the venue's events itself."""

    name = "paper"

    async def place(self, order: OrderRequest) -> None:
        return None

    async def cancel(self, client_id: int) -> None:
        return None

    async def open_orders(self) -> list[int]:
        return []


def _book() -> OrderBook:
    book = OrderBook(MARKET)
    levels = [BookLevel(Decimal(p), Decimal(1)) for p in range(100, 95, -1)]
    asks = [BookLevel(Decimal(p), Decimal(1)) for p in range(101, 106)]
    book.apply_snapshot(BookSnapshot(MARKET, tuple(levels), tuple(asks), 0, 0))
    return book


def _orders() -> list[OrderRequest]:
    return [
        OrderRequest(1, MARKET, Side.BUY, Decimal("0.5"), Decimal(100), TimeInForce.POST_ONLY),
        OrderRequest(2, MARKET, Side.SELL, Decimal("0.4"), Decimal(101), TimeInForce.POST_ONLY),
        OrderRequest(3, MARKET, Side.BUY, Decimal("1.5"), Decimal(102), TimeInForce.IOC),
        OrderRequest(4, MARKET, Side.SELL, Decimal(3), Decimal(99), TimeInForce.IOC),
    ]


async def _history() -> list[AccountEvent]:
    """A real event stream from the paper venue: maker fills, a cancel, partial and full IOCs."""
    clock = ManualClock(1_000 * SEC)
    venue = PaperVenue({MARKET: _book()}, FeeSchedule(), clock)
    events: list[AccountEvent] = []
    venue.set_account_sink(events.append)
    o1, o2, o3, o4 = _orders()
    await venue.place(o1)
    await venue.place(o2)
    venue.on_market_event(Trade(MARKET, Decimal(100), Decimal("1.2"), Side.SELL, 1, 1))  # 0.2 of o1
    venue.on_market_event(Trade(MARKET, Decimal(101), Decimal("1.1"), Side.BUY, 2, 2))  # 0.1 of o2
    venue.on_market_event(Trade(MARKET, Decimal(99), Decimal(1), Side.SELL, 3, 3))  # o1 filled
    await venue.cancel(o2.client_id)
    await venue.place(o3)  # fills 1.5 across two ask levels
    await venue.place(o4)  # 2 of 3 fill, the IOC remainder is cancelled
    return events


HISTORY = asyncio.run(_history())
EXPECTED = {
    1: (OrderStatus.FILLED, Decimal("0.5")),
    2: (OrderStatus.CANCELLED, Decimal("0.1")),
    3: (OrderStatus.FILLED, Decimal("1.5")),
    4: (OrderStatus.CANCELLED, Decimal(2)),
}


async def _replay(path: Path, stream: list[AccountEvent]) -> tuple[OrderManager, ActiveParent, Store]:
    store = Store.open(path)
    clock = ManualClock(1_000 * SEC)
    manager = OrderManager(SilentVenue(), store, Metrics(), clock, ExecutionSettings())
    plan = TwapPlan(MARKET, Side.BUY, Decimal(10), False, (0,), (Decimal(10),), 10**20)
    manager.start_parent(plan, decision_id=1)
    parent = manager.parents[MARKET]
    book = _book()
    for order in _orders():
        assert store.next_client_id() == order.client_id
        # Children of one parent, sent exactly as tick() sends them (the ids are pre-allocated).
        await manager.submit(order, book.mid())
        child = Child(order.client_id, order.size, order.price, order.tif)
        parent.children[order.client_id] = child
        manager._child_parent[order.client_id] = (parent, child)
    for event in stream:
        manager.on_account_event(event)
    return manager, parent, store


def test_history_in_order_reaches_the_expected_state(tmp_path: Path) -> None:
    _, parent, store = asyncio.run(_replay(tmp_path / "s.sqlite", HISTORY))
    for client_id, (status, filled) in EXPECTED.items():
        stored = store.get_order(client_id)
        assert stored is not None and (stored.status, stored.filled_size) == (status, filled)
    assert parent.filled == parent.sent == Decimal("4.1")
    assert len(store.fills()) == sum(isinstance(e, Fill) for e in HISTORY)
    store.close()


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_shuffled_duplicated_events_reach_the_same_final_state(data: st.DataObject) -> None:
    stream = list(data.draw(st.permutations(HISTORY), label="order"))
    for dup in data.draw(st.lists(st.sampled_from(HISTORY), max_size=8), label="duplicates"):
        stream.insert(data.draw(st.integers(0, len(stream)), label="at"), dup)
    with tempfile.TemporaryDirectory() as tmp:
        manager, parent, store = asyncio.run(_replay(Path(tmp) / "s.sqlite", stream))
        for client_id, (status, filled) in EXPECTED.items():
            stored = store.get_order(client_id)
            assert stored is not None and (stored.status, stored.filled_size) == (status, filled)
            assert manager.order_state(client_id) == OrderState(status, filled)
        assert sorted(f.fill_id for f in store.fills()) == sorted(
            e.fill_id for e in HISTORY if isinstance(e, Fill))
        assert parent.filled == parent.sent == Decimal("4.1")
        assert store.open_orders() == []
        store.close()


def test_order_updates_for_unknown_ids_change_nothing(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.sqlite")
    manager = OrderManager(SilentVenue(), store, Metrics(), ManualClock(1_000 * SEC), ExecutionSettings())
    manager.on_account_event(OrderUpdate(99, MARKET, OrderStatus.FILLED, Decimal(1), 0))
    assert store.get_order(99) is None and manager.order_state(99) is None
    store.close()


def _shifted_book(book: OrderBook, up: int) -> None:
    bids = tuple(BookLevel(Decimal(p + up), Decimal(1)) for p in range(100, 95, -1))
    asks = tuple(BookLevel(Decimal(p + up), Decimal(1)) for p in range(101, 106))
    book.apply_snapshot(BookSnapshot(MARKET, bids, asks, 0, 0))


async def test_passive_parent_repegs_by_cancel_replace_on_the_paper_venue(tmp_path: Path) -> None:
    clock = ManualClock(1_000 * SEC)
    book = _book()
    venue = PaperVenue({MARKET: book}, FeeSchedule(), clock)
    store = Store.open(tmp_path / "s.sqlite")
    settings_ = ExecutionSettings(min_notional_usd=Decimal(1), passive_timeout_secs=60.0,
                                  max_chase_bps=Decimal(1000), max_orders_per_sec=Decimal(2))
    manager = OrderManager(venue, store, Metrics(), clock, settings_)
    venue.set_account_sink(manager.on_account_event)
    spec = MarketSpec(MARKET, Decimal(1), Decimal("0.01"), Decimal("0.01"))
    plan = TwapPlan(MARKET, Side.BUY, Decimal("0.2"), False, (clock.now,), (Decimal("0.2"),),
                    clock.now + 100 * SEC, passive=True)
    manager.start_parent(plan, decision_id=1)
    await manager.tick({MARKET: book}, {MARKET: spec}, RiskMode.NORMAL)
    first = store.get_order(1)
    assert first is not None and first.tif is TimeInForce.POST_ONLY and first.price == Decimal(100)
    assert first.status is OrderStatus.ACKED
    _shifted_book(book, 2)  # two ticks: within repeg_ticks, stays
    clock.now += SEC
    await manager.tick({MARKET: book}, {MARKET: spec}, RiskMode.NORMAL)
    assert store.get_order(2) is None
    _shifted_book(book, 3)
    clock.now += SEC
    await manager.tick({MARKET: book}, {MARKET: spec}, RiskMode.NORMAL)
    cancelled, replaced = store.get_order(1), store.get_order(2)
    assert cancelled is not None and cancelled.status is OrderStatus.CANCELLED
    assert replaced is not None and replaced.price == Decimal(103) and replaced.status is OrderStatus.ACKED
    assert replaced.size == Decimal("0.2") and manager.parents[MARKET].sent == Decimal("0.2")
    # Rate limit: the bucket holds 2 tokens a second; a re-peg costs two, a third call waits.
    _shifted_book(book, 6)
    await manager.tick({MARKET: book}, {MARKET: spec}, RiskMode.NORMAL)
    assert store.get_order(3) is None and manager.throttled >= 1
    # Halted: the resting child is pulled, nothing new goes out.
    clock.now += SEC
    await manager.tick({MARKET: book}, {MARKET: spec}, RiskMode.HALTED)
    assert store.open_orders() == [] and await venue.open_orders() == []
    store.close()
