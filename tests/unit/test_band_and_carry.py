import math
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from bot.config import CarrySettings
from bot.rules.estimators import EwmaVol, FundingTrend, seed_vol
from bot.strategy.band import BandInputs, band_usd, check_band
from bot.strategy.carry import (
    CarryWatch,
    FundingMedian,
    carry_episodes,
    entry_trend_for,
    median_series,
    regime_hold_hours,
    trend_series,
    watch_carry,
)

NS_H = 3600 * 10**9
BAND = BandInputs(position=Decimal("0.1"), target=Decimal("0.1"), price=Decimal(50000),
                  equity_usd=Decimal(10000), cost_rate=Decimal("0.0008"), vol_annual=0.6,
                  horizon_hours=24, risk_aversion=Decimal(4), max_fraction=Decimal("0.25"),
                  min_size=Decimal("0.0001"))


def band(**kw) -> BandInputs:  # type: ignore[no-untyped-def]
    from dataclasses import replace
    return replace(BAND, **kw)


def test_band_is_wide_when_calm_and_narrow_when_wild() -> None:
    calm = band_usd(band(vol_annual=0.1))
    wild = band_usd(band(vol_annual=3.0))
    assert wild < calm
    assert calm == Decimal("0.1") * 50000 * Decimal("0.25")  # capped at max_fraction of target
    # 2 x 0.0008 x 10000 / (4 x 9 x 24/8760) = 162.2 USD
    assert abs(wild - Decimal("162.2")) < 1


def test_band_rules() -> None:
    assert not check_band(band(position=Decimal("0.09"))).outside  # 500 USD gap, band 1250
    assert check_band(band(position=Decimal("0.05"))).outside
    assert check_band(band(target=Decimal(0))).why == "closing"
    assert check_band(band(target=Decimal("-0.01"))).why == "flip"
    assert check_band(band(position=Decimal(0), target=Decimal("0.01"))).outside  # opening


def test_band_with_an_unusable_vol_is_the_cap() -> None:
    cap = Decimal("0.1") * 50000 * Decimal("0.25")
    for vol in (1e-170, 5e-324, math.inf, math.nan):  # 1e-170 squared underflows to 0.0
        assert band_usd(band(vol_annual=vol)) == cap
        assert not check_band(band(position=Decimal("0.09"), vol_annual=vol)).outside


@given(pos=st.decimals(-2, 2, places=4), target=st.decimals(-2, 2, places=4),
       vol=st.one_of(st.none(), st.floats(0.01, 5), st.floats(0, 1e-150), st.just(math.inf)),
       gamma=st.decimals(0, 50, places=1),
       frac=st.decimals(Decimal("0.01"), 1, places=2))
def test_band_never_holds_a_gap_beyond_its_cap_property(pos, target, vol, gamma, frac) -> None:  # type: ignore[no-untyped-def]
    inp = band(position=pos, target=target, vol_annual=vol, risk_aversion=gamma, max_fraction=frac)
    check = check_band(inp)
    gap = abs(target - pos) * inp.price
    cap = max(abs(target) * inp.price * frac, inp.min_size * inp.price)
    if gap > cap:
        assert check.outside  # a gap above max_fraction of the target always trades
    if target == 0 and abs(pos) >= inp.min_size:
        assert check.outside
    if pos == target:
        assert not check.outside


def test_carry_watch_counts_each_hour_once() -> None:
    w = CarryWatch()
    for t in (0, 10, 20):  # the same hour three times
        w = watch_carry(w, -1, True, t * 10**9)
    assert w.adverse_hours == 1
    w = watch_carry(w, -1, True, NS_H)
    assert w.adverse_hours == 2
    assert watch_carry(w, -1, False, 2 * NS_H).adverse_hours == 0  # a fine hour resets
    assert watch_carry(w, 0, True, 3 * NS_H) == CarryWatch()  # closed: nothing to watch


def test_carry_episodes_need_confirmed_adverse_hours() -> None:
    trend = [0.0002] * 10 + [-0.0001] * 2 + [0.0002] * 5 + [-0.0001] * 4
    eps = carry_episodes(trend, entry_rate=0.00015, exit_rate=0.0, confirm_hours=3)
    assert eps == [(0, 20, -1)]  # two adverse hours did not close it; the third of four did
    assert regime_hold_hours([0.0002] * 100, 24, 0.0001, 0.0, 3) == 100


@given(st.lists(st.floats(-0.001, 0.001), min_size=1, max_size=200), st.floats(1, 200))
def test_trend_matches_the_live_estimator_property(rates, half_life) -> None:  # type: ignore[no-untyped-def]
    live = FundingTrend(half_life)
    for hour, rate in enumerate(rates):
        live.on_settled(Decimal(repr(rate)), hour)
    assert abs(float(live.rate_1h) - trend_series(rates, half_life)[-1]) < 1e-9
    assert min(rates) - 1e-12 <= float(live.rate_1h) <= max(rates) + 1e-12


def test_trend_counts_an_hour_once_and_seeds_from_history() -> None:
    t = FundingTrend(24)
    t.seed([(2 * NS_H, Decimal("0.0001")), (NS_H, Decimal("0.0001")), (NS_H, Decimal("0.5"))])
    assert t.hours == 2 and t.rate_1h == Decimal("0.0001")


def test_hourly_vol_seeded_from_candles_reads_at_once() -> None:
    import math
    import random
    rnd = random.Random(1)
    price, closes = 50000.0, []
    for h in range(24 * 30):
        price *= math.exp(rnd.gauss(0, 0.6 / math.sqrt(8760)))
        closes.append((h * NS_H, Decimal(repr(round(price, 2)))))
    vol = EwmaVol(3 * 86400, 3600)
    seed_vol(vol, closes)
    assert vol.samples == len(closes) - 1
    assert vol.annualised is not None and 0.4 < vol.annualised < 0.8
    before = vol.annualised
    vol.update(Decimal(60000), closes[-1][0] + 10 * 10**9)  # within the hour: not a sample
    assert vol.annualised == before


def test_median_entry_trend_reads_the_level_through_a_spike() -> None:
    """A day of liquidation-driven funding at -100% a year after a week at +11%: the 72 h EWMA
    falls below zero (an entry would wait), the 168 h median stays on the level."""
    level, spike = 0.11 / 8760, -1.0 / 8760
    rates = [level] * 168 + [spike] * 24
    med, ewma = FundingMedian(168), FundingTrend(72)
    for hour, rate in enumerate(rates):
        med.on_settled(rate, hour)
        ewma.on_settled(rate, hour)
    assert ewma.rate_1h < 0 < med.rate_1h
    assert abs(float(med.rate_1h) - level) < 1e-15
    for hour in range(len(rates), len(rates) + 85):  # a regime that holds half the window wins
        med.on_settled(spike, hour)
    assert med.rate_1h < 0


def test_median_counts_an_hour_once_seeds_from_history_and_forgets() -> None:
    m = FundingMedian(3)
    assert m.rate_1h == 0 and m.hours == 0
    m.seed([(2 * NS_H, Decimal("0.0002")), (NS_H, Decimal("0.0001")), (NS_H, Decimal("0.5"))])
    assert m.hours == 2 and m.rate_1h == Decimal("0.0002")  # upper median of two
    for hour, rate in ((3, "0.0003"), (4, "-0.0001"), (5, "-0.0002")):
        m.on_settled(Decimal(rate), hour)
    assert m.rate_1h == Decimal("-0.0001")  # only the last three hours count


@given(st.lists(st.floats(-0.001, 0.001), min_size=1, max_size=200), st.integers(1, 50))
def test_median_matches_its_series_and_the_window_property(rates, window) -> None:  # type: ignore[no-untyped-def]
    live = FundingMedian(window)
    for hour, rate in enumerate(rates):
        live.on_settled(rate, hour)
    last = sorted(rates[-window:])
    assert float(live.rate_1h) == last[len(last) // 2] == median_series(rates, window)[-1]


def test_entry_trend_follows_the_setting() -> None:
    assert isinstance(entry_trend_for(CarrySettings()), FundingTrend | FundingMedian)
    assert isinstance(entry_trend_for(CarrySettings(entry_median_hours=0)), FundingTrend)
    assert isinstance(entry_trend_for(CarrySettings(entry_median_hours=336)), FundingMedian)
    rates = [0.0001] * 50 + [-0.0001] * 20
    # the hold measurement reads the same entry trend the sleeve opens on
    assert carry_episodes(trend_series(rates, 24), 0.00005, -0.0005, 3, median_series(rates, 30))[0][0] == 0
    assert regime_hold_hours(rates, 24, 0.00005, -0.0005, 3, entry_median_hours=30) == 70
