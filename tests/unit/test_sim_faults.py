"""The one fault vocabulary: simulator scenarios and backtest steps name faults from bot.sim.faults."""

from decimal import Decimal

import pytest

from bot.backtest.scenarios import KINDS, ScenarioError, Step, parse_step
from bot.errors import ConfigError
from bot.sim.faults import (
    BACKTEST_FAULTS,
    SIM_FAULTS,
    BadFrame,
    Fault,
    FrontRun,
    HttpError,
    MarginChange,
    OrderReject,
    PriceGap,
    ScenarioState,
    countdown,
    parse_fault,
)
from bot.sim.scenarios import SCENARIOS, ScenarioScheduler, parse_spec

NS = 1_000_000_000


def test_every_fault_is_modelled_by_the_simulator_or_the_backtest_and_shared_names_by_both() -> None:
    assert set(SCENARIOS) == set(SIM_FAULTS)
    assert set(KINDS) == set(BACKTEST_FAULTS)
    assert set(SIM_FAULTS) | set(BACKTEST_FAULTS) == set(Fault)
    assert set(SIM_FAULTS) & set(BACKTEST_FAULTS) == {
        Fault.CHAIN_HALT, Fault.INDEXER_LAG, Fault.LIQUIDITY_DROUGHT, Fault.PRICE_GAP}


@pytest.mark.parametrize("name", [None, 3, ["chain_halt"], {"x": 1}, "", "CHAIN_HALT", "nope"])
def test_parse_fault_refuses_what_is_not_a_fault_name(name: object) -> None:
    assert parse_fault(name, tuple(Fault)) is None


def test_parse_fault_only_gives_the_allowed_ones() -> None:
    assert parse_fault("crash", BACKTEST_FAULTS) is Fault.CRASH
    assert parse_fault("crash", SIM_FAULTS) is None
    assert parse_fault("ws_drop", SIM_FAULTS) is Fault.WS_DROP


def test_countdown_spends_a_counted_switch() -> None:
    fault = HttpError(429, count=3, retry_after_secs=2)
    seen = []
    while fault is not None:
        seen.append(fault.count)
        fault = countdown(fault)
    assert seen == [3, 2, 1]
    assert countdown(OrderReject(count=0)) is None


def test_scenarios_set_typed_switches_and_end_them() -> None:
    state = ScenarioState()
    sched = ScenarioScheduler(state, 0)
    sched.schedule([parse_spec({"name": "order_reject", "count": 2, "code": 3005}),
                    parse_spec({"name": "front_run", "leave": "0.25", "at_s": 1, "duration_s": 5}),
                    parse_spec({"name": "margin_change", "market": "ETH-USD", "imf": "0.2", "mmf": "0.1",
                                "duration_s": 10}),
                    parse_spec({"name": "price_gap", "pct": 3}),
                    parse_spec({"name": "market_paused", "market": "ETH-USD", "duration_s": 2}),
                    parse_spec({"name": "ws_bad_frame", "kind": "oversized"})])
    sched.tick(0)
    assert state.reject_orders == OrderReject("clob", 3005, 2)
    assert state.margin_fractions == MarginChange("ETH-USD", Decimal("0.2"), Decimal("0.1"))
    assert state.price_gap == PriceGap("BTC-USD", 3.0)
    assert state.market_status == {"PAUSED": "ETH-USD"}
    assert state.ws_inject is BadFrame.OVERSIZED
    assert state.front_run is None
    sched.tick(1 * NS)
    assert state.front_run == FrontRun(Decimal("0.25"), 1)
    sched.tick(2 * NS)
    assert state.market_status == {}
    sched.tick(10 * NS)
    assert state.margin_fractions is None
    assert state.reject_orders is not None  # one-shot: the node spends it, the scheduler leaves it
    assert [(ns // NS, what, str(name)) for ns, what, name in sched.log][-2:] == [
        (2, "end", "market_paused"), (10, "end", "margin_change")]


@pytest.mark.parametrize(("body", "key"), [
    ({"name": ["chain_halt"]}, "scenario.name"),  # unhashable: refused, not a crash
    ({"name": "crash"}, "scenario.name"),  # a backtest kind
    ({"name": "ws_bad_frame", "kind": "nope"}, "scenario.params"),
    ({"name": "front_run", "leave": "x"}, "scenario.params"),
])
def test_bad_simulator_scenarios_name_the_key(body: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_spec(body)
    assert err.value.key == key


def test_a_simulator_scenario_is_not_a_backtest_step_and_the_error_says_so() -> None:
    with pytest.raises(ScenarioError, match=r"steps\[0\]\.kind: unknown kind 'ws_drop' \(a simulator"):
        parse_step({"kind": "ws_drop"}, "steps[0]")
    with pytest.raises(ConfigError, match=r"'crash' \(a backtest step kind\)"):
        parse_spec({"name": "crash"})


def test_backtest_steps_carry_the_fault() -> None:
    assert parse_step({"kind": "chain_halt"}, "s").kind is Fault.CHAIN_HALT
    assert Step("price_gap").kind is Fault.PRICE_GAP
    with pytest.raises(ValueError):
        Step("ws_drop")  # type: ignore[arg-type]
