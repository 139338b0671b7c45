"""The watchdog of a backtest under stress scenarios: the daemon's pure `watchdog.mode`
classify/step_mode machine on observations derived from the scenarios.

Inputs: the chain head's age while halted, indexer lag, withdrawal gating, plus an
`oracle_stale` input after a restart. It steps every `watchdog.sample_interval_secs` while
anything is abnormal and sleeps to the next scenario change otherwise; HALTED cancels every
order, as the daemon's watchdog does. Without scenarios nothing can degrade: it never steps.
"""

from __future__ import annotations

import math

from bot.clock import NS_PER_SEC
from bot.config import Settings
from bot.domain import RiskMode
from bot.engine import Engine
from bot.watchdog.mode import InputState, ModeState, Observation, Reading, classify, step_mode, target_mode

from .scenarios import StressModel


class StressWatchdog:
    __slots__ = ("_engine", "_settings", "_stress", "_wd_ns", "state")

    def __init__(self, stress: StressModel | None, engine: Engine, settings: Settings) -> None:
        self._stress, self._engine, self._settings = stress, engine, settings
        self._wd_ns = int(settings.watchdog.sample_interval_secs * NS_PER_SEC)
        self.state = ModeState()

    async def step(self, now: int) -> float:
        """Observe and step the mode at `now`; return when to step next (inf: never)."""
        stress, engine = self._stress, self._engine
        if stress is None:
            return math.inf  # nothing can degrade
        stress.advance(now)
        if stress.is_quiet(now) and self.state.mode is RiskMode.NORMAL:
            nxt = stress.next_change_ns(now)
            return nxt if nxt is not None else math.inf
        head = engine.block_height or None
        blocks_left = stress.gating_blocks_left(now) if stress.withdrawals_gated(now) else 0
        obs = Observation(
            head_age_secs=(now - stress.halted_since_ns) / NS_PER_SEC if stress.halted_since_ns else 0.0,
            indexer_lag_blocks=stress.indexer_lag_blocks,
            withdrawals_unblocked_at_block=(head + blocks_left) if head and blocks_left else None,
            head_height=head,
        )
        wd = self._settings.watchdog
        readings = list(classify(obs, wd))
        if stress.oracle_stale(now):
            left = (stress.oracle_stale_until_ns - now) / NS_PER_SEC
            readings.append(Reading("oracle_stale", InputState.DEGRADED, left,
                                    f"oracle_stale: prices frozen since the restart ({left:.0f}s left)"))
        target, reason = target_mode(readings)
        if wd.enabled:
            self.state, _ = step_mode(self.state, target, reason, now, wd.hold_off_secs)
        else:  # no watchdog wired: the scenario sets the mode directly while it lasts
            self.state = ModeState(target, reason)
        mode = self.state.mode
        if engine.risk_mode is not mode:
            engine.set_risk_mode(mode, f"watchdog: {self.state.reason}")
            if mode is RiskMode.HALTED:
                for manager in engine.order_managers:
                    await manager.cancel_all()
        return now + self._wd_ns
