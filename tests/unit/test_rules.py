from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.config import RuleSettings
from bot.rules.estimators import EwmaVol, FundingForecast, RollingMedian
from bot.rules.flags import Flag, FlagInputs, evaluate_flags
from bot.rules.gate import GateState, evaluate_gate, in_band

P = RuleSettings()
SEC = 1_000_000_000
CALM = FlagInputs(
    market="BTC-USD", position_size=Decimal("0.1"), mark_price=Decimal(60000),
    funding_rate_1h=Decimal("0.00001"), intended_size=Decimal("0.01"), depth_size=Decimal(10),
    depth_median=Decimal(10), spread_bps=Decimal(1), vol_short=0.5, vol_long=0.5,
)
TRIPS = {
    "funding": {"funding_rate_1h": Decimal("0.0005")},
    "liquidity": {"spread_bps": Decimal(40)},
    "volatility": {"vol_short": 2.5},
    "news": {"news": ("FOMC",)},
}


def test_calm_market_trips_nothing() -> None:
    assert evaluate_flags(CALM, P).tripped == ()


@pytest.mark.parametrize("name", list(TRIPS))
def test_each_flag_trips_alone(name: str) -> None:
    flags = evaluate_flags(replace(CALM, **TRIPS[name]), P)
    assert flags.tripped == (name,)


def test_funding_cost_over_budget_trips() -> None:
    # long 10 BTC at 60k paying 0.00009/h for 8h = 432 USD > 50 USD budget
    inp = replace(CALM, position_size=Decimal(10), funding_rate_1h=Decimal("0.00009"))
    flag = evaluate_flags(inp, P).funding
    assert flag.tripped and flag.why == "cost_over_budget"


def test_liquidity_thin_depth_against_order_size() -> None:
    flag = evaluate_flags(replace(CALM, intended_size=Decimal(5)), P).liquidity
    assert flag.tripped and flag.why == "depth_below_order_multiple"


def test_liquidity_depth_drop_against_median() -> None:
    flag = evaluate_flags(replace(CALM, depth_size=Decimal(4)), P).liquidity
    assert flag.tripped and flag.why == "depth_drop"


def test_volatility_regime_ratio() -> None:
    flag = evaluate_flags(replace(CALM, vol_short=0.9, vol_long=0.3), P).volatility
    assert flag.tripped and flag.why == "regime_shift"


def test_hysteresis_holds_a_tripped_flag_until_clearly_back() -> None:
    calm = replace(CALM, vol_long=1.0)
    tripped = evaluate_flags(replace(calm, vol_short=1.3), P)
    assert "volatility" in tripped.tripped
    # just under the 1.2 threshold: still tripped because it was tripped
    still = evaluate_flags(replace(calm, vol_short=1.1), P, tripped)
    assert "volatility" in still.tripped
    # a fresh evaluation at the same value does not trip
    assert "volatility" not in evaluate_flags(replace(calm, vol_short=1.1), P).tripped
    cleared = evaluate_flags(replace(calm, vol_short=0.9), P, still)
    assert "volatility" not in cleared.tripped


def _flags(n: int):  # type: ignore[no-untyped-def]
    inp = CALM
    for name in list(TRIPS)[:n]:
        inp = replace(inp, **TRIPS[name])
    return evaluate_flags(inp, P)


GATE = {"min_flags": 2, "debounce_secs": Decimal(1), "audit_interval_secs": 3600.0}


@pytest.mark.parametrize(("n", "acts"), [(0, False), (1, False), (2, True), (3, True), (4, True)])
def test_gate_acts_on_two_of_four(n: int, acts: bool) -> None:
    state = GateState(last_audit_ns=100 * SEC)
    decision = evaluate_gate(_flags(n), state, 101 * SEC, **GATE)
    assert decision.act is acts
    assert decision.reason == ("flags" if acts else "")


def test_gate_fires_once_per_burst() -> None:
    state = GateState(last_audit_ns=100 * SEC)
    first = evaluate_gate(_flags(2), state, 101 * SEC, **GATE)
    second = evaluate_gate(_flags(3), first.state, 102 * SEC, **GATE)
    assert first.act and not second.act
    calm = evaluate_gate(_flags(0), second.state, 103 * SEC, **GATE)
    again = evaluate_gate(_flags(2), calm.state, 104 * SEC, **GATE)
    assert again.act


def test_gate_debounces_a_flapping_edge() -> None:
    state = GateState(last_audit_ns=100 * SEC)
    first = evaluate_gate(_flags(2), state, 101 * SEC, **GATE)
    calm = evaluate_gate(_flags(0), first.state, 101 * SEC + 100, **GATE)
    bounce = evaluate_gate(_flags(2), calm.state, 101 * SEC + 200, **GATE)
    assert first.act and not bounce.act


@pytest.mark.parametrize(("drifted", "acts"), [(False, False), (True, True)])
def test_audit_acts_only_outside_band(drifted: bool, acts: bool) -> None:
    state = GateState(last_audit_ns=1)
    decision = evaluate_gate(_flags(1), state, 3601 * SEC + 1, drifted=drifted, **GATE)
    assert decision.act is acts
    assert decision.state.last_audit_ns == 3601 * SEC + 1
    not_due = evaluate_gate(_flags(1), decision.state, 3602 * SEC, drifted=True, **GATE)
    assert not not_due.act


def test_in_band() -> None:
    assert in_band(Decimal("0.95"), Decimal(1), Decimal("0.1"), Decimal("0.001"))
    assert not in_band(Decimal("0.85"), Decimal(1), Decimal("0.1"), Decimal("0.001"))
    assert in_band(Decimal(0), Decimal("0.0005"), Decimal("0.1"), Decimal("0.001"))


@given(st.lists(st.sampled_from(list(TRIPS)), unique=True), st.integers(0, 10**12))
def test_gate_never_acts_on_fewer_than_two_flags_property(names: list[str], now: int) -> None:
    inp = CALM
    for name in names:
        inp = replace(inp, **TRIPS[name])
    flags = evaluate_flags(inp, P)
    decision = evaluate_gate(flags, GateState(last_audit_ns=now), now, **GATE)
    assert decision.act is (len(names) >= 2)


def test_ewma_vol_tracks_scale() -> None:
    import math
    import random

    rng = random.Random(1)
    vol = EwmaVol(half_life_secs=300)
    price = 100.0
    for i in range(5000):
        price *= math.exp(rng.gauss(0, 0.5 / math.sqrt(365 * 24 * 3600)))
        vol.update(Decimal(repr(price)), i * SEC)
    assert vol.annualised is not None and 0.4 < vol.annualised < 0.6


def test_rolling_median_window() -> None:
    med = RollingMedian(3)
    for v in (5, 1, 9, 7):
        med.add(Decimal(v))
    assert med.median == Decimal(7)  # window is 1, 9, 7


def test_funding_forecast_blends_and_counts_persistence() -> None:
    fc = FundingForecast(realised_weight=Decimal("0.5"))
    fc.on_predicted(Decimal("0.0002"))
    assert fc.rate_1h == Decimal("0.0002")
    for _ in range(3):
        fc.on_realised(Decimal("0.0001"))
    assert fc.same_sign_streak == 3
    assert fc.rate_1h == Decimal("0.00015")


# ---- hysteresis edges, table-driven: (inputs change, was tripped, expected) -----------------
# Thresholds with defaults: vol 1.2 (clears below 0.96), spread 15 bps (clears below 12),
# harvest 0.0001/h (clears below 0.00008).
EDGES = [
    ("volatility", {"vol_short": 1.2}, False, False),  # at the level: not over it
    ("volatility", {"vol_short": 1.21}, False, True),
    ("volatility", {"vol_short": 1.0}, True, True),  # back under the level, above the clear line
    ("volatility", {"vol_short": 0.95}, True, False),
    ("liquidity", {"spread_bps": Decimal(15)}, False, False),
    ("liquidity", {"spread_bps": Decimal("15.1")}, False, True),
    ("liquidity", {"spread_bps": Decimal(13)}, True, True),
    ("liquidity", {"spread_bps": Decimal(11)}, True, False),
    ("funding", {"funding_rate_1h": Decimal("0.0001")}, False, False),
    ("funding", {"funding_rate_1h": Decimal("-0.00011")}, False, True),
    ("funding", {"funding_rate_1h": Decimal("0.00009")}, True, True),
    ("funding", {"funding_rate_1h": Decimal("0.00007")}, True, False),
    ("news", {"news": ("FOMC",)}, False, True),
    ("news", {"news": ()}, True, False),  # news has no hysteresis: its items carry their windows
]


@pytest.mark.parametrize(("name", "change", "was", "expected"), EDGES)
def test_hysteresis_edges(name: str, change: dict, was: bool, expected: bool) -> None:  # type: ignore[type-arg]
    base = replace(CALM, vol_long=1.0, position_size=Decimal(0))
    previous = evaluate_flags(replace(base, **TRIPS[name]), P) if was else None
    assert previous is None or name in previous.tripped
    flags = evaluate_flags(replace(base, **change), P, previous)
    assert (name in flags.tripped) is expected
    assert getattr(flags, name).as_dict()["tripped"] is expected


def test_funding_flag_counts_the_target_position_too() -> None:
    # flat now, but the target is a 10 BTC long paying 0.00009/h: 432 USD over 8h > 50 USD
    inp = replace(CALM, position_size=Decimal(0), target_size=Decimal(10),
                  funding_rate_1h=Decimal("0.00009"))
    flag = evaluate_flags(inp, P).funding
    assert flag.tripped and flag.why == "cost_over_budget"
    assert flag.values["expected_cost_usd"] == Decimal("432.00")
    # a short target receives: no cost
    assert not evaluate_flags(replace(inp, target_size=Decimal(-10)), P).funding.tripped


def test_flags_report_the_numbers_behind_them() -> None:
    flags = evaluate_flags(replace(CALM, vol_short=0.9, vol_long=0.3), P).as_dict()
    assert flags["volatility"]["vol_short"] == "0.9" and flags["volatility"]["ratio"] == "3.00"
    assert flags["liquidity"]["depth"] == "10" and "spread_bps" in flags["liquidity"]
    assert flags["funding"]["rate_1h"] == "0.00001"


@pytest.mark.parametrize(("n", "acts"), [(0, False), (1, False), (2, True), (3, True), (4, True)])
def test_gate_with_min_flags_three(n: int, acts: bool) -> None:
    decision = evaluate_gate(_flags(n), GateState(last_audit_ns=100 * SEC), 101 * SEC,
                             **{**GATE, "min_flags": 3})
    assert decision.act is (n >= 3)


def test_one_burst_of_many_events_gives_one_decision() -> None:
    state = GateState(last_audit_ns=100 * SEC)
    acted = 0
    for i in range(200):  # 200 evaluations, flags flapping between 2 and 4 tripped
        d = evaluate_gate(_flags(2 + i % 3), state, 101 * SEC + i * 1_000_000, **GATE)
        acted += d.act
        state = d.state
    assert acted == 1


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 5 * SEC), st.booleans()), max_size=40))
def test_same_inputs_same_gate_decisions_property(steps: list[tuple[int, int, bool]]) -> None:
    def run() -> list[tuple[bool, str]]:
        state, now, out = GateState(), 0, []
        for n, dt, drifted in steps:
            now += dt
            d = evaluate_gate(_flags(n), state, now, drifted=drifted, **GATE)
            state = d.state
            out.append((d.act, d.reason))
        return out

    assert run() == run()


def test_funding_forecast_settles_hours_from_predictions() -> None:
    hour = 3600 * SEC
    fc = FundingForecast()
    fc.on_predicted(Decimal("0.0001"), 10 * hour + 5)
    fc.on_predicted(Decimal("0.0002"), 10 * hour + 1800 * SEC)  # still the same hour
    assert fc.hours_seen == 0 and fc.rate_1h == Decimal("0.0002")
    fc.on_predicted(Decimal("0.00005"), 11 * hour + 1)  # hour 10 settles at its last prediction
    assert fc.hours_seen == 1 and fc.last_realised == Decimal("0.0002")
    assert fc.rate_1h == Decimal("0.000125")  # 0.5 x 0.0002 + 0.5 x 0.00005
    fc.on_realised(Decimal("0.0003"), 10)  # hour 10 again (e.g. a venue report): not counted twice
    assert fc.hours_seen == 1
    fc.on_predicted(Decimal("0.0001"), 12 * hour + 1)
    assert fc.persistence_hours == 2
    fc.on_predicted(Decimal("-0.0004"), 13 * hour + 1)  # a negative prediction
    assert fc.persistence_hours == 0  # the forecast's sign no longer matches the settled hours


def test_flag_values_are_built_when_read_and_compare_as_given() -> None:
    flags = evaluate_flags(replace(CALM, vol_short=0.9, vol_long=0.3, position_size=Decimal(2)), P)
    for flag in flags.all():
        given_values = Flag(flag.name, flag.tripped, flag.why, dict(flag.values))
        assert flag == given_values and repr(flag) == repr(given_values)
        assert flag.as_dict() == given_values.as_dict()
    assert flags.funding.values == {"rate_1h": Decimal("0.00001"), "expected_cost_usd": Decimal("9.60"),
                                    "persistence_hours": 0}
    assert flags.volatility.values == {"vol_short": Decimal("0.9"), "ratio": Decimal("3.00")}
    assert flags.liquidity.values == {"depth": Decimal(10), "spread_bps": Decimal("1.00"),
                                      "depth_median": Decimal(10)}
    assert Flag("news", False) == Flag("news", False, "", {}) != Flag("news", True)
