import math
import random
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from bot.rules.estimators import EwmaVol, seed_vol
from bot.strategy.volscale import SizingVol, thesis_scale

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
