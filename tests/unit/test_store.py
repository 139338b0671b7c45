"""Store: migrations, id allocation, dedup, exact Decimals and safety state across reopen."""

from __future__ import annotations

import itertools
import sqlite3
import tempfile
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain import (
    Fill,
    FundingPayment,
    Liquidity,
    OrderRequest,
    OrderStatus,
    RiskMode,
    Side,
    TimeInForce,
)
from bot.errors import ConfigError, InvariantViolation
from bot.store import KillLatch, Store, db

TINY = Decimal("0.000000001")
HUGE = Decimal("12345678901234567890.123456789")


def order(client_id: int, market: str = "BTC-USD", size: Decimal = Decimal("0.5")) -> OrderRequest:
    return OrderRequest(
        client_id=client_id,
        market=market,
        side=Side.BUY,
        size=size,
        price=Decimal("65000.5"),
        tif=TimeInForce.POST_ONLY,
        reduce_only=True,
    )


def fill(fill_id: str, ts_event: int, market: str = "BTC-USD", price: Decimal = HUGE) -> Fill:
    return Fill(
        fill_id=fill_id,
        client_id=7,
        market=market,
        side=Side.SELL,
        price=price,
        size=TINY,
        fee=Decimal("-0.0001"),
        liquidity=Liquidity.MAKER,
        ts_event=ts_event,
    )


def funding(market: str, ts_event: int, amount: Decimal) -> FundingPayment:
    return FundingPayment(
        market=market,
        rate=Decimal("0.0000125"),
        position_size=Decimal("-1.5"),
        oracle_price=Decimal("3000.25"),
        amount=amount,
        ts_event=ts_event,
    )


def latest_migration() -> int:
    return db.migrations()[-1][0]


def test_migrations_apply_and_are_idempotent_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "bot.db"
    with Store.open(path) as store:
        store.meta_set("paper.starting_equity_usd", "10000")
    conn = db.connect(path)
    assert db.user_version(conn) == latest_migration()
    assert db.migrate(conn) == latest_migration()
    conn.close()
    with Store.open(path) as store:
        assert store.meta_get("paper.starting_equity_usd") == "10000"
        assert store.meta_get("missing") is None


def test_database_from_the_future_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    conn = db.connect(path)
    conn.execute(f"PRAGMA user_version = {latest_migration() + 1}")
    conn.close()
    with pytest.raises(ConfigError) as info:
        Store.open(path)
    assert info.value.key == "store.path"


def test_wal_mode_and_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    Store.open(path).close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()
    conn = db.connect(path)
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    assert conn.isolation_level is None
    conn.close()


def test_client_ids_increase_and_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    with Store.open(path) as store:
        assert [store.next_client_id() for _ in range(3)] == [1, 2, 3]
        assert store.reserve_client_ids(4) == range(4, 8)
        with pytest.raises(ValueError):
            store.reserve_client_ids(0)
    with Store.open(path) as store:
        assert store.next_client_id() == 8


def test_client_ids_unique_across_two_open_stores(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    with Store.open(path) as a, Store.open(path) as b:
        ids = [
            a.next_client_id(),
            b.next_client_id(),
            *a.reserve_client_ids(3),
            b.next_client_id(),
            *b.reserve_client_ids(2),
            a.next_client_id(),
        ]
    assert ids == list(range(1, len(ids) + 1))


def test_client_ids_unique_under_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    Store.open(path).close()

    def allocate() -> list[int]:
        with Store.open(path) as store:
            return [store.next_client_id() for _ in range(200)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        batches = list(pool.map(lambda _: allocate(), range(4)))
    ids = [i for batch in batches for i in batch]
    assert sorted(ids) == list(range(1, 801))
    assert all(a < b for batch in batches for a, b in itertools.pairwise(batch))


def test_record_order_round_trips_and_rejects_duplicate_client_id(tmp_path: Path) -> None:
    with Store.open(tmp_path / "bot.db") as store:
        store.record_order("dydx", order(1, size=HUGE), ts_ns=100)
        stored = store.get_order(1)
        assert stored is not None
        assert stored.size == HUGE and str(stored.size) == str(HUGE)
        assert stored.status is OrderStatus.NEW
        assert stored.filled_size == 0
        assert (stored.created_ns, stored.updated_ns, stored.venue) == (100, 100, "dydx")
        assert stored.to_request() == order(1, size=HUGE)
        assert store.kill_latch() is None
        with pytest.raises(InvariantViolation):
            store.record_order("dydx", order(1), ts_ns=200)
        assert store.get_order(2) is None
        latch = store.kill_latch()  # whoever catches the error, the kill latch holds
        assert latch is not None and "client id 1" in latch.reason and latch.latched_ns == 200


def test_update_order_never_leaves_terminal_status_nor_lowers_filled(tmp_path: Path) -> None:
    with Store.open(tmp_path / "bot.db") as store:
        store.record_order("dydx", order(1), ts_ns=100)
        assert store.update_order(99, OrderStatus.ACKED, Decimal(0), ts_ns=110) is False
        assert store.update_order(1, OrderStatus.PARTIALLY_FILLED, Decimal("0.2"), ts_ns=120)
        store.update_order(1, OrderStatus.ACKED, Decimal("0.1"), ts_ns=130)
        stored = store.get_order(1)
        assert stored is not None
        assert (stored.status, stored.filled_size) == (OrderStatus.PARTIALLY_FILLED, Decimal("0.2"))
        store.update_order(1, OrderStatus.CANCELLED, Decimal("0.2"), ts_ns=140, reason="user")
        store.update_order(1, OrderStatus.ACKED, Decimal("0.1"), ts_ns=150)
        store.update_order(1, OrderStatus.FILLED, Decimal("0.3"), ts_ns=160, reason="late")
        stored = store.get_order(1)
        assert stored is not None
        assert stored.status is OrderStatus.CANCELLED
        assert stored.reason == "user"
        assert stored.filled_size == Decimal("0.3")
        assert stored.updated_ns == 160


def test_open_orders_filters_by_status_and_venue(tmp_path: Path) -> None:
    with Store.open(tmp_path / "bot.db") as store:
        store.record_order("dydx", order(1), ts_ns=1)
        store.record_order("dydx", order(2), ts_ns=2, status=OrderStatus.ACKED)
        store.record_order("binance", order(3, market="ETH-USD"), ts_ns=3)
        store.record_order("dydx", order(4), ts_ns=4)
        store.update_order(4, OrderStatus.FILLED, Decimal("0.5"), ts_ns=5)
        store.record_order("dydx", order(5), ts_ns=6, status=OrderStatus.REJECTED)
        assert [o.client_id for o in store.open_orders()] == [1, 2, 3]
        assert [o.client_id for o in store.open_orders("dydx")] == [1, 2]
        assert [o.client_id for o in store.open_orders("binance")] == [3]
        assert store.open_orders("paper") == []


def test_fill_dedup_and_exact_decimals(tmp_path: Path) -> None:
    with Store.open(tmp_path / "bot.db") as store:
        assert store.record_fill("dydx", fill("f1", ts_event=20))
        assert not store.record_fill("dydx", fill("f1", ts_event=99, price=Decimal(1)))
        assert store.record_fill("binance", fill("f1", ts_event=20))
        assert store.record_fill("dydx", fill("f2", ts_event=10, market="ETH-USD"))
        fills = store.fills()
        assert [(f.fill_id, f.ts_event) for f in fills] == [("f2", 10), ("f1", 20), ("f1", 20)]
        assert fills[1] == fill("f1", ts_event=20)
        assert str(fills[1].price) == str(HUGE) and str(fills[1].size) == str(TINY)
        assert [f.fill_id for f in store.fills("ETH-USD")] == ["f2"]


def test_funding_dedup_and_total(tmp_path: Path) -> None:
    with Store.open(tmp_path / "bot.db") as store:
        assert store.record_funding("dydx", funding("BTC-USD", 3600, TINY))
        assert not store.record_funding("dydx", funding("BTC-USD", 3600, Decimal(5)))
        assert store.record_funding("dydx", funding("BTC-USD", 7200, HUGE))
        assert store.record_funding("dydx", funding("ETH-USD", 3600, Decimal("-0.5")))
        assert store.funding_payments("BTC-USD") == [
            funding("BTC-USD", 3600, TINY),
            funding("BTC-USD", 7200, HUGE),
        ]
        assert store.funding_total("BTC-USD") == HUGE + TINY
        assert store.funding_total() == HUGE + TINY - Decimal("0.5")
        assert store.funding_total("SOL-USD") == 0


def test_funding_batch_stores_what_one_by_one_stores(tmp_path: Path) -> None:
    payments = [funding("BTC-USD", 3600, TINY), funding("BTC-USD", 3600, Decimal(5)),
                funding("BTC-USD", 7200, HUGE), funding("ETH-USD", 3600, Decimal("-0.5"))]
    with Store.open(tmp_path / "one.db") as one, Store.open(tmp_path / "many.db") as many:
        for p in payments:
            one.record_funding("dydx", p)
        many.record_funding_many("dydx", payments[:2])
        many.record_funding_many("dydx", payments)  # known ones are skipped
        assert many.funding_payments() == one.funding_payments()
        assert many.funding_total() == HUGE + TINY - Decimal("0.5")


def test_decisions_round_trip_decimal_as_string(tmp_path: Path) -> None:
    with Store.open(tmp_path / "bot.db") as store:
        first = store.record_decision(
            10, "BTC-USD", "gate_open", {"funding": True}, {"target": HUGE, "slices": [TINY]}
        )
        store.record_decision(30, "BTC-USD", "hold", {"funding": False}, {})
        store.record_decision(20, "BTC-USD", "older_ts", {}, {})
        store.record_decision(5, "ETH-USD", "hold", {}, {"side": Side.BUY})
        records = store.decisions("BTC-USD")
        assert [r.reason for r in records] == ["hold", "older_ts", "gate_open"]
        assert records[-1].id == first
        assert records[-1].plan == {"target": str(HUGE), "slices": [str(TINY)]}
        assert records[-1].flags == {"funding": True}
        assert len(store.decisions(limit=2)) == 2
        latest = store.last_decisions()
        assert {m: r.reason for m, r in latest.items()} == {"BTC-USD": "hold", "ETH-USD": "hold"}
        assert latest["ETH-USD"].plan == {"side": "BUY"}


def test_risk_mode_persists(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    with Store.open(path) as store:
        assert store.risk_mode() == (RiskMode.NORMAL, "")
        store.set_risk_mode(RiskMode.REDUCE_ONLY, "indexer lag", ts_ns=1)
    with Store.open(path) as store:
        assert store.risk_mode() == (RiskMode.REDUCE_ONLY, "indexer lag")


def test_kill_latch_survives_reopen_and_clears(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    with Store.open(path) as store:
        assert store.kill_latch() is None
        assert store.latch_kill("invariant: negative size", ts_ns=42)
        assert not store.latch_kill("operator", ts_ns=43)
    with Store.open(path) as store:
        assert store.kill_latch() == KillLatch(reason="invariant: negative size", latched_ns=42)
        store.clear_kill_latch()
    with Store.open(path) as store:
        assert store.kill_latch() is None


_id_ops = st.lists(
    st.one_of(
        st.just(("next", 1)),
        st.tuples(st.just("reserve"), st.integers(min_value=1, max_value=20)),
        st.just(("reopen", 0)),
    ),
    max_size=25,
)


@settings(max_examples=50, deadline=None)
@given(ops=_id_ops)
def test_client_ids_unique_and_increasing_for_any_call_sequence(
    ops: list[tuple[str, int]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bot.db"
        store = Store.open(path)
        ids: list[int] = []
        try:
            for op, n in ops:
                if op == "next":
                    ids.append(store.next_client_id())
                elif op == "reserve":
                    ids.extend(store.reserve_client_ids(n))
                else:
                    store.close()
                    store = Store.open(path)
        finally:
            store.close()
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert len(set(ids)) == len(ids)
    assert ids[:1] in ([], [1])
