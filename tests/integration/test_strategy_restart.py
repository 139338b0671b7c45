"""The carry's exit watch and the thesis's held share survive a restart (bot.strategy_state).

A paper engine with a spot hedge on a real SQLite file: the carry is open (a spot long in the
store's fills: short perp), the funding history makes staying adverse, and a 0.5x long thesis is
trimmed to about 0.3 while price is 30% above its 30-day trend. The engine counts adverse settled
hours, then stops; a new engine on the same file starts with the count and the held share, so
the exit confirmation goes on where it was and a price that falls through its trend does not
re-risk the thesis (a fresh start would take it back to 0.6 at once).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from decimal import Decimal as D
from pathlib import Path

from support.clock import ManualClock
from support.wait import eventually

from bot.book import OrderBook
from bot.config import load
from bot.domain import Fill, Liquidity, MarketSpec, RiskMode, Side
from bot.engine import Engine
from bot.execution.orders import OrderManager
from bot.history import MarketHistory
from bot.store import Store
from bot.strategy_state import META_PREFIX, StrategyRecord
from bot.telemetry import Metrics
from bot.venues.paper.adapter import PaperVenue
from bot.venues.paper.fills import FeeSchedule

NS_H = 3600 * 10**9
START_NS = 24 * 30 * NS_H
PERP, SPOT = "BTC-USD", "BTC-USDT"
SPECS = {PERP: MarketSpec(PERP, D("0.01"), D("0.001"), D("0.001"))}
SPOT_SPECS = {SPOT: MarketSpec(SPOT, D("0.01"), D("0.001"), D("0.001"))}


def start(tmp_path: Path, clock: ManualClock) -> tuple[Engine, Store]:
    """A daemon's (re)start on the same store file, seeded from the same history."""
    settings = load(None, env_file=None, state_dir=str(tmp_path), markets=[PERP], strategy={
        "targets": {PERP: "0.5x"}, "target_vol_annual": "100",
        "thesis_max_scale": "0.6", "stretch_half_life_days": 30, "stretch_start": "0.15",
        "stretch_full": "0.3", "rerisk_on_trend": True, "carry": {"exit_confirm_hours": 48}})
    store = Store.open(tmp_path / "perpbot.sqlite")
    books = {PERP: OrderBook(PERP)}
    spot_books = {SPOT: OrderBook(SPOT)}
    fees = FeeSchedule(D(0), D(0))
    ex = settings.execution
    perp = OrderManager(PaperVenue(books, fees, clock), store, Metrics(), clock, ex)
    spot = OrderManager(PaperVenue(spot_books, fees, clock), store, Metrics(), clock, ex)
    engine = Engine(settings, SPECS, store, perp, Metrics(), clock, books, spot_orders=spot,
                    spot_specs=SPOT_SPECS, spot_books=spot_books)
    # 30 days near 100, and funding that makes a short perp pay 0.01%/h: staying is adverse.
    engine.seed_history(MarketHistory(PERP, [(h * NS_H, D(100) if h % 2 else D("100.5")) for h in range(720)],
                                      [(h * NS_H, D("-0.0001")) for h in range(1, 721)]))
    return engine, store


def evaluate(engine: Engine, mark: D, now_ns: int) -> None:
    state = engine.markets[PERP]
    engine.decider.evaluate(state, mark, now_ns, RiskMode.NORMAL, True, D(10_000))  # paused: no orders


def test_the_watch_count_and_the_held_share_survive_a_restart(tmp_path: Path) -> None:
    with Store.open(tmp_path / "perpbot.sqlite") as store:  # the carry is open: a spot long on the book
        store.record_fill("paper", Fill("f1", 1, SPOT, Side.BUY, D(100), D(10), D(0), Liquidity.TAKER, 0))
    clock = ManualClock(START_NS)
    engine, store = start(tmp_path, clock)
    state = engine.markets[PERP]
    assert state.carry_side == -1
    for hour in range(3):  # three settled hours, each counted once however often it is evaluated
        clock.now = START_NS + hour * NS_H
        evaluate(engine, D(130), clock.now)
        clock.now += NS_H // 2
        evaluate(engine, D(130), clock.now)
    assert state.carry_watch.adverse_hours == 3
    held = state.thesis_held
    assert held is not None and D("0.3") <= held < D("0.35")  # 30% above the trend: about half the cap
    store.close()

    engine, store = start(tmp_path, clock)  # restarted within the same hour
    state = engine.markets[PERP]
    assert state.carry_watch.adverse_hours == 3 and state.thesis_held == held
    evaluate(engine, D(90), clock.now)  # price fell through its trend while the daemon was down
    assert state.thesis_held == held  # not re-risked below the trend
    assert state.carry_watch.adverse_hours == 3  # the hour already counted is not counted again
    clock.now += NS_H
    evaluate(engine, D(101), clock.now)  # the next hour: the count goes on; at the trend: restored
    assert state.carry_watch.adverse_hours == 4
    assert state.thesis_held == D("0.6")
    store.close()


def test_a_malformed_record_starts_the_market_fresh(tmp_path: Path) -> None:
    with Store.open(tmp_path / "perpbot.sqlite") as store:
        store.meta_set(META_PREFIX + PERP, '{"carry_side": -1, "adverse_hours": "many"')
    clock = ManualClock(START_NS)
    engine, store = start(tmp_path, clock)
    state = engine.markets[PERP]
    assert state.carry_watch.adverse_hours == 0 and state.thesis_held is None
    evaluate(engine, D(130), clock.now)  # the first refresh replaces it
    assert state.thesis_held is not None and state.thesis_held < D("0.6")
    assert f'"thesis_held": "{state.thesis_held}"' in (store.meta_get(META_PREFIX + PERP) or "")
    store.close()


def test_the_daemon_stores_the_record_reads_it_back_and_starts_past_a_bad_one(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    """`perpbot run` (paper, embedded simulator): the record is in the state directory's store,
    the next start reads it back before deciding; a malformed one is logged and the start goes on."""
    daemon = daemon_factory().start()
    db = daemon.state_dir / "perpbot.sqlite"

    def stored() -> str | None:
        with closing(sqlite3.connect(db)) as conn:
            row = conn.execute("select value from meta where key = ?", (META_PREFIX + PERP,)).fetchone()
        return row[0] if row else None

    def held() -> D | None:
        try:
            return StrategyRecord.from_json(stored() or "").thesis_held
        except ValueError:
            return None

    eventually(held)
    assert daemon.stop() == 0
    saved = StrategyRecord.from_json(stored() or "")
    assert saved.thesis_held is not None and 0 < saved.thesis_held <= 1  # the long BTC thesis

    again = daemon_factory().start()
    restored = eventually(lambda: [e for e in again.log_events() if e.get("market") == PERP
                                   and e.get("event") == "strategy_state_restored"])
    assert restored[0]["thesis_held"] == str(saved.thesis_held)
    assert again.stop() == 0

    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("update meta set value = ? where key = ?", ('{"carry_side": "x"', META_PREFIX + PERP))
    third = daemon_factory().start()
    eventually(lambda: any(e.get("event") == "strategy_state_unreadable" for e in third.log_events()))
    eventually(held)  # written afresh
    assert third.status()["risk_mode"] == "NORMAL"
    assert third.stop() == 0
