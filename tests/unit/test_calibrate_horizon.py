"""tools/calibrate.py's measured carry horizon (`expected_hold`): the longest fixed point of 'the
entry line amortises the round trip over the median episode', searched from the six-week cap
down, on synthetic hourly funding."""

from types import ModuleType

import pytest
from support.tools import load_tool

PARAMS = {"signal_half_life_hours": 168, "entry_half_life_hours": 72, "entry_median_hours": 336,
          "entry_threshold_bps": 0, "exit_threshold_bps": -40, "exit_confirm_hours": 48}
ROUND_TRIP = 2 * (0.0005 + 0.001 + 2 * 0.0003)  # both legs' taker fees and slippage, open and close


@pytest.fixture(scope="module")
def calibrate() -> ModuleType:
    return load_tool("calibrate")


def _series(calibrate: ModuleType, rates: list[float]) -> list:  # type: ignore[type-arg]
    hours = list(range(len(rates)))
    return [calibrate.Series(m, hours, [(100.0, 101.0, 99.0, 100.0)] * len(hours), rates)
            for m in ("BTC-USD", "ETH-USD")]


def test_funding_under_a_short_horizons_line_still_measures_the_cap(calibrate: ModuleType) -> None:
    # 1e-5 an hour (8.8% a year) is under the 336 h entry line and over the cap's: the rule opens
    # at the cap and holds to the end of the history, so the cap is the fixed point.
    rate = 1e-5
    assert ROUND_TRIP / 336 > rate > ROUND_TRIP / calibrate.MAX_HORIZON_HOURS
    series = _series(calibrate, [rate] * 3000)
    assert calibrate.expected_hold(series, 3000, PARAMS) == calibrate.MAX_HORIZON_HOURS


def test_the_fixed_point_under_the_cap_is_found(calibrate: ModuleType) -> None:
    # 610 h of 1e-5: the carry opens at any horizon from 420 h (42 bps / 1e-5) and holds to the
    # end, 610 h: the fixed point; at 336 h it never opens.
    series = _series(calibrate, [1e-5] * 610)
    assert calibrate.expected_hold(series, 610, PARAMS) == 610
    # only the funding before `end` is measured
    assert calibrate.expected_hold(_series(calibrate, [1e-5] * 900), 610, PARAMS) == 610


def test_a_carry_that_opens_and_closes_measures_its_episode(calibrate: ModuleType) -> None:
    # Regimes of 480 h and 720 h: at a 480 h horizon the median episode is 609 h, at 504 h the
    # lines catch the short regime's swings and it falls to 362 h, so 480 h is the longest
    # horizon the rule holds. (A search iterating up from 336 h cycled 336 -> 1008 -> 261 h and
    # returned 261 h, where the median episode is 1800 h.)
    rates = ([4e-5] * 480 + [-8e-5] * 720) * 3
    assert calibrate.expected_hold(_series(calibrate, rates), len(rates), PARAMS) == 480


def test_funding_the_rule_never_opens_on_gives_the_cap(calibrate: ModuleType) -> None:
    assert calibrate.expected_hold(_series(calibrate, [1e-7] * 2000), 2000, PARAMS) == \
        calibrate.MAX_HORIZON_HOURS
