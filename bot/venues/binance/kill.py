"""The Binance side of `kill --direct` that needs no adapter imports: which settings and keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import SecretStr

from bot.venues.binance.config import BinanceSettings

if TYPE_CHECKING:
    from bot.config import Settings

Keys = tuple[SecretStr, SecretStr]


def settings_for_kill(settings: Settings) -> tuple[BinanceSettings | None, Keys | None]:
    """The hedge venue's settings (hedged symbols only) and keys; None when there is no spot leg."""
    markets = settings.hedged_spot_markets()
    binance = settings.binance
    if not markets or (settings.network == "sim" and binance.rest_url == BinanceSettings().rest_url):
        return None, None
    keys = None
    if settings.binance_api_key is not None and settings.binance_api_secret is not None:
        keys = (settings.binance_api_key, settings.binance_api_secret)
    symbols = {m: binance.symbols[m] for m in markets if m in binance.symbols}
    return binance.model_copy(update={"symbols": symbols}), keys
