"""The store's repository interface over SQLite; money is Decimal in and out, stored as TEXT.

Table columns carry the field names of the value types they hold (`StoredOrder`, `Fill`,
`FundingPayment`, `DecisionRecord`), so rows are encoded and decoded from the dataclass fields;
a new field on one of those types needs a migration adding its column.
"""

from __future__ import annotations

import enum
import json
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from decimal import Decimal
from pathlib import Path
from typing import Any, Self, TypeVar

from bot.domain import (
    ZERO,
    Fill,
    FundingPayment,
    Liquidity,
    OrderRequest,
    OrderStatus,
    RiskMode,
    Side,
    TimeInForce,
)
from bot.errors import InvariantViolation
from bot.store import db

# Out-of-order venue updates must not move an open order backwards (ACKED after a fill).
_OPEN_RANK = {OrderStatus.NEW: 0, OrderStatus.ACKED: 1, OrderStatus.PARTIALLY_FILLED: 2}
_T = TypeVar("_T")
_OPEN_STATUSES = tuple(s.value for s in OrderStatus if s.is_open)


@dataclass(frozen=True, slots=True)
class StoredOrder:
    """An order as the store last recorded it."""

    client_id: int
    venue: str
    market: str
    side: Side
    size: Decimal
    price: Decimal
    tif: TimeInForce
    reduce_only: bool
    status: OrderStatus
    filled_size: Decimal
    created_ns: int
    updated_ns: int
    reason: str

    def to_request(self) -> OrderRequest:
        """Return the request this order was recorded from."""
        return OrderRequest(**_fields_of(self, OrderRequest))


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One logged strategy decision; Decimal values in flags/plan come back as strings."""

    id: int
    ts_ns: int
    market: str
    reason: str
    flags: dict[str, Any]
    plan: dict[str, Any]


@dataclass(frozen=True, slots=True)
class KillLatch:
    """A latched kill switch: trading stays halted until an operator clears it."""

    reason: str
    latched_ns: int


class Store:
    """Persist orders, fills, funding, decisions and safety state; each write is one transaction."""

    def __init__(self, path: Path) -> None:
        self._conn = db.connect(path)
        self._lock = threading.Lock()
        try:
            db.migrate(self._conn)
        except Exception:
            self._conn.close()
            raise
        # A file database in WAL mode (not ":memory:") is checkpointed off the caller's thread.
        self._checkpointer = db.Checkpointer(path) if db.is_wal(self._conn) else None
        if self._checkpointer is not None:  # a store dropped without close() stops it too
            weakref.finalize(self, self._checkpointer.stop, None)

    @classmethod
    def open(cls, path: Path) -> Self:
        """Open (creating and migrating if needed) the store at `path`."""
        return cls(path)

    def close(self) -> None:
        """Close the underlying connection; safe to call twice."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, db.transaction(self._conn) as conn:
            yield conn

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def next_client_id(self) -> int:
        """Allocate one client id; ids start at 1 and are never reused, even across processes."""
        return self.reserve_client_ids(1).start

    def reserve_client_ids(self, n: int) -> range:
        """Allocate `n` >= 1 consecutive client ids."""
        if n < 1:
            raise ValueError(f"reserve_client_ids needs n >= 1, got {n}")
        with self._write() as conn:
            (start,) = conn.execute("SELECT next_client_id FROM id_allocator").fetchone()
            conn.execute("UPDATE id_allocator SET next_client_id = ?", (start + n,))
        return range(start, start + n)

    def record_order(
        self, venue: str, order: OrderRequest, ts_ns: int, status: OrderStatus = OrderStatus.NEW
    ) -> None:
        """Record an order before it is sent; a reused client id raises InvariantViolation."""
        self.record_orders(venue, (order,), ts_ns, status)

    def record_orders(
        self, venue: str, orders: Sequence[OrderRequest], ts_ns: int,
        status: OrderStatus = OrderStatus.NEW,
    ) -> None:
        """Record several orders in one transaction (all or none) before any of them is sent.

        The order path's hottest write: one statement with the row built directly (the same
        columns `StoredOrder` describes), and one commit for the lot (group commit).
        """
        rows = [(o.client_id, venue, o.market, o.side.value, str(o.size), str(o.price), o.tif.value,
                 int(o.reduce_only), status.value, "0", ts_ns, ts_ns, "") for o in orders]
        try:
            with self._write() as conn:
                inserted = conn.executemany(_INSERT_ORDER, rows).rowcount
                if inserted != len(rows):  # rolled back: none of them is recorded
                    ids = ", ".join(str(row[0]) for row in rows)
                    raise InvariantViolation(f"client id {ids} is already recorded" if len(rows) == 1
                                             else f"a client id of {ids} is already recorded")
        except InvariantViolation as exc:
            # The kill latch holds from here on, whichever caller catches this (an operator
            # flatten, the watchdog): the watchdog reads it, a restart starts HALTED.
            self.latch_kill(f"invariant violated: {exc}", ts_ns)
            raise

    def update_order(
        self,
        client_id: int,
        status: OrderStatus,
        filled_size: Decimal,
        ts_ns: int,
        reason: str = "",
    ) -> bool:
        """Apply a status update; never leaves a terminal status, never lowers filled_size.

        Status also never moves backwards among open states (ACKED after PARTIALLY_FILLED is
        ignored). Returns False if the client id is unknown.
        """
        with self._write() as conn:
            row = conn.execute(
                "SELECT status, filled_size, updated_ns, reason FROM orders WHERE client_id = ?",
                (client_id,),
            ).fetchone()
            if row is None:
                return False
            old_status, old_filled, old_updated_ns, old_reason = row
            new_status, new_reason = OrderStatus(old_status), old_reason
            rank = _OPEN_RANK.get(status, len(_OPEN_RANK))
            if new_status.is_open and rank >= _OPEN_RANK[new_status]:
                new_status, new_reason = status, reason or old_reason
            filled, updated_ns = max(Decimal(old_filled), filled_size), max(old_updated_ns, ts_ns)
            conn.execute(
                "UPDATE orders SET status = ?, filled_size = ?, updated_ns = ?, reason = ?"
                " WHERE client_id = ?",
                (new_status.value, str(filled), updated_ns, new_reason, client_id),
            )
        return True

    def get_order(self, client_id: int) -> StoredOrder | None:
        """Return the stored order with this client id, if any."""
        rows = self._read(
            f"SELECT {_columns(StoredOrder)} FROM orders WHERE client_id = ?", (client_id,)
        )
        return _decode(StoredOrder, rows[0]) if rows else None

    def open_orders(self, venue: str | None = None) -> list[StoredOrder]:
        """Return orders in an open status (optionally for one venue), oldest client id first."""
        marks = ", ".join("?" * len(_OPEN_STATUSES))
        sql = f"SELECT {_columns(StoredOrder)} FROM orders WHERE status IN ({marks})"
        params: tuple[Any, ...] = _OPEN_STATUSES
        if venue is not None:
            sql += " AND venue = ?"
            params += (venue,)
        return [
            _decode(StoredOrder, row) for row in self._read(sql + " ORDER BY client_id", params)
        ]

    def record_fill(self, venue: str, fill: Fill, meta: tuple[str, str] | None = None) -> bool:
        """Store a fill; return False (and change nothing) if (venue, fill_id) is known.

        `meta` (key, value) is written in the same transaction when the fill is new: state
        that the fill changes (a hedge obligation) can never be lost between two commits.
        """
        with self._write() as conn:
            if not _insert(conn, "fills", fill, conflict="venue, fill_id", venue=venue):
                return False
            if meta is not None:
                conn.execute(_UPSERT_META, meta)
            return True

    def fills(self, market: str | None = None) -> list[Fill]:
        """Return stored fills, optionally for one market, by ts_event then insertion order."""
        sql, params = _by_market(f"SELECT {_columns(Fill)} FROM fills", market)
        return [_decode(Fill, row) for row in self._read(sql + " ORDER BY ts_event, id", params)]

    def record_funding(self, venue: str, payment: FundingPayment) -> bool:
        """Store a funding payment; return False if (venue, market, ts_event) is known."""
        with self._write() as conn:
            conflict = "venue, market, ts_event"
            return _insert(conn, "funding_payments", payment, conflict=conflict, venue=venue)

    def record_funding_many(self, venue: str, payments: list[FundingPayment]) -> None:
        """Store funding payments in one transaction (a backtest settles in memory and writes them
        in batches); payments already known are skipped, as `record_funding` skips them."""
        names = ["venue", *(f.name for f in fields(FundingPayment))]
        sql = (f"INSERT INTO funding_payments ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
               " ON CONFLICT (venue, market, ts_event) DO NOTHING")
        rows = [(venue, *(_encode(getattr(p, f.name)) for f in fields(FundingPayment))) for p in payments]
        with self._write() as conn:
            conn.executemany(sql, rows)

    def funding_payments(self, market: str | None = None) -> list[FundingPayment]:
        """Return stored funding payments, optionally for one market, oldest first."""
        sql, params = _by_market(f"SELECT {_columns(FundingPayment)} FROM funding_payments", market)
        rows = self._read(sql + " ORDER BY ts_event, id", params)
        return [_decode(FundingPayment, row) for row in rows]

    def funding_total(self, market: str | None = None) -> Decimal:
        """Return the exact Decimal sum of funding amounts (positive: received)."""
        sql, params = _by_market("SELECT amount FROM funding_payments", market)
        return sum((Decimal(amount) for (amount,) in self._read(sql, params)), ZERO)

    def record_decision(
        self, ts_ns: int, market: str, reason: str, flags: dict[str, Any], plan: dict[str, Any]
    ) -> int:
        """Log one decision with its flags and plan as JSON (Decimal as string); return its id."""
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO decisions (ts_ns, market, reason, flags, plan) VALUES (?, ?, ?, ?, ?)",
                (ts_ns, market, reason, _dump_json(flags), _dump_json(plan)),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def last_decisions(self) -> dict[str, DecisionRecord]:
        """Return the newest decision per market (highest ts_ns, then latest recorded)."""
        rows = self._read(
            f"SELECT {_columns(DecisionRecord)} FROM decisions AS d WHERE d.id = ("
            " SELECT id FROM decisions WHERE market = d.market"
            " ORDER BY ts_ns DESC, id DESC LIMIT 1)"
        )
        return {row[2]: _decode(DecisionRecord, row) for row in rows}

    def decisions(self, market: str | None = None, limit: int = 100) -> list[DecisionRecord]:
        """Return up to `limit` decisions, optionally for one market, newest first."""
        sql, params = _by_market(f"SELECT {_columns(DecisionRecord)} FROM decisions", market)
        rows = self._read(sql + " ORDER BY ts_ns DESC, id DESC LIMIT ?", (*params, limit))
        return [_decode(DecisionRecord, row) for row in rows]

    def risk_mode(self) -> tuple[RiskMode, str]:
        """Return the persisted risk mode and its reason (NORMAL, "" on a fresh store)."""
        ((mode, reason),) = self._read("SELECT risk_mode, reason FROM risk_state")
        return RiskMode(mode), reason

    def set_risk_mode(self, mode: RiskMode, reason: str, ts_ns: int) -> None:
        """Persist the risk mode with the reason for the change."""
        with self._write() as conn:
            conn.execute(
                "UPDATE risk_state SET risk_mode = ?, reason = ?, updated_ns = ?",
                (mode.value, reason, ts_ns),
            )

    def kill_latch(self) -> KillLatch | None:
        """Return the kill latch if it is set."""
        ((latched, reason, ts_ns),) = self._read(
            "SELECT latched, reason, latched_ns FROM kill_latch"
        )
        return KillLatch(reason, ts_ns) if latched else None

    def latch_kill(self, reason: str, ts_ns: int) -> bool:
        """Set the kill latch, keeping the first reason; return True if it was not already set."""
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE kill_latch SET latched = 1, reason = ?, latched_ns = ? WHERE latched = 0",
                (reason, ts_ns),
            )
            return cursor.rowcount == 1

    def clear_kill_latch(self) -> None:
        """Clear the kill latch (operator action)."""
        with self._write() as conn:
            conn.execute("UPDATE kill_latch SET latched = 0, reason = '', latched_ns = 0")

    def meta_get(self, key: str) -> str | None:
        """Return the value stored under `key`, if any."""
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def meta_set(self, key: str, value: str) -> None:
        """Store `value` under `key`, replacing any previous value."""
        with self._write() as conn:
            conn.execute(_UPSERT_META, (key, value))


# Field annotations are strings (postponed evaluation), so decoders are keyed by type name.
_DECODERS: dict[str, Callable[[Any], Any]] = {
    "Decimal": Decimal,
    "bool": bool,
    "Side": Side,
    "TimeInForce": TimeInForce,
    "OrderStatus": OrderStatus,
    "Liquidity": Liquidity,
    "dict[str, Any]": json.loads,
}


def _fields_of(record: Any, cls: type) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in fields(cls)}


def _columns(cls: type) -> str:
    return ", ".join(f.name for f in fields(cls))


def _decode(cls: type[_T], row: tuple[Any, ...]) -> _T:
    decoded = []
    for f, value in zip(fields(cls), row, strict=True):  # type: ignore[arg-type]
        name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        decoder = _DECODERS.get(name)
        decoded.append(decoder(value) if decoder else value)
    return cls(*decoded)


def _encode(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _insert(conn: sqlite3.Connection, table: str, record: Any, conflict: str, **extra: Any) -> bool:
    names = [*extra, *(f.name for f in fields(record))]
    values = [*extra.values(), *(_encode(getattr(record, f.name)) for f in fields(record))]
    cursor = conn.execute(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        f" ON CONFLICT ({conflict}) DO NOTHING",
        values,
    )
    return cursor.rowcount == 1


_UPSERT_META = ("INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value")
_INSERT_ORDER = (
    f"INSERT INTO orders ({_columns(StoredOrder)}) VALUES ({', '.join('?' * len(fields(StoredOrder)))})"
    " ON CONFLICT (client_id) DO NOTHING"
)


def _by_market(select: str, market: str | None) -> tuple[str, tuple[Any, ...]]:
    if market is None:
        return select, ()
    return select + " WHERE market = ?", (market,)


def _dump_json(value: dict[str, Any]) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True, separators=(",", ":"))


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a decision payload")
