"""The engine: market state and events wired to the decision path and the order managers.

Market and account events arrive through `on_market_event` / `on_account_event` (perp venue) and
`on_spot_event` / `on_spot_account_event` (the spot hedge venue). Decisions are the pure
functions of `bot.decisions`; the spot hedge is `bot.execution.hedge_control`; positions and
equity are `bot.portfolio`. `run()` drives time: due TWAP children, hedges, gauges.

Per market event the engine only updates state (book, estimators: O(1)); the flags, sleeves,
sizing and gate run at most once per `rules.eval_interval_secs` per market.
"""

from __future__ import annotations

import itertools

import structlog

from bot.accounts import AccountBook
from bot.book import OrderBook
from bot.carry_start import restore_from_store
from bot.clock import NS_PER_SEC, Clock
from bot.config import Settings
from bot.control.status import decision_summary
from bot.decider import Decider
from bot.domain import (
    ZERO,
    AccountEvent,
    BlockHeight,
    BookDelta,
    BookSnapshot,
    Fill,
    FundingPayment,
    MarketEvent,
    MarketParams,
    MarketSpec,
    MarketStatus,
    MarketStatusKind,
    OracleUpdate,
    Position,
    RiskMode,
    Trade,
    Transfer,
)
from bot.event_counts import EventCounts
from bot.events import EventBus
from bot.execution.hedge_control import HedgeControl
from bot.execution.orders import ActiveParent, OrderManager
from bot.history import MarketHistory
from bot.market_info import MarketStatuses, apply_params
from bot.market_state import MarketState, SpotLeg, build_markets, fold_oracle, sample_depth, seed_history
from bot.news.board import NewsBoard
from bot.peak import LivePeak
from bot.portfolio import Portfolio, restore_positions
from bot.rules.flags import FlagInputs
from bot.rules.gate import GateState
from bot.store import Store
from bot.telemetry import Metrics

__all__ = ["TICK_SECS", "Engine", "MarketState", "SpotLeg"]
log = structlog.get_logger("engine")
DEPTH_SAMPLE_NS = NS_PER_SEC  # depth near mid is sampled at most once a second per market
TICK_SECS = 0.1


class Engine:
    """Owns market and portfolio state for one account and decides when and what to trade."""

    name = "engine"

    def __init__(self, settings: Settings, specs: dict[str, MarketSpec], store: Store, orders: OrderManager,
                 metrics: Metrics, clock: Clock, books: dict[str, OrderBook] | None = None, *,
                 spot_orders: OrderManager | None = None, spot_specs: dict[str, MarketSpec] | None = None,
                 spot_books: dict[str, OrderBook] | None = None, news: NewsBoard | None = None,
                 events: EventBus | None = None, accounts: AccountBook | None = None) -> None:
        self.events = events or EventBus()
        # Live: the venues' accounts (equity, fees); None in paper and backtests (configured values).
        self.accounts = accounts
        self._settings, self._store, self.orders, self._spot_orders = settings, store, orders, spot_orders
        # `orders`: the perp venue's; `order_managers`: it, then the spot hedge venue's
        self.order_managers = [orders] + ([spot_orders] if spot_orders is not None else [])
        self._metrics, self._clock, self.specs = metrics, clock, specs
        self.spot_specs = spot_specs or {}
        # `_spot_state`: spot ticker -> its perp market (a spot leg needs a spot venue)
        hedged = (spot_books or {}) if spot_orders is not None else None
        self.markets, self._spot_state = build_markets(settings, specs, books or {}, self.spot_specs, hedged)
        self.portfolio = Portfolio(self.markets, settings, accounts, orders, spot_orders)
        self.equity, self.pnl = self.portfolio.equity, self.portfolio.pnl
        self.total_pnl = self.portfolio.total_pnl
        self.expected_funding = self.portfolio.expected_funding
        self.expected_funding_market = self.portfolio.expected_funding_market
        self.fee_rates = self.portfolio.fee_rates
        self.perp_positions = self.portfolio.perp_positions
        self.spot_positions = self.portfolio.spot_positions
        # Live, the peak is the store's, follows transfers and starts at the first equity the venues
        # report (bot.peak), not at a paper value.
        self.live_peak = None if accounts is None else LivePeak(store, accounts, clock, orders.venue.name)
        self.peak_equity = self.portfolio.initial_equity if self.live_peak is None else self.live_peak.value
        self.statuses = MarketStatuses(list(specs), metrics, self.events)
        self._pulled: list[ActiveParent] = []  # stopped by a status change: children cancelled next tick
        self.block_height = 0
        self.news = news or NewsBoard()
        self.active_news = self.news.active
        self.risk_mode, self.risk_reason = store.risk_mode()
        if store.kill_latch() is not None:
            self.risk_mode = RiskMode.HALTED
        self.paused = False
        self._eval_interval_ns = int(settings.rules.eval_interval_secs * NS_PER_SEC)
        self._event_counts = EventCounts(metrics.market_events)
        restore_positions(store, self.markets, self._spot_state)
        for market, record in store.last_decisions().items():
            if market in self.markets:
                self.markets[market].last_decision = decision_summary(record)
        # One seed sequence and one decision id per market, shared by the perp and spot plans.
        seeds, ids = itertools.count(settings.sim.seed + 1), dict[str, int]()
        # The spot hedge per hedged market, driven by the perp fills.
        self.hedge_control = HedgeControl(settings, self.markets, orders, spot_orders, store, metrics, clock,
                                          seeds, ids)
        self.hedges, self.hedge_status = self.hedge_control.hedges, self.hedge_control.status
        restore_from_store(self.markets, self.hedges)  # the daemon follows the venues after reconciling
        self.decider = Decider(settings, self.markets, self.statuses, store, orders, metrics, clock,
                               self.events, self.news, self.portfolio, self.hedge_control, seeds, ids)
        self.directional, self.sizing_vol = self.decider.directional, self.decider.sizing_vol
        self.resolved_target = self.decider.resolved_target
        self.set_directional_target = self.decider.set_directional_target

    # ---- events ----------------------------------------------------------------------------

    def on_market_event(self, event: MarketEvent) -> None:
        """Update state from one perp market event and evaluate the rules when due."""
        kind = event.__class__  # exact classes: the domain events are final dataclasses
        if kind is BlockHeight:
            self.block_height = event.height  # type: ignore[union-attr]
            return
        market = event.market  # type: ignore[union-attr]
        state = self.markets.get(market)
        if state is None:
            return
        if kind is MarketStatus or kind is MarketParams:
            self._on_market_info(state, event)  # type: ignore[arg-type]
            return
        self._event_counts.add(market, kind)
        now = state.last_event_ns = event.ts_recv
        if kind is BookDelta:
            if not state.book.apply_delta(event):  # type: ignore[arg-type]
                self._metrics.book_resyncs.labels(market).inc()
                log.warning("book_crossed", market=market)
        elif kind is OracleUpdate:
            fold_oracle(state, event, now)  # type: ignore[arg-type]
        elif kind is BookSnapshot:
            state.book.apply_snapshot(event)  # type: ignore[arg-type]
        elif kind is Trade:
            return
        self._after_update(state, now)

    def _on_market_info(self, state: MarketState, event: MarketStatus | MarketParams) -> None:
        """A status change pulls the market's parent and forces a fresh decision under the new
        status; new tick/step/margin fractions take effect in the next target and child."""
        ticker = state.spec.ticker
        if isinstance(event, MarketStatus):
            if not self.statuses.update(event):
                return
            self.decider.settlement_hold.discard(ticker)
            parent = self.orders.hold(ticker)
            if parent is not None and event.status is not MarketStatusKind.ACTIVE:
                self._pulled.append(parent)  # the next decision plans under the new status
            elif parent is not None:
                self.orders.release(ticker, parent)
        else:
            spec = apply_params(state.spec, event)
            if spec == state.spec:
                return
            log.warning("market_params_changed", market=ticker, tick=str(spec.tick_size),
                        step=str(spec.step_size), imf=str(spec.initial_margin_fraction),
                        mmf=str(spec.maintenance_margin_fraction))
            self.specs[ticker] = state.spec = spec
        state.last_target_ns = 0
        state.gate = GateState(state.gate.was_over, state.gate.last_flag_decision_ns, 1)

    def on_book_changed(self, market: str, ts_recv: int) -> None:
        """A feed that keeps the shared book itself applied an update: sample and evaluate only."""
        state = self.markets.get(market)
        if state is not None:
            state.last_event_ns = ts_recv
            self._after_update(state, ts_recv)

    def _after_update(self, state: MarketState, now: int) -> None:
        if now - state.last_depth_sample_ns >= DEPTH_SAMPLE_NS and state.book.mid() is not None:
            sample_depth(state, now, self._settings.rules.liquidity_depth_bps)
        if now - state.last_eval_ns >= self._eval_interval_ns:
            state.last_eval_ns = now
            self._event_counts.flush()
            self.evaluate(state, now)

    def on_spot_event(self, event: MarketEvent) -> None:
        """Keep the spot hedge books current (spot has no oracle and no funding)."""
        if isinstance(event, BookDelta | BookSnapshot):
            state = self._spot_state.get(event.market)
            if state is None or state.spot is None:
                return
            if isinstance(event, BookSnapshot):
                state.spot.book.apply_snapshot(event)
            elif not state.spot.book.apply_delta(event):
                self._metrics.book_resyncs.labels(event.market).inc()

    def on_account_event(self, event: AccountEvent) -> None:
        """Fold a perp venue account event into orders, positions, the funding ledger and hedges."""
        if isinstance(event, FundingPayment):
            self.portfolio.on_funding(event, self._store, self.orders.venue.name)
            return
        if isinstance(event, Transfer):
            if self.live_peak is not None:
                self.live_peak.on_transfer(event)
            return
        if not isinstance(event, Fill):
            self.orders.on_account_event(event)
            return
        # The hedge the fill moves is stored in the fill's own transaction.
        hedge = self.hedge_control.after_fill(event)
        self.orders.on_account_event(event, self.hedge_control.fill_meta(event.market, hedge))
        state = self.markets.get(event.market)
        if state is not None and state.position.apply_fill(event):
            self._metrics.position.labels(event.market).set(float(state.position.size))
            self._fill_seen(event, state.position, None)
            if hedge is not None:
                self.hedges[event.market] = hedge

    def on_spot_account_event(self, event: AccountEvent) -> None:
        """Fold a spot hedge venue account event into its orders and positions."""
        if self._spot_orders is None or isinstance(event, FundingPayment):
            return  # spot does not pay funding
        if isinstance(event, Transfer):  # a deposit or withdrawal moves the peak, not PnL (bot.peak)
            if self.live_peak is not None:
                self.live_peak.on_transfer(event, self._spot_orders.venue.name)
            return
        self._spot_orders.on_account_event(event)
        if isinstance(event, Fill):
            state = self._spot_state.get(event.market)
            if state is not None and state.spot is not None and state.spot.position.apply_fill(event):
                self._fill_seen(event, state.spot.position, self._spot_orders.venue.name)

    def _fill_seen(self, fill: Fill, position: Position, venue: str | None) -> None:
        """Log and publish a new fill (the perp venue's log line does not name its venue)."""
        where = {} if venue is None else {"venue": venue}
        log.info("fill", client_order_id=fill.client_id, market=fill.market, **where, side=fill.side.value,
                 size=str(fill.size), price=str(fill.price), fee=str(fill.fee), position=str(position.size))
        self.events.publish("fill", fill.ts_event, venue=venue or self.orders.venue.name, market=fill.market,
                            side=fill.side.value, size=str(fill.size), price=str(fill.price),
                            fee=str(fill.fee), position=str(position.size))

    # ---- the decision path (bot.decider) -----------------------------------------------------

    def evaluate(self, state: MarketState, now_ns: int) -> None:
        """Evaluate one market's flags and gate now; decide when it opens."""
        mark = state.mark
        if mark is None or (self.accounts is not None and not self.accounts.ready):
            return  # live: nothing is sized before the venues' accounts were read
        self.decider.evaluate(state, mark, now_ns, self.risk_mode, self.paused, self.peak_equity)

    def decide(self, state: MarketState, reason: str, inputs: FlagInputs, now_ns: int) -> None:
        """Record a decision and start the plans that move the perp (and spot hedge) to target."""
        self.decider.decide(state, reason, inputs, now_ns,
                            self.decider.context(state, now_ns, self.risk_mode, self.peak_equity))

    def seed_history(self, history: MarketHistory) -> None:
        """Fold a market's venue history into its sizing vol and funding estimators (bot.history)."""
        if (state := self.markets.get(history.market)) is not None:
            seed_history(state, history)

    def set_risk_mode(self, mode: RiskMode, reason: str) -> None:
        if mode is self.risk_mode and reason == self.risk_reason:
            return
        log.warning("risk_mode_changed", old=self.risk_mode.value, new=mode.value, reason=reason)
        self.events.publish("risk_mode_changed", self._clock.now_ns(), old=self.risk_mode.value,
                            new=mode.value, reason=reason)
        self.risk_mode, self.risk_reason = mode, reason
        self._store.set_risk_mode(mode, reason, self._clock.now_ns())
        self._metrics.risk_mode.set(list(RiskMode).index(mode))

    # ---- time ------------------------------------------------------------------------------

    async def tick(self) -> None:
        """Send due TWAP children on every venue and refresh the gauges (one engine step)."""
        while self._pulled:
            await self.orders.cancel_parent(self._pulled.pop())
        self.decider.hold_refused_settlement()
        held = self.hedge_control.hold_unhedged_perp()
        try:
            await self.orders.tick({t: s.book for t, s in self.markets.items()}, self.specs,
                                    self.risk_mode, self.hedge_control.perp_caps())
        finally:
            for market, parent in held.items():
                self.orders.release(market, parent)
        if self._spot_orders is not None:
            await self.hedge_control.tick(self._clock.now_ns(), self.risk_mode)
            # REDUCE_ONLY opens nothing new on the perp but keeps the hedges matched.
            spot_mode = RiskMode.NORMAL if self.risk_mode is RiskMode.REDUCE_ONLY else self.risk_mode
            await self._spot_orders.tick(
                {s.spot.ticker: s.spot.book for s in self.markets.values() if s.spot is not None},
                self.spot_specs, spot_mode)
            self.hedge_control.count_results()
        equity = self.equity()
        live = self.live_peak
        self.peak_equity = max(self.peak_equity, equity) if live is None else live.observe()
        self._metrics.equity_usd.set(float(equity))
        self._metrics.funding_realised_usd.set(
            float(sum((s.ledger.realised_usd for s in self.markets.values()), ZERO)))
        self._metrics.funding_expected_usd.set(float(self.expected_funding()))

    async def run(self) -> None:
        """Send due TWAP children and refresh gauges until cancelled."""
        while True:
            await self.tick()
            await self._clock.sleep(TICK_SECS)
