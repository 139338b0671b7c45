from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.strategy.targets import TargetSpec, parse_target, resolve_target

STEP = Decimal("0.0001")


@pytest.mark.parametrize(("text", "value", "unit"), [
    ("0.05", "0.05", "base"), ("-0.5", "-0.5", "base"), ("1e-3", "0.001", "base"),
    ("0.5x", "0.5", "leverage"), ("-0.25x", "-0.25", "leverage"), (" 2X ", "2", "leverage"),
    ("$5000", "5000", "usd"), ("-$2000", "-2000", "usd"), ("$-2000", "-2000", "usd"),
    ("+$1.5", "1.5", "usd"),
])
def test_the_three_units_parse(text: str, value: str, unit: str) -> None:
    assert parse_target(text) == TargetSpec(Decimal(value), unit)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", "abc", "5000$", "--1", "-$-5", "0.5xx", "x", "$", "nan", "inf",
                                  "nanx", "\u0661", "1e999999999", "101x", "$1e13", "0x5", "1,5"])
def test_bad_targets_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_target(text)


def test_resolve_each_unit() -> None:
    equity, price = Decimal("2345.67"), Decimal(60000)
    lev = resolve_target(parse_target("0.5x"), equity, price, STEP)
    assert lev == Decimal("0.0195")  # 1172.8 USD
    assert resolve_target(parse_target("-$2000"), equity, price, STEP) == Decimal("-0.0333")
    assert resolve_target(parse_target("0.05"), equity, None, STEP) == Decimal("0.05")
    assert resolve_target(parse_target("0.5x"), equity, None, STEP) == 0  # no price: nothing


@given(value=st.decimals(-100, 100, places=3), equity=st.decimals(0, 10**6, places=2),
       price=st.decimals(Decimal("0.01"), 10**6, places=2))
def test_leverage_resolves_within_its_notional_property(value, equity, price) -> None:  # type: ignore[no-untyped-def]
    size = resolve_target(TargetSpec(value, "leverage"), equity, price, STEP)
    assert abs(size) * price <= abs(value) * equity
    assert size == 0 or (size > 0) == (value > 0)
    assert size % STEP == 0


@given(st.text(max_size=12))
def test_parse_never_crashes_property(text: str) -> None:
    try:
        spec = parse_target(text)
    except ValueError:
        return
    assert spec.value.is_finite()
    assert parse_target(spec.text) == spec  # what status shows parses back to the same target
