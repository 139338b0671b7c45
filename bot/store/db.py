"""SQLite connection setup and the numbered-migration runner."""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import structlog

from bot.errors import ConfigError

log = structlog.get_logger("store")
BUSY_TIMEOUT_MS = 5_000
CHECKPOINT_SECS = 1.0
_MIGRATION_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.sql$")


def connect(path: Path) -> sqlite3.Connection:
    """Open the database at `path` in WAL mode with explicit transaction control."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if str(path) != ":memory:" and not path.exists():
        # Created private: SQLite gives its -wal and -shm files the database file's mode.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    # check_same_thread=False lets callers use asyncio.to_thread; repo.Store serialises access.
    conn = sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        # No checkpoint inside a commit: `Checkpointer` does them from its own thread.
        conn.execute("PRAGMA wal_autocheckpoint = 0")
    except Exception:
        conn.close()
        raise
    return conn


class Checkpointer:
    """Checkpoints a WAL database from a thread of its own, every `interval_secs`.

    SQLite's automatic checkpoint runs inside whichever commit crosses 1000 WAL pages and
    fsyncs the database there: milliseconds (tens, seen here) inside a commit that the event
    loop waits on, often an order intent. A PASSIVE checkpoint on another connection never
    blocks writers or readers; it copies what it can and the next round does the rest.
    """

    def __init__(self, path: Path, interval_secs: float = CHECKPOINT_SECS) -> None:
        self._path = path
        self._interval = interval_secs
        self._stop = threading.Event()
        # Opened here, used only by the thread (which closes it when it stops).
        conn = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
        self._thread = threading.Thread(target=self._run, args=(conn,), name="sqlite-checkpoint",
                                        daemon=True)
        self._thread.start()

    def _run(self, conn: sqlite3.Connection) -> None:
        try:
            while not self._stop.wait(self._interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # retried next round; the WAL only grows meanwhile
                    log.warning("store_checkpoint_failed", error=str(exc))
        finally:
            conn.close()

    def stop(self, timeout_secs: float | None = 5.0) -> None:
        """Stop the thread; wait for it up to `timeout_secs` (None: do not wait)."""
        self._stop.set()
        if timeout_secs is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_secs)


def is_wal(conn: sqlite3.Connection) -> bool:
    return str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block in one BEGIN IMMEDIATE transaction: commit on success, else roll back."""
    conn.execute("BEGIN IMMEDIATE")
    committed = False
    try:
        yield conn
        conn.execute("COMMIT")
        committed = True
    finally:
        if not committed and conn.in_transaction:
            conn.execute("ROLLBACK")


def migrations() -> list[tuple[int, str, str]]:
    """Return the packaged migrations as (version, file name, SQL), sorted by version."""
    found: dict[int, tuple[int, str, str]] = {}
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is None:
            continue
        version = int(match.group(1))
        if version in found:
            raise RuntimeError(f"duplicate migration number {version}: {entry.name}")
        found[version] = (version, entry.name, entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def user_version(conn: sqlite3.Connection) -> int:
    """Return the schema version recorded in the database header."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration newer than the database's user_version; return the new version."""
    pending = migrations()
    latest = pending[-1][0] if pending else 0
    current = user_version(conn)
    if current > latest:
        raise ConfigError(
            "store.path",
            f"database schema version {current} is newer than this build supports ({latest})",
        )
    for version, _name, sql in pending:
        if version <= current:
            continue
        with transaction(conn):
            # Another process may have migrated between our read and taking the write lock.
            if user_version(conn) < version:
                for statement in split_statements(sql):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version}")
    return user_version(conn)


def split_statements(sql: str) -> list[str]:
    """Split a SQL script into complete statements (triggers included), dropping blank tails."""
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if _strip_comments(buffer):
        raise ValueError(f"incomplete SQL statement at end of migration: {buffer.strip()!r}")
    return statements


def _strip_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines()).strip()
