"""Quiet carry hedges: when an engine tick would change a hedge only in its clock, and that clock
moved later without the tick (the backtest runner's idle-tick folding, `runner._idle_tick`).

A hedge is quiet when it is matched and wants no top-up or unwind: `hedging.observe` then gives
the same state at any time but `last_ns` (leg risk stays 0, obligations are met), so the runner
folds the idle ticks between two batches into one at the last skipped grid point. A matched
hedge's clock is not even written then: it is noted and moved before `observe` next reads it
(`set_clocks`), which gives the same state because only `observe` reads a hedge's clock and
every other change to a hedge (a decision's leg, a fill) copies it unchanged.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from bot.config import ExecutionSettings
from bot.domain import ZERO
from bot.engine import Engine
from bot.execution import hedge as hedging


def settled(hedge: hedging.HedgeState, held: Decimal, ex: ExecutionSettings) -> bool:
    """Matched with nothing owed and no leg risk: `hedging.observe` would change only its clock."""
    return (held == hedge.required and not hedge.obligations and not hedge.leg_risk_usd_secs
            and ex.min_notional_usd > 0)


class QuietHedges:
    """The engine's hedges as the runner's folded ticks see them, with the clocks not yet moved."""

    __slots__ = ("_clocks", "_engine", "_ex")

    def __init__(self, engine: Engine, ex: ExecutionSettings) -> None:
        self._engine = engine
        self._ex = ex
        self._clocks: dict[str, int] = {}  # matched hedges' clocks not yet moved (`set_clocks`)

    def matched(self) -> bool:
        """Every hedge matched with nothing owed: an idle tick moves only its clock."""
        engine, ex = self._engine, self._ex
        for ticker, hedge in engine.hedges.items():
            state = engine.markets[ticker]
            if state.spot is None:
                continue
            if not settled(hedge, state.spot.position.size, ex) or hedge.rejects >= ex.hedge_max_rejects:
                return False
        return True

    def quiet(self) -> bool:
        """Every hedge is matched and wants no top-up or unwind: a tick leaves it alone but for
        its clock. Otherwise every tick runs in full."""
        engine = self._engine
        if not engine.hedges:
            return True
        ex = self._ex
        for ticker, hedge in engine.hedges.items():
            state = engine.markets[ticker]
            spot = state.spot
            if spot is None:
                continue
            held = spot.position.size
            if held == hedge.required and hedge.rejects < ex.hedge_max_rejects:
                continue  # matched, nothing to top up: what the checks below find, without the math
            if abs(hedge.mismatch_usd(held, state.mark)) >= ex.min_notional_usd:
                return False  # leg risk accrues with time
            if hedge.rejects >= ex.hedge_max_rejects:
                return False  # an unwind is due
            gap = hedging.hedge_gap(hedge, held, ZERO)
            mid = spot.book.mid()
            gap = abs(gap)
            if mid is not None and gap >= spot.spec.min_order_size and gap * mid >= ex.min_notional_usd:
                return False  # a top-up is due
        return True

    def fold(self, last: int) -> None:
        """What the quiet hedges' observations at the ticks up to `last` leave: the state the
        one at `last` gives (`quiet`)."""
        engine, ex = self._engine, self._ex
        for ticker, hedge in engine.hedges.items():
            state = engine.markets[ticker]
            if state.spot is None:
                continue
            held = state.spot.position.size
            if settled(hedge, held, ex):
                # `observe` would only move its clock: it is moved before `observe` next reads
                # it (`set_clocks`).
                self._clocks[ticker] = last
                continue
            self.set_clocks()
            engine.hedges[ticker] = hedging.observe(hedge, held, state.mark, last, ex)

    def set_clocks(self) -> None:
        """Move the clocks of the matched hedges to the last idle tick that observed them (what
        `observe` would have done at that tick): before a full tick, an observing idle tick and
        the result."""
        hedges = self._engine.hedges
        for ticker, last in self._clocks.items():
            hedge = hedges.get(ticker)
            if hedge is not None and hedge.last_ns != last:
                hedges[ticker] = replace(hedge, last_ns=last)
        self._clocks.clear()
