"""Binance spot settings: endpoints, symbol mapping, signing window and weight budget (no secrets).

The API key and secret are `PERPBOT_BINANCE_API_KEY` / `PERPBOT_BINANCE_API_SECRET`, read from
the environment by `bot.config` into `SecretStr` fields; they never appear here.
"""

from __future__ import annotations

import re

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from bot.venues.binance.limits import DEFAULT_WEIGHT_BUDGET_1M, REQUEST_WEIGHT_LIMIT_1M

_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")


class BinanceSettings(BaseModel):
    """Public Binance spot endpoints by default; point them at `perpbot sim` to test offline."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rest_url: str = "https://api.binance.com"
    ws_url: str = "wss://stream.binance.com:9443"
    # Our spot market name -> Binance symbol.
    symbols: dict[str, str] = Field(
        default_factory=lambda: {"BTC-USDT": "BTCUSDT", "ETH-USDT": "ETHUSDT"})
    recv_window_ms: int = Field(default=5000, ge=100, le=60_000)
    weight_budget_1m: PositiveInt = DEFAULT_WEIGHT_BUDGET_1M
    weight_limit_1m: PositiveInt = REQUEST_WEIGHT_LIMIT_1M
    timeout_secs: PositiveFloat = 5.0
    order_timeout_secs: PositiveFloat = 3.0  # a placement that takes longer is OrderStateUnknown
    time_sync_interval_secs: PositiveFloat = 300.0
    listen_key_keepalive_secs: PositiveFloat = 1800.0  # Binance: keys expire after 60 min
    depth_snapshot_limit: int = Field(default=1000, ge=5, le=5000)
    min_session_secs: float = Field(default=5.0, ge=0)

    @field_validator("symbols")
    @classmethod
    def _symbols_look_like_binance(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("at least one spot symbol is required")
        for market, symbol in value.items():
            if "-" not in market or market != market.upper():
                raise ValueError(f"{market!r} is not a market like 'BTC-USDT'")
            if not _SYMBOL_RE.match(symbol):
                raise ValueError(f"{symbol!r} is not a Binance symbol like 'BTCUSDT'")
        if len(set(value.values())) != len(value):
            raise ValueError("a Binance symbol is mapped twice")
        return value

    @model_validator(mode="after")
    def _budget_below_limit(self) -> BinanceSettings:
        if self.weight_budget_1m > self.weight_limit_1m:
            raise ValueError("weight_budget_1m must not exceed weight_limit_1m")
        return self
