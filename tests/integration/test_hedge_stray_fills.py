"""Perp fills the venue reports after their leg is over: a newer decision replaced the parent, or
an unwind gave the leg up. The perp traded all the same, so the hedge owes their spot at the ratio
their leg was started with; the old hedge dropped them, leaving perp exposure unhedged with no
mismatch to show it. In-process: the engine and the paper venues on simulated markets
(test_rule_scenarios' harness), the perp venue's reports held back as a lagging indexer holds them.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import structlog
from integration.test_hedge_late_reports import LateReports
from integration.test_rule_scenarios import SEC, Harness

from bot.domain import AccountEvent, Side
from bot.execution import hedge as hedging
from bot.execution.twap import TwapPlan

D = Decimal


class LatePerp:
    """The perp venue's account events, delivered `secs` after they happened."""

    def __init__(self, h: Harness, secs: int) -> None:
        self._h, self.queue = h, []  # type: ignore[var-annotated]
        h.venue.set_account_sink(lambda event: self.queue.append((h.clock.now + secs * SEC, event)))

    def deliver(self) -> None:
        for event in [e for t, e in self.queue if t <= self._h.clock.now]:
            self._h.engine.on_account_event(event)
        self.queue[:] = [(t, e) for t, e in self.queue if t > self._h.clock.now]

    @property
    def pending(self) -> list[AccountEvent]:
        return [e for _t, e in self.queue]


def decide(h: Harness, decision_id: int, perp_target: str, spot_goal: str, slices: int = 1) -> None:
    """What `Decider.decide` does for a carry leg: the hedge follows a new perp parent's fills."""
    h.engine.decider._decision_ids["BTC-USD"] = decision_id
    hedge = hedging.start_leg(h.engine.hedges["BTC-USD"], h.state.position.size, D(perp_target),
                              D(spot_goal), True, h.clock.now, h.settings.execution)
    h.engine.hedge_control.set("BTC-USD", hedge, decision_id)
    size = abs(D(perp_target) - h.state.position.size)
    now = h.clock.now
    due = tuple(now + i * 5 * SEC for i in range(slices))
    plan = TwapPlan("BTC-USD", Side.SELL, size, False, due, (size / slices,) * slices, now + 60 * SEC)
    h.engine.order_managers[0].start_parent(plan, decision_id)


async def test_a_late_fill_of_a_replaced_parent_is_hedged(tmp_path: Path) -> None:
    # Decision 1 sells 0.01 perp; its child fills at once but the indexer reports it 6 s late.
    # Meanwhile decision 2 (perp still reads 0) sells 0.02 more. The old hedge dropped the fill of
    # the replaced parent: perp -0.03 against spot 0.02, and `required` said 0.02 (no mismatch).
    h = Harness(tmp_path, {"strategy": {"targets": {"BTC-USD": "0"}}})
    late = LatePerp(h, 6)
    await h.run_for(5)
    decide(h, 1, "-0.01", "0.01")
    await h.run_for(2)
    assert h.state.position.size == 0 and late.pending  # sent and filled, not reported yet
    decide(h, 2, "-0.02", "0.02")
    for _ in range(60):
        late.deliver()
        await h.run_for(1)

    assert h.state.position.size == D("-0.03") and not late.pending
    assert h.engine.hedges["BTC-USD"].required == D("0.03")
    assert h.state.spot.position.size == D("0.03"), h.engine.hedges["BTC-USD"]


async def test_a_perp_fill_reported_after_an_unwind_is_hedged(tmp_path: Path) -> None:
    # A carry sells 0.02 perp in two slices 5 s apart; the indexer reports 6 s late and the spot
    # venue 30 s late, so the leg risk of the first fill gives the leg up before the second
    # slice's fill is reported. The unwind buys back the 0.01 it knew of; the old hedge then
    # dropped the second slice's fill (the leg's ratio was gone): that perp short stayed open
    # with no hedge and no mismatch. Now it is owed like any fill: the spot leg, still late,
    # cannot follow, so a second unwind brings the perp back to the spot leg.
    h = Harness(tmp_path, {"strategy": {"targets": {"BTC-USD": "0"}},
                           "execution": {"hedge_leg_risk_budget_usd_secs": "1000"}})
    late = LatePerp(h, 6)
    spot = LateReports(h, 30)
    await h.run_for(5)
    decide(h, 1, "-0.02", "0.02", slices=2)
    with structlog.testing.capture_logs() as logs:
        for _ in range(90):
            late.deliver()
            spot.deliver()
            await h.run_for(1)

    hedge = h.engine.hedges["BTC-USD"]
    # Two unwinds, each trading perp: none fires with nothing to do while the spot leg lags (the
    # old hedge fired 17, most with no perp left to change).
    changes = [D(e["perp_change"]) for e in logs if e["event"] == "hedge_unwind"]
    assert len(changes) == hedge.unwinds == 2 and all(changes), changes
    assert not late.pending and not spot.pending
    assert h.engine.order_managers[0].order_state(2) is not None  # the second slice was sent
    # Both legs match: no perp short is left without its spot.
    assert h.state.position.size == -h.state.spot.position.size, (h.state.position.size, hedge)
    assert hedge.required == h.state.spot.position.size, hedge


async def test_an_unwind_that_trades_short_leaves_the_perp_it_kept_owed(tmp_path: Path) -> None:
    # The spot venue never answers; the leg risk gives the leg up and the unwind's reduce-only IOC,
    # bounded by a 2 bps slippage cap, buys back only part of the perp short. The old hedge took
    # the whole unwind as done: the perp it kept had no hedge owed and no mismatch to show it.
    h = Harness(tmp_path, {"strategy": {"targets": {"BTC-USD": "0"}, "max_notional_usd": "1000000"},
                           "execution": {"hedge_max_mismatch_usd": "1000000", "slippage_cap_bps": "0.1",
                                         "hedge_leg_risk_budget_usd_secs": "1500000"}})
    spot = LateReports(h, 1000)
    await h.run_for(5)
    decide(h, 1, "-3", "3", slices=4)
    await spot.run_for(60)

    hedge = h.engine.hedges["BTC-USD"]
    assert hedge.unwinds >= 1 and h.state.position.size < 0, hedge
    # A pure carry (ratio -1): whatever perp is held, its hedge is owed.
    assert hedge.required == -h.state.position.size, (h.state.position.size, hedge)
