"""The hedge controller: drives each hedged market's spot leg from its perp fills and unwinds a leg
that cannot be completed. The rules are the pure functions of `bot.execution.hedge`; this module
applies them to the markets and the two order managers, and persists what must survive a restart.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any, cast

import structlog

from bot.carry_start import follow_shortfall
from bot.clock import NS_PER_SEC, Clock
from bot.config import Settings
from bot.control.status import hedge_status
from bot.domain import ZERO, Fill, OrderRequest, OrderStatus, RiskMode, Side, TimeInForce
from bot.errors import BotError
from bot.execution import hedge as hedging
from bot.execution.buy_cap import cap_buy
from bot.execution.hedge import HEDGE_META_PREFIX, HedgeState
from bot.execution.orders import ActiveParent, OrderManager
from bot.execution.prices import bounded_price
from bot.market_state import MarketState
from bot.store import Store
from bot.store.reconcile import balance_adjustment
from bot.telemetry import Metrics
from bot.venues.ports import Balances

log = structlog.get_logger("engine")
# Per spot market: the base commission withheld (summed over the store's fills) already bought back.
WITHHELD_META_PREFIX = "hedge_withheld_covered:"
BALANCE_CHECK_SECS = 30.0  # a spot long booked beyond the cached balance is read again at most this often
BALANCE_READ_TIMEOUT_SECS = 2.0


class HedgeControl:
    """The spot hedges of the hedged markets (`hedges`: perp ticker -> HedgeState)."""

    def __init__(self, settings: Settings, markets: Mapping[str, MarketState], orders: OrderManager,
                 spot_orders: OrderManager | None, store: Store, metrics: Metrics, clock: Clock,
                 seeds: Iterator[int], decision_ids: Mapping[str, int]) -> None:
        self._settings = settings
        self._markets = markets
        self._orders = orders
        self._spot_orders = spot_orders
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._seeds = seeds
        self._decision_ids = decision_ids
        self.hedges: dict[str, HedgeState] = {}
        self.held_perp: set[str] = set()  # markets whose perp leg waits for its hedge
        self._unwind_orders: dict[int, str] = {}  # perp unwind order -> market (fees counted)
        self._unwinding: dict[int, tuple[str, Decimal]] = {}  # unwind order not ended -> (market, change)
        self._children_seen: set[int] = set()
        # Per spot market: base withheld as commission by the store's fills before this start (the
        # order manager counts those since), and how much of the total the hedge bought back.
        self._withheld_before: dict[str, Decimal] = {}
        self._withheld_covered: dict[str, Decimal] = {}
        self._balance_checked_ns: dict[str, int] = {}  # spot market -> last venue read of its balance
        self._sell_capped: dict[str, tuple[Decimal, Decimal]] = {}  # spot market -> (wanted, sellable)
        self._buy_capped: dict[str, tuple[Decimal, Decimal]] = {}  # spot market -> (wanted, buyable)
        # Per decision whose perp parent may still report fills: spot units per signed perp unit
        # its leg was started with, and the decisions whose leg an unwind gave up.
        self._leg_ratios: dict[int, Decimal] = {}
        self._unwound: set[int] = set()
        if spot_orders is not None:
            spot_orders.guard = self._spot_guard
        for ticker, state in markets.items():
            if state.spot is not None:
                self.hedges[ticker] = hedging.restored(ticker, state.spot.ticker, state.spot.position.size,
                                                       self._saved(ticker))
                self._restore_withheld(state.spot.ticker)

    # ---- persistence ---------------------------------------------------------------------------

    def set(self, ticker: str, hedge: HedgeState, decision_id: int | None = None) -> None:
        """Replace a market's hedge; persist what must survive a restart when it changed.

        `decision_id`: the decision that starts this leg; its ratio is kept for the fills its perp
        parent reports once a newer decision replaced it or an unwind gave it up.
        """
        before = self.hedges.get(ticker)
        self.hedges[ticker] = hedge
        if decision_id is not None:
            tracked = self._orders.decisions_tracked()
            self._leg_ratios = {d: r for d, r in self._leg_ratios.items() if d in tracked}
            self._unwound &= tracked
            self._leg_ratios[decision_id] = hedge.ratio
        if before is None or hedging.persisted(before) != hedging.persisted(hedge):
            self._store.meta_set(*record(ticker, hedge))

    def _saved(self, ticker: str) -> tuple[Decimal, int] | None:
        raw = self._store.meta_get(f"{HEDGE_META_PREFIX}{ticker}")
        if raw is None:
            return None
        saved = json.loads(raw)
        return Decimal(saved["required"]), int(saved["latched_until_ns"])

    def _restore_withheld(self, spot_market: str) -> None:
        """The commission still owed survives a restart: the store's fills say what was withheld,
        the meta what was bought back (a store without it: nothing owed, as before it was kept)."""
        total = sum((f.side.sign * f.withheld for f in self._store.fills(spot_market)), ZERO)
        self._withheld_before[spot_market] = total
        raw = self._store.meta_get(f"{WITHHELD_META_PREFIX}{spot_market}")
        covered = _decimal(raw)
        if covered is None:
            if raw is not None:
                log.error("hedge_withheld_unreadable", market=spot_market, value=raw)
            self._cover_withheld(spot_market, total)
        else:
            self._withheld_covered[spot_market] = covered

    def _withheld(self, spot_market: str) -> Decimal:
        """Base the venue withheld as commission on this market's fills, all the store's fills."""
        manager = self._spot_orders
        assert manager is not None
        return self._withheld_before.get(spot_market, ZERO) + manager.withheld.get(spot_market, ZERO)

    def _cover_withheld(self, spot_market: str, withheld: Decimal) -> None:
        if self._withheld_covered.get(spot_market) != withheld:
            self._withheld_covered[spot_market] = withheld
            self._store.meta_set(f"{WITHHELD_META_PREFIX}{spot_market}", str(withheld))

    # ---- perp fills ----------------------------------------------------------------------------

    def after_fill(self, fill: Fill) -> HedgeState | None:
        """The fill's market hedge once the fill counts; None when the fill changes no hedge.

        Every perp fill of a parent that may still report (running, ended, replaced or held) makes
        its spot hedge due; an unwind's fill costs fees.
        """
        hedge = self.hedges.get(fill.market)
        if hedge is None:
            return None
        if fill.client_id in self._unwind_orders:
            return hedging.add_unwind_fee(hedge, fill.fee)
        owner = self._orders.parent_of(fill.client_id)
        if owner is None:
            return None
        signed, now_ns, ex = fill.size * fill.side.sign, self._clock.now_ns(), self._settings.execution
        # The leg being built: the running parent, or one of the current decision's whose window
        # ended (a lagging indexer). Its fills move the hedge toward the leg's goal.
        current = owner is self._orders.parent(fill.market) or (
            owner.decision_id == self._decision_ids.get(fill.market))
        if current and owner.decision_id not in self._unwound:
            return hedging.on_perp_fill(hedge, signed, now_ns, ex)
        # A leg that is over (a newer decision replaced it, or an unwind gave it up): the perp
        # traded all the same, at the ratio that leg was started with.
        ratio = self._leg_ratios.get(owner.decision_id, ZERO)
        if ratio:
            log.warning("hedge_stray_perp_fill", market=fill.market, client_order_id=fill.client_id,
                        decision_id=owner.decision_id, size=str(signed), ratio=str(ratio),
                        unwound=owner.decision_id in self._unwound)
        return hedging.on_stray_fill(hedge, signed, ratio, now_ns, ex)

    def fill_meta(self, market: str, after: HedgeState | None) -> tuple[str, str] | None:
        """The hedge record to store in the fill's own transaction (None: nothing persisted changes)."""
        before = self.hedges.get(market)
        if after is None or before is None or hedging.persisted(before) == hedging.persisted(after):
            return None
        return record(market, after)

    # ---- status --------------------------------------------------------------------------------

    def status(self, ticker: str) -> dict[str, Any] | None:
        """The hedge of one market for `status` (None: unhedged)."""
        hedge = self.hedges.get(ticker)
        state = self._markets[ticker]
        if hedge is None or state.spot is None:
            return None
        return hedge_status(hedge, state.spot.position, state.mark, ticker in self.held_perp,
                            self._settings.execution, self._clock.now_ns())

    # ---- the perp leg's limits -----------------------------------------------------------------

    def perp_caps(self) -> dict[str, Decimal]:
        """Per hedged market, what new perp children may add: the hedge's headroom less what works."""
        caps: dict[str, Decimal] = {}
        for ticker, hedge in self.hedges.items():
            state = self._markets[ticker]
            parent = self._orders.parent(ticker)
            if parent is None or state.spot is None:
                continue
            room = hedging.perp_headroom(hedge, state.spot.position.size, state.mark,
                                         self._settings.execution)
            if room is not None:
                working = sum((c.size - c.filled for c in parent.children.values() if c.is_open), ZERO)
                caps[ticker] = max(room - working, ZERO)
        return caps

    def hold_unhedged_perp(self) -> dict[str, ActiveParent]:
        """Take out of this tick the perp parents whose unhedged delta is over the limit.

        Only a parent with no child working is held, so no fill of it can arrive meanwhile.
        """
        held: dict[str, ActiveParent] = {}
        ex = self._settings.execution
        for ticker, hedge in self.hedges.items():
            state = self._markets[ticker]
            parent = self._orders.parent(ticker)
            wait = parent is not None and state.spot is not None and not hedging.perp_may_trade(
                hedge, state.spot.position.size, state.mark, ex)
            if wait and parent is not None and not any(c.is_open for c in parent.children.values()):
                self._orders.hold(ticker)
                held[ticker] = parent
            if wait != (ticker in self.held_perp):
                log.info("perp_leg_held" if wait else "perp_leg_released", market=ticker,
                         mismatch=str(hedge.mismatch(state.spot.position.size) if state.spot else None))
                (self.held_perp.add if wait else self.held_perp.discard)(ticker)
        return held

    # ---- the spot leg --------------------------------------------------------------------------

    async def tick(self, now_ns: int, risk_mode: RiskMode) -> None:
        """Per hedged market: accrue leg risk, give a failed leg up, send what the hedge still needs."""
        ex = self._settings.execution
        self._settle_unwinds(now_ns)
        for ticker in list(self.hedges):
            state = self._markets[ticker]
            spot = state.spot
            if spot is None:
                continue
            assert self._spot_orders is not None
            await self._spot_orders.read_back_unanswered(spot.ticker, now_ns)
            hedge = hedging.observe(self.hedges[ticker], spot.position.size, state.mark, now_ns, ex)
            self.hedges[ticker] = hedge
            reason = hedging.unwind_reason(hedge, ex)
            if reason is not None and risk_mode is not RiskMode.HALTED:
                await self._unwind(state, reason, now_ns)
            hedge = self.hedges[ticker]
            mismatch = hedge.mismatch(spot.position.size)
            self._metrics.hedge_mismatch_base.labels(ticker).set(float(mismatch))
            self._metrics.hedge_mismatch_usd.labels(ticker).set(
                float(hedge.mismatch_usd(spot.position.size, state.mark)))
            self._metrics.leg_risk_usd_secs.labels(ticker).set(float(hedge.leg_risk_usd_secs))
            if risk_mode is not RiskMode.HALTED:
                await self._check_balance(state, now_ns)
                self._top_up(state, self.hedges[ticker], now_ns)

    def _top_up(self, state: MarketState, hedge: HedgeState, now_ns: int) -> None:
        """Start a spot parent for what the hedge needs beyond what is filled and working."""
        spot, manager = state.spot, self._spot_orders
        assert spot is not None and manager is not None
        ex = self._settings.execution
        parent = manager.parent(spot.ticker)
        # Every open child counts, not only the running parent's: a child of a parent that ended
        # or was replaced may still fill (unanswered yet), and sending its size again doubles it.
        in_flight, unsent = manager.working(spot.ticker), ZERO
        if parent is not None:
            unsent = parent.plan.side.sign * max(parent.plan.total - parent.sent, ZERO)
        gap = hedging.hedge_gap(hedge, spot.position.size, in_flight + unsent)
        mid = spot.book.mid()
        if mid is None:
            return
        # A sell never exceeds the free base balance (floored to the lot step): the part of it the
        # running parent has not sent yet is promised already.
        sellable = self._sellable(spot.ticker, spot.spec.step_size)
        if sellable is not None and gap < 0:
            beyond = max(sellable + min(unsent, ZERO), ZERO)
            if -gap > beyond and not self._too_small(gap, spot.spec.min_order_size, mid):
                self._report_capped(spot.ticker, -gap, beyond, spot.position.size)
            gap = max(gap, -beyond)
        # Commission a buy left in the base asset (the position lacks it) is bought back on its own
        # once both legs are idle, never folded into a parent the perp fills call for: sized to
        # the book, that parent would spill the commission into a second slice, due seconds later.
        # A sell needs none of it (it sells what is held).
        withheld = self._withheld(spot.ticker)
        commission = max(withheld - self._withheld_covered.get(spot.ticker, ZERO), ZERO)
        called_for = max(gap - commission, ZERO) if gap > 0 else gap
        if self._too_small(called_for, spot.spec.min_order_size, mid):
            busy = parent is not None or self._orders.parent(state.spec.ticker) is not None
            if busy or gap <= 0 or self._too_small(gap, spot.spec.min_order_size, mid):
                return
            commission = ZERO  # only the commission is missing: this parent buys it back
        # The new parent takes over the old one's unsent part; its open children still count.
        gap = hedging.hedge_gap(hedge, spot.position.size, in_flight)
        if gap * in_flight < 0:
            # Never trade against our own working children (an unwind's cancel may still lose to
            # their fill): stop sending and wait until they end, then hedge what they did.
            manager.hold(spot.ticker)
            return
        if gap > 0:
            gap = max(gap - commission, ZERO)
        elif sellable is not None:
            gap = max(gap, -sellable)
        gap = cap_buy(manager.venue, spot, gap, ex, self._buy_capped)  # what the free quote pays for
        plan = hedging.plan_hedge(spot.spec, gap, spot.position.size + in_flight,
                                  spot.book.levels(Side.BUY if gap > 0 else Side.SELL, 20), ex, now_ns,
                                  next(self._seeds))
        if plan is not None:
            manager.start_parent(plan, self._decision_ids.get(state.spec.ticker, 0))
            if not commission or gap < 0:  # bought back, or a sell that needs none of it
                self._cover_withheld(spot.ticker, withheld)

    def _sellable(self, spot_market: str, step: Decimal) -> Decimal | None:
        """What a new spot sell may sell: the free base balance floored to the lot step (None: the
        venue's positions are no balances, as on paper)."""
        manager = self._spot_orders
        assert manager is not None
        if not manager.venue.capabilities.positions_are_balances:
            return None
        free = cast(Balances, manager.venue).cached_free().get(spot_market, ZERO)
        return max((free // step) * step, ZERO)

    def _report_capped(self, spot_market: str, wanted: Decimal, sellable: Decimal, booked: Decimal) -> None:
        if self._sell_capped.get(spot_market) != (wanted, sellable):
            self._sell_capped[spot_market] = (wanted, sellable)
            log.warning("hedge_sell_capped", market=spot_market, wanted=str(wanted), sellable=str(sellable),
                        store=str(booked))

    async def _check_balance(self, state: MarketState, now_ns: int) -> None:
        """A spot long the store books beyond the balance the venue last reported is read from
        the venue (at most every BALANCE_CHECK_SECS) and, when the venue confirms it, booked down
        to the balance as start-up reconciliation does (bot.store.reconcile.balance_adjustment):
        the hedge then sells what is held instead of sending sells the venue refuses, and spot
        gone beyond the tolerance leaves the carry as at start (`spot_booked_down`); within it,
        the hedge buys it back. Never while an order of ours works on the market (a spot parent,
        an order open in the store: an unanswered IOC child too): its fills may be on the venue
        and not yet in the store, and would read as spot gone."""
        spot, manager = state.spot, self._spot_orders
        assert spot is not None and manager is not None
        venue = manager.venue
        if spot.position.size <= 0 or not venue.capabilities.positions_are_balances:
            return
        if spot.position.size <= cast(Balances, venue).cached_positions().get(spot.ticker, ZERO):
            return
        last = self._balance_checked_ns.get(spot.ticker)
        if last is not None and now_ns - last < BALANCE_CHECK_SECS * NS_PER_SEC:
            return
        if manager.parent(spot.ticker) is not None or any(
                o.market == spot.ticker for o in self._store.open_orders(venue.name)):
            return
        self._balance_checked_ns[spot.ticker] = now_ns
        try:  # bounded: the engine's tick (the perp leg too) waits on it
            async with asyncio.timeout(BALANCE_READ_TIMEOUT_SECS):
                held = (await venue.positions()).get(spot.ticker, ZERO)
        except (BotError, TimeoutError) as exc:
            log.warning("balance_check_failed", market=spot.ticker, error=str(exc) or type(exc).__name__)
            return
        booked = spot.position.size
        adjustment = balance_adjustment(spot.position, held, now_ns)
        if adjustment is None:
            return
        manager.on_account_event(adjustment)
        spot.position.apply_fill(adjustment)
        log.error("reconcile_store_exceeds_balance", venue=venue.name, stage="run",
                  shortfalls={spot.ticker: {"store": str(booked), "venue": str(held),
                                            "adjusted": str(adjustment.size)}})
        self.spot_booked_down(spot.ticker, booked, held, "run")

    def spot_booked_down(self, spot_market: str, booked: Decimal, held: Decimal, stage: str) -> None:
        """The store's spot long was booked down from `booked` to the balance `held` (`stage`: "run"
        by the balance check, "exit" by the exit's reconciliation): spot that left the account
        beyond the tolerance leaves the carry, as at start (bot.carry_start.follow_shortfall), so
        the hedge does not buy it back and the next decision trades the perp to the smaller carry."""
        for ticker, state in self._markets.items():
            hedge = self.hedges.get(ticker)
            if state.spot is not None and state.spot.ticker == spot_market and hedge is not None:
                shrunk = follow_shortfall(state, hedge, booked, held, stage)
                if shrunk is not None:
                    self.set(ticker, shrunk)

    def _spot_guard(self, order: OrderRequest, working: Decimal) -> str | None:
        """Why a spot order must not be sent: it grows the spot exposure (position + working)
        beyond what the risk limits allow the hedge of one market, and does not bring it closer
        to the hedge owed (`hedging.spot_order_refusal`)."""
        ticker = next((t for t, s in self._markets.items()
                       if s.spot is not None and s.spot.ticker == order.market), None)
        hedge = self.hedges.get(ticker) if ticker is not None else None
        spot = self._markets[ticker].spot if ticker is not None else None
        if spot is None or hedge is None:
            return None
        return hedging.spot_order_refusal(order.side.sign * order.size, spot.position.size, working,
                                          order.price, self._settings.strategy.max_notional_usd,
                                          self._settings.execution.hedge_max_mismatch_usd, hedge.required)

    def _too_small(self, gap: Decimal, min_order_size: Decimal, mid: Decimal) -> bool:
        return abs(gap) < min_order_size or abs(gap) * mid < self._settings.execution.min_notional_usd

    def count_results(self) -> None:
        """Spot hedge children that ended since the last tick: refusals count toward an unwind."""
        manager = self._spot_orders
        assert manager is not None
        current: set[int] = set()
        for ticker, hedge in self.hedges.items():
            parent = manager.parent(hedge.spot_market)
            if parent is None:
                continue
            for child in parent.children.values():
                current.add(child.client_id)
                if child.is_open or child.client_id in self._children_seen:
                    continue
                order = manager.order_state(child.client_id)
                rejected = order is not None and order.status is OrderStatus.REJECTED
                if rejected or child.filled:
                    hedge = hedging.on_spot_result(hedge, rejected)
                self._children_seen.add(child.client_id)
            self.hedges[ticker] = hedge
        self._children_seen &= current

    def _settle_unwinds(self, now_ns: int) -> None:
        """An unwind order that ended short of its size: the perp it did not trade is still held,
        and its hedge is owed again (`hedging.on_unwind_short`)."""
        for client_id, (ticker, change) in list(self._unwinding.items()):
            order = self._orders.order_state(client_id)
            if order is None or not order.is_terminal:
                continue
            del self._unwinding[client_id]
            missed = change - order.filled.copy_sign(change)
            if missed:
                log.warning("hedge_unwind_short", market=ticker, client_order_id=client_id,
                            perp_change=str(change), filled=str(order.filled), status=order.status.value)
                self.set(ticker, hedging.on_unwind_short(self.hedges[ticker], missed, now_ns,
                                                         self._settings.execution))

    def _unwind_acts(self, state: MarketState, unwind: hedging.Unwind, keep: Side | None) -> bool:
        """An unwind would change something: send a perp order, stop the perp parent, or stop a
        spot parent or cancel spot children leading away from the hedge (`keep`: the side toward it)."""
        spot, spot_orders = state.spot, self._spot_orders
        assert spot is not None
        perp_parent = self._orders.parent(state.spec.ticker)
        if abs(unwind.perp_change) >= state.spec.min_order_size or perp_parent is not None:
            return True
        if spot_orders is None:
            return False
        parent = spot_orders.parent(spot.ticker)
        away = parent is not None and parent.plan.side is not keep
        return away or spot_orders.cancellable(spot.ticker, keep)

    async def _unwind(self, state: MarketState, reason: str, now_ns: int) -> None:
        """The leg cannot be completed: stop both legs, bring the perp back to the hedged size."""
        spot = state.spot
        assert spot is not None
        ticker = state.spec.ticker
        ex = self._settings.execution
        before = self.hedges[ticker]
        hedge, unwind = hedging.plan_unwind(before, state.position.size, spot.position.size,
                                            reason, now_ns, ex, state.spec.step_size)
        keep = _side_toward(hedge.required - spot.position.size)
        if before.latched(now_ns) and not self._unwind_acts(state, unwind, keep):
            # An unwind gave this leg up already and one now would only log, count and extend the
            # cooldown (a slow spot leg with no perp left to reduce: every few ticks). It waits
            # until there is something to stop, or the cooldown ends.
            return
        self.set(ticker, hedge)
        parent = self._orders.hold(ticker)
        # The leg is given up: fills its perp children still report (in flight when the unwind
        # was sized) are hedged at its ratio on top of the hedge left, never toward its goal.
        for decision_id in {self._decision_ids.get(ticker), parent.decision_id if parent else None}:
            if decision_id is not None:
                self._leg_ratios.setdefault(decision_id, before.ratio)
                self._unwound.add(decision_id)
        if parent is not None:
            await self._orders.cancel_parent(parent)
        if self._spot_orders is not None:
            # The spot children still working that lead away from the hedge now required go too,
            # IOC ones included: one the venue has not answered yet would fill after the perp was
            # brought back to the spot position. Those that close the gap left may finish.
            self._spot_orders.hold(spot.ticker)
            await self._spot_orders.cancel_working(spot.ticker, keep)
        self._metrics.hedge_unwinds.labels(ticker, reason).inc()
        log.warning("hedge_unwind", market=ticker, reason=reason, perp_change=str(unwind.perp_change),
                    perp=str(state.position.size), spot=str(spot.position.size),
                    cooldown_secs=ex.hedge_cooldown_secs)
        if abs(unwind.perp_change) < state.spec.min_order_size:
            return
        side = Side.BUY if unwind.perp_change > 0 else Side.SELL
        touch = state.book.best_ask() if side is Side.BUY else state.book.best_bid()
        if touch is None:  # nothing sent: the perp is still held, and so is what it is owed
            log.warning("hedge_unwind_short", market=ticker, perp_change=str(unwind.perp_change), filled="0",
                        status="NOT_SENT")
            self.set(ticker, hedging.on_unwind_short(self.hedges[ticker], unwind.perp_change, now_ns, ex))
            return
        price = bounded_price(side, touch.price, ex.slippage_cap_bps, state.spec.tick_size)
        order = OrderRequest(self._store.next_client_id(), ticker, side, abs(unwind.perp_change), price,
                             TimeInForce.IOC, reduce_only=True)
        self._unwind_orders[order.client_id] = ticker
        self._unwinding[order.client_id] = (ticker, unwind.perp_change)
        await self._orders.submit(order, state.book.mid())


def _side_toward(gap: Decimal) -> Side | None:
    """The side that closes a signed spot gap (None: no gap)."""
    return (Side.BUY if gap > 0 else Side.SELL) if gap else None


def _decimal(text: str | None) -> Decimal | None:
    """A finite decimal from the store's text, or None."""
    try:
        value = Decimal(text) if text is not None else None
    except ArithmeticError:
        return None
    return value if value is not None and value.is_finite() else None


def record(ticker: str, hedge: HedgeState) -> tuple[str, str]:
    """The store meta (key, value) that a hedge keeps across restarts."""
    required, latched_until_ns = hedging.persisted(hedge)
    saved = {"required": str(required), "latched_until_ns": latched_until_ns}
    return f"{HEDGE_META_PREFIX}{ticker}", json.dumps(saved)
