"""A fill's commission withheld in the base asset survives the store, and older stores migrate."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

from bot.domain import Fill, Liquidity, Side
from bot.store import Store, db

D = Decimal


def buy(fill_id: str, withheld: Decimal) -> Fill:
    return Fill(fill_id, 7, "ETH-USDT", Side.BUY, D("3601.27"), D("0.5") - withheld, withheld * D("3601.27"),
                Liquidity.TAKER, 1_733_587_200_121_000_000, withheld)


def test_withheld_round_trips_exactly(tmp_path: Path) -> None:
    with Store.open(tmp_path / "bot.db") as store:
        assert store.record_fill("binance", buy("ETHUSDT-1", D("0.00050000")))
        assert store.record_fill("binance", buy("ETHUSDT-2", D(0)))
        first, second = store.fills()
        assert first == buy("ETHUSDT-1", D("0.0005")) and str(first.withheld) == "0.00050000"
        assert (first.size, first.gross_size, second.withheld) == (D("0.4995"), D("0.5"), 0)


def test_fills_stored_before_the_column_read_as_nothing_withheld(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    conn = db.connect(path)
    with db.transaction(conn):
        for statement in db.split_statements(db.migrations()[0][2]):
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute("INSERT INTO fills (venue, fill_id, client_id, market, side, price, size, fee,"
                     " liquidity, ts_event) VALUES ('binance', 'ETHUSDT-1', 7, 'ETH-USDT', 'BUY',"
                     " '3601.27', '0.5', '1.8', 'TAKER', 1)")
    conn.close()
    with Store.open(path) as store:
        (old,) = store.fills()
        assert (old.size, old.withheld, old.gross_size) == (D("0.5"), 0, D("0.5"))
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == db.migrations()[-1][0]
