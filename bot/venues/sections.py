"""Each venue's section of the settings (`[dydx]`, `[binance]`), as the venue declares it;
bot.config composes them into Settings."""

from bot.venues.binance.config import BinanceSettings
from bot.venues.dydx.config import DydxSettings

__all__ = ["BinanceSettings", "DydxSettings"]
