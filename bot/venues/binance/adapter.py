"""The Binance spot venue: MarketData over the diff-depth/trade streams, ExecutionVenue over REST.

Nothing outside `venues/binance/` sees a Binance field name: the streams emit domain events,
orders go in as domain `OrderRequest`s (our integer client id travels as newClientOrderId
"pb-<id>"). Market data alone needs no keys; execution and the user data stream need
PERPBOT_BINANCE_API_KEY / PERPBOT_BINANCE_API_SECRET, which reach `BinanceRest` as SecretStr
from `bot.config` and are never logged.

Spot has no positions: `positions()` reports, per market, the base asset balance (free +
locked in open orders). Two markets with the same base asset (BTC-USDT, BTC-USDC) would both
report the same balance.

Deposits, withdrawals and transfers between the user's accounts reach the account sink as domain
`Transfer`s (bot.venues.binance.transfers): from the user stream's balanceUpdate while it runs,
and from the deposit, withdrawal and universal transfer histories (`transfers()`, read since the
stored cursor: bot.venues.binance.catch_up) at start and after every user stream (re)connect. A
base asset is valued at its market's mid (the shared book's, else a REST touch), as the
account's equity values it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection, Mapping
from decimal import Decimal

import structlog
from pydantic import SecretStr
from structlog.contextvars import bound_contextvars

from bot.book import OrderBook
from bot.clock import Clock
from bot.domain import ZERO, Fill, MarketSpec, OrderRequest, OrderUpdate, Transfer
from bot.errors import BotError, MalformedMessage, OrderRejected, OrderStateUnknown, TransientVenueError
from bot.history import MarketHistory
from bot.store.meta import MetaStore
from bot.telemetry import Metrics
from bot.venues.binance import wire
from bot.venues.binance.catch_up import TransferCursor, read_histories
from bot.venues.binance.config import BinanceSettings
from bot.venues.binance.errors import VENUE, OrderNotFound
from bot.venues.binance.market_stream import MarketStream
from bot.venues.binance.orders import SpotSpec, client_id_of, client_order_id, to_spot_order
from bot.venues.binance.parse import (
    AssetBalance,
    base_positions,
    parse_account,
    parse_account_position,
    parse_execution_report,
    parse_my_trade,
    parse_order_info,
    parse_spec,
)
from bot.venues.binance.rest import BinanceRest
from bot.venues.binance.transfers import (
    QUOTE_ASSETS,
    BalanceChange,
    history_changes,
    next_cursor,
    open_times,
    parse_balance_update,
)
from bot.venues.binance.user_stream import UserStream
from bot.venues.ports import AccountSink, Capabilities, MarketSink, VenueAccount

log = structlog.get_logger("binance")
CANCEL_CONCURRENCY = 16  # cancels in flight at once on the kill path (each weighs 1)


class BinanceVenue:
    """Market data for a set of spot markets and, with keys, execution on one account."""

    name = VENUE
    capabilities = Capabilities(positions_are_balances=True, batch_cancel=True, reads_orders=True)

    def __init__(
        self,
        rest: BinanceRest,
        ws_url: str,
        symbols: Mapping[str, str],
        metrics: Metrics,
        *,
        depth_limit: int = 1000,
        min_session_secs: float = 5.0,
        keepalive_secs: float = 1800.0,
        stream_options: dict[str, object] | None = None,
    ) -> None:
        """`symbols`: our market name -> Binance symbol (BTC-USDT -> BTCUSDT)."""
        self.rest = rest
        self._ws_url = ws_url
        self.symbols = dict(symbols)
        self._metrics = metrics
        self._depth_limit = depth_limit
        self._min_session_secs = min_session_secs
        self._keepalive_secs = keepalive_secs
        self._stream_options = stream_options or {}
        self.spot_specs: dict[str, SpotSpec] = {}
        self._by_symbol: dict[str, SpotSpec] = {}
        self.books: dict[str, OrderBook] = {}
        self.balances: dict[str, AssetBalance] = {}
        self._market_of: dict[int, str] = {}  # client id -> market, for cancels and queries
        self._open: set[int] = set()  # client ids we believe open (re-read after a stream gap)
        self._account_sink: AccountSink = lambda event: None
        # When set, the market stream updates the shared books and only says which one changed.
        self.on_book_changed: Callable[[str, int], None] | None = None
        self.market_stream: MarketStream | None = None
        self.user_stream: UserStream | None = None
        self._valuing: set[asyncio.Task[None]] = set()  # transfers waiting for a REST price
        self.transfer_cursor = TransferCursor()  # where the next history catch-up starts
        self._catch_up_due = asyncio.Event()  # set on each user stream (re)connect
        self.catch_ups = 0  # transfer catch-ups after a (re)connect done (read or failed)

    # ---- set-up -------------------------------------------------------------------------------

    async def hourly_history(self, market: str, hours: int) -> MarketHistory:
        """The last `hours` hourly closes of a spot market (klines); no funding on spot."""
        rows = await self.rest.klines(self.symbols[market], "1h", max(1, min(hours, 1000)))
        closes = []
        for row in rows:
            with contextlib.suppress(ArithmeticError, TypeError, ValueError, IndexError):
                open_ms, close = int(row[0]), Decimal(str(row[4]))
                if close.is_finite() and close > 0:
                    closes.append((open_ms * 1_000_000, close))
        return MarketHistory(market, closes, [], source=self.name)

    async def load_markets(self) -> dict[str, MarketSpec]:
        """Read the symbols' filters from exchangeInfo; refuse symbols that are not trading."""
        info = await self.rest.exchange_info(list(self.symbols.values()))
        listed = {s.symbol: s for s in info.symbols}
        for market, symbol in self.symbols.items():
            entry = listed.get(symbol)
            if entry is None or entry.status != "TRADING":
                raise OrderRejected(VENUE, "markets", f"{symbol} is not trading on this venue")
            spec = parse_spec(entry, market)
            self.spot_specs[market] = spec
            self._by_symbol[symbol] = spec
        return self.specs()

    def specs(self) -> dict[str, MarketSpec]:
        return {m: s.market_spec() for m, s in self.spot_specs.items()}

    def use_books(self, books: dict[str, OrderBook]) -> None:
        """Keep these book objects whole (shared with the engine and any paper venue)."""
        self.books = books

    # ---- MarketData ---------------------------------------------------------------------------

    async def run(self, sink: MarketSink) -> None:
        """Stream market events to `sink` and, with keys, account events to the account sink."""
        options: dict[str, object] = {"min_session_secs": self._min_session_secs,
                                      "depth_limit": self._depth_limit, **self._stream_options}
        if self.on_book_changed is not None:
            options["on_book_changed"] = self.on_book_changed
        self.market_stream = MarketStream(self._ws_url, self.rest, {s: m for m, s in self.symbols.items()},
                                          self.books, sink, self._metrics, clock=self.rest.clock,
                                          **options)  # type: ignore[arg-type]
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.market_stream.run(), name=MarketStream.name)
            if self.rest.has_keys:
                self.user_stream = UserStream(
                    self._ws_url, self.rest, self._on_user_event, self._metrics, on_connected=self._reconcile,
                    keepalive_secs=self._keepalive_secs, min_session_secs=self._min_session_secs,
                    clock=self.rest.clock)
                tg.create_task(self.user_stream.run(), name=UserStream.name)
                tg.create_task(self._catch_up_after_connects(), name="binance_transfer_catch_up")

    def _on_user_event(self, event: wire.ExecutionReport | wire.OutboundAccountPosition | wire.BalanceUpdate
                       ) -> None:
        try:
            if isinstance(event, wire.OutboundAccountPosition):
                self.balances.update(parse_account_position(event))
                return
            if isinstance(event, wire.BalanceUpdate):
                self._transfer_seen(parse_balance_update(event))
                return
            spec = self._by_symbol.get(event.s)
            if spec is None:
                return
            update, fill = parse_execution_report(event, spec)
        except MalformedMessage as exc:
            self._metrics.malformed_messages.labels(VENUE).inc()
            log.error("feed_malformed_message", venue=VENUE, stream="user", error=str(exc))
            return
        if update is None:
            return  # not one of ours (a manual order, another bot)
        self._track(update)
        if fill is not None:
            if event.N not in (None, spec.base_asset, spec.quote_asset):
                log.warning("fill_fee_unconverted", client_order_id=fill.client_id, asset=event.N,
                            commission=event.n)
            self._account_sink(fill)  # before the update: a FILLED update closes the order's books
        self._account_sink(update)

    def _track(self, update: OrderUpdate) -> None:
        self._market_of[update.client_id] = update.market
        if update.status.is_open:
            self._open.add(update.client_id)
        else:
            self._open.discard(update.client_id)

    async def _reconcile(self) -> None:
        """After a user stream (re)connect, before its events: re-read balances and the orders we
        believe open, and have the transfers the stream may have missed read beside it."""
        self._catch_up_due.set()
        self.balances = parse_account(await self.rest.account())
        await self.sweep_account()

    async def _catch_up_after_connects(self) -> None:
        """Read the transfer histories after each user stream (re)connect (the peak pairs those
        the stream saw), beside the stream: a catch-up of many windows must not hold its events."""
        while True:
            await self._catch_up_due.wait()
            self._catch_up_due.clear()
            try:
                for transfer in await self.transfers():
                    self._account_sink(transfer)
            except BotError as exc:
                log.warning("transfers_unread", venue=VENUE, error=str(exc))
            self.catch_ups += 1

    # ---- transfers ----------------------------------------------------------------------------

    def use_store(self, store: MetaStore) -> None:
        """Keep the transfer catch-up's cursor in the store (without one: in memory, per run)."""
        self.transfer_cursor.use_store(store)

    async def transfers(self) -> list[Transfer]:
        """Deposits, withdrawals and transfers between the owner's own accounts listed since the
        cursor, valued now; a malformed row is counted, logged and skipped. The cursor then moves
        to the venue's time of the read, held back by what may still change (`next_cursor`); a
        failed read raises and leaves it."""
        cursor = self.transfer_cursor
        read = await read_histories(self.rest, cursor.get())
        changes, errors = history_changes(read.deposits, read.withdrawals, read.transfers)
        for error in errors:
            self._metrics.malformed_messages.labels(VENUE).inc()
            log.error("feed_malformed_message", venue=VENUE, stream="transfers", error=error)
        prices: dict[str, Decimal | None] = {}  # one depth read per market with an empty book
        holds = open_times(read.deposits, read.withdrawals, read.transfers)
        if read.is_cut:
            holds.append(read.start_ms)
        transfers: list[Transfer] = []
        for change in changes:
            transfer = await self._valued(change, prices)
            if transfer is None:
                holds.append(change.ms)  # unpriced: the next catch-up reads it again
            else:
                transfers.append(transfer)
        cursor.commit(next_cursor(read.end_ms, holds))
        log.info("transfers_listed", venue=VENUE, since_ms=read.start_ms, requests=read.requests,
                 listed=len(changes), malformed=len(errors))
        return transfers

    def _unit_price(self, asset: str) -> tuple[str | None, Decimal | None]:
        """(the market whose mid values `asset`, USD per unit now): a quote asset (None, 1); the
        base of one of our markets (it, its mid, None while its book is empty); any other asset
        (None, None): the account's equity does not value it either."""
        if asset in QUOTE_ASSETS:
            return None, Decimal(1)
        for market, spec in self.spot_specs.items():
            if spec.base_asset == asset:
                book = self.books.get(market)
                return market, book.mid() if book is not None else None
        return None, None

    async def _valued(self, change: BalanceChange, prices: dict[str, Decimal | None] | None = None
                      ) -> Transfer | None:
        """The change valued now; None when its market has no price at all (not taken: the next
        history catch-up reads a deposit or withdrawal again)."""
        market, price = self._unit_price(change.asset)
        if market is not None and price is None:
            prices = {} if prices is None else prices
            if market not in prices:
                bid, ask = await self.touch(market)
                prices[market] = (bid + ask) / 2 if bid is not None and ask is not None else None
            price = prices[market]
            if price is None:
                log.error("transfer_unpriced", venue=VENUE, key=change.key, market=market)
                return None
        return self._priced(change, price)

    def _transfer_seen(self, change: BalanceChange) -> None:
        """A balanceUpdate: to the account sink at the mid now (a REST touch when the book is empty)."""
        market, price = self._unit_price(change.asset)
        if market is None or price is not None:
            self._account_sink(self._priced(change, price))
            return

        async def value() -> None:
            try:
                transfer = await self._valued(change)
            except BotError as exc:  # not taken: the next history catch-up reads it again
                log.error("transfer_unpriced", venue=VENUE, key=change.key, error=str(exc))
                return
            if transfer is not None:
                self._account_sink(transfer)

        task = asyncio.get_running_loop().create_task(value())
        self._valuing.add(task)
        task.add_done_callback(self._valuing.discard)

    def _priced(self, change: BalanceChange, price: Decimal | None) -> Transfer:
        if price is None:  # an asset the equity does not value: 0 either way
            log.info("transfer_unvalued", venue=VENUE, key=change.key, asset=change.asset,
                     delta=str(change.delta))
        return change.transfer(price)

    async def sweep_account(self) -> None:
        """Re-read the orders we believe open over REST and report their fills and states (no
        stream needed)."""
        for client_id in sorted(self._open):
            found = await self.order_row(client_id)
            if found is not None:
                await self._report_row(*found)

    async def _report_row(self, spec: SpotSpec, row: wire.OrderInfo) -> OrderUpdate | None:
        """Report an order's state read over REST, after its fills: a state without its fills
        would close the order with the fills never booked (the stream that carries them may be
        down or gone). Fills are deduplicated by id downstream, so repeating the stream's is harmless.
        """
        update = parse_order_info(row, spec)
        if update is None:
            return None
        if update.filled_size > 0:
            try:
                fills = await self._fills_of(spec, row.orderId, update.client_id)
            except MalformedMessage as exc:  # not reported: the next sweep (or reconciliation) reads it again
                self._metrics.malformed_messages.labels(VENUE).inc()
                log.error("feed_malformed_message", venue=VENUE, stream="my_trades", error=str(exc))
                return None
            for fill in fills:
                self._account_sink(fill)
        self._track(update)
        self._account_sink(update)
        return update

    async def _fills_of(self, spec: SpotSpec, order_id: int, client_id: int) -> list[Fill]:
        rows = await self.rest.my_trades(spec.symbol, order_id)
        return [parse_my_trade(r, spec, client_id) for r in rows if r.orderId == order_id]

    async def executed_fills(self, client_id: int) -> tuple[Decimal, list[Fill]] | None:
        """(base executed, fills) of one of our orders as the venue booked them (fill ids as the
        user stream's), or None when the venue does not know the order (`kill --direct` books a
        flatten from it: no user stream). One order read, and the trades only when it traded."""
        found = await self.order_row(client_id)
        if found is None:
            return None
        spec, row = found
        update = parse_order_info(row, spec)
        executed = update.filled_size if update is not None else ZERO
        return executed, (await self._fills_of(spec, row.orderId, client_id) if executed else [])

    # ---- ExecutionVenue -----------------------------------------------------------------------

    def set_account_sink(self, sink: AccountSink) -> None:
        self._account_sink = sink

    def _spec(self, market: str, op: str) -> SpotSpec:
        spec = self.spot_specs.get(market)
        if spec is None:
            raise OrderRejected(VENUE, op, f"unknown market {market}")
        return spec

    async def place(self, order: OrderRequest) -> None:
        """Place once. OrderStateUnknown after a timeout or 5xx: `query_order` before anything else."""
        with bound_contextvars(venue=VENUE, market=order.market, client_order_id=order.client_id):
            spot = to_spot_order(order, self._spec(order.market, "place"))
            self._market_of[order.client_id] = order.market
            self._open.add(order.client_id)
            try:
                await self.rest.new_order(spot.params())
            except (OrderRejected, TransientVenueError):
                self._open.discard(order.client_id)  # refused, or never sent
                raise
            except OrderStateUnknown:
                log.warning("order_state_unknown", client_order_id=order.client_id)
                raise

    async def cancel(self, client_id: int) -> bool:
        """Cancel one of our orders; False when the venue no longer lists it open (its final
        state, if the venue knows the order, still goes to the account sink)."""
        with bound_contextvars(venue=VENUE, client_order_id=client_id):
            market = self._market_of.get(client_id) or await self._find_open(client_id)
            if market is None:
                log.warning("cancel_unknown_order", client_order_id=client_id)
                return False
            spec = self._spec(market, "cancel")
            try:
                row = await self.rest.cancel_order(spec.symbol, client_order_id(client_id))
            except OrderNotFound:
                log.info("cancel_order_not_open", client_order_id=client_id)
                found = await self.order_row(client_id)
                if found is not None:
                    await self._report_row(*found)
                return False
            await self._report_row(spec, row)
            return True

    async def cancel_many(self, client_ids: list[int], *, all_open: bool = False
                          ) -> tuple[list[int], list[str]]:
        """Cancel these orders (with `all_open`: every open order on our symbols, foreign ones too).

        The venue's open orders are listed once per symbol and cancelled concurrently (the kill
        path). Orders of ours the venue no longer lists are queried so their final state reaches
        the account sink. Returns (our client ids cancelled or already closed, errors).
        """
        wanted = set(client_ids)
        errors: list[str] = []
        targets: list[tuple[SpotSpec, str, int | None]] = []
        listed: set[int] = set()
        for spec in self.spot_specs.values():
            try:
                rows = await self.rest.open_orders(spec.symbol)
            except BotError as exc:
                errors.append(f"open orders {spec.symbol}: {exc}")
                continue
            for row in rows:
                cid = client_id_of(row.clientOrderId)
                if cid is not None:
                    listed.add(cid)
                if all_open or cid in wanted:
                    targets.append((spec, row.clientOrderId, cid))
        gate = asyncio.Semaphore(CANCEL_CONCURRENCY)

        async def cancel_one(spec: SpotSpec, venue_id: str, cid: int | None) -> int | None:
            async with gate:
                try:
                    try:
                        found: tuple[SpotSpec, wire.OrderInfo] | None = (
                            spec, await self.rest.cancel_order(spec.symbol, venue_id))
                    except OrderNotFound:
                        found = await self.order_row(cid) if cid is not None else None
                    if found is not None:
                        await self._report_row(*found)
                except BotError as exc:
                    errors.append(f"cancel {venue_id}: {exc}")
                    return None
            return cid

        async def settle(cid: int) -> int | None:
            async with gate:
                try:
                    found = await self.order_row(cid)
                    if found is not None:
                        await self._report_row(*found)
                except BotError as exc:
                    errors.append(f"query {cid}: {exc}")
                    return None
            return cid

        done = await asyncio.gather(*(cancel_one(*t) for t in targets),
                                    *(settle(cid) for cid in sorted(wanted - listed)))
        return sorted({cid for cid in done if cid is not None}), errors

    async def order_row(self, client_id: int) -> tuple[SpotSpec, wire.OrderInfo] | None:
        """The venue's raw record of one of our orders (quote filled too), or None."""
        market = self._market_of.get(client_id)
        for name in [market] if market is not None else list(self.spot_specs):
            spec = self.spot_specs[name]
            try:
                return spec, await self.rest.query_order(spec.symbol, client_order_id(client_id))
            except OrderNotFound:
                continue
        return None

    async def touch(self, market: str) -> tuple[Decimal | None, Decimal | None]:
        """Best bid and ask from a REST depth read (no stream needed)."""
        snapshot = await self.rest.depth(self._spec(market, "touch").symbol, 5)
        bid = Decimal(snapshot.bids[0][0]) if snapshot.bids else None
        ask = Decimal(snapshot.asks[0][0]) if snapshot.asks else None
        return bid, ask

    async def _find_open(self, client_id: int) -> str | None:
        wanted = client_order_id(client_id)
        for market, spec in self.spot_specs.items():
            if any(row.clientOrderId == wanted for row in await self.rest.open_orders(spec.symbol)):
                return market
        return None

    def forget_order(self, client_id: int) -> None:
        """An order of ours that never reached the venue (bot.execution.read_back): the account
        sweep stops asking the venue about it."""
        self._open.discard(client_id)

    async def query_order(self, client_id: int) -> OrderUpdate | None:
        """The venue's state of one of our orders, by client id; None if the venue does not know it."""
        found = await self.order_row(client_id)
        return parse_order_info(found[1], found[0]) if found is not None else None

    async def open_orders(self) -> list[int]:
        """Client ids of our open orders on every configured symbol."""
        return sorted((await self._open_states()).keys())

    async def _open_states(self) -> dict[int, OrderUpdate]:
        states: dict[int, OrderUpdate] = {}
        for spec in self.spot_specs.values():
            for row in await self.rest.open_orders(spec.symbol):
                update = parse_order_info(row, spec)
                if update is not None:
                    self._track(update)
                    states[update.client_id] = update
        return states

    async def positions(self) -> dict[str, Decimal]:
        """Base asset balance per market (free + locked), read from the account now."""
        self.balances = parse_account(await self.rest.account())
        return base_positions(self.balances, self.spot_specs)

    def cached_positions(self) -> dict[str, Decimal]:
        """Base asset balance per market as the user data stream last reported it (no IO)."""
        return base_positions(self.balances, self.spot_specs)

    def cached_free(self) -> dict[str, Decimal]:
        """Base asset balance per market not locked in open orders, as last reported (no IO): what
        a new sell may sell."""
        return {market: balance.free if (balance := self.balances.get(spec.base_asset)) else ZERO
                for market, spec in self.spot_specs.items()}

    def cached_free_quote(self) -> dict[str, Decimal]:
        """Quote asset balance per market not locked in open orders, as last reported (no IO):
        what a new buy may spend (bot.execution.buy_cap)."""
        return {market: balance.free if (balance := self.balances.get(spec.quote_asset)) else ZERO
                for market, spec in self.spot_specs.items()}

    async def account_snapshot(self, orders: Collection[int] = ()) -> VenueAccount:
        """Open orders, balances and, for `orders` (ours the store holds open), their states and
        fills even once they closed: the stream that would have reported them is gone with the
        process that placed them (start-up reconciliation)."""
        states = await self._open_states()
        order_states = {cid: (u.status, u.filled_size) for cid, u in states.items()}
        fills: list[Fill] = []
        for client_id in sorted(orders):
            update = states.get(client_id)
            if update is not None and not update.filled_size:
                continue
            found = await self.order_row(client_id)
            if found is None:
                continue  # never placed (or refused): reconciliation closes it
            spec, row = found
            update = parse_order_info(row, spec)
            if update is None:
                continue
            order_states[client_id] = (update.status, update.filled_size)
            if update.filled_size:
                fills += await self._fills_of(spec, row.orderId, client_id)
        return VenueAccount(set(states), order_states, fills, await self.positions())

    def client_id_of(self, client_order_id: str) -> int | None:
        """Our client id from a Binance client order id (None: not ours)."""
        return client_id_of(client_order_id)

    async def close(self) -> None:
        """Close the listen key (best effort) and the HTTP client."""
        for task in list(self._valuing):
            task.cancel()
        if self.user_stream is not None and self.user_stream.listen_key is not None:
            with contextlib.suppress(BotError):
                await self.rest.close_listen_key(self.user_stream.listen_key)
        await self.rest.aclose()


def build_venue(settings: BinanceSettings, metrics: Metrics, *, api_key: SecretStr | None = None,
                api_secret: SecretStr | None = None, clock: Clock | None = None) -> BinanceVenue:
    """A BinanceVenue from settings; keys come from `bot.config` (environment only)."""
    rest = BinanceRest(
        settings.rest_url, api_key=api_key, api_secret=api_secret, clock=clock,
        recv_window_ms=settings.recv_window_ms, weight_budget_1m=settings.weight_budget_1m,
        weight_limit_1m=settings.weight_limit_1m, timeout_secs=settings.timeout_secs,
        order_timeout_secs=settings.order_timeout_secs,
        time_sync_interval_secs=settings.time_sync_interval_secs,
    )
    return BinanceVenue(rest, settings.ws_url, settings.symbols, metrics,
                        depth_limit=settings.depth_snapshot_limit, min_session_secs=settings.min_session_secs,
                        keepalive_secs=settings.listen_key_keepalive_secs)
