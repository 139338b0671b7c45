"""The evaluation's short cuts give exactly what the long way gives (bot.decisions, bot.strategy, bot.rules).

Each bar's evaluation skips work whose answer is known without it: the band when a leg is at
target, closing or flipping; the status restriction of an ACTIVE market; a gate state that did
not move; the answers that carry no reading (no news, vol warming up, the vol-provision sleeve)
are shared objects. These tests compare each short cut with the long way, to the Decimal
exponent (the decision record prints them), and check the shared objects stay untouched.
"""

from __future__ import annotations

from decimal import Decimal as D

from hypothesis import given
from hypothesis import strategies as st

from bot.config import CarrySettings, RuleSettings, StrategySettings
from bot.domain import ZERO, MarketStatusKind
from bot.rules.flags import Flag, FlagInputs, Flags, evaluate_flags
from bot.rules.gate import GateState, evaluate_gate
from bot.strategy.band import BandCheck, BandInputs, band_verdict, check_band
from bot.strategy.carry import CarryWatch
from bot.strategy.decide import MarketReadings, audit_should_trade, market_targets
from bot.strategy.market_status import restrict_target, unrestricted
from bot.strategy.sleeves import SleeveInputs, carry_outlook_adverse, plan_sleeves, vol_provision_sleeve

RULES = RuleSettings()
sizes = st.decimals(-3, 3, places=4)
prices = st.decimals(D(1), D(100_000), places=2)
rates = st.decimals(D("-0.001"), D("0.001"), places=8)
# (a vol whose square underflows to 0.0, ~1e-160, divides by zero in band_usd on either way)
vols = st.one_of(st.none(), st.just(0.0), st.floats(1e-6, 4.0))
sides = st.sampled_from((-1, 0, 1))


@given(pos=sizes, target=sizes, price=prices, equity=st.decimals(-100, 10**6, places=2), vol=vols,
       cost=st.decimals(0, D("0.01"), places=5), min_size=st.decimals(D("0.0001"), D("0.01"), places=4))
def test_the_audit_band_short_cut_is_check_band_property(pos, target, price, equity, vol, cost,  # type: ignore[no-untyped-def]
                                                         min_size) -> None:
    fast = audit_should_trade(pos, target, price, equity, vol, cost, min_size, RULES)
    full = check_band(BandInputs(position=pos, target=target, price=price, equity_usd=equity, cost_rate=cost,
                                 vol_annual=vol, horizon_hours=RULES.band_horizon_hours,
                                 risk_aversion=RULES.band_risk_aversion, max_fraction=RULES.drift_tolerance,
                                 min_size=min_size))
    assert repr(fast) == repr(full)


def test_the_plain_band_verdicts_are_the_ones_check_band_gave() -> None:
    """At target, closing (at or above the minimum order) and a flip need no band; the gap is in USD."""
    p, m = D(100), D("0.01")
    assert band_verdict(D("0.5"), D("0.5"), p, m) == BandCheck(False, "at_target", ZERO, ZERO)
    assert band_verdict(D("-0.01"), ZERO, p, m) == BandCheck(True, "closing", D("1.00"), ZERO)
    assert band_verdict(D("0.009"), ZERO, p, m) == BandCheck(False, "inside", D("0.900"), ZERO)
    assert band_verdict(D("0.2"), D("-0.1"), p, m) == BandCheck(True, "flip", D("30.0"), ZERO)
    assert band_verdict(ZERO, D("0.1"), p, m) is None  # opening: the band decides
    assert band_verdict(D("0.1"), D("0.2"), p, m) is None


@given(status=st.sampled_from(list(MarketStatusKind)), desired=sizes, position=sizes)
def test_an_unrestricted_status_lets_every_target_through_property(status, desired, position) -> None:  # type: ignore[no-untyped-def]
    if unrestricted(status):
        assert restrict_target(status, desired, position) == (desired, "")
    assert unrestricted(status) is (status is MarketStatusKind.ACTIVE)


def readings(price: D, rate: D, entry: D, vol: float | None, operator: D, agree: bool) -> MarketReadings:
    return MarketReadings(
        market="BTC-USD", now_ns=10**18, price=price, spot_price=price + 1, equity_usd=D(10_000),
        peak_equity_usd=D(11_000), market_count=2, sizing_vol=vol, funding_trend_1h=rate,
        persistence_hours=5, step_size=D("0.0001"), spot_step_size=D("0.00001"), perp_fee_rate=D("0.0005"),
        operator_target=operator, flags_agree=agree, entry_trend_1h=entry, spot_fee_rate=D("0.001"),
        baseline_vol=0.5, price_trend=float(price) * 0.9)


STRATEGY = StrategySettings(carry_budget=D("0.5"), directional_budget=D("0.5"),
                            carry=CarrySettings(enabled=True, horizon_hours=72, exit_confirm_hours=2))


@given(price=prices, rate=rates, entry=rates, vol=vols, operator=sizes, agree=st.booleans(), side=sides,
       adverse=st.integers(0, 3), carry_size=st.decimals(0, 2, places=4))
def test_targets_of_an_active_market_need_no_restriction_property(price, rate, entry, vol, operator,  # type: ignore[no-untyped-def]
                                                                  agree, side, adverse, carry_size) -> None:
    r = readings(price, rate, entry, vol, operator, agree)
    watch = CarryWatch(adverse, 0)
    plain = market_targets(r, STRATEGY, side, watch, carry_size=carry_size)
    restricted = market_targets(r, STRATEGY, side, watch, carry_size=carry_size,
                                restrict=lambda d: restrict_target(MarketStatusKind.ACTIVE, d, ZERO),
                                held_size=lambda t: t.size)
    assert repr(plain) == repr(restricted)


@given(price=prices, rate=rates, vol=vols, side=sides)
def test_the_carry_watch_counts_the_outlook_the_sleeve_inputs_give_property(price, rate, vol, side) -> None:  # type: ignore[no-untyped-def]
    """market_targets counts adverse hours before it builds the sleeves' inputs: the count must follow
    `carry_outlook_adverse` on those inputs."""
    r = readings(price, rate, rate, vol, ZERO, False)
    out = market_targets(r, STRATEGY, side, CarryWatch(1, 0), carry_size=D(1))
    inp = SleeveInputs(market=r.market, price=r.price, spot_price=r.spot_price, equity_usd=r.equity_usd,
                       market_count=r.market_count, leverage=D(1), funding_rate_1h=r.funding_trend_1h,
                       persistence_hours=r.persistence_hours, step_size=r.step_size,
                       spot_step_size=r.spot_step_size, perp_fee_rate=r.perp_fee_rate,
                       spot_fee_rate=r.spot_fee_rate)
    adverse = carry_outlook_adverse(inp, STRATEGY.carry, side)
    assert out.watch.adverse_hours == (0 if not side else (2 if adverse else 0))


@given(price=prices, rate=rates, entry=rates, operator=sizes, side=sides, agree=st.booleans())
def test_the_sleeves_sum_as_sum_does_property(price, rate, entry, operator, side, agree) -> None:  # type: ignore[no-untyped-def]
    r = readings(price, rate, entry, 0.6, operator, agree)
    inp = SleeveInputs(market=r.market, price=r.price, spot_price=r.spot_price, equity_usd=r.equity_usd,
                       market_count=r.market_count, leverage=D("0.7"), funding_rate_1h=rate,
                       persistence_hours=5,
                       step_size=r.step_size, spot_step_size=r.spot_step_size, perp_fee_rate=r.perp_fee_rate,
                       operator_target=operator, carry_size=D("0.5"), entry_rate_1h=entry, flags_agree=agree)
    book = plan_sleeves(inp, STRATEGY, side)
    assert str(book.perp) == str(sum((t.perp for t in book.targets), ZERO))
    assert str(book.spot) == str(sum((t.spot for t in book.targets), ZERO))


def flags(tripped: int) -> Flags:
    names = ("funding", "liquidity", "volatility", "news")
    return Flags(*(Flag(n, i < tripped) for i, n in enumerate(names)))


@given(tripped=st.integers(0, 4), was_over=st.booleans(),
       last_flag=st.one_of(st.none(), st.integers(0, 10**10)),
       last_audit=st.integers(0, 10**13), now=st.integers(0, 10**13), drifted=st.booleans())
def test_the_gate_state_moves_only_as_before_property(tripped, was_over, last_flag, last_audit, now,  # type: ignore[no-untyped-def]
                                                      drifted) -> None:
    state = GateState(was_over, last_flag, last_audit)
    out = evaluate_gate(flags(tripped), state, now, min_flags=2, debounce_secs=D(1),
                        audit_interval_secs=3600.0, drifted=drifted)
    over = tripped >= 2
    if not out.act and out.reason == "" and now - last_audit < 3600 * 10**9:
        assert out.state == GateState(over, last_flag, last_audit)
        assert (out.state is state) is (was_over == over)


def test_the_shared_answers_stay_untouched() -> None:
    inp = FlagInputs("BTC-USD", ZERO, D(60000), ZERO, D(1), D(10), None, D(1), None, None)
    seen = evaluate_flags(inp, RULES)
    record = seen.as_dict()
    record["news"]["why"], record["volatility"]["extra"] = "changed", "x"
    again = evaluate_flags(inp, RULES)
    assert again.news is seen.news and again.volatility is seen.volatility  # shared, never rebuilt
    assert again.as_dict()["news"] == {"tripped": False, "why": ""}
    assert again.as_dict()["volatility"] == {"tripped": False, "why": "warming_up"}
    sleeve = vol_provision_sleeve(None, D("0.1"))  # type: ignore[arg-type]
    sleeve.as_dict()["why"] = "changed"
    assert sleeve.values == {} and vol_provision_sleeve(None, D("0.1")).why == "not_implemented"  # type: ignore[arg-type]
    assert vol_provision_sleeve(None, ZERO).why == "no_budget"  # type: ignore[arg-type]
