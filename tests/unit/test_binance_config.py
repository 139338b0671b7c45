"""BinanceSettings: validated at start-up, no secrets in it; build_venue wires it."""

import pytest
from pydantic import SecretStr, ValidationError

from bot.telemetry import Metrics
from bot.venues.binance.adapter import build_venue
from bot.venues.binance.config import BinanceSettings


def test_defaults_are_valid_and_hold_no_secret() -> None:
    settings = BinanceSettings()
    assert settings.symbols == {"BTC-USDT": "BTCUSDT", "ETH-USDT": "ETHUSDT"}
    assert settings.weight_budget_1m < settings.weight_limit_1m
    assert not any("api_key" in name or "secret" in name for name in BinanceSettings.model_fields)


@pytest.mark.parametrize("kw", [
    {"symbols": {"BTC-USDT": "btcusdt"}},
    {"symbols": {"BTCUSDT": "BTCUSDT"}},
    {"symbols": {"BTC-USDT": "BTCUSDT", "XBT-USDT": "BTCUSDT"}},
    {"symbols": {}},
    {"weight_budget_1m": 7000},
    {"recv_window_ms": 60_001},
    {"api_key": "x"},
])
def test_bad_settings_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        BinanceSettings(**kw)  # type: ignore[arg-type]


async def test_build_venue_takes_keys_as_secrets() -> None:
    venue = build_venue(BinanceSettings(rest_url="http://127.0.0.1:9"), Metrics(),
                        api_key=SecretStr("k" * 64), api_secret=SecretStr("s" * 64))
    try:
        assert venue.name == "binance" and venue.rest.has_keys and venue.symbols["BTC-USDT"] == "BTCUSDT"
        assert "k" * 64 not in repr(venue.rest) and "s" * 64 not in repr(venue.rest)
    finally:
        await venue.close()
