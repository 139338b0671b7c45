"""Group commit on the order path: intents recorded together, ids reserved in blocks."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import pytest
from support.clock import ManualClock

from bot.book import OrderBook
from bot.config import ExecutionSettings
from bot.domain import (
    BookLevel,
    BookSnapshot,
    MarketSpec,
    OrderRequest,
    OrderStatus,
    RiskMode,
    Side,
    TimeInForce,
)
from bot.errors import InvariantViolation
from bot.execution.orders import CLIENT_ID_BLOCK, OrderManager
from bot.execution.twap import TwapPlan
from bot.store import Store, db
from bot.telemetry import Metrics

SEC = 1_000_000_000
MARKETS = ("BTC-USD", "ETH-USD", "SOL-USD")


class RecordingVenue:
    """Places nothing; notes, for each place, whether the store already held the order."""

    name = "dydx"

    def __init__(self, store: Store) -> None:
        self.store = store
        self.placed: list[tuple[int, bool]] = []

    async def place(self, order: OrderRequest) -> None:
        self.placed.append((order.client_id, self.store.get_order(order.client_id) is not None))

    async def cancel(self, client_id: int) -> None:
        pass

    async def open_orders(self) -> list[int]:
        return []


def order(client_id: int, market: str = "BTC-USD") -> OrderRequest:
    return OrderRequest(client_id, market, Side.BUY, Decimal("0.5"), Decimal(100), TimeInForce.IOC)


def one_slice(market: str, now_ns: int) -> TwapPlan:
    return TwapPlan(market, Side.BUY, Decimal(1), False, (now_ns,), (Decimal(1),), now_ns + 60 * SEC)


def book(market: str) -> OrderBook:
    out = OrderBook(market)
    bids = tuple(BookLevel(Decimal(p), Decimal(5)) for p in range(100, 95, -1))
    asks = tuple(BookLevel(Decimal(p), Decimal(5)) for p in range(101, 106))
    out.apply_snapshot(BookSnapshot(market, bids, asks, 0, 0))
    return out


def test_record_orders_is_one_transaction_all_or_none(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite") as store:
        store.record_orders("dydx", [order(1), order(2)], 5)
        assert [o.client_id for o in store.open_orders("dydx")] == [1, 2]
        stored = store.get_order(2)
        assert stored is not None and stored.to_request() == order(2)
        assert (stored.status, stored.filled_size, stored.created_ns) == (OrderStatus.NEW, 0, 5)
        # one reused id in a batch: nothing of the batch is recorded
        with pytest.raises(InvariantViolation, match="already recorded"):
            store.record_orders("dydx", [order(3), order(2), order(4)], 6)
        assert store.get_order(3) is None and store.get_order(4) is None
        with pytest.raises(InvariantViolation, match="client id 1 is already recorded"):
            store.record_order("dydx", order(1), 7)
        # a duplicate inside one batch is a reuse too
        with pytest.raises(InvariantViolation):
            store.record_orders("dydx", [order(9), order(9)], 8)
        assert store.get_order(9) is None


def test_submit_many_records_every_intent_before_sending_any(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite") as store:
        venue = RecordingVenue(store)
        manager = OrderManager(venue, store, Metrics(), ManualClock(1_000 * SEC), ExecutionSettings())
        asyncio.run(manager.submit_many([order(1), order(2), order(3)], Decimal(100)))
        assert venue.placed == [(1, True), (2, True), (3, True)]
        assert all(manager.order_state(i) is not None for i in (1, 2, 3))


def test_store_refusing_the_batch_sends_nothing(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite") as store:
        venue = RecordingVenue(store)
        manager = OrderManager(venue, store, Metrics(), ManualClock(1_000 * SEC), ExecutionSettings())
        store.record_order("dydx", order(2), 1)
        with pytest.raises(InvariantViolation):
            asyncio.run(manager.submit_many([order(1), order(2)]))
        assert venue.placed == [] and store.get_order(1) is None


def test_client_ids_come_in_reserved_blocks_and_never_repeat(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Store.open(path) as store:
        manager = OrderManager(RecordingVenue(store), store, Metrics(), ManualClock(1_000 * SEC),
                               ExecutionSettings())
        first = [manager.next_client_id() for _ in range(CLIENT_ID_BLOCK + 3)]
        assert first == list(range(1, CLIENT_ID_BLOCK + 4))
        # the store's counter is past the second block: another writer never gets these ids
        assert store.next_client_id() == 2 * CLIENT_ID_BLOCK + 1
    with Store.open(path) as store:  # a restart skips the rest of the block, never reuses it
        manager = OrderManager(RecordingVenue(store), store, Metrics(), ManualClock(1_000 * SEC),
                               ExecutionSettings())
        assert manager.next_client_id() == 2 * CLIENT_ID_BLOCK + 2


def test_a_tick_records_every_markets_taker_child_in_one_commit(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite") as store:
        venue = RecordingVenue(store)
        clock = ManualClock(1_000 * SEC)
        manager = OrderManager(venue, store, Metrics(), clock, ExecutionSettings())
        for market in MARKETS:
            manager.start_parent(one_slice(market, clock.now), decision_id=1)
        commits: list[str] = []
        store._conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
        specs = {m: MarketSpec(m, Decimal(1), Decimal("0.001"), Decimal("0.001")) for m in MARKETS}
        asyncio.run(manager.tick({m: book(m) for m in MARKETS}, specs, RiskMode.NORMAL))
        store._conn.set_trace_callback(None)
        placed_markets = [store.get_order(cid).market for cid, _ in venue.placed]  # type: ignore[union-attr]
        assert sorted(placed_markets) == sorted(MARKETS)
        assert all(recorded for _, recorded in venue.placed)
        # one commit for the id block, one for the three intents
        assert len(commits) == 2, commits


def test_a_locked_store_leaves_no_phantom_children(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Store.open(path) as store:
        venue = RecordingVenue(store)
        clock = ManualClock(1_000 * SEC)
        manager = OrderManager(venue, store, Metrics(), clock, ExecutionSettings())
        manager.next_client_id()  # reserve a block first: the lock below hits the intents' write
        for market in MARKETS[:2]:
            manager.start_parent(one_slice(market, clock.now), decision_id=1)
        store._conn.execute("PRAGMA busy_timeout = 0")
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        specs = {m: MarketSpec(m, Decimal(1), Decimal("0.001"), Decimal("0.001")) for m in MARKETS}
        try:
            with pytest.raises(sqlite3.OperationalError):
                asyncio.run(manager.tick({m: book(m) for m in MARKETS}, specs, RiskMode.NORMAL))
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert venue.placed == []
        assert all(not p.children for p in manager.parents.values())
        assert not manager._child_parent


# ---- checkpoints off the event loop ----------------------------------------------------------


def test_checkpoints_happen_on_their_own_thread(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    conn = db.connect(path)
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0  # never inside a commit
    conn.execute("CREATE TABLE t (x TEXT)")
    for _ in range(200):
        conn.execute("INSERT INTO t VALUES (?)", ("x" * 3000,))
    before = path.stat().st_size  # the rows are still only in the WAL
    checkpointer = db.Checkpointer(path, interval_secs=0.02)
    deadline = time.monotonic() + 10
    while path.stat().st_size < before + 150 * 3000 and time.monotonic() < deadline:
        time.sleep(0.02)
    checkpointer.stop()
    assert path.stat().st_size >= before + 150 * 3000
    assert not checkpointer._thread.is_alive()
    conn.close()


def test_a_store_stops_its_checkpointer_on_close(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.sqlite")
    checkpointer = store._checkpointer
    assert checkpointer is not None and checkpointer._thread.is_alive()
    store.close()
    assert not checkpointer._thread.is_alive()
    store.close()  # twice is fine
    assert Store.open(Path(":memory:"))._checkpointer is None  # nothing to checkpoint
