"""Paper trading as a market-data wrapper: the paper venues see every event after the engine.

`PaperFeed(source, perp, spot, spot_markets)` runs `source` into the caller's sink and then hands
each event to the paper venue trading its market: the spot paper venue for `spot_markets` (spot
has no oracle and no funding: oracle updates are not its business), the perp one for the rest.
A book-change hook set on the wrapper is chained the same way, so the daemon wires paper and live
trading alike.
"""

from __future__ import annotations

from collections.abc import Collection

from bot.domain import BlockHeight, MarketEvent, MarketSpec, OracleUpdate
from bot.history import MarketHistory
from bot.venues.paper.adapter import PaperVenue
from bot.venues.ports import BookHook, MarketData, MarketSink


class PaperFeed:
    """A MarketData source with paper venues listening behind the sink."""

    def __init__(self, source: MarketData, perp: PaperVenue | None, spot: PaperVenue | None = None,
                 spot_markets: Collection[str] = ()) -> None:
        self.source = source
        self.name = source.name
        self._perp = perp
        self._spot = spot
        self._spot_markets = frozenset(spot_markets)
        self._hook: BookHook | None = None

    def _paper_of(self, market: str | None) -> PaperVenue | None:
        return self._spot if market in self._spot_markets else self._perp

    @property
    def on_book_changed(self) -> BookHook | None:
        return self._hook

    @on_book_changed.setter
    def on_book_changed(self, hook: BookHook | None) -> None:
        self._hook = hook

        def chained(market: str, ts_recv: int) -> None:
            if hook is not None:
                hook(market, ts_recv)
            paper = self._paper_of(market)
            if paper is not None:
                paper.on_book_changed(market, ts_recv)

        self.source.on_book_changed = chained

    def specs(self) -> dict[str, MarketSpec]:
        return self.source.specs()

    async def hourly_history(self, market: str, hours: int) -> MarketHistory:
        return await self.source.hourly_history(market, hours)

    async def run(self, sink: MarketSink) -> None:
        def forward(event: MarketEvent) -> None:
            sink(event)
            market = None if isinstance(event, BlockHeight) else event.market
            if market in self._spot_markets:
                if self._spot is not None and not isinstance(event, OracleUpdate):
                    self._spot.on_market_event(event)
            elif self._perp is not None:
                self._perp.on_market_event(event)

        await self.source.run(forward)
