"""The composition root: settings in, the trading core out (venues, books, store, order managers,
engine), wired and lined up with what was persisted. Nothing trades until the caller runs it.

`perpbot run` builds on it (bot.app adds the control API, the watchdog and the other services);
`record` and `kill --direct` open only the venues they need through the same registry
(bot.venues.registry), and the backtest takes its paper venues from there.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.accounts import AccountBook
from bot.clock import Clock
from bot.config import Settings
from bot.domain import BlockHeight, MarketEvent, OracleUpdate
from bot.engine import Engine
from bot.execution.orders import OrderManager
from bot.history import seed_engine, seed_vol_from_spot
from bot.news.board import NewsBoard
from bot.news.calendar import load_calendar
from bot.news.state import load_operator_items
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.leg import Leg
from bot.venues.ports import BookHook, MarketSink
from bot.venues.registry import Venues, open_accounts, open_venues


@dataclass
class Core:
    """What the daemon runs: the engine over both legs, their order managers and the store."""

    settings: Settings
    venues: Venues
    store: Store
    orders: OrderManager
    spot_orders: OrderManager | None
    engine: Engine
    accounts: AccountBook | None
    news: NewsBoard

    @property
    def perp(self) -> Leg:
        return self.venues.perp

    @property
    def hedge(self) -> Leg | None:
        return self.venues.hedge

    def market_sinks(self) -> list[tuple[Leg, MarketSink, BookHook]]:
        """Each leg with its own market data, the sink its events go to and its book-change hook.

        Spot events that ride on the perp feed go to the engine's spot side (spot has no oracle
        and no funding); the Binance stream keeps the shared spot books itself, so the engine
        reads them as they are and its events need no sink here.
        """
        engine = self.engine
        spot_books = self.hedge.books if self.hedge is not None else {}

        def on_market_event(event: MarketEvent) -> None:
            if not isinstance(event, BlockHeight) and event.market in spot_books:
                if not isinstance(event, OracleUpdate):
                    engine.on_spot_event(event)
                return
            engine.on_market_event(event)

        def on_book_changed(market: str, ts_recv: int) -> None:
            engine.on_book_changed(market, ts_recv)

        # Both look the engine's handlers up at each call (a test may wrap them after wiring).
        sinks: list[tuple[Leg, MarketSink, BookHook]] = [(self.perp, on_market_event, on_book_changed)]
        if self.hedge is not None and self.hedge.market_data is not None:
            sinks.append((self.hedge, lambda event: None, lambda market, ts_recv: None))
        return sinks


async def build_core(settings: Settings, metrics: Metrics, clock: Clock) -> Core:
    """Open the venues, the store and the engine; restore what the store holds; seed history."""
    venues = await open_venues(settings, metrics, clock)
    try:
        return await _wire(settings, venues, metrics, clock)
    except BaseException:
        await venues.close()
        raise


async def _wire(settings: Settings, venues: Venues, metrics: Metrics, clock: Clock) -> Core:
    perp, hedge = venues.perp, venues.hedge
    store = Store.open(settings.db_path)
    for leg in venues.legs:  # a venue with state of its own in the store (Binance: its transfer cursor)
        if (use_store := getattr(leg.venue, "use_store", None)) is not None:
            use_store(store)
    orders = OrderManager(perp.execution, store, metrics, clock, settings.execution)
    spot_specs = hedge.specs if hedge is not None else {}
    spot_orders = (OrderManager(hedge.execution, store, metrics, clock, settings.execution)
                   if hedge is not None else None)
    news = NewsBoard(load_calendar(settings.news.calendar_path) if settings.news.calendar_path else [],
                     float(settings.news.calendar_before_secs), float(settings.news.calendar_after_secs))
    news.operator.update(load_operator_items(settings.news_state_path, clock.now_ns()))
    accounts = open_accounts(settings, venues, metrics, clock)  # live only: the venues' truth
    engine = Engine(settings, perp.specs, store, orders, metrics, clock, perp.books,
                    spot_orders=spot_orders if spot_specs else None, spot_specs=spot_specs,
                    spot_books=hedge.books if hedge is not None else {}, news=news, accounts=accounts)
    for event in perp.start_events:  # market status and parameters as REST reported them
        engine.on_market_event(event)
    if perp.market_data is not None:  # seed the estimators (bot.history)
        await seed_engine(engine, perp.market_data, settings.strategy.history_hours)
    if hedge is not None and hedge.market_data is not None:
        await seed_vol_from_spot(engine, hedge.market_data, settings.strategy.history_hours)
    perp.restore_positions({t: s.position.size for t, s in engine.markets.items()})
    if hedge is not None:
        hedge.restore_positions({s.spot.ticker: s.spot.position.size
                                 for s in engine.markets.values() if s.spot is not None})
    watch = accounts.watching if accounts is not None else (lambda sink: sink)
    perp.execution.set_account_sink(watch(engine.on_account_event))
    if hedge is not None:
        hedge.execution.set_account_sink(watch(engine.on_spot_account_event))
    return Core(settings, venues, store, orders, spot_orders, engine, accounts, news)
