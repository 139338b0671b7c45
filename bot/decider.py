"""The decision step: runs the pure decision path (`bot.decisions`) for one market and carries out
what it returns: the decision record, the market's new targets, the hedge leg and the perp parent.

The engine calls `evaluate` at most once per `rules.eval_interval_secs` per market, with the
account-wide state it owns (risk mode, pause, peak equity).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal

import structlog

from bot import decisions, strategy_state
from bot.clock import NS_PER_SEC, Clock
from bot.config import Settings
from bot.control.status import decision_summary_from
from bot.domain import MarketStatusKind, OrderStatus, RiskMode
from bot.events import EventBus
from bot.execution import hedge as hedging
from bot.execution.hedge_control import HedgeControl
from bot.execution.orders import OrderManager
from bot.market_info import MarketStatuses
from bot.market_state import MarketState
from bot.news.board import NewsBoard
from bot.portfolio import Portfolio
from bot.rules.flags import FlagInputs
from bot.rules.gate import GateState
from bot.store import Store
from bot.strategy.targets import FLAT, TargetSpec, parse_target, resolve_target
from bot.strategy_state import StrategyRecord
from bot.telemetry import Metrics

log = structlog.get_logger("engine")
# Sleeves and limits are recomputed at most once a second, and always right before an audit or a decision.
TARGET_REFRESH_NS = NS_PER_SEC


class Decider:
    """Decides for each market when to trade and what, and starts it."""

    def __init__(self, settings: Settings, markets: Mapping[str, MarketState], statuses: MarketStatuses,
                 store: Store, orders: OrderManager, metrics: Metrics, clock: Clock, events: EventBus,
                 news: NewsBoard, portfolio: Portfolio, hedge_control: HedgeControl, seeds: Iterator[int],
                 decision_ids: dict[str, int]) -> None:
        self._settings, self._markets, self._statuses = settings, markets, statuses
        self._store, self._orders, self._metrics, self._clock = store, orders, metrics, clock
        self._events, self._news, self._portfolio, self._hedges = events, news, portfolio, hedge_control
        self._seeds, self._decision_ids = seeds, decision_ids
        self._audit_ns = int(settings.rules.audit_interval_secs * NS_PER_SEC)
        self._carry_off = settings.strategy.model_copy(
            update={"carry": settings.strategy.carry.model_copy(update={"enabled": False})})
        # Settings built with model_copy skip validation: a plain number is a base-unit target.
        self.directional: dict[str, TargetSpec] = {m: t if isinstance(t, TargetSpec) else parse_target(t)
                                                   for m, t in settings.strategy.targets.items()}
        self.settlement_hold: set[str] = set()  # FINAL_SETTLEMENT markets whose venue refused the close
        # The carry watch and the thesis's held share survive a restart (bot.strategy_state): read
        # back here, after the positions (the carry side), before the first decision.
        self._saved: dict[str, StrategyRecord] = {}
        for ticker in markets:
            record = strategy_state.load(store, ticker)
            if record is not None:
                self._saved[ticker] = record
                # A hedged market's is read again, and logged, once the daemon's reconciliation
                # committed the venues' carry (bot.carry_start): one `strategy_state_restored`.
                self.restore_carry_watch(ticker, announce=markets[ticker].spot is None)

    def restore_carry_watch(self, ticker: str, *, announce: bool = True) -> None:
        """Read the market's stored watch and held share back for the carry side it has now (again
        once reconciliation committed the venues' carry: bot.carry_start)."""
        record, state = self._saved.get(ticker), self._markets[ticker]
        if record is None:
            return
        state.carry_watch, state.thesis_held = strategy_state.restored(record, state.carry_side)
        if announce:
            log.info("strategy_state_restored", market=ticker, carry_side=state.carry_side,
                     adverse_hours=state.carry_watch.adverse_hours, thesis_held=str(state.thesis_held))

    def context(self, state: MarketState, now_ns: int, risk_mode: RiskMode,
                peak_equity: Decimal) -> decisions.Context:
        """What a decision for this market reads beside the market's state, now."""
        ticker = state.spec.ticker
        hedge = self._hedges.hedges.get(ticker)
        latched = hedge is not None and hedge.latched(self._clock.now_ns())
        return decisions.Context(
            settings=self._settings, strategy=self._carry_off if latched else self._settings.strategy,
            equity=self._portfolio.equity(), peak_equity=peak_equity, fees=self._portfolio.fee_rates(),
            market_count=len(self._markets), risk_mode=risk_mode, status=self._statuses.status[ticker],
            operator=self.directional.get(ticker, FLAT), news=self._news.active(now_ns, ticker),
            settlement_hold=ticker in self.settlement_hold)

    def evaluate(self, state: MarketState, mark: Decimal, now_ns: int, risk_mode: RiskMode, paused: bool,
                 peak_equity: Decimal) -> None:
        """Evaluate sleeves, limits, flags and the gate for one market at `mark`; decide when it opens."""
        ctx = self.context(state, now_ns, risk_mode, peak_equity)
        audit_due = now_ns - state.gate.last_audit_ns >= self._audit_ns
        if state.sizing is None or audit_due or now_ns - state.last_target_ns >= TARGET_REFRESH_NS:
            self._refresh(state, mark, now_ns, ctx)
        seen = decisions.assess_gate(state, mark, now_ns, ctx)
        previous = state.flags.tripped if state.flags is not None else ()
        state.flags = seen.flags
        if state.flags.tripped != previous:
            log.info("flags_changed", market=state.spec.ticker, tripped=list(state.flags.tripped),
                     previous=list(previous))
            for flag in state.flags.all():
                self._metrics.flag_tripped.labels(state.spec.ticker, flag.name).set(int(flag.tripped))
        state.gate = seen.gate.state
        if seen.gate.act and not paused and risk_mode is not RiskMode.HALTED:
            if state.last_target_ns != now_ns or seen.gate.reason == "flags":
                self._refresh(state, mark, now_ns, ctx)  # the flags just changed: they cut risk
            self.decide(state, seen.gate.reason, seen.inputs, now_ns, ctx)

    def _refresh(self, state: MarketState, mark: Decimal, now_ns: int, ctx: decisions.Context) -> None:
        """Recompute the sleeves and the hard-limited targets for one market."""
        out = decisions.compute_targets(state, mark, self._clock.now_ns(), ctx)
        state.carry_watch, state.thesis_held = out.watch, out.thesis_held
        record = StrategyRecord(state.carry_side, out.watch, out.thesis_held)
        ticker = state.spec.ticker
        if record.worth_saving_over(self._saved.get(ticker)):
            self._saved[ticker] = record
            strategy_state.save(self._store, ticker, record)
        state.sleeves, state.sizing, state.pending_spot_target = out.sleeves, out.sizing, out.spot
        state.last_target_ns = now_ns

    def decide(self, state: MarketState, reason: str, inputs: FlagInputs, now_ns: int,
               ctx: decisions.Context) -> None:
        """Record a decision and start the plans that move the perp (and spot hedge) to target."""
        assert state.flags is not None
        ticker = state.spec.ticker
        d = decisions.plan_decision(state, reason, inputs, now_ns, next(self._seeds), ctx)
        decision_id = self._store.record_decision(now_ns, ticker, reason, state.flags.as_dict(), d.record)
        position = state.position.size
        state.target, state.carry_side, state.carry_size = d.target, d.carry_side, d.carry_size
        if state.spot is not None:
            state.spot.target = d.spot_target
        tripped = list(state.flags.tripped)
        state.last_decision = decision_summary_from(now_ns, reason, state.flags.tripped, d.record)
        self._metrics.decisions.labels(ticker, reason).inc()
        log.info("decision", market=ticker, reason=reason, summary=d.summary, tripped=tripped,
                 position=str(position), target=str(d.target), plan=d.record["plan"],
                 spot=d.record.get("spot"))
        if d.plan is not None or d.spot_plan is not None:
            self._events.publish("decision", now_ns, market=ticker, reason=reason, summary=d.summary,
                                 tripped=tripped)
        self._decision_ids[ticker] = decision_id
        if state.spot is not None and ticker in self._hedges.hedges:
            # The spot leg follows the perp parent's fills (bot.execution.hedge), not a parent of its own.
            self._hedges.set(ticker, hedging.start_leg(
                self._hedges.hedges[ticker], position, d.target, d.spot_target, d.plan is not None, now_ns,
                self._settings.execution), decision_id)
        if d.plan is not None:
            self._orders.start_parent(d.plan, decision_id)

    def sizing_vol(self, state: MarketState) -> float | None:
        """Annualised vol of hourly returns once warm (seeded from venue candles at start)."""
        return decisions.sizing_vol(state, self._settings.strategy)

    def resolved_target(self, market: str, mark: Decimal | None, equity: Decimal | None = None) -> Decimal:
        """The operator's directional target for a market in base units at this equity and price."""
        spec = self.directional.get(market, FLAT)
        return resolve_target(spec, self._portfolio.equity() if equity is None else equity, mark,
                              self._markets[market].spec.step_size)

    def set_directional_target(self, market: str, target: TargetSpec | Decimal) -> None:
        """Change an operator target (a spec, or base units); the next evaluation rebalances."""
        self.directional[market] = target if isinstance(target, TargetSpec) else TargetSpec(target)
        state = self._markets[market]
        # An ancient last audit makes one due now, whatever audit_on_start says.
        state.gate = GateState(state.gate.was_over, state.gate.last_flag_decision_ns, 1)

    def hold_refused_settlement(self) -> None:
        """A venue that refuses even reduce-only orders in final settlement (dYdX does) settles the
        position itself at the oracle: stop sending, hold, and say so once."""
        for ticker, parent in self._orders.running():
            if self._statuses.status.get(ticker) is not MarketStatusKind.FINAL_SETTLEMENT:
                continue
            refused = [cid for cid in parent.children
                       if (order := self._orders.order_state(cid)) is not None
                       and order.status is OrderStatus.REJECTED]
            if refused:
                self._orders.hold(ticker)
                self.settlement_hold.add(ticker)
                log.warning("final_settlement_hold", market=ticker,
                            position=str(self._markets[ticker].position.size), refused=len(refused),
                            why="the venue refuses orders in final settlement; it settles at the oracle")
