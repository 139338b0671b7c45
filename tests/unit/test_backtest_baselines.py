"""The naive baselines: at the bot's sizes, funding at its hours, entry and exit fees on both legs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from bot.backtest import baselines
from bot.backtest.summary import _target_sizes
from bot.strategy.targets import parse_target

HOUR = 3600 * 10**9
T0 = 1_700_006_400 * 10**9  # a UTC midnight


def _samples(hours: int, perp: float = 100.0, spot: float = 100.0) -> list[dict[str, Any]]:
    return [{"ts_ns": T0 + k * HOUR, "markets": {"BTC-USD": {"mark": str(perp), "spot_mid": str(spot)}}}
            for k in range(hours + 1)]


def _funding(hours: int, rate: str) -> list[dict[str, Any]]:
    return [{"ts_ns": T0 + k * HOUR, "market": "BTC-USD", "rate_1h": rate, "oracle": "100"}
            for k in range(1, hours + 1)]


def test_carry_always_on_earns_the_funding_net_of_four_fees() -> None:
    out = baselines.carry_always_on(_samples(48), _funding(48, "0.0001"), 10_000, 4000, 0.0005, 0.001, 3600)
    funding = 4000 * 0.0001 * 48  # short perp receives a positive rate on 4,000 USD for 48 h
    fees = 2 * 4000 * (0.0005 + 0.001)  # entry and exit, perp and spot
    assert Decimal(out["funding_pnl"]) == pytest.approx(Decimal(str(funding)))
    assert Decimal(out["fees"]) == pytest.approx(Decimal(str(fees)))
    assert out["total_return"] == pytest.approx((funding - fees) / 10_000, abs=1e-8)
    assert out["notional_usd"] == "4000.000000"


def test_carry_sign_daily_stays_out_after_a_day_of_negative_funding() -> None:
    rows = _funding(72, "-0.0001")
    out = baselines.carry_sign_daily(_samples(72), rows, 10_000, 4000, 0.0005, 0.001, 3600)
    assert Decimal(out["fees"]) == 0 and Decimal(out["funding_pnl"]) == 0 and out["total_return"] == 0


def test_static_target_pays_funding_and_both_fees() -> None:
    out = baselines.static_target(_samples(10), _funding(10, "0.0001"), 10_000, {"BTC-USD": 2.0}, 0.0005,
                                  3600)
    assert Decimal(out["funding_pnl"]) == pytest.approx(Decimal("-0.2"))  # a long pays 2 x 100 x 1e-4 x 10
    assert Decimal(out["fees"]) == pytest.approx(Decimal("0.2"))  # 200 USD in and out at 5 bps


def test_buy_and_hold_pays_the_spot_fee_in_and_out() -> None:
    out = baselines.buy_and_hold(_samples(5), 10_000, 0.001, 3600)
    assert out["total_return"] == pytest.approx((1 - 0.001) ** 2 - 1)


def test_targets_in_every_unit_become_base_sizes_at_the_first_mark() -> None:
    first = [{"markets": {"BTC-USD": {"mark": "20000"}, "ETH-USD": {"mark": "1000"}}}]
    assert _target_sizes({"BTC-USD": "0.5x", "ETH-USD": "-$2000"}, first, 10_000) == {"BTC-USD": 0.25,
                                                                                      "ETH-USD": -2.0}
    assert _target_sizes({"BTC-USD": Decimal("0.05"), "SOL-USD": "1"}, first, 10_000) == {"BTC-USD": 0.05}


def test_targets_are_resolved_by_the_shared_parser() -> None:
    first = [{"markets": {"BTC-USD": {"mark": "20000"}, "ETH-USD": {"mark": "1000"}}}]
    # a hand parser that strips '-' read "1e-1x" as 10x; the engine's parser reads 0.1x
    assert _target_sizes({"BTC-USD": "1e-1x", "ETH-USD": "$-2000"}, first, 10_000) == {"BTC-USD": 0.05,
                                                                                       "ETH-USD": -2.0}
    assert _target_sizes({"BTC-USD": parse_target("-0.25x")}, first, 10_000) == {"BTC-USD": -0.125}
    with pytest.raises(ValueError, match="not a target"):
        _target_sizes({"BTC-USD": "5000$"}, first, 10_000)


def test_a_first_sample_without_a_mark_takes_the_next_mark() -> None:
    samples = [{"markets": {"BTC-USD": {"mark": None}}}, {"markets": {"BTC-USD": {"mark": "20000"}}}]
    assert _target_sizes({"BTC-USD": "0.5x"}, samples, 10_000) == {"BTC-USD": 0.25}
