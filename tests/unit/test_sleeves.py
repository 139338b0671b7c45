from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.config import CarrySettings, StrategySettings
from bot.strategy.sleeves import (
    SleeveInputs,
    carry_economics,
    carry_outlook_adverse,
    carry_sleeve,
    directional_sleeve,
    plan_sleeves,
    vol_provision_sleeve,
)

C = CarrySettings(horizon_hours=72, exit_threshold_bps=Decimal(5), min_persistence_hours=2,
                  exit_confirm_hours=3)
S = StrategySettings()
TAKER = Decimal("0.0005")
BASE = SleeveInputs(
    market="BTC-USD", price=Decimal(60000), spot_price=Decimal(60010), equity_usd=Decimal(10000),
    market_count=2, leverage=Decimal(1), funding_rate_1h=Decimal("0.0002"), persistence_hours=3,
    step_size=Decimal("0.0001"), spot_step_size=Decimal("0.00001"), perp_fee_rate=TAKER,
)


def test_carry_economics_in_bps() -> None:
    econ = carry_economics(Decimal("0.0002"), -1, C, TAKER)
    assert econ.gross_bps == Decimal(144)  # 0.0002 x 72h
    # per trade: perp 5 + spot 10 fees + 2 legs x 3 slippage = 21 bps; open and close
    assert econ.open_cost_bps == econ.close_cost_bps == Decimal(21)
    assert econ.net_open_bps == Decimal(102) and econ.net_hold_bps == Decimal(123)
    assert carry_economics(Decimal("0.0002"), 1, C, TAKER).gross_bps == Decimal(-144)


def test_positive_funding_opens_short_perp_long_spot() -> None:
    t = carry_sleeve(BASE, C, Decimal("0.4"), 0)
    # 10000 / 2 x 0.4 x 1 = 2000 USD at the higher of perp and spot price
    assert t.why == "open" and t.values["side"] == -1
    assert t.perp == Decimal("-0.0333") and t.spot == Decimal("0.0333")
    assert t.perp + t.spot == 0


@pytest.mark.parametrize(
    ("change", "open_side", "why"),
    [
        ({"funding_rate_1h": Decimal("0.00005")}, 0, "below_entry_threshold"),  # 36 - 42 < 20
        ({"persistence_hours": 1}, 0, "not_persistent"),
        ({"spot_price": None}, 0, "no_spot_book"),
        ({"funding_rate_1h": Decimal("-0.0002")}, 0, "spot_short_not_allowed"),
        ({"funding_rate_1h": Decimal(0)}, 0, "no_funding"),
        # held: 0.00005 x 72 = 36 bps - 21 close = 15 >= 5 exit threshold (hysteresis)
        ({"funding_rate_1h": Decimal("0.00005")}, -1, "hold"),
        # adverse outlook, but not for exit_confirm_hours in a row yet: never on one hour
        ({"funding_rate_1h": Decimal("-0.0001"), "adverse_hours": 1}, -1, "hold"),
        ({"funding_rate_1h": Decimal("0.00003"), "adverse_hours": 3}, -1, "carry_decayed"),
        ({"funding_rate_1h": Decimal("-0.0001"), "adverse_hours": 5}, -1, "carry_decayed"),
        ({"spot_price": None}, -1, "hold"),  # a missing hedge book never unwinds blind
    ],
)
def test_carry_entry_exit_table(change: dict, open_side: int, why: str) -> None:  # type: ignore[type-arg]
    t = carry_sleeve(replace(BASE, **change), C, Decimal("0.4"), open_side)
    assert t.why == why
    is_open = why in ("open", "hold")
    assert (t.perp != 0) is is_open and (t.values["side"] != 0) is is_open


def test_negative_funding_with_borrow_allowed_pays_borrow() -> None:
    p = CarrySettings(allow_spot_short=True)
    t = carry_sleeve(replace(BASE, funding_rate_1h=Decimal("-0.0002")), p, Decimal("0.4"), 0)
    assert t.why == "open" and t.perp > 0 > t.spot
    assert Decimal(t.values["borrow_bps"]) > 0


def test_directional_sleeve_is_the_thesis_scaled_by_vol() -> None:
    inp = replace(BASE, operator_target=Decimal(1), funding_rate_1h=Decimal(0))
    assert directional_sleeve(inp, S).perp == Decimal(1)
    t = directional_sleeve(replace(inp, leverage=Decimal("0.6")), S)
    assert t.perp == Decimal("0.6") and t.why == "vol_target"
    short = directional_sleeve(replace(inp, operator_target=Decimal("-0.01"), leverage=Decimal("0.5")), S)
    assert short.perp == Decimal("-0.005")


def test_directional_risk_falls_on_adverse_funding_and_agreeing_flags() -> None:
    inp = replace(BASE, operator_target=Decimal(1))
    # 0.0002/h x 8760 = 175% a year against a long: cut by adverse_funding_cap_factor
    adverse = directional_sleeve(inp, S)
    assert adverse.perp == Decimal("0.5") and adverse.why == "adverse_funding"
    # the same rate favours a short: no cut
    assert directional_sleeve(replace(inp, operator_target=Decimal(-1)), S).perp == Decimal(-1)
    # a trend below adverse_funding_rate_annual (0.00001 x 8760 = 8.8% < 30%) does not cut either
    assert directional_sleeve(replace(inp, funding_rate_1h=Decimal("0.00001")), S).perp == Decimal(1)
    flags_cut = S.model_copy(update={"flag_risk_factor": Decimal("0.5")})
    flagged = directional_sleeve(replace(inp, funding_rate_1h=Decimal(0), flags_agree=True), flags_cut)
    assert flagged.perp == Decimal("0.5") and flagged.why == "flags"


def test_funding_that_cools_after_a_fall_does_not_re_risk_the_thesis_below_its_trend() -> None:
    gated = S.model_copy(update={"rerisk_on_trend": True})
    # the funding cut held the long at 0.5 of its thesis; funding has cooled, price is below trend
    inp = replace(BASE, operator_target=Decimal(1), funding_rate_1h=Decimal(0), thesis_held=Decimal("0.5"),
                  price_trend=70000.0)
    held = directional_sleeve(inp, gated)
    assert held.perp == Decimal("0.5") and held.why == "rerisk_gate"
    assert directional_sleeve(inp, S).perp == Decimal(1)  # the gate off: re-risked at once
    assert directional_sleeve(replace(inp, price_trend=55000.0), gated).perp == Decimal(1)  # above it


@given(lev=st.decimals(0, 1, places=2), held=st.none() | st.decimals(-1, 1, places=4),
       trend=st.none() | st.floats(30000, 90000), target=st.decimals(-2, 2, places=3).filter(bool),
       rate=st.decimals(Decimal("-0.0002"), Decimal("0.0002"), places=6))
def test_the_gate_never_holds_more_than_the_ungated_thesis_property(lev, held, trend, target, rate) -> None:  # type: ignore[no-untyped-def]
    inp = replace(BASE, operator_target=target, leverage=lev, funding_rate_1h=rate, thesis_held=held,
                  price_trend=trend)
    gated = directional_sleeve(inp, S.model_copy(update={"rerisk_on_trend": True}))
    free = directional_sleeve(inp, S)
    assert abs(gated.perp) <= abs(free.perp)
    assert gated.perp * target >= 0  # never the other side
    if trend is None or held is None or (Decimal(repr(trend)) - BASE.price) * target <= 0:
        assert gated.perp == free.perp  # at or beyond the trend, or nothing held: no gate


def test_vol_provision_is_a_hook() -> None:
    assert vol_provision_sleeve(BASE, Decimal("0.1")).perp == 0


def test_plan_sleeves_sums_perp_and_spot() -> None:
    p = S.model_copy(update={"carry": C, "carry_budget": Decimal("0.4")})
    book = plan_sleeves(replace(BASE, operator_target=Decimal("-0.02")), p, 0)
    assert book.perp == Decimal("-0.02") + Decimal("-0.0333")
    assert book.spot == Decimal("0.0333") and book.carry_side == -1
    assert set(book.as_dict()) == {"directional", "carry", "vol_provision"}


rates = st.decimals(Decimal("-0.002"), Decimal("0.002"), places=7)


@given(rate=rates, persistence=st.integers(0, 10), entry=st.decimals(0, 300, places=1),
       fee=st.decimals(0, Decimal("0.001"), places=5), slip=st.decimals(0, 20, places=1),
       allow_short=st.booleans())
def test_carry_never_opens_below_threshold_property(rate, persistence, entry, fee, slip, allow_short) -> None:  # type: ignore[no-untyped-def]
    p = CarrySettings(entry_threshold_bps=entry, expected_slippage_bps=slip, spot_taker_fee_rate=fee,
                      allow_spot_short=allow_short)
    p = p.model_copy(update={"min_persistence_hours": 2})
    inp = replace(BASE, funding_rate_1h=rate, persistence_hours=persistence)
    t = carry_sleeve(inp, p, Decimal("0.4"), 0)
    side = -1 if rate > 0 else 1
    econ = carry_economics(rate, side, p, TAKER)
    if econ.net_open_bps < entry or persistence < p.min_persistence_hours:
        assert t.perp == 0 and t.spot == 0 and t.values["side"] == 0
    if t.perp:
        assert t.perp == -t.spot  # always delta-neutral
        assert (t.perp < 0) == (rate > 0)  # on the side that receives


@given(rate=rates, persistence=st.integers(0, 10), open_side=st.sampled_from([-1, 0, 1]),
       target=st.decimals(-2, 2, places=4), lev=st.decimals(Decimal("0.1"), 3, places=2))
def test_same_inputs_same_sleeves_property(rate, persistence, open_side, target, lev) -> None:  # type: ignore[no-untyped-def]
    inp = replace(BASE, funding_rate_1h=rate, persistence_hours=persistence, operator_target=target,
                  leverage=lev)
    assert plan_sleeves(inp, S, open_side) == plan_sleeves(inp, S, open_side)


def test_an_open_carry_keeps_its_base_size_whatever_the_price() -> None:
    opened = carry_sleeve(BASE, C, Decimal("0.4"), 0)
    size = abs(opened.perp)
    doubled = replace(BASE, price=Decimal(120000), spot_price=Decimal(120010), carry_size=size)
    held = carry_sleeve(doubled, C, Decimal("0.4"), -1)
    assert held.why == "hold" and held.perp == -size and held.spot == size
    # a new carry after a close is sized afresh from the notional
    fresh = carry_sleeve(replace(doubled, carry_size=Decimal(0)), C, Decimal("0.4"), 0)
    assert abs(fresh.perp) < size


X = CarrySettings(horizon_hours=72, exit_threshold_bps=Decimal(-20))


@pytest.mark.parametrize(
    ("rate", "adverse"),
    [
        # staying vs leaving and coming back: gross + 21 close + 21 re-open against -20
        (Decimal("0.0002"), False),
        (Decimal(0), False),
        (Decimal("-0.00005"), False),  # -36 + 42 = 6: cheaper to sit through than to trade around
        (Decimal("-0.00008"), False),  # -57.6 + 42 = -15.6 >= -20
        (Decimal("-0.0001"), True),  # -72 + 42 = -30 < -20
    ],
)
def test_exit_weighs_staying_against_a_round_trip(rate: Decimal, adverse: bool) -> None:
    inp = replace(BASE, funding_rate_1h=rate)
    assert carry_outlook_adverse(inp, X, -1) is adverse
    assert carry_outlook_adverse(inp, X, 0) is False  # a closed carry has no outlook to watch
    econ = carry_economics(rate, -1, X, TAKER)
    assert econ.net_stay_bps == econ.gross_bps + econ.open_cost_bps + econ.close_cost_bps


@given(rate=rates, entry=st.decimals(0, 300, places=1), exit_=st.decimals(-300, 0, places=1),
       fee=st.decimals(0, Decimal("0.001"), places=5), slip=st.decimals(0, 20, places=1),
       horizon=st.integers(1, 5000))
def test_a_rate_that_opens_never_closes_property(rate, entry, exit_, fee, slip, horizon) -> None:  # type: ignore[no-untyped-def]
    """Hysteresis in level: the entry and exit lines are at least a round trip apart, so no trend
    both opens a carry and counts against it (no churn on one trend)."""
    p = CarrySettings(entry_threshold_bps=entry, exit_threshold_bps=exit_, expected_slippage_bps=slip,
                      spot_taker_fee_rate=fee, horizon_hours=horizon)
    inp = replace(BASE, funding_rate_1h=rate)
    opened = carry_sleeve(inp, p, Decimal("0.4"), 0)
    if opened.values["side"]:
        assert not carry_outlook_adverse(inp, p, opened.values["side"])


def test_the_entry_and_exit_trends_must_agree_to_change_state() -> None:
    """The entry trend (fast, or the median level) may be rich while the exit trend is poor. A
    closed carry opens only when the exit trend is also a round trip above its exit line (else
    the exit's count could start at once: a round trip for nothing); an open one closes only
    when the entry trend would not open it again at once."""
    rich_entry = replace(BASE, entry_rate_1h=Decimal("0.0002"))
    # X: exit line at gross + 42 < -20 bps over 72 h; the entry needs gross >= -20 on the exit trend
    for rate, why in (("-0.0001", "exit_trend_adverse"), ("-0.00005", "exit_trend_adverse"),
                      ("-0.00002", "open")):
        inp = replace(rich_entry, funding_rate_1h=Decimal(rate))
        assert carry_sleeve(inp, X, Decimal("0.4"), 0).why == why
    adverse_exit = replace(BASE, funding_rate_1h=Decimal("-0.0001"))
    assert carry_outlook_adverse(adverse_exit, X, -1)  # no entry trend: the exit trend decides
    assert not carry_outlook_adverse(replace(adverse_exit, entry_rate_1h=Decimal("0.0002")), X, -1)
    assert carry_outlook_adverse(replace(adverse_exit, entry_rate_1h=Decimal("0.00005")), X, -1)


@given(entry_rate=rates, rate=rates, entry=st.decimals(0, 300, places=1),
       exit_=st.decimals(-300, 0, places=1), horizon=st.integers(1, 5000))
def test_an_opened_carry_is_never_adverse_property(entry_rate, rate, entry, exit_, horizon) -> None:  # type: ignore[no-untyped-def]
    """Whatever the two trends say, a carry the sleeve opens is not counted against at once, and
    one it would count against is never opened: no state flips back on the same inputs."""
    p = CarrySettings(entry_threshold_bps=entry, exit_threshold_bps=exit_, horizon_hours=horizon)
    inp = replace(BASE, funding_rate_1h=rate, entry_rate_1h=entry_rate)
    side = carry_sleeve(inp, p, Decimal("0.4"), 0).values["side"]
    if side:
        assert not carry_outlook_adverse(inp, p, side)
        assert carry_economics(entry_rate, side, p, TAKER).net_open_bps >= entry
    for open_side in (-1, 1):
        if carry_outlook_adverse(inp, p, open_side):
            assert carry_sleeve(inp, p, Decimal("0.4"), 0).values["side"] != open_side


def test_the_engine_counts_an_adverse_hour_only_when_the_entry_trend_agrees() -> None:
    """`market_targets` keeps the exit's hour count (the watch): a week of negative funding under
    a level that would reopen the carry at once is sat through; under a poor level it counts."""
    from bot.strategy.carry import CarryWatch
    from bot.strategy.decide import MarketReadings, market_targets

    p = StrategySettings(carry=X)
    hour = 3600 * 10**9

    def watch_after(entry: str) -> int:
        watch = CarryWatch()
        for h in range(3):
            r = MarketReadings(
                market="BTC-USD", now_ns=h * hour, price=Decimal(60000), spot_price=Decimal(60010),
                equity_usd=Decimal(10000), peak_equity_usd=Decimal(10000), market_count=2,
                sizing_vol=0.5, funding_trend_1h=Decimal("-0.0001"), persistence_hours=3,
                step_size=Decimal("0.0001"), spot_step_size=Decimal("0.00001"), perp_fee_rate=TAKER,
                operator_target=Decimal(0), flags_agree=False, entry_trend_1h=Decimal(entry))
            watch = market_targets(r, p, -1, watch, carry_size=Decimal("0.05")).watch
        return watch.adverse_hours

    assert watch_after("0.0002") == 0
    assert watch_after("0.00005") == 3
