"""The engine: market state, the rule gate, targets and plans, wired to the order manager.

Market and account events arrive through `on_market_event` / `on_account_event` (called by
the feeds and the venue); the decision path itself is the pure core in `rules`, `strategy`
and `execution.twap`. `run()` drives time: due TWAP children and scheduled audits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog

from bot.book import OrderBook
from bot.clock import Clock
from bot.config import Settings
from bot.domain import (
    AccountEvent,
    BlockHeight,
    BookDelta,
    BookSnapshot,
    Fill,
    FundingPayment,
    MarketEvent,
    MarketSpec,
    OracleUpdate,
    Position,
    RiskMode,
    Trade,
)
from bot.execution.orders import OrderManager
from bot.execution.twap import plan_twap
from bot.rules.estimators import EwmaVol, FundingForecast, RollingMedian
from bot.rules.flags import FLAG_NAMES, FlagInputs, Flags, evaluate_flags
from bot.rules.gate import GateState, evaluate_gate, in_band
from bot.store import Store
from bot.strategy.sizing import SizingInputs, size_target
from bot.telemetry import Metrics

log = structlog.get_logger("engine")
NS_PER_SEC = 1_000_000_000
EVAL_INTERVAL_NS = 250_000_000
DEPTH_SAMPLE_NS = NS_PER_SEC
TICK_SECS = 0.1


@dataclass(slots=True)
class MarketState:
    spec: MarketSpec
    book: OrderBook
    position: Position
    oracle_price: Decimal | None = None
    funding: FundingForecast = field(default_factory=FundingForecast)
    vol_short: EwmaVol = field(default_factory=lambda: EwmaVol(half_life_secs=60))
    vol_long: EwmaVol = field(default_factory=lambda: EwmaVol(half_life_secs=900))
    depth_median: RollingMedian = field(default_factory=lambda: RollingMedian(300))
    flags: Flags | None = None
    gate: GateState = field(default_factory=GateState)
    target: Decimal = Decimal(0)
    last_decision: dict[str, Any] | None = None
    last_eval_ns: int = 0
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
    ) -> None:
        self._settings = settings
        self._store = store
        self._orders = orders
        self._metrics = metrics
        self._clock = clock
        self.specs = specs
        books = books or {}
        self.markets = {
            t: MarketState(spec, books.get(t) or OrderBook(t), Position(t))
            for t, spec in specs.items()
        }
        self.initial_equity = settings.paper.initial_equity_usd
        self.peak_equity = self.initial_equity
        self.block_height = 0
        self.news: dict[str, int] = {}  # operator news item -> expiry ns
        self.risk_mode, self.risk_reason = store.risk_mode()
        if store.kill_latch() is not None:
            self.risk_mode = RiskMode.HALTED
        self.paused = False
        self.directional = dict(settings.strategy.targets)
        self._seed = settings.sim.seed
        self._restore_portfolio()

    # ---- state from the store --------------------------------------------------------------

    def _restore_portfolio(self) -> None:
        for fill in self._store.fills():
            state = self.markets.get(fill.market)
            if state is not None:
                state.position.apply_fill(fill)
        for payment in self._store.funding_payments():
            state = self.markets.get(payment.market)
            if state is not None:
                state.position.funding_pnl += payment.amount
        for market, record in self._store.last_decisions().items():
            if market in self.markets:
                self.markets[market].last_decision = _decision_summary(record)

    # ---- events ----------------------------------------------------------------------------

    def on_market_event(self, event: MarketEvent) -> None:
        """Update state from one market event and evaluate the rules when due."""
        if isinstance(event, BlockHeight):
            self.block_height = event.height
            return
        state = self.markets.get(event.market)
        if state is None:
            return
        self._metrics.market_events.labels(event.market, type(event).__name__).inc()
        state.last_event_ns = event.ts_recv
        if isinstance(event, BookSnapshot):
            state.book.apply_snapshot(event)
        elif isinstance(event, BookDelta):
            if not state.book.apply_delta(event):
                self._metrics.book_resyncs.labels(event.market).inc()
                log.warning("book_crossed", market=event.market)
        elif isinstance(event, OracleUpdate):
            state.oracle_price = event.oracle_price
            state.funding.on_predicted(event.next_funding_rate)
            state.vol_short.update(event.oracle_price, event.ts_recv)
            state.vol_long.update(event.oracle_price, event.ts_recv)
        elif isinstance(event, Trade):
            return
        now = event.ts_recv
        if now - state.last_depth_sample_ns >= DEPTH_SAMPLE_NS and state.book.mid() is not None:
            state.depth_median.add(state.book.depth_within_bps(self._settings.rules.liquidity_depth_bps))
            state.last_depth_sample_ns = now
        if now - state.last_eval_ns >= EVAL_INTERVAL_NS:
            state.last_eval_ns = now
            self.evaluate(state, now)

    def on_account_event(self, event: AccountEvent) -> None:
        """Fold a venue account event into orders, positions and the funding ledger."""
        if isinstance(event, FundingPayment):
            if self._store.record_funding(self._orders.venue.name, event):
                state = self.markets.get(event.market)
                if state is not None:
                    state.position.funding_pnl += event.amount
                    state.funding.on_realised(event.rate)
                log.info("funding_settled", market=event.market, rate=str(event.rate),
                         amount=str(event.amount))
            return
        self._orders.on_account_event(event)
        if isinstance(event, Fill):
            state = self.markets.get(event.market)
            if state is not None and state.position.apply_fill(event):
                self._metrics.position.labels(event.market).set(float(state.position.size))
                log.info("fill", client_order_id=event.client_id, market=event.market,
                         side=event.side.value, size=str(event.size), price=str(event.price),
                         fee=str(event.fee), position=str(state.position.size))

    # ---- the decision path -----------------------------------------------------------------

    def active_news(self, now_ns: int) -> tuple[str, ...]:
        return tuple(sorted(k for k, exp in self.news.items() if exp > now_ns))

    def flag_inputs(self, state: MarketState, now_ns: int) -> FlagInputs | None:
        mark = state.mark
        if mark is None:
            return None
        p = self._settings
        desired = self.directional.get(state.spec.ticker, Decimal(0))
        move = abs(desired - state.position.size) or abs(desired) or state.spec.min_order_size
        return FlagInputs(
            market=state.spec.ticker,
            position_size=state.position.size,
            mark_price=mark,
            funding_rate_1h=state.funding.rate_1h,
            intended_size=move / p.execution.twap_slices,
            depth_size=state.book.depth_within_bps(p.rules.liquidity_depth_bps),
            depth_median=state.depth_median.median if len(state.depth_median) >= 10 else None,
            spread_bps=state.book.spread_bps(),
            vol_short=state.vol_short.annualised,
            vol_long=state.vol_long.annualised,
            news=self.active_news(now_ns),
        )

    def evaluate(self, state: MarketState, now_ns: int) -> None:
        """Evaluate the flags and the gate for one market; decide when the gate opens."""
        inputs = self.flag_inputs(state, now_ns)
        if inputs is None:
            return
        rules = self._settings.rules
        state.flags = evaluate_flags(inputs, rules, state.flags)
        for flag in state.flags.all():
            self._metrics.flag_tripped.labels(state.spec.ticker, flag.name).set(int(flag.tripped))
        target = self.compute_target(state, inputs)
        drifted = not in_band(state.position.size, target.size, rules.drift_tolerance,
                              state.spec.min_order_size)
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
            self.decide(state, gate.reason, inputs, target.size, target.as_dict(), now_ns)

    def compute_target(self, state: MarketState, inputs: FlagInputs):  # type: ignore[no-untyped-def]
        desired = self.directional.get(state.spec.ticker, Decimal(0))
        if self.risk_mode is RiskMode.REDUCE_ONLY and abs(desired) > abs(state.position.size):
            desired = state.position.size
        return size_target(
            SizingInputs(
                market=state.spec.ticker,
                desired_size=desired,
                price=inputs.mark_price,
                equity_usd=self.equity(),
                peak_equity_usd=self.peak_equity,
                realised_vol=inputs.vol_short,
                funding_rate_1h=inputs.funding_rate_1h,
                step_size=state.spec.step_size,
                market_count=len(self.markets),
            ),
            self._settings.strategy,
        )

    def decide(self, state: MarketState, reason: str, inputs: FlagInputs, target: Decimal,
               sizing: dict[str, str], now_ns: int) -> None:
        """Record a decision and start the plan that moves the position to the target."""
        assert state.flags is not None
        self._seed += 1
        plan = plan_twap(state.spec, state.position.size, target, self._settings.execution,
                         now_ns, self._seed)
        plan_dict = plan.as_dict() if plan else {"action": "none"}
        flags = state.flags.as_dict()
        decision_id = self._store.record_decision(
            now_ns, state.spec.ticker, reason,
            flags,
            {"target_before": str(state.target), "target_after": str(target),
             "position": str(state.position.size), "sizing": sizing, "plan": plan_dict,
             "mark": str(inputs.mark_price)},
        )
        state.target = target
        state.last_decision = {
            "ts_ns": now_ns, "reason": reason, "tripped": list(state.flags.tripped),
            "target": str(target), "plan": plan_dict,
        }
        self._metrics.decisions.labels(state.spec.ticker, reason).inc()
        log.info("decision", market=state.spec.ticker, reason=reason,
                 tripped=list(state.flags.tripped), position=str(state.position.size),
                 target=str(target), plan=plan_dict)
        if plan is not None:
            self._orders.start_parent(plan, decision_id)

    def set_directional_target(self, market: str, size: Decimal) -> None:
        """Change an operator target; the next evaluation sees the drift and rebalances."""
        self.directional[market] = size
        state = self.markets[market]
        # An ancient last audit makes one due now, whatever audit_on_start says.
        state.gate = GateState(state.gate.was_over, state.gate.last_flag_decision_ns, 1)

    # ---- portfolio -------------------------------------------------------------------------

    def equity(self) -> Decimal:
        total = self.initial_equity
        for state in self.markets.values():
            pos = state.position
            total += pos.realised_pnl - pos.fees_paid + pos.funding_pnl
            mark = state.mark
            if mark is not None and pos.size:
                total += pos.unrealised_pnl(mark)
        return total

    def expected_funding(self) -> Decimal:
        """Expected funding over the horizon for current positions (negative: we pay)."""
        hours = self._settings.rules.funding_horizon_hours
        total = Decimal(0)
        for state in self.markets.values():
            mark = state.mark
            if mark is not None:
                total -= state.position.size * mark * state.funding.rate_1h * hours
        return total

    def set_risk_mode(self, mode: RiskMode, reason: str) -> None:
        if mode is self.risk_mode and reason == self.risk_reason:
            return
        log.warning("risk_mode_changed", old=self.risk_mode.value, new=mode.value, reason=reason)
        self.risk_mode, self.risk_reason = mode, reason
        self._store.set_risk_mode(mode, reason, self._clock.now_ns())
        self._metrics.risk_mode.set(list(RiskMode).index(mode))

    # ---- time ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Send due TWAP children and refresh gauges until cancelled."""
        while True:
            await self._orders.tick({t: s.book for t, s in self.markets.items()}, self.specs,
                                    self.risk_mode)
            equity = self.equity()
            self.peak_equity = max(self.peak_equity, equity)
            self._metrics.equity_usd.set(float(equity))
            await self._clock.sleep(TICK_SECS)


def _decision_summary(record: Any) -> dict[str, Any]:
    plan = record.plan if isinstance(record.plan, dict) else {}
    flags = record.flags if isinstance(record.flags, dict) else {}
    return {
        "ts_ns": record.ts_ns,
        "reason": record.reason,
        "tripped": [n for n in FLAG_NAMES if flags.get(n, {}).get("tripped")],
        "target": plan.get("target_after"),
        "plan": plan.get("plan"),
    }
