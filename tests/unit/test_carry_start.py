"""The carry at start (bot.carry_start): the pure rule on the legs, and the engine's state, hedge
and carry watch after it runs on a reconciliation's report (paper venues, a real SQLite store); the
same rule while running, when the balance check books the spot down (HedgeControl.spot_booked_down)."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from bot.book import OrderBook
from bot.carry_start import (
    CarryStart,
    Legs,
    carry_after_shortfall,
    carry_at_start,
    follow_venues,
    stored_legs,
)
from bot.clock import SYSTEM_CLOCK
from bot.config import load
from bot.domain import Fill, Liquidity, MarketSpec, Position, Side
from bot.engine import Engine
from bot.execution.hedge import HedgeState
from bot.execution.hedge_control import record
from bot.execution.orders import OrderManager
from bot.store import Store
from bot.store.reconcile import balance_adjustment
from bot.strategy.carry import CarryWatch
from bot.strategy_state import StrategyRecord, save
from bot.telemetry import Metrics
from bot.venues.paper.adapter import PaperVenue
from bot.venues.paper.fills import FeeSchedule


@pytest.mark.parametrize(("legs", "carry"), [
    # both legs as the store left them: the carry is the hedge
    (Legs(D(2), D(2)), CarryStart(-1, D(2), D(2))),
    # a crash between the perp fills and their hedge: still owed, the hedge buys the rest
    (Legs(D(2), D(1)), CarryStart(-1, D(2), D(2))),
    # an exit under way (the hedge owed nothing more): closed, the hedge sells what is held
    (Legs(D(0), D(2)), CarryStart(0, D(0), D(0))),
    # sold by hand while down: the balance is the truth, the carry is gone with the coins
    (Legs(D(2), D(0), D(2), D(2)), CarryStart(0, D(0), D(0), D(2))),
    (Legs(D(2), D("1.5"), D("0.5"), D(2)), CarryStart(-1, D("1.5"), D("1.5"), D("0.5"))),
    # a buy's commission booked gross by an old store (within 1%): still owed, bought back
    (Legs(D(5), D("4.995"), D("0.005"), D(5)), CarryStart(-1, D(5), D(5))),
    # what the store held beyond the hedge (being sold) goes first
    (Legs(D("0.5"), D("0.4"), D("0.6"), D(1)), CarryStart(-1, D("0.4"), D("0.4"), D("0.1"))),
    # what the hedge never bought is still owed
    (Legs(D("0.5"), D(0), D("0.25"), D("0.25")), CarryStart(-1, D("0.25"), D("0.25"), D("0.25"))),
    # the mirror carry (long perp, short spot): no balance to book down
    (Legs(D(-1), D(-1)), CarryStart(1, D(1), D(-1))),
    (Legs(D(0), D(0)), CarryStart(0, D(0), D(0))),
])
def test_the_carry_is_the_spot_owed_less_what_left_the_account(legs: Legs, carry: CarryStart) -> None:
    assert carry_at_start(legs) == carry


sizes = st.decimals(min_value=0, max_value=1000, places=3)


@given(sizes, sizes, sizes, sizes)
def test_the_carry_never_grows_and_agrees_with_the_hedge(owed: D, spot: D, down: D, booked_from: D) -> None:
    carry = carry_at_start(Legs(owed, spot, down, booked_from))
    assert 0 <= carry.owed <= owed and carry.owed + carry.left_account == owed
    assert carry.left_account <= down
    assert carry.size == abs(carry.owed) and carry.spot_target == carry.owed
    assert carry.side == (-1 if carry.owed > 0 else 0)
    if down <= booked_from * D("0.01"):
        assert carry.owed == owed  # dust: nothing taken out


PERP, SPOT = "BTC-USD", "BTC-USDT"


def engine_on(tmp_path: Path) -> Engine:
    settings = load(None, env_file=None, state_dir=str(tmp_path), markets=[PERP], strategy={"targets": {}})
    store = Store.open(tmp_path / "perpbot.sqlite")
    books, spot_books, fees = {PERP: OrderBook(PERP)}, {SPOT: OrderBook(SPOT)}, FeeSchedule(D(0), D(0))
    ex = settings.execution
    spec = MarketSpec(PERP, D("0.01"), D("0.001"), D("0.001"))
    spot_spec = MarketSpec(SPOT, D("0.01"), D("0.001"), D("0.001"))
    return Engine(settings, {PERP: spec}, store,
                  OrderManager(PaperVenue(books, fees, SYSTEM_CLOCK), store, Metrics(), SYSTEM_CLOCK, ex),
                  Metrics(), SYSTEM_CLOCK, books,
                  spot_orders=OrderManager(PaperVenue(spot_books, fees, SYSTEM_CLOCK), store, Metrics(),
                                           SYSTEM_CLOCK, ex),
                  spot_specs={SPOT: spot_spec}, spot_books=spot_books)


def carry_store(tmp_path: Path, spot: D, owed: D | None, *, perp: D | None = None) -> None:
    """A store a carry was running on: its fills, the hedge record and an adverse count of 3."""
    with Store.open(tmp_path / "perpbot.sqlite") as store:
        store.record_fill("paper", Fill("p1", 1, PERP, Side.SELL, D(100), spot if perp is None else perp,
                                        D(0), Liquidity.TAKER, 1))
        if spot:
            store.record_fill("paper_spot", Fill("s1", 2, SPOT, Side.BUY, D(100), spot, D(0),
                                                 Liquidity.TAKER, 2))
        if owed is not None:
            store.meta_set(*record(PERP, HedgeState(PERP, SPOT, required=owed, goal=owed)))
        save(store, PERP, StrategyRecord(-1, CarryWatch(3, 480_000), None))


def test_without_reconciliation_the_engine_restores_the_carry_the_hedge_owes(tmp_path: Path) -> None:
    carry_store(tmp_path, D(1), D(2), perp=D(2))  # the perp filled, half its hedge did
    engine = engine_on(tmp_path)
    state = engine.markets[PERP]
    assert (state.carry_side, state.carry_size, state.spot and state.spot.target) == (-1, D(2), D(2))
    assert engine.hedges[PERP].required == D(2) and state.carry_watch.adverse_hours == 3
    engine._store.close()


def test_spot_sold_by_hand_while_down_closes_the_carry_and_the_hedge_buys_nothing_back(
        tmp_path: Path) -> None:
    carry_store(tmp_path, D(2), D(2))
    engine = engine_on(tmp_path)
    state = engine.markets[PERP]
    assert (state.carry_side, state.carry_size) == (-1, D(2)) and state.carry_watch.adverse_hours == 3
    stored = stored_legs(engine, engine._store)
    # What reconcile_venue does for a balance of 0: the store is booked down with a recorded adjustment.
    assert state.spot is not None
    position = Position(SPOT)
    position.apply_fill(engine._store.fills(SPOT)[0])
    adjustment = balance_adjustment(position, D(0), 5)
    assert adjustment is not None
    engine._store.record_fill("binance", adjustment)
    engine.on_spot_account_event(adjustment)
    report = {"venue": "binance", "spot_adjustments": {SPOT: {"store": "2", "venue": "0", "adjusted": "2"}}}

    carry = follow_venues(engine, stored, [{"venue": "dydx", "position_mismatches": {}}, report])
    assert carry[PERP] == CarryStart(0, D(0), D(0), D(2))
    assert (state.carry_side, state.carry_size, state.spot.target) == (0, D(0), D(0))
    assert engine.hedges[PERP].required == 0 and engine.hedges[PERP].mismatch(state.spot.position.size) == 0
    assert state.carry_watch == CarryWatch()  # a closed carry counts afresh
    assert state.gate.last_audit_ns == 1  # its first audit is due at once: the perp short is unhedged
    assert engine._store.meta_get(f"hedge:{PERP}") is not None and '"required": "0"' in (
        engine._store.meta_get(f"hedge:{PERP}") or "")
    engine._store.close()

    again = engine_on(tmp_path)  # a restart after that reads the corrected record back
    assert again.markets[PERP].carry_side == 0 and again.hedges[PERP].required == 0
    again._store.close()


def test_a_perp_closed_while_down_keeps_the_carry_and_the_first_audit_is_due(tmp_path: Path) -> None:
    carry_store(tmp_path, D(2), D(2))
    engine = engine_on(tmp_path)
    stored = stored_legs(engine, engine._store)
    # bought back by hand, or liquidated
    buy_back = Fill("p2", 99, PERP, Side.BUY, D(101), D(2), D(0), Liquidity.TAKER, 3)
    engine._store.record_fill("dydx", buy_back)
    engine.on_account_event(buy_back)
    state = engine.markets[PERP]
    assert state.position.size == 0

    state.last_decision = {"target": "-2"}
    with structlog.testing.capture_logs() as logs:
        carry = follow_venues(engine, stored, [{"venue": "dydx", "fills_applied": 1}])
    (event,) = [e for e in logs if e["event"] == "carry_restored"]
    assert event["log_level"] == "warning" and event["perp_off_last_target"] == "2"  # 2 short of it
    assert (event["perp_before"], event["perp"], event["hedge_to_trade"]) == ("-2", "0", "0")
    assert carry[PERP] == CarryStart(-1, D(2), D(2))  # the spot held is the carry: the perp is re-hedged
    assert (state.carry_side, state.carry_size) == (-1, D(2)) and engine.hedges[PERP].required == 2
    assert state.carry_watch.adverse_hours == 3  # the same open carry: its watch goes on
    assert state.gate.last_audit_ns == 1
    engine._store.close()


def test_without_a_hedge_record_the_spot_held_after_reconciliation_is_the_hedge(tmp_path: Path) -> None:
    carry_store(tmp_path, D(2), None, perp=D(3))  # a store from before hedge records were kept
    engine = engine_on(tmp_path)
    stored = stored_legs(engine, engine._store)
    assert stored[PERP].owed is None and engine.hedges[PERP].required == 2  # the store's spot, for now
    late = Fill("s2", 7, SPOT, Side.BUY, D(100), D(1), D(0), Liquidity.TAKER, 3)  # a predecessor's, filled
    engine._store.record_fill("binance", late)  # while down and booked by the reconciliation
    engine.on_spot_account_event(late)

    carry = follow_venues(engine, stored, [{"venue": "binance", "fills_applied": 1}])
    assert carry[PERP] == CarryStart(-1, D(3), D(3))  # not sold back to the store's 2
    assert engine.hedges[PERP].required == 3 and engine.markets[PERP].carry_size == 3
    engine._store.close()


@pytest.mark.parametrize("last", [{"target": "garbage"}, {"target": None}, {"target": "NaN"}, {}, None])
def test_a_last_decision_that_does_not_parse_only_leaves_the_log_without_it(
        tmp_path: Path, last: dict[str, object] | None) -> None:
    carry_store(tmp_path, D(2), D(2))
    engine = engine_on(tmp_path)
    engine.markets[PERP].last_decision = last
    with structlog.testing.capture_logs() as logs:
        follow_venues(engine, stored_legs(engine, engine._store), [])
    (event,) = [e for e in logs if e["event"] == "carry_restored"]
    assert event["perp_off_last_target"] is None and event["log_level"] == "info"  # nothing moved
    engine._store.close()


# ---- while running: the same rule on a spot long booked down to the balance -----------------------

@pytest.mark.parametrize(("owed", "booked", "held", "carry"), [
    (D(2), D(2), D(1), CarryStart(-1, D(1), D(1), D(1))),  # half sold by hand: the carry halves
    (D(2), D(2), D(0), CarryStart(0, D(0), D(0), D(2))),  # all of it: the carry closes
    (D(5), D(5), D("4.995"), None),  # within 1%: a buy's commission, still owed and bought back
    (D("0.5"), D(1), D("0.4"), CarryStart(-1, D("0.4"), D("0.4"), D("0.1"))),  # beyond the hedge first
    (D(2), D(3), D(2), None),  # only spot the hedge did not owe left: the carry is whole
    (D(0), D(2), D(0), None),  # no carry: nothing to shrink
    (D(-1), D(1), D(0), None),  # the mirror carry owes no long
])
def test_a_running_shortfall_shrinks_the_carry_by_the_start_rule(
        owed: D, booked: D, held: D, carry: CarryStart | None) -> None:
    assert carry_after_shortfall(owed, booked, held) == carry


@given(sizes, sizes, sizes)
def test_a_running_shortfall_is_the_start_rule_on_the_booked_down_legs(owed: D, booked: D, held: D) -> None:
    carry = carry_after_shortfall(owed, booked, held)
    start = carry_at_start(Legs(owed, held, max(booked - held, D(0)), booked))
    assert carry == (start if start.left_account else None)
    if carry is not None:
        assert 0 <= carry.owed < owed and carry.left_account <= booked - held
    if booked - held <= booked * D("0.01"):
        assert carry is None


def booked_down(engine: Engine, held: D) -> None:
    """What the running balance check does when the venue holds `held`: the store booked down with a
    recorded adjustment, then the hedge control told."""
    state = engine.markets[PERP]
    assert state.spot is not None
    booked = state.spot.position.size
    adjustment = balance_adjustment(state.spot.position, held, 5)
    assert adjustment is not None
    engine._store.record_fill("binance", adjustment)
    engine.on_spot_account_event(adjustment)
    engine.hedge_control.spot_booked_down(SPOT, booked, held, "run")


def test_spot_sold_by_hand_while_running_shrinks_the_carry_and_the_saved_hedge(tmp_path: Path) -> None:
    carry_store(tmp_path, D(2), D(2))
    engine = engine_on(tmp_path)
    state = engine.markets[PERP]
    assert state.spot is not None and state.gate.last_audit_ns != 1
    with structlog.testing.capture_logs() as logs:
        booked_down(engine, D("0.5"))
    assert (state.carry_side, state.carry_size, state.spot.target) == (-1, D("0.5"), D("0.5"))
    hedge = engine.hedges[PERP]
    assert (hedge.required, hedge.goal, hedge.mismatch(state.spot.position.size)) == (D("0.5"), D("0.5"), 0)
    assert state.carry_watch.adverse_hours == 3  # the same open carry, smaller: its watch goes on
    assert state.gate.last_audit_ns == 1  # the decision that buys the perp back is due at once
    (event,) = [e for e in logs if e["event"] == "carry_left_account"]
    assert event["log_level"] == "warning" and event["stage"] == "run"
    assert (event["carry_size_before"], event["carry_size"], event["spot_left_carry"]) == ("2", "0.5", "1.5")
    assert (event["hedge_before"], event["hedge_owed"], D(event["hedge_to_trade"])) == ("2", "0.5", 0)
    engine._store.close()

    again = engine_on(tmp_path)  # the saved hedge record owes the smaller carry: a restart keeps it
    assert again.hedges[PERP].required == D("0.5") and again.markets[PERP].carry_size == D("0.5")
    again._store.close()


def test_all_spot_gone_while_running_closes_the_carry(tmp_path: Path) -> None:
    carry_store(tmp_path, D(2), D(2))
    engine = engine_on(tmp_path)
    booked_down(engine, D(0))
    state = engine.markets[PERP]
    assert (state.carry_side, state.carry_size) == (0, 0) and engine.hedges[PERP].required == 0
    assert state.carry_watch == CarryWatch()
    engine._store.close()


def test_a_running_shortfall_within_the_tolerance_is_still_owed(tmp_path: Path) -> None:
    carry_store(tmp_path, D(2), D(2))
    engine = engine_on(tmp_path)
    with structlog.testing.capture_logs() as logs:
        booked_down(engine, D("1.99"))  # 0.5%: a commission, the hedge buys it back
    state = engine.markets[PERP]
    assert state.spot is not None and state.spot.position.size == D("1.99")
    assert (state.carry_side, state.carry_size) == (-1, D(2)) and engine.hedges[PERP].required == 2
    assert state.gate.last_audit_ns != 1 and not [e for e in logs if e["event"] == "carry_left_account"]
    engine._store.close()


def test_the_restored_strategy_state_is_logged_once_after_the_venues_carry(tmp_path: Path) -> None:
    carry_store(tmp_path, D(2), D(2))
    with structlog.testing.capture_logs() as logs:
        engine = engine_on(tmp_path)  # a hedged market's carry may still move: not logged yet
        follow_venues(engine, stored_legs(engine, engine._store), [])
    (event,) = [e for e in logs if e["event"] == "strategy_state_restored"]
    assert (event["market"], event["carry_side"], event["adverse_hours"]) == (PERP, -1, 3)
    engine._store.close()
