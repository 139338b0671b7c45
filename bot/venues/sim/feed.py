"""MarketData over in-process simulated markets: steps each market on the clock."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from bot.clock import NS_PER_HOUR, Clock
from bot.domain import MarketSpec
from bot.history import MarketHistory
from bot.sim.market import SimMarket, SimMarketParams
from bot.venues.ports import BookHook, MarketSink

# Starting points close to real markets; unknown tickers get a generic 100 USD market.
# BTC-USD funds at 0.003%/h on average (26% a year, a bull-market regime as on dYdX in 2024) so
# that the carry sleeve has a regime it can enter on `make run`; ETH-USD keeps the model's 0.001%.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "BTC-USD": {"initial_price": Decimal(65000), "tick_size": Decimal(1),
                "step_size": Decimal("0.0001"), "min_order_size": Decimal("0.0001"),
                "base_level_size": Decimal("0.5"), "mean_trade_size": Decimal("0.05"),
                "funding_mean_1h": 0.00003},
    "ETH-USD": {"initial_price": Decimal(3000), "tick_size": Decimal("0.1"),
                "step_size": Decimal("0.001"), "min_order_size": Decimal("0.001"),
                "base_level_size": Decimal(8), "mean_trade_size": Decimal("0.8")},
}
_GENERIC = {"initial_price": Decimal(100), "tick_size": Decimal("0.01"),
            "step_size": Decimal("0.1"), "min_order_size": Decimal("0.1"),
            "base_level_size": Decimal(500), "mean_trade_size": Decimal(50)}


def default_params(ticker: str, block_interval_secs: float) -> SimMarketParams:
    """Simulation parameters for a ticker, close to the real market's price and steps."""
    return SimMarketParams(ticker=ticker, block_interval_ns=int(block_interval_secs * 1e9),
                           **_DEFAULTS.get(ticker, _GENERIC))


class SimFeed:
    """Streams simulated market events for several markets until cancelled."""

    name = "sim_feed"
    on_book_changed: BookHook | None = None  # never called: its book events carry every change

    def __init__(self, markets: dict[str, SimMarket], clock: Clock, step_interval_secs: float):
        self._markets = markets
        self._clock = clock
        self._step_secs = step_interval_secs

    def specs(self) -> dict[str, MarketSpec]:
        return {t: m.spec() for t, m in self._markets.items()}

    async def hourly_history(self, market: str, hours: int) -> MarketHistory:
        """The simulated market's past (bot.sim.history): what a venue's candles would give."""
        bars = self._markets[market].history(hours)
        return MarketHistory(market, [(b.ts_ns, b.close) for b in bars],
                             [(b.ts_ns + NS_PER_HOUR, b.funding_rate_1h) for b in bars], source="sim")

    async def run(self, sink: MarketSink) -> None:
        while True:
            now = self._clock.now_ns()
            for market in self._markets.values():
                for event in market.step(now):
                    sink(event)
            await self._clock.sleep(self._step_secs)
