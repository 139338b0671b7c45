"""One trading leg as the composition root hands it to the core: where its market events come
from, where its orders go, its books and specs, and what it owns (services to run, closers)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bot.book import OrderBook
from bot.domain import MarketSpec
from bot.venues.ports import ExecutionVenue, MarketData

if TYPE_CHECKING:
    from bot.venues.paper.adapter import PaperVenue


@dataclass
class Leg:
    """A perp leg or the carry sleeve's spot hedge leg.

    `market_data` is None for a spot leg whose events ride on the perp leg's feed (the in-process
    simulator). In paper trading `execution` is the paper venue and `market_data` a PaperFeed
    that hands it every event after the engine.
    """

    market_data: MarketData | None
    execution: ExecutionVenue
    specs: dict[str, MarketSpec]
    books: dict[str, OrderBook]
    paper: PaperVenue | None = None
    spot_markets: dict[str, Any] = field(default_factory=dict)  # in-process spot SimMarkets (perp leg)
    services: list[Any] = field(default_factory=list)  # long-lived services it owns (the simulator)
    status: dict[str, Any] = field(default_factory=dict)  # what `status` shows about it
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    sim_accounts: dict[str, Any] = field(default_factory=dict)  # the embedded simulator's test keys
    start_events: list[Any] = field(default_factory=list)  # market status read over REST at start
    venue: Any = None  # the concrete adapter (market data and, live, execution): its factory's business

    def restore_positions(self, positions: dict[str, Decimal]) -> None:
        """Paper state persists like live state: the paper venue starts from the store's positions
        (a live venue's positions are the venue's own)."""
        if self.paper is not None:
            self.paper.restore_positions(positions)

    async def close(self) -> None:
        for close in self.closers:  # best effort: one failing close does not keep the others open
            with contextlib.suppress(Exception):
                await close()
