"""What a backtest replays: the markets, the span and time-ordered event batches (`Source`).

Every source (`sources`: the seeded simulator and recordings; `candles`: OHLCV candles + funding)
yields batches `(ts_ns, perp_events, spot_events)` in time order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bot.config import Settings
from bot.domain import MarketEvent, MarketSpec
from bot.venues.registry import sim_market_params as default_params

Batch = tuple[int, list[MarketEvent], list[MarketEvent]]


@dataclass
class Source:
    """What a backtest replays: the markets, the span and the event batches (consumed once)."""

    kind: str
    specs: dict[str, MarketSpec]
    spot_specs: dict[str, MarketSpec]
    spot_of: dict[str, str]  # perp ticker -> spot ticker
    start_ns: int
    end_ns: int
    batches: Iterable[Batch]
    describe: dict[str, Any] = field(default_factory=dict)
    has_heights: bool = True
    # hooks["busy"]: set by the runner, true while orders are worked (the candle path densifies)
    hooks: dict[str, Any] = field(default_factory=dict)


def market_spec(ticker: str, block_secs: float) -> MarketSpec:
    """The simulator's spec of a market (tick, step, minimum size)."""
    p = default_params(ticker, block_secs)
    return MarketSpec(ticker, p.tick_size, p.step_size, p.min_order_size)


def spot_map(settings: Settings, perps: Iterable[str]) -> dict[str, str]:
    """Perp ticker -> its spot hedge's ticker, for the hedged markets among `perps` (carry on)."""
    carry = settings.strategy.carry
    if not carry.enabled:
        return {}
    return {t: carry.spot_markets[t] for t in perps if t in carry.spot_markets}
