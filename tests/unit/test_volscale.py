import math
import random
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from bot.rules.estimators import EwmaVol, seed_vol
from bot.strategy.volscale import SizingVol, stretch_factor, thesis_scale, trend_of

NS_H = 3600 * 10**9
D = Decimal


def test_thesis_is_held_at_the_cap_while_vol_is_normal_and_cut_above_its_norm() -> None:
    # normal vol (at or under its baseline), under the absolute ceiling: the cap
    assert thesis_scale(D("0.6"), 0.5, 0.5, D("0.6")) == D("0.6")
    assert thesis_scale(D("0.6"), 0.4, 0.5, D("0.6")) == D("0.6")
    # vol twice its norm: half the cap
    assert thesis_scale(D("0.6"), 0.5, 0.25, D("0.6")) == D("0.3")
    # a regime wild throughout (the baseline caught up): the absolute ceiling 0.6 / 1.2
    assert thesis_scale(D("0.6"), 1.2, 1.2, D("0.6")) == D("0.5")
    # unknown vol: the cap; no baseline: absolute targeting alone
    assert thesis_scale(D("0.3"), None, None, D("0.6")) == D("0.6")
    assert thesis_scale(D("0.3"), 0.6, None, D("1")) == D("0.5")


@given(tv=st.decimals(D("0.05"), 3, places=2), vol=st.floats(0.01, 5), base=st.none() | st.floats(0.01, 5),
       cap=st.decimals(D("0.01"), 1, places=2))
def test_scale_never_exceeds_the_cap_nor_the_vol_ceiling_property(tv, vol, base, cap) -> None:  # type: ignore[no-untyped-def]
    s = thesis_scale(tv, vol, base, cap)
    assert 0 <= s <= cap
    assert s <= tv / D(repr(vol))
    # more vol never means more of the thesis
    assert thesis_scale(tv, vol * 1.5, base, cap) <= s


def test_sizing_vol_keeps_its_baseline_and_seeds_as_one() -> None:
    rnd = random.Random(2)
    price, closes = 50000.0, []
    for h in range(24 * 60):
        sigma = 0.4 if h < 24 * 50 else 1.6  # calm for 50 days, then four times wilder
        price *= math.exp(rnd.gauss(0, sigma / math.sqrt(8760)))
        closes.append((h * NS_H, D(repr(round(price, 2)))))
    vol = SizingVol(3, 30)
    seed_vol(vol, closes)
    plain = EwmaVol(3 * 86400, 3600)
    seed_vol(plain, closes)
    assert vol.annualised == plain.annualised  # the sizing reading is the plain estimator's
    assert vol.baseline is not None and vol.annualised is not None
    assert vol.baseline < vol.annualised  # the norm lags the new regime: the thesis is cut
    assert thesis_scale(D(5), vol.annualised, vol.baseline, D(1)) < D("0.8")
    assert SizingVol(3).baseline is None


def test_stretch_keeps_the_thesis_near_its_trend_and_trims_it_far_above() -> None:
    lines = (D("0.1"), D("0.2"), D("0.5"))
    assert stretch_factor(D(105), 100.0, 1, *lines) == 1  # 5% above: whole
    assert stretch_factor(D(110), 100.0, 1, *lines) == 1  # at the start line
    assert stretch_factor(D(115), 100.0, 1, *lines) == D("0.75")  # half way: half the trim
    assert stretch_factor(D(130), 100.0, 1, *lines) == D("0.5")  # beyond the full line: the floor
    assert stretch_factor(D(70), 100.0, 1, *lines) == 1  # a long below its trend is not trimmed
    # a short is mirrored: trimmed while price is far *below* its trend
    assert stretch_factor(D(130), 100.0, -1, *lines) == 1
    assert stretch_factor(D(100), 115.0, -1, *lines) == D("0.75")
    # no trend, no side: whole
    assert stretch_factor(D(200), None, 1, *lines) == 1
    assert stretch_factor(D(200), 100.0, 0, *lines) == 1


@given(price=st.decimals(1, 10**6, places=2), trend=st.floats(1, 10**6), side=st.sampled_from([-1, 1]),
       floor=st.decimals(D("0.01"), 1, places=2))
def test_stretch_is_between_its_floor_and_one_and_never_grows_with_stretch_property(
        price, trend, side, floor) -> None:  # type: ignore[no-untyped-def]
    f = stretch_factor(price, trend, side, D("0.1"), D("0.2"), floor)
    assert floor <= f <= 1
    further = price * D("1.05") if side > 0 else price / D("1.05")
    assert stretch_factor(further, trend, side, D("0.1"), D("0.2"), floor) <= f


def test_the_trend_is_an_hourly_ewma_of_closes_seeded_with_the_vol() -> None:
    vol = SizingVol(7, 0, 30)
    closes = [(h * NS_H, D(100 if h < 24 * 30 else 200)) for h in range(24 * 60)]
    seed_vol(vol, closes)
    # 30 days at 200 after 30 at 100, half-life 30 days: half way
    assert vol.trend is not None and math.isclose(vol.trend, 150, rel_tol=1e-3)
    # quotes within the hour do not move it; the next hourly sample does
    before = vol.trend
    vol.update(D(400), 24 * 60 * NS_H - NS_H // 2)
    assert vol.trend == before
    vol.update(D(400), 24 * 60 * NS_H)
    assert vol.trend > before
    assert SizingVol(7).trend is None and trend_of(EwmaVol(3600)) is None


def _engine(**strategy):  # type: ignore[no-untyped-def]
    """A 0.5x long BTC-USD thesis on 10,000 USD: the decision context and a fresh market state
    whose estimators are seeded on 30 days near 100 (what the daemon's start-up read does)."""
    from bot import decisions
    from bot.config import CarrySettings, Settings, StrategySettings
    from bot.domain import FeeRates, MarketSpec, MarketStatusKind, RiskMode
    from bot.market_state import build_markets
    from bot.strategy.targets import TargetSpec

    settings = Settings(strategy=StrategySettings(
        directional_budget=D(1), carry_budget=D(0), carry=CarrySettings(enabled=False),
        target_vol_annual=D(100), thesis_max_scale=D("0.6"), stretch_half_life_days=30, **strategy))
    fees = {"dydx": FeeRates(D("0.0001"), D("0.0005"), "t"), "binance": FeeRates(D("0.001"), D("0.001"), "t")}
    ctx = decisions.Context(settings=settings, strategy=settings.strategy, equity=D(10_000),
                            peak_equity=D(10_000), fees=fees, market_count=1, risk_mode=RiskMode.NORMAL,
                            status=MarketStatusKind.ACTIVE, operator=TargetSpec(D("0.5"), "leverage"),
                            settlement_hold=False)
    spec = MarketSpec("BTC-USD", D("0.01"), D("0.001"), D("0.001"))

    def fresh():  # type: ignore[no-untyped-def]
        state = build_markets(settings, {"BTC-USD": spec}, {}, {}, None)[0]["BTC-USD"]
        seed_vol(state.vol_sizing, [(h * NS_H, D(100) if h % 2 else D("100.5")) for h in range(24 * 30)])
        return state
    return ctx, fresh


def test_the_engine_trims_a_stretched_long_thesis_and_keeps_it_near_its_trend() -> None:
    from bot import decisions
    ctx, fresh = _engine()

    def target_at(mark: D) -> D:
        state = fresh()
        state.oracle_price = mark
        return decisions.compute_targets(state, mark, 24 * 30 * NS_H, ctx).sizing.size

    near, far = target_at(D(100)), target_at(D(130))
    assert near == D("30")  # 0.6 x 0.5 x 10,000 / 100: the vol cap alone
    assert far == D("11.538")  # 30% above its trend: half the scale (0.3 x 5,000 / 130)


def config_check(tmp_path, toml: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """`perpbot config check` on a file with `toml`: its exit code and what it printed."""
    import subprocess
    import sys
    bad = tmp_path / "bad.toml"
    bad.write_text(toml)
    code = "import sys; from bot.cli import main; main(sys.argv[1:])"
    out = subprocess.run([sys.executable, "-c", code, "config", "check", "--config", str(bad)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False)
    return out.returncode, out.stderr + out.stdout


def test_stretch_lines_out_of_order_are_refused_naming_the_section(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code, said = config_check(tmp_path, '[strategy]\nstretch_start = "0.3"\nstretch_full = "0.2"\n')
    assert code == 2
    assert "stretch_full must be above stretch_start" in said


def test_the_share_falls_at_once_and_rises_only_at_or_beyond_the_trend() -> None:
    from bot.strategy.volscale import rerisk_gate
    # a cut passes whatever the price
    assert rerisk_gate(D("0.3"), D("0.6"), D(80), 100.0, 1) == D("0.3")
    # a released cut below the trend: the long keeps what it held
    assert rerisk_gate(D("0.6"), D("0.3"), D(80), 100.0, 1) == D("0.3")
    # at or above the trend it is restored
    assert rerisk_gate(D("0.6"), D("0.3"), D(100), 100.0, 1) == D("0.6")
    assert rerisk_gate(D("0.6"), D("0.3"), D(120), 100.0, 1) == D("0.6")
    # a short is mirrored: restored only at or below its trend
    assert rerisk_gate(D("0.6"), D("-0.3"), D(120), 100.0, -1) == D("0.3")
    assert rerisk_gate(D("0.6"), D("-0.3"), D(90), 100.0, -1) == D("0.6")
    # nothing held yet, held on the other side (a flipped thesis), or no trend: nothing to gate
    assert rerisk_gate(D("0.6"), None, D(80), 100.0, 1) == D("0.6")
    assert rerisk_gate(D("0.6"), D("-0.3"), D(80), 100.0, 1) == D("0.6")
    assert rerisk_gate(D("0.6"), D("0.3"), D(80), None, 1) == D("0.6")


@given(scale=st.decimals(0, 1, places=4), held=st.decimals(-1, 1, places=4),
       price=st.decimals(1, 10**6, places=2), trend=st.floats(1, 10**6), side=st.sampled_from([-1, 1]))
def test_the_gate_never_adds_risk_against_the_trend_property(scale, held, price, trend, side) -> None:  # type: ignore[no-untyped-def]
    from bot.strategy.volscale import rerisk_gate
    got = rerisk_gate(scale, held, price, trend, side)
    assert got in (scale, abs(held))
    assert got <= scale  # never more than every other cut allows
    against = (price - D(repr(trend))) * side < 0
    if against and held * side >= 0:
        assert got <= abs(held)  # below the trend (a long) the share never grows


def test_a_fall_that_releases_the_stretch_trim_does_not_re_risk_the_thesis() -> None:
    from bot.config import CarrySettings, StrategySettings
    from bot.strategy.carry import CarryWatch
    from bot.strategy.decide import MarketReadings, market_targets

    p = StrategySettings(directional_budget=D(1), carry_budget=D(0), carry=CarrySettings(enabled=False),
                         target_vol_annual=D(100), thesis_max_scale=D("0.6"), stretch_half_life_days=30,
                         stretch_start=D("0.15"), stretch_full=D("0.3"), rerisk_on_trend=True)

    def at(price: int, held: D | None) -> tuple[D, D | None]:
        r = MarketReadings(market="BTC-USD", now_ns=0, price=D(price), spot_price=None, equity_usd=D(10_000),
                           peak_equity_usd=D(10_000), market_count=1, sizing_vol=0.5,
                           funding_trend_1h=D(0), persistence_hours=0, step_size=D("0.001"),
                           spot_step_size=None, perp_fee_rate=D("0.0005"), operator_target=D(50),
                           flags_agree=False, price_trend=100.0)
        out = market_targets(r, p, 0, CarryWatch(), thesis_held=held)
        return out.sizing.size, out.thesis_held

    size, held = at(130, None)  # 30% above the trend: half the cap
    assert (size, held) == (D(15), D("0.3"))
    size, held = at(90, held)  # fell through the trend: the trim is gone, the share is not restored
    assert (size, held) == (D(15), D("0.3"))
    size, held = at(100, held)  # back at the trend: restored
    assert (size, held) == (D(30), D("0.6"))
    # the gate off: the fall re-risks at once
    off = p.model_copy(update={"rerisk_on_trend": False})
    r_off = market_targets(MarketReadings(
        market="BTC-USD", now_ns=0, price=D(90), spot_price=None, equity_usd=D(10_000),
        peak_equity_usd=D(10_000), market_count=1, sizing_vol=0.5, funding_trend_1h=D(0), persistence_hours=0,
        step_size=D("0.001"), spot_step_size=None, perp_fee_rate=D("0.0005"), operator_target=D(50),
        flags_agree=False, price_trend=100.0), off, 0, CarryWatch(), thesis_held=D("0.3"))
    assert r_off.sizing.size == D(30)


def test_a_bad_rerisk_value_is_refused_naming_the_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code, said = config_check(tmp_path, '[strategy]\nrerisk_on_trend = "sometimes"\n')
    assert code == 2
    assert "rerisk_on_trend" in said
    assert len(said.strip().splitlines()) == 1


def test_the_engine_gates_on_the_share_its_last_refresh_held() -> None:
    from bot import decisions
    ctx, fresh = _engine(rerisk_on_trend=True)
    state = fresh()
    state.thesis_held = D("0.2")  # what the last refresh held (a cut the fall has since released)
    below = decisions.compute_targets(state, D(90), 24 * 30 * NS_H, ctx)
    assert below.sizing.size == D("11.111")  # 0.2 x 5,000 / 90: not re-risked below the trend
    assert below.thesis_held == D("0.2")
    at_trend = decisions.compute_targets(state, D(101), 24 * 30 * NS_H, ctx)
    assert at_trend.sizing.size == D("29.702")  # 0.6 x 5,000 / 101: restored at its trend
