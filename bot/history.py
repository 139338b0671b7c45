"""Venue history read at start, so a restart does not blind the estimators.

The sizing volatility (EWMA of hourly returns, half-life in days) and the funding trend (EWMA of
settled hourly rates) need weeks of data to mean anything. Instead of waiting, the daemon reads
`strategy.history_hours` of hourly candles and funding from the venue at start (dYdX
`/v4/candles` and `/v4/historicalFunding`; the in-process simulator's own past; the hedge
venue's `/api/v3/klines` of the spot leg when the perp venue gave too few candles) and folds them
in before the first evaluation. A failure to read history is logged and the estimators warm up
live, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

import structlog

if TYPE_CHECKING:
    from bot.engine import Engine

log = structlog.get_logger("history")


@dataclass(frozen=True, slots=True)
class MarketHistory:
    """Hourly closes (bar start ns, close) and settled hourly funding (ns, rate), any order."""

    market: str
    closes: list[tuple[int, Decimal]] = field(default_factory=list)
    funding: list[tuple[int, Decimal]] = field(default_factory=list)
    source: str = ""


class HistorySource(Protocol):
    async def hourly_history(self, market: str, hours: int) -> MarketHistory: ...


async def seed_engine(engine: Engine, source: HistorySource, hours: int) -> dict[str, int]:
    """Read each market's history from `source` and fold it into the engine; returns hours per market."""
    seeded: dict[str, int] = {}
    if hours <= 0:
        return seeded
    for market in engine.markets:
        try:
            history = await source.hourly_history(market, hours)
        except Exception as exc:
            log.warning("history_unavailable", market=market, error=str(exc)[:200])
            continue
        engine.seed_history(history)
        seeded[market] = len(history.closes)
        log.info("history_seeded", market=market, source=history.source, candles=len(history.closes),
                 funding_hours=len(history.funding))
    return seeded


async def seed_vol_from_spot(engine: Engine, source: HistorySource, hours: int) -> dict[str, int]:
    """For markets whose sizing vol is still cold (the perp venue gave too few candles), fold in
    the hedge venue's hourly klines of the market's spot leg: the same asset's price path."""
    seeded: dict[str, int] = {}
    if hours <= 0:
        return seeded
    for market, state in engine.markets.items():
        if state.spot is None or engine.sizing_vol(state) is not None:
            continue
        try:
            spot = await source.hourly_history(state.spot.ticker, hours)
        except Exception as exc:  # history is an optimisation: never fatal
            log.warning("history_unavailable", market=state.spot.ticker, error=str(exc)[:200])
            continue
        engine.seed_history(MarketHistory(market, spot.closes, [], source=spot.source))
        seeded[market] = len(spot.closes)
        log.info("history_seeded", market=market, source=spot.source, candles=len(spot.closes),
                 funding_hours=0)
    return seeded
