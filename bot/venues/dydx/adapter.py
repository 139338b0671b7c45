"""The dYdX v4 venue: MarketData over the indexer WebSocket, ExecutionVenue over the node.

Nothing outside `venues/dydx/` sees a dYdX field name: the feed emits domain events, orders
go in as domain `OrderRequest`s. Market data alone (paper trading on live data) needs no keys;
execution needs a `NodeGateway`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection
from dataclasses import replace
from decimal import Decimal

import structlog

from bot.book import OrderBook
from bot.clock import NS_PER_SEC, SYSTEM_CLOCK, Clock, monotonic_secs
from bot.domain import BlockHeight, Fill, MarketSpec, OrderRequest, OrderUpdate, Side, Transfer
from bot.domain import MarketParams as MarketParamsEvent
from bot.errors import BotError, MalformedMessage, OrderRejected, TransientVenueError
from bot.history import MarketHistory
from bot.telemetry import Metrics
from bot.venues.dydx import wire
from bot.venues.dydx.account import client_ids_by_uid, fill_from_rest, funding_from_rest, order_state
from bot.venues.dydx.indexer_rest import IndexerRest
from bot.venues.dydx.indexer_ws import IndexerFeed, Subscription, default_subscriptions
from bot.venues.dydx.node import NodeGateway
from bot.venues.dydx.orders import MarketParams, VenueOrder, to_venue_order
from bot.venues.dydx.parse import DomainEvent, is_uint, iso_to_ns, market_status_events, transfer_event
from bot.venues.ports import AccountSink, Capabilities, MarketSink, VenueAccount

log = structlog.get_logger("dydx")
VENUE = "dydx"
HEIGHT_FRESH_SECS = 2.0
MAX_BATCH_CANCEL = 100  # MsgBatchCancel: at most 100 short-term cancels in total
SWEEP_PAGE = 100  # fills per REST page in an account sweep
SWEEP_MAX_FILLS = 2_000  # rows one sweep reads at most (20 pages of the fills rate-limit bucket)


def cancel_target(client_id: int, clob_pair_id: int, order_flags: int) -> VenueOrder:
    """A VenueOrder carrying just the order id fields a cancel needs (for orders seen on the indexer)."""
    return VenueOrder(client_id, clob_pair_id, order_flags, Side.BUY, 0, 0, 0, False)


def _fill_height(fill: wire.FillWire) -> int | None:
    return int(fill.createdAtHeight) if is_uint(fill.createdAtHeight) else None


def market_params(ticker: str, wire_market: object) -> MarketParams:
    """MarketParams from an indexer PerpetualMarket (the four integers are what count)."""
    m = wire_market
    values = (m.clobPairId, m.atomicResolution, m.quantumConversionExponent,  # type: ignore[attr-defined]
              m.stepBaseQuantums, m.subticksPerTick)  # type: ignore[attr-defined]
    if any(v in (None, "") for v in values):
        raise OrderRejected(VENUE, "markets", f"{ticker} lacks its grid parameters")
    clob, ar, qce, sbq, spt = values
    return MarketParams(ticker, int(clob), int(ar), int(qce), int(sbq), int(spt))


def regrid(params: MarketParams, tick: Decimal | None, step: Decimal | None) -> MarketParams:
    """`params` with a new tick and/or step size, at the same atomic resolution and exponent.

    A size or price that does not map onto whole quantums / subticks keeps the old value.
    """
    ar, qce = params.atomic_resolution, params.quantum_conversion_exponent
    sbq, spt = params.step_base_quantums, params.subticks_per_tick
    if step is not None:
        quantums = step.scaleb(-ar)
        sbq = int(quantums) if quantums == quantums.to_integral_value() and quantums > 0 else sbq
    if tick is not None:
        subticks = tick.scaleb(-(qce - ar - 6))
        spt = int(subticks) if subticks == subticks.to_integral_value() and subticks > 0 else spt
    return MarketParams(params.ticker, params.clob_pair_id, ar, qce, sbq, spt)


def _fraction(text: str | None) -> Decimal | None:
    try:
        value = Decimal(text) if text else None
    except ArithmeticError:
        return None
    return value if value is not None and value.is_finite() and value > 0 else None


class DydxVenue:
    """Market data for a set of markets, and (with a gateway) execution for one subaccount."""

    name = VENUE
    capabilities = Capabilities(batch_cancel=True)

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
        clock: Clock = SYSTEM_CLOCK,
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
        self._clock = clock
        self.params: dict[str, MarketParams] = {}
        self.margin_fractions: dict[str, tuple[Decimal, Decimal]] = {}  # (initial, maintenance)
        self._start_events: list[DomainEvent] = []
        self.books: dict[str, OrderBook] = {}
        self._orders: dict[int, VenueOrder] = {}
        self._account_sink: AccountSink = lambda event: None
        self._height = (0, 0.0)  # (height, monotonic secs when seen)
        self.feed: IndexerFeed | None = None
        # When set, the feed updates the shared books itself and only says which one changed
        # (no BookSnapshot/BookDelta objects on the hot path).
        self.on_book_changed: Callable[[str, int], None] | None = None
        self.funding_poll_secs = 60.0
        # Account sweep over REST (see `_sweep_account`): how often, and for how long after a place.
        self.sweep_secs = 2.0
        self.sweep_window_secs = 120.0
        self._last_place = -float("inf")  # monotonic secs
        self._swept_final: set[int] = set()  # client ids whose final state was already reported
        self._swept_height = 0  # newest block of a fill that a sweep read

    # ---- set-up ----------------------------------------------------------------------------------

    async def load_markets(self) -> dict[str, MarketSpec]:
        """Read market parameters over REST; refuse markets the venue does not list."""
        listed = await self.rest.perpetual_markets()
        now = self._clock.now_ns()
        self._start_events = []
        for ticker in self.markets:
            if ticker not in listed:
                raise OrderRejected(VENUE, "markets", f"{ticker} is not listed on this indexer")
            self.params[ticker] = market_params(ticker, listed[ticker])
            self._start_events += market_status_events(ticker, listed[ticker], now)
            imf, mmf = (_fraction(listed[ticker].initialMarginFraction),
                        _fraction(listed[ticker].maintenanceMarginFraction))
            if imf is not None and mmf is not None:
                self.margin_fractions[ticker] = (imf, mmf)
        return self.specs()

    def market_status_events(self) -> list[DomainEvent]:
        """The markets' status and parameters as REST reported them at `load_markets` (replayed to
        the engine at start, before the stream's own snapshot)."""
        return list(self._start_events)

    async def hourly_history(self, market: str, hours: int) -> MarketHistory:
        """The last `hours` hourly candles and settled funding rates of a market (REST)."""
        limit = max(1, min(hours, 1000))
        candles = await self.rest.candles(market, "1HOUR", limit)
        funding = await self.rest.historical_funding(market, limit)
        closes, rates = [], []
        for c in candles:
            with contextlib.suppress(MalformedMessage, ArithmeticError):
                close = Decimal(c.close)
                if close.is_finite() and close > 0:
                    closes.append((iso_to_ns(c.startedAt), close))
        for f in funding:
            with contextlib.suppress(MalformedMessage, ArithmeticError):
                rate = Decimal(f.rate)
                if rate.is_finite():
                    rates.append((iso_to_ns(f.effectiveAt), rate))
        return MarketHistory(market, closes, rates, source=VENUE)

    def specs(self) -> dict[str, MarketSpec]:
        specs = {}
        for t, p in self.params.items():
            spec = MarketSpec(t, p.tick_size, p.step_size, p.step_size)
            if t in self.margin_fractions:
                spec = replace(spec, initial_margin_fraction=self.margin_fractions[t][0],
                               maintenance_margin_fraction=self.margin_fractions[t][1])
            specs[t] = spec
        return specs

    def use_books(self, books: dict[str, OrderBook]) -> None:
        """Keep these book objects whole (shared with the engine and any paper venue)."""
        self.books = books

    # ---- MarketData ------------------------------------------------------------------------------

    async def run(self, sink: MarketSink) -> None:
        """Stream market events to `sink` and account events to the account sink."""
        subs: list[Subscription] = default_subscriptions(
            list(self.markets), f"{self.account[0]}/{self.account[1]}" if self.account else None)

        def route(event: DomainEvent) -> None:
            if isinstance(event, OrderUpdate | Fill | Transfer):
                self._account_sink(event)
                return
            if isinstance(event, BlockHeight):
                self._height = (event.height, monotonic_secs(self._clock))
            elif isinstance(event, MarketParamsEvent) and event.market in self.params:
                # Orders are mapped onto the chain's grid here: a new tick/step applies at once.
                self.params[event.market] = regrid(self.params[event.market], event.tick_size,
                                                   event.step_size)
            sink(event)

        options = dict(self._feed_options)
        if self.on_book_changed is not None:
            options["on_book_changed"] = self.on_book_changed
        self.feed = IndexerFeed(self._ws_url, subs, self.books, route, self._metrics, clock=self._clock,
                                **options)  # type: ignore[arg-type]
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.feed.run(), name="dydx_indexer_ws")
            if self.account is not None:
                tg.create_task(self._poll_funding(), name="dydx_funding_poll")
            if self.account is not None and self.gateway is not None:
                tg.create_task(self._sweep_loop(), name="dydx_account_sweep")

    async def _poll_funding(self) -> None:
        """Funding settles hourly and is not on the account stream: read it over REST."""
        assert self.account is not None
        while True:
            try:
                rows = await self.rest.funding_payments(*self.account)
                for row in rows:
                    if row.ticker in self.params:
                        self._account_sink(funding_from_rest(row))
            except BotError as exc:
                log.warning("funding_poll_failed", error=str(exc))
            await asyncio.sleep(self.funding_poll_secs)

    async def _sweep_loop(self) -> None:
        """Sweep the account while orders of this process may still change, and after any resync."""
        marker = None
        while True:
            await asyncio.sleep(self.sweep_secs)
            feed = self.feed
            now_marker = (feed.connections, feed.resyncs) if feed is not None else None
            recent = monotonic_secs(self._clock) - self._last_place < self.sweep_window_secs
            if not recent and now_marker == marker:
                continue
            try:
                await self.sweep_account()
                if now_marker != marker:  # reconnected or resynced: transfers sent meanwhile are lost
                    for transfer in await self.transfers():
                        self._account_sink(transfer)  # the peak skips those it has seen (bot.peak)
                marker = now_marker
            except BotError as exc:
                log.warning("account_sweep_failed", error=str(exc))

    async def sweep_account(self) -> tuple[int, int]:
        """Report the account's recent fills and our orders' states as read over REST.

        The stream is not enough on its own: a stalled or dropped socket loses the fills and
        order updates sent meanwhile, and a resubscribe's snapshot carries open orders only.
        The account sink deduplicates (fills by id, order states by rank), so reporting what the
        stream already delivered changes nothing. Returns (fills, order updates) reported.
        """
        if self.account is None:
            return 0, 0
        address, number = self.account
        orders = await self.rest.orders(address, number, limit=100)
        fills = await self._fills_down_to(self._swept_height)  # read after: covers those orders
        by_uid = client_ids_by_uid(orders)
        if any(f.orderId and f.orderId not in by_uid for f in fills):
            # An order placed and filled between the two reads (a slow machine widens the gap):
            # read the orders again, or its fill would go out without our client id for good.
            by_uid |= client_ids_by_uid(await self.rest.orders(address, number, limit=100))
        for fill in reversed(fills):  # oldest first
            self._account_sink(fill_from_rest(fill, by_uid.get(fill.orderId or "", 0)))
        heights = [h for h in map(_fill_height, fills) if h is not None]
        self._swept_height = max([self._swept_height, *heights])
        updates = 0
        now = self._clock.now_ns()
        for order in orders:
            cid = int(order.clientId) if is_uint(order.clientId) else None
            if cid is None or cid not in self._orders or cid in self._swept_final:
                continue
            status, filled = order_state(order)
            self._account_sink(OrderUpdate(cid, order.ticker, status, filled, now, "account sweep"))
            if not status.is_open:  # only once the sink took it (a failed store write retries)
                self._swept_final.add(cid)
            updates += 1
        return len(fills), updates

    async def _fills_down_to(self, height: int) -> list[wire.FillWire]:
        """The newest fills, paged back until a page reaches block `height` (newest first).

        A sweep reads back to the newest block the last sweep saw, so a burst of more than one
        page of fills between two sweeps (a stalled stream, a busy TWAP) is read whole, up to
        SWEEP_MAX_FILLS rows. Pages after the first are numbered pages below the first page's
        newest block, so fills arriving meanwhile do not shift them; rows are deduplicated by id.
        """
        assert self.account is not None
        address, number = self.account
        rows = await self.rest.fills(address, number, limit=SWEEP_PAGE)
        newest = _fill_height(rows[0]) if rows else None
        seen = {f.id for f in rows}
        page, page_no = rows, 1
        while len(page) == SWEEP_PAGE and len(rows) < SWEEP_MAX_FILLS and newest is not None:
            oldest = _fill_height(page[-1])
            if oldest is None or oldest <= height:
                break
            page_no += 1
            page = await self.rest.fills(address, number, limit=SWEEP_PAGE, before_height=newest,
                                         page=page_no)
            rows += [f for f in page if f.id not in seen]
            seen.update(f.id for f in page)
        return rows

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
        if height and monotonic_secs(self._clock) - seen < HEIGHT_FRESH_SECS:
            return height
        height = await self._require_gateway().latest_height()
        self._height = (height, monotonic_secs(self._clock))
        return height

    async def place(self, order: OrderRequest) -> None:
        gateway = self._require_gateway()
        params = self.params.get(order.market)
        if params is None:
            raise OrderRejected(VENUE, "place", f"unknown market {order.market}")
        height = await self.fresh_height()
        venue_order = to_venue_order(order, params, height, self._clock.now_ns() // NS_PER_SEC,
                                     gtb_offset=self._gtb_offset, long_term_secs=self._long_term_secs)
        self._orders[order.client_id] = venue_order
        self._last_place = monotonic_secs(self._clock)
        await gateway.place(venue_order)

    async def cancel(self, client_id: int) -> bool:
        """Cancel one order; False when the venue does not list it open (nothing was sent).

        An order this process did not place (a crashed predecessor's) is looked up on the
        indexer by client id, which carries its full order id (see `cancel_many`).
        """
        gateway = self._require_gateway()
        venue_order = self._orders.get(client_id)
        if venue_order is None:
            cancelled, errors = await self.cancel_many([client_id])
            if errors:
                raise TransientVenueError(VENUE, f"cancel {client_id}", "; ".join(errors))
            if not cancelled:
                log.info("cancel_not_open", client_order_id=client_id)
            return bool(cancelled)
        if venue_order.is_stateful:
            await gateway.cancel(venue_order, good_til_block_time=self._clock.now_ns() // NS_PER_SEC + 120)
        else:
            await gateway.cancel(venue_order, good_til_block=await self.fresh_height() + self._gtb_offset)
        return True

    async def cancel_many(
        self, client_ids: list[int], *, all_open: bool = False
    ) -> tuple[list[int], list[str]]:
        """Cancel these orders (and, with `all_open`, every open order of the subaccount) at once.

        Short-term orders go out in MsgBatchCancel messages of at most 100 (one broadcast for a
        typical kill); stateful ones need their own cancel each (DYDX_V4.md §4.3). Orders this
        process did not place are found through the indexer, which carries their full order id.
        Returns (client ids a cancel was accepted for, errors); it keeps going after a failure.
        """
        gateway = self._require_gateway()
        wanted = set(client_ids)
        targets = {cid: self._orders[cid] for cid in wanted if cid in self._orders}
        errors: list[str] = []
        if self.account is not None:
            try:
                rows = await self.rest.orders(self.account[0], self.account[1],
                                              status=["OPEN", "BEST_EFFORT_OPENED", "UNTRIGGERED"])
            except BotError as exc:
                rows = []
                errors.append(f"open orders: {exc}")
            for row in rows:
                if is_uint(row.clientId) and is_uint(row.clobPairId) and is_uint(row.orderFlags):
                    cid = int(row.clientId)
                    if cid not in targets and (all_open or cid in wanted):
                        targets[cid] = cancel_target(cid, int(row.clobPairId), int(row.orderFlags))
                        if cid in wanted:  # ours: account sweeps now report its end too
                            self._orders[cid] = targets[cid]
        cancelled: list[int] = []
        short = sorted((o.clob_pair_id, cid) for cid, o in targets.items() if not o.is_stateful)
        if short:
            try:
                gtb = await self.fresh_height() + self._gtb_offset
            except BotError as exc:
                errors.append(f"height for batch cancel: {exc}")
                short = []
            for start in range(0, len(short), MAX_BATCH_CANCEL):
                chunk = short[start:start + MAX_BATCH_CANCEL]
                by_pair: dict[int, list[int]] = {}
                for pair, cid in chunk:
                    by_pair.setdefault(pair, []).append(cid)
                try:
                    await gateway.batch_cancel(by_pair, gtb)
                except BotError as exc:
                    errors.append(f"batch cancel of {len(chunk)}: {exc}")
                    continue
                cancelled += [cid for _, cid in chunk]
        for cid, order in sorted(targets.items()):
            if not order.is_stateful:
                continue
            try:
                await gateway.cancel(order, good_til_block_time=self._clock.now_ns() // NS_PER_SEC + 120)
            except BotError as exc:
                errors.append(f"cancel {cid}: {exc}")
                continue
            cancelled.append(cid)
        log.info("orders_cancel_sent", count=len(cancelled), errors=len(errors), all_open=all_open)
        return cancelled, errors

    async def touch(self, ticker: str) -> tuple[Decimal | None, Decimal | None]:
        """Best bid and ask from a fresh REST snapshot (for a flatten without a running feed)."""
        snapshot = await self.rest.orderbook(ticker)
        bids = [Decimal(level.price) for level in snapshot.bids]
        asks = [Decimal(level.price) for level in snapshot.asks]
        return (max(bids) if bids else None), (min(asks) if asks else None)

    async def open_orders(self) -> list[int]:
        if self.account is None:
            return []
        rows = await self.rest.orders(self.account[0], self.account[1],
                                      status=["OPEN", "BEST_EFFORT_OPENED", "UNTRIGGERED"])
        return [int(r.clientId) for r in rows if is_uint(r.clientId)]

    async def positions(self) -> dict[str, Decimal]:
        if self.account is None:
            return {}
        rows = await self.rest.positions(self.account[0], self.account[1])
        return {r.market: Decimal(r.size) for r in rows if r.status in ("", "OPEN")}

    async def account_snapshot(self, orders: Collection[int] = ()) -> VenueAccount:
        """Orders (any status), recent fills and open positions, for start-up reconciliation
        (the indexer lists closed orders too: `orders` needs no reads of its own)."""
        if self.account is None:
            return VenueAccount(set(), positions={})
        address, number = self.account
        listed = await self.rest.orders(address, number, limit=1000)
        by_uid = client_ids_by_uid(listed)
        states = {int(o.clientId): order_state(o) for o in listed if is_uint(o.clientId)}
        open_ids = {cid for cid, (status, _) in states.items() if status.is_open}
        fills = [fill_from_rest(f, by_uid.get(f.orderId or "", 0))
                 for f in await self.rest.fills(address, number, limit=1000)]
        return VenueAccount(open_ids, states, fills, await self.positions())

    async def transfers(self) -> list[Transfer]:
        """The account's newest transfers over REST (a restart's catch-up: bot.peak); one that
        cannot be read is logged and left out."""
        if self.account is None:
            return []
        out = []
        for raw in await self.rest.transfers(*self.account):
            try:
                transfer = transfer_event(raw)
            except MalformedMessage as exc:
                log.warning("transfer_unreadable", error=str(exc))
                continue
            if transfer is not None:
                out.append(transfer)
        return out

    async def close(self) -> None:
        await self.rest.aclose()
        if self.gateway is not None:
            self.gateway.close()

