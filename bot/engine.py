"""The engine: market state, the rule gate, sleeves, targets and plans, wired to the order managers.

Market and account events arrive through `on_market_event` / `on_account_event` (perp venue) and
`on_spot_event` / `on_spot_account_event` (the spot hedge venue); the decision path itself is the
pure core in `rules`, `strategy` and `execution.twap`. `run()` drives time: due TWAP children.

Per market event the engine only updates state (book, estimators: O(1)); the flags, sleeves,
sizing and gate run at most once per `rules.eval_interval_secs` per market.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import structlog

from bot.accounts import AccountBook, decision_fees
from bot.book import OrderBook
from bot.clock import Clock
from bot.config import Settings
from bot.domain import (
    ZERO,
    AccountEvent,
    BlockHeight,
    BookDelta,
    BookSnapshot,
    FeeRates,
    Fill,
    FundingPayment,
    MarketEvent,
    MarketParams,
    MarketSpec,
    MarketStatus,
    MarketStatusKind,
    OracleUpdate,
    OrderRequest,
    OrderStatus,
    Position,
    RiskMode,
    Side,
    TimeInForce,
    Trade,
)
from bot.errors import BotError
from bot.events import EventBus
from bot.execution import hedge as hedging
from bot.execution.hedge import HedgeState
from bot.execution.orders import ActiveParent, OrderManager
from bot.execution.twap import TwapPlan, plan_twap
from bot.history import MarketHistory
from bot.ledger import NO_PNL, FundingLedger, PnlAttribution, attribute_pnl, expected_funding_usd
from bot.market_info import MarketStatuses, apply_params
from bot.news.board import NewsBoard
from bot.rules.estimators import NS_PER_HOUR, EwmaVol, FundingForecast, FundingTrend, RollingMedian, seed_vol
from bot.rules.flags import FLAG_NAMES, FlagInputs, Flags, evaluate_flags
from bot.rules.gate import GateState, evaluate_gate
from bot.store import Store
from bot.strategy import decide as strategy_decide
from bot.strategy import market_status as status_rules
from bot.strategy.carry import CarryWatch
from bot.strategy.sizing import Target
from bot.strategy.sleeves import SleeveBook
from bot.strategy.targets import FLAT, TargetSpec, parse_target, resolve_target
from bot.telemetry import Metrics

log = structlog.get_logger("engine")
NS_PER_SEC = 1_000_000_000
HEDGE_META_PREFIX = "hedge:"  # store meta key per hedged market (bot.execution.hedge.persisted)
DEPTH_SAMPLE_NS = NS_PER_SEC  # depth near mid is sampled at most once a second per market
TARGET_REFRESH_NS = NS_PER_SEC  # sleeves + limits are recomputed at most once a second, and always
TICK_SECS = 0.1  # right before an audit or a decision
# Market-event counts reach the Prometheus counter every this many events per (market, kind), and
# at every evaluation (so at most `eval_interval_secs` late): one counter lock per event is measurable.
EVENT_COUNT_BATCH = 64
# Vol estimates are reported to the flags only once warm (samples are 1 s returns): a short
# window on a handful of returns would trip the regime-shift ratio on noise at start-up.
VOL_SHORT_MIN_SAMPLES = 30
VOL_LONG_MIN_SAMPLES = 300


@dataclass(slots=True)
class SpotLeg:
    """The spot hedge of one perp market on the hedge venue."""

    spec: MarketSpec
    book: OrderBook
    position: Position
    target: Decimal = ZERO

    @property
    def ticker(self) -> str:
        return self.spec.ticker


@dataclass(slots=True)
class MarketState:
    spec: MarketSpec
    book: OrderBook
    position: Position
    oracle_price: Decimal | None = None
    funding: FundingForecast = field(default_factory=FundingForecast)
    vol_short: EwmaVol = field(default_factory=lambda: EwmaVol(half_life_secs=60))
    vol_long: EwmaVol = field(default_factory=lambda: EwmaVol(half_life_secs=900))
    # Sizing vol (hourly returns, half-life in days) and the funding trend: set by the engine.
    vol_sizing: EwmaVol = field(default_factory=lambda: EwmaVol(7 * 86400, 3600))
    funding_trend: FundingTrend = field(default_factory=lambda: FundingTrend(168))
    entry_trend: FundingTrend = field(default_factory=lambda: FundingTrend(168))
    carry_watch: CarryWatch = field(default_factory=CarryWatch)
    depth_median: RollingMedian = field(default_factory=lambda: RollingMedian(300))
    ledger: FundingLedger = field(default_factory=FundingLedger)
    spot: SpotLeg | None = None
    flags: Flags | None = None
    gate: GateState = field(default_factory=GateState)
    target: Decimal = ZERO
    carry_side: int = 0  # the carry sleeve's committed state: 0 closed, -1 short perp, +1 long
    carry_size: Decimal = ZERO  # and its base size while open (held, not re-sized)
    sleeves: SleeveBook | None = None
    sizing: Target | None = None
    pending_spot_target: Decimal = ZERO
    last_decision: dict[str, Any] | None = None
    last_eval_ns: int = 0
    last_target_ns: int = 0
    depth: Decimal = ZERO  # size within `rules.liquidity_depth_bps` of mid at the last sample
    last_depth_sample_ns: int = 0
    last_event_ns: int = 0

    @property
    def mark(self) -> Decimal | None:
        return self.oracle_price or self.book.mid()


class Engine:
    """Owns market and portfolio state for one account and decides when and what to trade."""

    name = "engine"

    def __init__(
        self,
        settings: Settings,
        specs: dict[str, MarketSpec],
        store: Store,
        orders: OrderManager,
        metrics: Metrics,
        clock: Clock,
        books: dict[str, OrderBook] | None = None,
        *,
        spot_orders: OrderManager | None = None,
        spot_specs: dict[str, MarketSpec] | None = None,
        spot_books: dict[str, OrderBook] | None = None,
        news: NewsBoard | None = None,
        events: EventBus | None = None,
        accounts: AccountBook | None = None,
    ) -> None:
        self.events = events or EventBus()
        # Live: the venues' accounts (equity, fees); None in paper and backtests (configured values).
        self.accounts = accounts
        self._settings = settings
        self._store = store
        self._orders = orders
        self._spot_orders = spot_orders
        self._metrics = metrics
        self._clock = clock
        self.specs = specs
        books = books or {}
        window = settings.rules.liquidity_median_window_secs
        self.markets = {
            t: MarketState(spec, books.get(t) or OrderBook(t), Position(t),
                           depth_median=RollingMedian(window),
                           vol_sizing=EwmaVol(settings.strategy.vol_half_life_days * 86400, 3600),
                           funding_trend=FundingTrend(settings.strategy.carry.signal_half_life_hours),
                           entry_trend=FundingTrend(settings.strategy.carry.entry_half_life_hours))
            for t, spec in specs.items()
        }
        self.spot_specs = spot_specs or {}
        self._spot_state: dict[str, MarketState] = {}  # spot ticker -> its perp market
        if spot_orders is not None:
            spot_books = spot_books or {}
            for ticker, state in self.markets.items():
                spot_ticker = settings.strategy.carry.spot_markets.get(ticker)
                if spot_ticker in self.spot_specs:
                    state.spot = SpotLeg(self.spot_specs[spot_ticker],
                                         spot_books.get(spot_ticker) or OrderBook(spot_ticker),
                                         Position(spot_ticker))
                    self._spot_state[spot_ticker] = state
        self.initial_equity = settings.paper.initial_equity_usd
        # Live, the peak starts at the first equity the venues report (bot.accounts), not at a paper value.
        self.peak_equity = self.initial_equity if accounts is None else ZERO
        self.statuses = MarketStatuses(list(specs), metrics, self.events)
        self._pulled: list[ActiveParent] = []  # stopped by a status change: children cancelled next tick
        self._settlement_hold: set[str] = set()  # FINAL_SETTLEMENT markets whose venue refused the close
        self.block_height = 0
        self.news = news or NewsBoard()
        self.risk_mode, self.risk_reason = store.risk_mode()
        if store.kill_latch() is not None:
            self.risk_mode = RiskMode.HALTED
        self.paused = False
        # Settings built with model_copy skip validation: a plain number is a base-unit target.
        self.directional: dict[str, TargetSpec] = {
            m: t if isinstance(t, TargetSpec) else parse_target(t)
            for m, t in settings.strategy.targets.items()}
        self._seed = settings.sim.seed
        self._eval_interval_ns = int(settings.rules.eval_interval_secs * NS_PER_SEC)
        self._audit_ns = int(settings.rules.audit_interval_secs * NS_PER_SEC)
        self._depth_bps = settings.rules.liquidity_depth_bps
        self._event_counters: dict[tuple[str, str], Any] = {}
        # The spot hedge per hedged market (bot.execution.hedge), driven by the perp fills.
        self.hedges: dict[str, HedgeState] = {}
        # The hedge a perp fill moves is stored in the fill's own transaction (`_fill_meta`).
        self._hedge_for_fill: tuple[Fill | None, HedgeState | None] = (None, None)
        orders.fill_meta = self._fill_meta
        self._strategy_carry_off = settings.strategy.model_copy(
            update={"carry": settings.strategy.carry.model_copy(update={"enabled": False})})
        self._unwind_orders: dict[int, str] = {}  # perp unwind order -> market (fees counted)
        self._hedge_children_seen: set[int] = set()
        self._decision_ids: dict[str, int] = {}
        self._held_perp: set[str] = set()  # markets whose perp leg waits for its hedge
        self._restore_portfolio()
        for ticker, state in self.markets.items():
            if state.spot is not None:
                self.hedges[ticker] = hedging.restored(ticker, state.spot.ticker, state.spot.position.size,
                                                       self._saved_hedge(ticker))

    @property
    def order_managers(self) -> list[OrderManager]:
        """Every order manager: the perp venue's first, then the spot hedge venue's."""
        return [self._orders] + ([self._spot_orders] if self._spot_orders is not None else [])

    @property
    def orders(self) -> OrderManager:
        """The perp venue's order manager."""
        return self._orders

    def perp_positions(self) -> dict[str, Decimal]:
        return {t: s.position.size for t, s in self.markets.items() if s.position.size}

    def spot_positions(self) -> dict[str, Decimal]:
        return {s.spot.ticker: s.spot.position.size for s in self.markets.values()
                if s.spot is not None and s.spot.position.size}

    # ---- state from the store --------------------------------------------------------------

    def _restore_portfolio(self) -> None:
        for fill in self._store.fills():
            state = self.markets.get(fill.market)
            if state is not None:
                state.position.apply_fill(fill)
                continue
            spot_state = self._spot_state.get(fill.market)
            if spot_state is not None and spot_state.spot is not None:
                spot_state.spot.position.apply_fill(fill)
        for payment in self._store.funding_payments():
            state = self.markets.get(payment.market)
            if state is not None and state.ledger.record(payment):
                state.position.funding_pnl += payment.amount
        for state in self.markets.values():
            # A spot hedge on the book means the carry sleeve was open (long spot: short perp).
            if state.spot is not None and state.spot.position.size:
                state.carry_side = -1 if state.spot.position.size > 0 else 1
                state.carry_size = abs(state.spot.position.size)
                state.spot.target = state.spot.position.size
        for market, record in self._store.last_decisions().items():
            if market in self.markets:
                self.markets[market].last_decision = _decision_summary(record)

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
        pending = self._event_counters.get((market, kind))  # counted for metrics, in batches
        if pending is None:
            pending = self._new_event_count(market, kind)
        pending[1] += 1
        if pending[1] >= EVENT_COUNT_BATCH:
            pending[0].inc(pending[1])
            pending[1] = 0
        now = state.last_event_ns = event.ts_recv
        if kind is BookDelta:
            if not state.book.apply_delta(event):  # type: ignore[arg-type]
                self._metrics.book_resyncs.labels(market).inc()
                log.warning("book_crossed", market=market)
        elif kind is OracleUpdate:
            price = event.oracle_price  # type: ignore[union-attr]
            state.oracle_price = price
            state.funding.on_predicted(event.next_funding_rate, event.ts_event)  # type: ignore[union-attr]
            if state.funding.last_realised is not None and state.funding.last_folded_hour is not None:
                state.funding_trend.on_settled(state.funding.last_realised, state.funding.last_folded_hour)
                state.entry_trend.on_settled(state.funding.last_realised, state.funding.last_folded_hour)
            state.vol_short.update(price, now)
            state.vol_long.update(price, now)
            state.vol_sizing.update(price, now)
        elif kind is BookSnapshot:
            state.book.apply_snapshot(event)  # type: ignore[arg-type]
        elif kind is Trade:
            return
        self._after_update(state, now)

    def _new_event_count(self, market: str, kind: type) -> list[Any]:
        """[counter, events not yet added to it] for one (market, event kind)."""
        pending = self._event_counters[(market, kind)] = [
            self._metrics.market_events.labels(market, kind.__name__), 0]
        return pending

    def _on_market_info(self, state: MarketState, event: MarketStatus | MarketParams) -> None:
        """A status change pulls the market's parent and forces a fresh decision under the new
        status; new tick/step/margin fractions take effect in the next target and child."""
        ticker = state.spec.ticker
        if isinstance(event, MarketStatus):
            if not self.statuses.update(event):
                return
            self._settlement_hold.discard(ticker)
            parent = self._orders.parents.pop(ticker, None)
            if parent is not None and event.status is not MarketStatusKind.ACTIVE:
                self._pulled.append(parent)  # the next decision plans under the new status
            elif parent is not None:
                self._orders.parents[ticker] = parent
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

    def _flush_event_counts(self) -> None:
        for pending in self._event_counters.values():
            if pending[1]:
                pending[0].inc(pending[1])
                pending[1] = 0

    def on_book_changed(self, market: str, ts_recv: int) -> None:
        """A feed that keeps the shared book itself applied an update: sample and evaluate only."""
        state = self.markets.get(market)
        if state is not None:
            state.last_event_ns = ts_recv
            self._after_update(state, ts_recv)

    def _after_update(self, state: MarketState, now: int) -> None:
        if now - state.last_depth_sample_ns >= DEPTH_SAMPLE_NS and state.book.mid() is not None:
            state.depth = state.book.depth_within_bps(self._depth_bps)
            state.depth_median.add(state.depth)
            state.last_depth_sample_ns = now
        if now - state.last_eval_ns >= self._eval_interval_ns:
            state.last_eval_ns = now
            self._flush_event_counts()
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
        """Fold a perp venue account event into orders, positions and the funding ledger."""
        if isinstance(event, FundingPayment):
            state = self.markets.get(event.market)
            if self._store.record_funding(self._orders.venue.name, event) and state is not None:
                if state.ledger.record(event):
                    state.position.funding_pnl += event.amount
                log.info("funding_settled", market=event.market, rate=str(event.rate),
                         position=str(event.position_size), amount=str(event.amount))
            return
        self._orders.on_account_event(event)
        if isinstance(event, Fill):
            state = self.markets.get(event.market)
            if state is not None and state.position.apply_fill(event):
                self._metrics.position.labels(event.market).set(float(state.position.size))
                log.info("fill", client_order_id=event.client_id, market=event.market,
                         side=event.side.value, size=str(event.size), price=str(event.price),
                         fee=str(event.fee), position=str(state.position.size))
                self.events.publish("fill", event.ts_event, venue=self._orders.venue.name,
                                    market=event.market, side=event.side.value, size=str(event.size),
                                    price=str(event.price), fee=str(event.fee),
                                    position=str(state.position.size))
                self._on_perp_fill_hedge(event)

    def _hedge_after(self, fill: Fill) -> HedgeState | None:
        """The fill's market hedge once the fill counts; None when the fill changes no hedge.

        A perp fill of the running parent makes its spot hedge due; an unwind's fill costs fees.
        """
        hedge = self.hedges.get(fill.market)
        if hedge is None:
            return None
        if fill.client_id in self._unwind_orders:
            return hedging.add_unwind_fee(hedge, fill.fee)
        parent = self._orders.parents.get(fill.market)
        if parent is not None and fill.client_id in parent.children:
            return hedging.on_perp_fill(hedge, fill.size * fill.side.sign, self._clock.now_ns(),
                                        self._settings.execution)
        return None

    def _fill_meta(self, fill: Fill) -> tuple[str, str] | None:
        """The order manager's hook: the hedge record to store in the fill's own transaction."""
        after = self._hedge_after(fill)
        self._hedge_for_fill = (fill, after)
        before = self.hedges.get(fill.market)
        if after is None or before is None or hedging.persisted(before) == hedging.persisted(after):
            return None
        return self._hedge_record(fill.market, after)

    def _on_perp_fill_hedge(self, fill: Fill) -> None:
        pending, after = self._hedge_for_fill
        self._hedge_for_fill = (None, None)
        if pending is fill:
            if after is not None:
                self.hedges[fill.market] = after  # already stored with the fill (_fill_meta)
            return
        after = self._hedge_after(fill)
        if after is not None:
            self._set_hedge(fill.market, after)

    def on_spot_account_event(self, event: AccountEvent) -> None:
        """Fold a spot hedge venue account event into its orders and positions."""
        if self._spot_orders is None or isinstance(event, FundingPayment):
            return  # spot does not pay funding
        self._spot_orders.on_account_event(event)
        if isinstance(event, Fill):
            state = self._spot_state.get(event.market)
            if state is not None and state.spot is not None and state.spot.position.apply_fill(event):
                log.info("fill", client_order_id=event.client_id, market=event.market,
                         venue=self._spot_orders.venue.name, side=event.side.value, size=str(event.size),
                         price=str(event.price), fee=str(event.fee), position=str(state.spot.position.size))
                self.events.publish("fill", event.ts_event, venue=self._spot_orders.venue.name,
                                    market=event.market, side=event.side.value, size=str(event.size),
                                    price=str(event.price), fee=str(event.fee),
                                    position=str(state.spot.position.size))

    # ---- the decision path -----------------------------------------------------------------

    def active_news(self, now_ns: int, market: str | None = None) -> tuple[str, ...]:
        return self.news.active(now_ns, market)

    def evaluate(self, state: MarketState, now_ns: int) -> None:
        """Evaluate sleeves, limits, flags and the gate for one market; decide when it opens."""
        mark = state.mark
        if mark is None or (self.accounts is not None and not self.accounts.ready):
            return  # live: nothing is sized before the venues' accounts were read
        p = self._settings
        rules = p.rules
        audit_due = now_ns - state.gate.last_audit_ns >= self._audit_ns
        if state.sizing is None or audit_due or now_ns - state.last_target_ns >= TARGET_REFRESH_NS:
            self.refresh_targets(state, mark, now_ns)
        target = state.sizing
        assert target is not None
        spot_target = state.pending_spot_target
        move = abs(target.size - state.position.size) or abs(target.size) or state.spec.min_order_size
        inputs = FlagInputs(
            market=state.spec.ticker,
            position_size=state.position.size,
            mark_price=mark,
            funding_rate_1h=state.funding.rate_1h,
            intended_size=move / p.execution.twap_slices,
            depth_size=state.depth,
            depth_median=state.depth_median.median if len(state.depth_median) >= 10 else None,
            spread_bps=state.book.spread_bps(),
            vol_short=_warm(state.vol_short, VOL_SHORT_MIN_SAMPLES),
            vol_long=_warm(state.vol_long, VOL_LONG_MIN_SAMPLES),
            news=self.news.active(now_ns, state.spec.ticker),
            target_size=target.size,
            persistence_hours=state.funding.persistence_hours,
        )
        previous = state.flags.tripped if state.flags is not None else ()
        state.flags = evaluate_flags(inputs, rules, state.flags)
        if state.flags.tripped != previous:
            log.info("flags_changed", market=state.spec.ticker, tripped=list(state.flags.tripped),
                     previous=list(previous))
            for flag in state.flags.all():
                self._metrics.flag_tripped.labels(state.spec.ticker, flag.name).set(int(flag.tripped))
        drifted = self._outside_band(state, target.size, spot_target, mark)
        if state.gate.last_audit_ns == 0 and not rules.audit_on_start:
            # A zero last-audit time makes the first audit due at once; skip it when asked.
            state.gate = GateState(state.gate.was_over, state.gate.last_flag_decision_ns, now_ns)
        gate = evaluate_gate(
            state.flags, state.gate, now_ns,
            min_flags=rules.min_flags, debounce_secs=rules.debounce_secs,
            audit_interval_secs=rules.audit_interval_secs, drifted=drifted,
        )
        state.gate = gate.state
        if gate.act and not self.paused and self.risk_mode is not RiskMode.HALTED:
            if state.last_target_ns != now_ns or gate.reason == "flags":
                self.refresh_targets(state, mark, now_ns)  # the flags just changed: they cut risk
            self.decide(state, gate.reason, inputs, now_ns)

    def _outside_band(self, state: MarketState, target: Decimal, spot_target: Decimal,
                      mark: Decimal) -> bool:
        """An audit trades when a sleeve opens or closes, or a leg is outside its no-trade band."""
        if state.sleeves is not None and state.sleeves.carry_side != state.carry_side:
            return True
        equity, vol, fees = self.equity(), self.sizing_vol(state), self.fee_rates()
        slippage = self._settings.strategy.carry.expected_slippage_bps / 10_000
        cost = fees["dydx"].taker + slippage
        if strategy_decide.audit_should_trade(state.position.size, target, mark, equity, vol, cost,
                                              state.spec.min_order_size, self._settings.rules).outside:
            return True
        spot = state.spot
        spot_mid = spot.book.mid() if spot is not None else None
        if spot is None or spot_mid is None:
            return False
        spot_cost = fees["binance"].taker + slippage
        return strategy_decide.audit_should_trade(spot.position.size, spot_target, spot_mid, equity, vol,
                                                  spot_cost, spot.spec.min_order_size,
                                                  self._settings.rules).outside

    def refresh_targets(self, state: MarketState, mark: Decimal, now_ns: int) -> None:
        """Recompute the sleeves and the hard-limited targets for one market."""
        state.sleeves, state.sizing, state.pending_spot_target = self.compute_targets(state, mark)
        state.last_target_ns = now_ns

    def compute_targets(self, state: MarketState, mark: Decimal) -> tuple[SleeveBook, Target, Decimal]:
        """Sum the sleeves, apply the hard limits; return (sleeves, perp target, spot target)."""
        p = self._settings.strategy
        now_ns = self._clock.now_ns()
        hedge = self.hedges.get(state.spec.ticker)
        if hedge is not None and hedge.latched(now_ns):
            p = self._strategy_carry_off  # a leg failed: the carry stays closed for the cooldown
        equity = self.equity()
        fees = self.fee_rates()
        spot = state.spot
        flags = state.flags.tripped if state.flags is not None else ()
        readings = strategy_decide.MarketReadings(
            market=state.spec.ticker, now_ns=now_ns, price=mark,
            spot_price=spot.book.mid() if spot is not None else None,
            equity_usd=equity, peak_equity_usd=self.peak_equity, market_count=len(self.markets),
            sizing_vol=self.sizing_vol(state), funding_trend_1h=state.funding_trend.rate_1h,
            persistence_hours=state.funding.persistence_hours, step_size=state.spec.step_size,
            spot_step_size=spot.spec.step_size if spot is not None else None,
            perp_fee_rate=fees["dydx"].taker, spot_fee_rate=fees["binance"].taker,
            operator_target=self.resolved_target(state.spec.ticker, mark, equity),
            flags_agree=len(flags) >= self._settings.rules.min_flags,
            maintenance_margin_fraction=state.spec.maintenance_margin_fraction,
            entry_trend_1h=state.entry_trend.rate_1h,
        )
        reduce_only = None
        if self.risk_mode is RiskMode.REDUCE_ONLY:
            reduce_only = (state.position.size, spot.position.size if spot is not None else None)
        status = self.statuses.status[state.spec.ticker]
        out = strategy_decide.market_targets(readings, p, state.carry_side, state.carry_watch,
                                             carry_size=state.carry_size,
                                             reduce_only_from=reduce_only,
                                             restrict=lambda d: status_rules.restrict_target(
                                                 status, d, state.position.size),
                                             held_size=lambda t: t.size if status_rules.may_place(status)
                                             else state.position.size)
        state.carry_watch = out.watch
        return out.sleeves, out.sizing, out.spot

    def sizing_vol(self, state: MarketState) -> float | None:
        """Annualised vol of hourly returns once warm (seeded from venue candles at start)."""
        return strategy_decide.sizing_vol(state.vol_sizing.annualised, state.vol_sizing.samples,
                                          self._settings.strategy.vol_min_hours)

    def resolved_target(self, market: str, mark: Decimal | None, equity: Decimal | None = None) -> Decimal:
        """The operator's directional target for a market in base units at this equity and price."""
        spec = self.directional.get(market, FLAT)
        return resolve_target(spec, self.equity() if equity is None else equity, mark,
                              self.markets[market].spec.step_size)

    def decide(self, state: MarketState, reason: str, inputs: FlagInputs, now_ns: int) -> None:
        """Record a decision and start the plans that move the perp (and spot hedge) to target."""
        assert state.flags is not None and state.sizing is not None and state.sleeves is not None
        target, spot_target, sleeves = state.sizing.size, state.pending_spot_target, state.sleeves
        ex = self._settings.execution
        self._seed += 1
        plan = plan_twap(state.spec, state.position.size, target, ex, now_ns, self._seed)
        if plan is not None and ex.passive_when_funding_favours and _funding_favours(
                plan.side, state.funding.rate_1h):
            plan = replace(plan, passive=True)
        status = self.statuses.status[state.spec.ticker]
        if plan is not None and status_rules.passive_only(status):
            plan = replace(plan, passive=True, post_only=True)
        if not status_rules.may_place(status) or state.spec.ticker in self._settlement_hold:
            plan = None
        spot = state.spot
        spot_plan = None
        if spot is not None:
            spot_plan = plan_twap(spot.spec, spot.position.size, spot_target, ex, now_ns, self._seed)
        summary = summarize_decision(reason, state.flags.tripped, state.target, target, plan,
                                     state.sizing.limited_by, sleeves,
                                     (spot.target, spot_target, spot_plan) if spot is not None else None)
        record: dict[str, Any] = {
            "gate": reason, "summary": summary,
            "target_before": str(state.target), "target_after": str(target),
            "position": str(state.position.size), "mark": str(inputs.mark_price),
            "sizing": state.sizing.as_dict(), "sleeves": sleeves.as_dict(),
            "plan": plan.as_dict() if plan else {"action": "none"},
            "inputs": inputs.as_dict(),
        }
        if spot is not None:
            record["spot"] = {
                "market": spot.ticker, "target_before": str(spot.target),
                "target_after": str(spot_target), "position": str(spot.position.size),
                "plan": spot_plan.as_dict() if spot_plan else {"action": "none"},
                "hedge": "follows_perp_fills" if plan is not None else "spot_only",
            }
        decision_id = self._store.record_decision(now_ns, state.spec.ticker, reason,
                                                  state.flags.as_dict(), record)
        state.target = target
        state.carry_side = sleeves.carry_side
        carry = next((t for t in sleeves.targets if t.sleeve == "carry"), None)
        state.carry_size = abs(carry.perp) if carry is not None and sleeves.carry_side else ZERO
        if spot is not None:
            spot.target = spot_target
        state.last_decision = _decision_summary_from(now_ns, reason, state.flags.tripped, record)
        self._metrics.decisions.labels(state.spec.ticker, reason).inc()
        log.info("decision", market=state.spec.ticker, reason=reason, summary=summary,
                 tripped=list(state.flags.tripped), position=str(state.position.size),
                 target=str(target), plan=record["plan"], spot=record.get("spot"))
        if plan is not None or spot_plan is not None:
            self.events.publish("decision", now_ns, market=state.spec.ticker, reason=reason,
                                summary=summary, tripped=list(state.flags.tripped))
        self._decision_ids[state.spec.ticker] = decision_id
        if spot is not None and state.spec.ticker in self.hedges:
            # The spot leg follows the perp parent's fills (bot.execution.hedge), not a parent of its own.
            self._set_hedge(state.spec.ticker, hedging.start_leg(
                self.hedges[state.spec.ticker], state.position.size, target, spot_target, plan is not None,
                now_ns, ex))
        if plan is not None:
            self._orders.start_parent(plan, decision_id)

    def seed_history(self, history: MarketHistory) -> None:
        """Fold a market's venue history into its sizing vol and funding estimators (bot.history)."""
        state = self.markets.get(history.market)
        if state is None:
            return
        seed_vol(state.vol_sizing, history.closes)
        # A rate effective at T settled the hour before T: label it by that hour, as the live
        # forecast labels the hour it settles.
        accrued = [(ts_ns - NS_PER_HOUR, rate) for ts_ns, rate in history.funding]
        state.funding_trend.seed(accrued)
        state.entry_trend.seed(accrued)
        for ts_ns, rate in sorted(accrued):
            state.funding.on_realised(rate, ts_ns // NS_PER_HOUR)

    def set_directional_target(self, market: str, target: TargetSpec | Decimal) -> None:
        """Change an operator target (a spec, or base units); the next evaluation rebalances."""
        self.directional[market] = target if isinstance(target, TargetSpec) else TargetSpec(target)
        state = self.markets[market]
        # An ancient last audit makes one due now, whatever audit_on_start says.
        state.gate = GateState(state.gate.was_over, state.gate.last_flag_decision_ns, 1)

    # ---- portfolio -------------------------------------------------------------------------

    def equity(self) -> Decimal:
        """Live: what the venues report (zero until read). Paper: initial equity plus every leg's
        realised and unrealised PnL, fees and funding."""
        if self.accounts is not None:
            return self.accounts.equity() or ZERO
        total = self.initial_equity
        for state in self.markets.values():
            total += _leg_value(state.position, state.mark)
            if state.spot is not None:
                total += _leg_value(state.spot.position, state.spot.book.mid())
        return total

    def fee_rates(self) -> dict[str, FeeRates]:
        """The fee rates decisions use: {"dydx": perp venue, "binance": spot hedge venue}."""
        return decision_fees(self._settings, self.accounts)

    def expected_funding_market(self, state: MarketState) -> Decimal:
        """Expected funding over the horizon for a market's position (negative: we pay)."""
        mark = state.mark
        if mark is None or not state.position.size:
            return ZERO
        return expected_funding_usd(state.position.size, mark, state.funding.rate_1h,
                                    self._settings.rules.funding_horizon_hours)

    def expected_funding(self) -> Decimal:
        """Expected funding over the horizon for current positions (negative: we pay)."""
        return sum((self.expected_funding_market(s) for s in self.markets.values()), ZERO)

    def pnl(self, state: MarketState) -> PnlAttribution:
        """PnL attribution for one market, both legs: price, slippage, fees, funding."""
        perp = attribute_pnl(state.position, state.mark,
                             self._orders.slippage_usd.get(state.spec.ticker, ZERO),
                             state.ledger.realised_usd)
        spot = state.spot
        if spot is None or self._spot_orders is None:
            return perp
        return perp + attribute_pnl(spot.position, spot.book.mid(),
                                    self._spot_orders.slippage_usd.get(spot.ticker, ZERO), ZERO)

    def total_pnl(self) -> PnlAttribution:
        total = NO_PNL
        for state in self.markets.values():
            total = total + self.pnl(state)
        return total

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
            await self._cancel_children(self._orders, self._pulled.pop())
        self._hold_refused_settlement()
        held = self._hold_unhedged_perp()
        try:
            await self._orders.tick({t: s.book for t, s in self.markets.items()}, self.specs,
                                    self.risk_mode, self._perp_caps())
        finally:
            for market, parent in held.items():
                self._orders.parents.setdefault(market, parent)  # unless a decision replaced it
        if self._spot_orders is not None:
            await self._tick_hedges(self._clock.now_ns())
            # REDUCE_ONLY opens nothing new on the perp but keeps the hedges matched.
            spot_mode = RiskMode.NORMAL if self.risk_mode is RiskMode.REDUCE_ONLY else self.risk_mode
            await self._spot_orders.tick(
                {s.spot.ticker: s.spot.book for s in self.markets.values() if s.spot is not None},
                self.spot_specs, spot_mode)
            self._count_hedge_results()
        equity = self.equity()
        self.peak_equity = max(self.peak_equity, equity)
        self._metrics.equity_usd.set(float(equity))
        self._metrics.funding_realised_usd.set(
            float(sum((s.ledger.realised_usd for s in self.markets.values()), ZERO)))
        self._metrics.funding_expected_usd.set(float(self.expected_funding()))

    # ---- the spot hedge -----------------------------------------------------------------------

    def _set_hedge(self, ticker: str, hedge: HedgeState) -> None:
        """Replace a market's hedge; persist what must survive a restart when it changed."""
        before = self.hedges.get(ticker)
        self.hedges[ticker] = hedge
        if before is None or hedging.persisted(before) != hedging.persisted(hedge):
            self._store.meta_set(*self._hedge_record(ticker, hedge))

    @staticmethod
    def _hedge_record(ticker: str, hedge: HedgeState) -> tuple[str, str]:
        """The store meta (key, value) that a hedge keeps across restarts."""
        required, latched_until_ns = hedging.persisted(hedge)
        saved = {"required": str(required), "latched_until_ns": latched_until_ns}
        return f"{HEDGE_META_PREFIX}{ticker}", json.dumps(saved)

    def _saved_hedge(self, ticker: str) -> tuple[Decimal, int] | None:
        raw = self._store.meta_get(f"{HEDGE_META_PREFIX}{ticker}")
        if raw is None:
            return None
        saved = json.loads(raw)
        return Decimal(saved["required"]), int(saved["latched_until_ns"])


    def hedge_status(self, ticker: str) -> dict[str, Any] | None:
        """The hedge of one market for `status`: mismatch, leg risk, lag, unwinds (None: unhedged)."""
        hedge = self.hedges.get(ticker)
        state = self.markets[ticker]
        if hedge is None or state.spot is None:
            return None
        spot = state.spot.position.size
        now = self._clock.now_ns()
        return {
            "spot_market": hedge.spot_market,
            "required_spot": str(hedge.required),
            "mismatch_base": str(hedge.mismatch(spot)),
            "mismatch_usd": str(hedge.mismatch_usd(spot, state.mark).quantize(Decimal("0.01"))),
            "max_mismatch_usd": str(self._settings.execution.hedge_max_mismatch_usd),
            "leg_risk_usd_secs": str(hedge.leg_risk_usd_secs.quantize(Decimal("0.01"))),
            "leg_risk_budget_usd_secs": str(self._settings.execution.hedge_leg_risk_budget_usd_secs),
            "lag_exceeded": hedging.lag_exceeded(hedge, now),
            "lag_breaches": hedge.lag_breaches,
            "perp_held": ticker in self._held_perp,
            "spot_rejects": hedge.rejects,
            "unwinds": hedge.unwinds,
            "unwind_fees_usd": str(hedge.unwind_fees_usd),
            "last_unwind_reason": hedge.last_unwind_reason or None,
            "carry_latched_secs": round(max(0, hedge.latched_until_ns - now) / NS_PER_SEC, 1),
        }

    def _perp_caps(self) -> dict[str, Decimal]:
        """Per hedged market, what new perp children may add: the hedge's headroom less what works."""
        caps: dict[str, Decimal] = {}
        for ticker, hedge in self.hedges.items():
            state = self.markets[ticker]
            parent = self._orders.parents.get(ticker)
            if parent is None or state.spot is None:
                continue
            room = hedging.perp_headroom(hedge, state.spot.position.size, state.mark,
                                         self._settings.execution)
            if room is not None:
                working = sum((c.size - c.filled for c in parent.children.values() if c.is_open), ZERO)
                caps[ticker] = max(room - working, ZERO)
        return caps

    def _hold_unhedged_perp(self) -> dict[str, Any]:
        """Take out of this tick the perp parents whose unhedged delta is over the limit.

        Only a parent with no child working is held, so no fill of it can arrive meanwhile.
        """
        held: dict[str, Any] = {}
        ex = self._settings.execution
        for ticker, hedge in self.hedges.items():
            state = self.markets[ticker]
            parent = self._orders.parents.get(ticker)
            wait = parent is not None and state.spot is not None and not hedging.perp_may_trade(
                hedge, state.spot.position.size, state.mark, ex)
            if wait and parent is not None and not any(c.is_open for c in parent.children.values()):
                held[ticker] = self._orders.parents.pop(ticker)
            if wait != (ticker in self._held_perp):
                log.info("perp_leg_held" if wait else "perp_leg_released", market=ticker,
                         mismatch=str(hedge.mismatch(state.spot.position.size) if state.spot else None))
                (self._held_perp.add if wait else self._held_perp.discard)(ticker)
        return held

    async def _tick_hedges(self, now_ns: int) -> None:
        """Per hedged market: accrue leg risk, give a failed leg up, send what the hedge still needs."""
        ex = self._settings.execution
        for ticker in list(self.hedges):
            state = self.markets[ticker]
            spot = state.spot
            if spot is None:
                continue
            hedge = hedging.observe(self.hedges[ticker], spot.position.size, state.mark, now_ns, ex)
            self.hedges[ticker] = hedge
            reason = hedging.unwind_reason(hedge, ex)
            if reason is not None and self.risk_mode is not RiskMode.HALTED:
                await self._unwind(state, reason, now_ns)
            hedge = self.hedges[ticker]
            mismatch = hedge.mismatch(spot.position.size)
            self._metrics.hedge_mismatch_base.labels(ticker).set(float(mismatch))
            self._metrics.hedge_mismatch_usd.labels(ticker).set(
                float(hedge.mismatch_usd(spot.position.size, state.mark)))
            self._metrics.leg_risk_usd_secs.labels(ticker).set(float(hedge.leg_risk_usd_secs))
            if self.risk_mode is not RiskMode.HALTED:
                self._top_up_hedge(state, hedge, now_ns)

    def _top_up_hedge(self, state: MarketState, hedge: HedgeState, now_ns: int) -> None:
        """Start a spot parent for what the hedge needs beyond what is filled and working."""
        spot, manager = state.spot, self._spot_orders
        assert spot is not None and manager is not None
        ex = self._settings.execution
        parent = manager.parents.get(spot.ticker)
        in_flight = unsent = ZERO
        if parent is not None:
            sign = parent.plan.side.sign
            in_flight = sign * sum((c.size - c.filled for c in parent.children.values() if c.is_open), ZERO)
            unsent = sign * max(parent.plan.total - parent.sent, ZERO)
        gap = hedging.hedge_gap(hedge, spot.position.size, in_flight + unsent)
        mid = spot.book.mid()
        if mid is None or abs(gap) < spot.spec.min_order_size or abs(gap) * mid < ex.min_notional_usd:
            return
        # The new parent takes over the old one's unsent part; its open children still count.
        gap = hedging.hedge_gap(hedge, spot.position.size, in_flight)
        self._seed += 1
        plan = hedging.plan_hedge(spot.spec, gap, spot.position.size + in_flight,
                                  spot.book.levels(Side.BUY if gap > 0 else Side.SELL, 20), ex, now_ns,
                                  self._seed)
        if plan is not None:
            manager.start_parent(plan, self._decision_ids.get(state.spec.ticker, 0))

    def _count_hedge_results(self) -> None:
        """Spot hedge children that ended since the last tick: refusals count toward an unwind."""
        manager = self._spot_orders
        assert manager is not None
        current: set[int] = set()
        for ticker, hedge in self.hedges.items():
            parent = manager.parents.get(hedge.spot_market)
            if parent is None:
                continue
            for child in parent.children.values():
                current.add(child.client_id)
                if child.is_open or child.client_id in self._hedge_children_seen:
                    continue
                order = manager.order_state(child.client_id)
                rejected = order is not None and order.status is OrderStatus.REJECTED
                if rejected or child.filled:
                    hedge = hedging.on_spot_result(hedge, rejected)
                self._hedge_children_seen.add(child.client_id)
            self.hedges[ticker] = hedge
        self._hedge_children_seen &= current

    async def _unwind(self, state: MarketState, reason: str, now_ns: int) -> None:
        """The leg cannot be completed: stop both legs, bring the perp back to the hedged size."""
        spot = state.spot
        assert spot is not None
        ticker = state.spec.ticker
        ex = self._settings.execution
        hedge, unwind = hedging.plan_unwind(self.hedges[ticker], state.position.size, spot.position.size,
                                            reason, now_ns, ex, state.spec.step_size)
        self._set_hedge(ticker, hedge)
        for manager, market in ((self._orders, ticker), (self._spot_orders, spot.ticker)):
            parent = manager.parents.pop(market, None) if manager is not None else None
            if manager is not None and parent is not None:
                await self._cancel_children(manager, parent)
        self._metrics.hedge_unwinds.labels(ticker, reason).inc()
        log.warning("hedge_unwind", market=ticker, reason=reason, perp_change=str(unwind.perp_change),
                    perp=str(state.position.size), spot=str(spot.position.size),
                    cooldown_secs=ex.hedge_cooldown_secs)
        if abs(unwind.perp_change) < state.spec.min_order_size:
            return
        side = Side.BUY if unwind.perp_change > 0 else Side.SELL
        touch = state.book.best_ask() if side is Side.BUY else state.book.best_bid()
        if touch is None:
            return
        price = hedging.bounded_price(side, touch.price, ex.slippage_cap_bps, state.spec.tick_size)
        order = OrderRequest(self._store.next_client_id(), ticker, side, abs(unwind.perp_change), price,
                             TimeInForce.IOC, reduce_only=True)
        self._unwind_orders[order.client_id] = ticker
        await self._orders.submit(order, state.book.mid())

    def _hold_refused_settlement(self) -> None:
        """A venue that refuses even reduce-only orders in final settlement (dYdX does) settles the
        position itself at the oracle: stop sending, hold, and say so once."""
        for ticker, parent in list(self._orders.parents.items()):
            if self.statuses.status.get(ticker) is not MarketStatusKind.FINAL_SETTLEMENT:
                continue
            refused = [cid for cid in parent.children
                       if (order := self._orders.order_state(cid)) is not None
                       and order.status is OrderStatus.REJECTED]
            if refused:
                del self._orders.parents[ticker]
                self._settlement_hold.add(ticker)
                position = self.markets[ticker].position.size
                log.warning("final_settlement_hold", market=ticker, position=str(position),
                            refused=len(refused),
                            why="the venue refuses orders in final settlement; it settles at the oracle")

    async def _cancel_children(self, manager: OrderManager, parent: ActiveParent) -> None:
        """Cancel the resting children of a parent taken out of `manager.parents`."""
        for child in parent.children.values():
            if child.is_open and child.tif is not TimeInForce.IOC:
                try:
                    await manager.venue.cancel(child.client_id)
                except BotError as exc:
                    log.warning("order_cancel_failed", client_order_id=child.client_id, error=str(exc))

    async def run(self) -> None:
        """Send due TWAP children and refresh gauges until cancelled."""
        while True:
            await self.tick()
            await self._clock.sleep(TICK_SECS)


def _funding_favours(side: Side, rate_1h: Decimal) -> bool:
    """Positive funding: longs pay, so selling is favoured; negative: shorts pay, buying is."""
    if not rate_1h:
        return False
    return (rate_1h > 0) if side is Side.SELL else (rate_1h < 0)


def _warm(vol: EwmaVol, min_samples: int) -> float | None:
    return vol.annualised if vol.samples >= min_samples else None


def _leg_value(position: Position, mark: Decimal | None) -> Decimal:
    value = position.realised_pnl - position.fees_paid + position.funding_pnl
    if mark is not None and position.size:
        value += position.unrealised_pnl(mark)
    return value


def _plan_text(plan: TwapPlan | None) -> str:
    if plan is None:
        return "no order"
    return f"{plan.side.value} {plan.total} in {len(plan.slice_sizes)}"


def summarize_decision(
    reason: str,
    tripped: tuple[str, ...],
    before: Decimal,
    after: Decimal,
    plan: TwapPlan | None,
    limited_by: str,
    sleeves: SleeveBook,
    spot: tuple[Decimal, Decimal, TwapPlan | None] | None,
) -> str:
    """One line for the operator: why it traded and what it does."""
    why = f"{reason}[{','.join(tripped)}]" if reason == "flags" else reason
    parts = [why, f"perp {before}->{after} ({_plan_text(plan)})"]
    if spot is not None and (spot[0] or spot[1] or spot[2] is not None):
        parts.append(f"spot {spot[0]}->{spot[1]} ({_plan_text(spot[2])})")
    if limited_by:
        parts.append(f"limited_by={limited_by}")
    for target in sleeves.targets:
        if target.perp or target.spot or target.sleeve == "carry":
            extra = ""
            if target.sleeve == "carry" and "net_open_bps" in target.values:
                extra = f" net_open={target.values['net_open_bps']}bps"
            parts.append(f"{target.sleeve}={target.perp}:{target.why}{extra}")
    return " ".join(parts)


def _decision_summary_from(ts_ns: int, reason: str, tripped: tuple[str, ...],
                           record: dict[str, Any]) -> dict[str, Any]:
    spot = record.get("spot") or {}
    return {
        "ts_ns": ts_ns,
        "reason": reason,
        "tripped": list(tripped),
        "target": record.get("target_after"),
        "plan": record.get("plan"),
        "spot_target": spot.get("target_after"),
        "spot_plan": spot.get("plan"),
        "summary": record.get("summary"),
    }


def _decision_summary(record: Any) -> dict[str, Any]:
    plan = record.plan if isinstance(record.plan, dict) else {}
    flags = record.flags if isinstance(record.flags, dict) else {}
    tripped = tuple(n for n in FLAG_NAMES if flags.get(n, {}).get("tripped"))
    return _decision_summary_from(record.ts_ns, record.reason, tripped, plan)
