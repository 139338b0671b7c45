"""The dYdX v4 venue: MarketData over the indexer WebSocket, ExecutionVenue over the node.

Nothing outside `venues/dydx/` sees a dYdX field name: the feed emits domain events, orders
go in as domain `OrderRequest`s. Market data alone (paper trading on live data) needs no keys;
execution needs a `NodeGateway`.
"""

from __future__ import annotations

import time
from decimal import Decimal

import structlog

from bot.book import OrderBook
from bot.domain import BlockHeight, Fill, MarketSpec, OrderRequest, OrderUpdate
from bot.errors import OrderRejected
from bot.telemetry import Metrics
from bot.venues.dydx.indexer_rest import IndexerRest
from bot.venues.dydx.indexer_ws import IndexerFeed, Subscription, default_subscriptions
from bot.venues.dydx.node import NodeGateway
from bot.venues.dydx.orders import MarketParams, VenueOrder, to_venue_order
from bot.venues.dydx.parse import DomainEvent
from bot.venues.ports import AccountSink, MarketSink

log = structlog.get_logger("dydx")
VENUE = "dydx"
HEIGHT_FRESH_SECS = 2.0


def market_params(ticker: str, wire_market: object) -> MarketParams:
    """MarketParams from an indexer PerpetualMarket (the four integers are what count)."""
    m = wire_market
    values = (m.clobPairId, m.atomicResolution, m.quantumConversionExponent,  # type: ignore[attr-defined]
              m.stepBaseQuantums, m.subticksPerTick)  # type: ignore[attr-defined]
    if any(v in (None, "") for v in values):
        raise OrderRejected(VENUE, "markets", f"{ticker} lacks its grid parameters")
    clob, ar, qce, sbq, spt = values
    return MarketParams(ticker, int(clob), int(ar), int(qce), int(sbq), int(spt))


class DydxVenue:
    """Market data for a set of markets, and (with a gateway) execution for one subaccount."""

    name = VENUE

    def __init__(
        self,
        rest: IndexerRest,
        ws_url: str,
        markets: tuple[str, ...],
        metrics: Metrics,
        *,
        gateway: NodeGateway | None = None,
        account: tuple[str, int] | None = None,
        gtb_offset_blocks: int = 10,
        long_term_secs: int = 3600,
        feed_options: dict[str, object] | None = None,
    ) -> None:
        self.rest = rest
        self._ws_url = ws_url
        self.markets = markets
        self._metrics = metrics
        self.gateway = gateway
        self.account = account
        self._gtb_offset = gtb_offset_blocks
        self._long_term_secs = long_term_secs
        self._feed_options = feed_options or {}
        self.params: dict[str, MarketParams] = {}
        self.books: dict[str, OrderBook] = {}
        self._orders: dict[int, VenueOrder] = {}
        self._account_sink: AccountSink = lambda event: None
        self._height = (0, 0.0)  # (height, monotonic secs when seen)
        self.feed: IndexerFeed | None = None

    # ---- set-up ----------------------------------------------------------------------------------

    async def load_markets(self) -> dict[str, MarketSpec]:
        """Read market parameters over REST; refuse markets the venue does not list."""
        listed = await self.rest.perpetual_markets()
        for ticker in self.markets:
            if ticker not in listed:
                raise OrderRejected(VENUE, "markets", f"{ticker} is not listed on this indexer")
            self.params[ticker] = market_params(ticker, listed[ticker])
        return self.specs()

    def specs(self) -> dict[str, MarketSpec]:
        return {t: MarketSpec(t, p.tick_size, p.step_size, p.step_size) for t, p in self.params.items()}

    def use_books(self, books: dict[str, OrderBook]) -> None:
        """Keep these book objects whole (shared with the engine and any paper venue)."""
        self.books = books

    # ---- MarketData ------------------------------------------------------------------------------

    async def run(self, sink: MarketSink) -> None:
        """Stream market events to `sink` and account events to the account sink."""
        subs: list[Subscription] = default_subscriptions(
            list(self.markets), f"{self.account[0]}/{self.account[1]}" if self.account else None)

        def route(event: DomainEvent) -> None:
            if isinstance(event, OrderUpdate | Fill):
                self._account_sink(event)
                return
            if isinstance(event, BlockHeight):
                self._height = (event.height, time.monotonic())
            sink(event)

        self.feed = IndexerFeed(self._ws_url, subs, self.books, route, self._metrics,
                                **self._feed_options)  # type: ignore[arg-type]
        await self.feed.run()

    # ---- ExecutionVenue --------------------------------------------------------------------------

    def set_account_sink(self, sink: AccountSink) -> None:
        self._account_sink = sink

    def _require_gateway(self) -> NodeGateway:
        if self.gateway is None:
            raise OrderRejected(VENUE, "place", "no signing key configured (market data only)")
        return self.gateway

    async def fresh_height(self) -> int:
        """The chain height for GoodTilBlock: the stream's if recent, else asked from the node."""
        height, seen = self._height
        if height and time.monotonic() - seen < HEIGHT_FRESH_SECS:
            return height
        height = await self._require_gateway().latest_height()
        self._height = (height, time.monotonic())
        return height

    async def place(self, order: OrderRequest) -> None:
        gateway = self._require_gateway()
        params = self.params.get(order.market)
        if params is None:
            raise OrderRejected(VENUE, "place", f"unknown market {order.market}")
        venue_order = to_venue_order(order, params, await self.fresh_height(), int(time.time()),
                                     gtb_offset=self._gtb_offset, long_term_secs=self._long_term_secs)
        self._orders[order.client_id] = venue_order
        await gateway.place(venue_order)

    async def cancel(self, client_id: int) -> None:
        gateway = self._require_gateway()
        venue_order = self._orders.get(client_id)
        if venue_order is None:
            log.warning("cancel_unknown_order", client_order_id=client_id)
            return
        if venue_order.is_stateful:
            await gateway.cancel(venue_order, good_til_block_time=int(time.time()) + 120)
        else:
            await gateway.cancel(venue_order, good_til_block=await self.fresh_height() + self._gtb_offset)

    async def open_orders(self) -> list[int]:
        if self.account is None:
            return []
        rows = await self.rest.orders(self.account[0], self.account[1],
                                      status=["OPEN", "BEST_EFFORT_OPENED", "UNTRIGGERED"])
        return [int(r.clientId) for r in rows if r.clientId.isdigit()]

    async def positions(self) -> dict[str, Decimal]:
        if self.account is None:
            return {}
        rows = await self.rest.positions(self.account[0], self.account[1])
        return {r.market: Decimal(r.size) for r in rows if r.status in ("", "OPEN")}

    async def close(self) -> None:
        await self.rest.aclose()
        if self.gateway is not None:
            self.gateway.close()

