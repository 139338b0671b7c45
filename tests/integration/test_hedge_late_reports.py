"""A spot venue that answers late (Binance: the order's fills and final state arrive on the user
stream, after `place` returned; a slow stream, a place that timed out) or a spot order that
reaches the venue late (the hedge-delay scenario): the hedge must count every spot child still
working, whichever parent sent it, or it sends the same hedge again every parent window and
every tick. In-process: the engine, the paper venues on simulated markets (test_rule_scenarios'
harness), the spot venue's reports held back as a late user stream holds them.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import structlog
from integration.test_rule_scenarios import SEC, Harness

from bot.domain import AccountEvent, OrderStatus, Side
from bot.execution.twap import TwapPlan

D = Decimal
LATE_SECS = 8  # beyond a spot hedge parent's window (hedge_lag_secs / 2 = 5 s)


class LateReports:
    """The spot venue's account events, delivered `secs` after they happened."""

    def __init__(self, h: Harness, secs: int) -> None:
        self._h, self._late_ns, self._queue = h, secs * SEC, []  # type: ignore[var-annotated]
        self._sink = h.engine.on_spot_account_event
        h.spot_venue.set_account_sink(lambda event: self._queue.append((h.clock.now + self._late_ns, event)))

    def deliver(self) -> None:
        due = [e for t, e in self._queue if t <= self._h.clock.now]
        self._queue = [(t, e) for t, e in self._queue if t > self._h.clock.now]
        for event in due:
            self._sink(event)

    async def run_for(self, secs: int) -> None:
        for _ in range(secs):
            self.deliver()
            await self._h.run_for(1)

    @property
    def pending(self) -> list[AccountEvent]:
        return [e for _t, e in self._queue]


def spot_orders(h: Harness) -> list[tuple[Side, Decimal, str]]:
    rows = h.store._read("SELECT side, size, status FROM orders WHERE market = 'BTC-USDT' ORDER BY client_id")
    return [(Side(side), D(size), status) for side, size, status in rows]


def settings() -> dict[str, object]:
    # A wide leg-risk budget: the late reports alone must not give the leg up here.
    return {"strategy": {"targets": {"BTC-USD": "0"}},
            "execution": {"hedge_leg_risk_budget_usd_secs": "100000000", "hedge_max_mismatch_usd": "100000"}}


async def test_a_late_spot_venue_gets_each_perp_fills_hedge_once(tmp_path: Path) -> None:
    h = Harness(tmp_path, settings())
    late = LateReports(h, LATE_SECS)
    await late.run_for(5)
    # A carry opening: the perp sells 0.3 in three slices 5 s apart, the spot leg follows its fills.
    h.engine.hedge_control.set("BTC-USD", replace(h.engine.hedges["BTC-USD"], goal=D("0.3"), ratio=D(-1)))
    now = h.clock.now
    h.engine.order_managers[0].start_parent(
        TwapPlan("BTC-USD", Side.SELL, D("0.3"), False, (now, now + 5 * SEC, now + 10 * SEC), (D("0.1"),) * 3,
                 now + 30 * SEC), decision_id=1)
    await late.run_for(90)

    assert h.state.position.size == D("-0.3") and not late.pending
    orders = spot_orders(h)
    # Every spot order bought, and they bought what the perp sold: nothing sent twice.
    assert all(side is Side.BUY for side, _size, _status in orders), orders
    assert sum((size for _side, size, _status in orders), D(0)) == D("0.3"), orders
    assert h.state.spot.position.size == D("0.3")


async def test_after_an_unwind_a_late_spot_fill_is_sold_back_once(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"strategy": {"targets": {"BTC-USD": "0"}}})
    late = LateReports(h, 30)  # answered only after the leg risk gave the leg up
    await late.run_for(5)
    h.engine.hedge_control.set("BTC-USD", replace(h.engine.hedges["BTC-USD"], goal=D("0.1"), ratio=D(-1)))
    now = h.clock.now
    h.engine.order_managers[0].start_parent(
        TwapPlan("BTC-USD", Side.SELL, D("0.1"), False, (now,), (D("0.1"),), now + 30 * SEC), decision_id=1)
    with structlog.testing.capture_logs() as logs:
        await late.run_for(120)

    # Its sell, answered late too, outlasts the leg-risk budget again: with no perp left to
    # change and nothing to cancel an unwind has nothing to do, so none fires (the old hedge
    # fired one every few ticks, each logged, counted and extending the cooldown); the sell finishes.
    assert h.engine.hedges["BTC-USD"].unwinds == 1 and h.state.position.size == 0
    assert len([e for e in logs if e["event"] == "hedge_unwind"]) == 1, logs
    # The unwind's cancel came too late (the IOC had traded): the hedge waited for its answer
    # instead of selling against it, then sold what it bought, once. Nothing sent twice.
    orders = spot_orders(h)
    assert len(orders) == 2 and [side for side, _size, _status in orders] == [Side.BUY, Side.SELL], orders
    assert orders[0][1] == orders[1][1] and h.state.spot.position.size == 0


async def test_a_slow_spot_leg_with_no_perp_left_is_unwound_once(tmp_path: Path) -> None:
    # A leg-risk budget a 0.01 BTC mismatch spends in ~2 s, a spot venue answering 60 s late: the
    # unwind buys the perp back; the spot buy it could not stop is then sold back, and that sell,
    # late too, outlasts the budget again and again with no perp left to reduce and nothing to
    # cancel. The old hedge unwound every few ticks for nothing (about 30 times here), each
    # logged, counted and pushing the carry's cooldown further.
    h = Harness(tmp_path, {"strategy": {"targets": {"BTC-USD": "0"}},
                           "execution": {"hedge_leg_risk_budget_usd_secs": "1000"}})
    late = LateReports(h, 60)
    await late.run_for(5)
    h.engine.hedge_control.set("BTC-USD", replace(h.engine.hedges["BTC-USD"], goal=D("0.01"), ratio=D(-1)))
    start = h.clock.now
    plan = TwapPlan("BTC-USD", Side.SELL, D("0.01"), False, (start,), (D("0.01"),), start + 30 * SEC)
    h.engine.order_managers[0].start_parent(plan, decision_id=1)
    with structlog.testing.capture_logs() as logs:
        await late.run_for(150)

    hedge = h.engine.hedges["BTC-USD"]
    unwinds = [e for e in logs if e["event"] == "hedge_unwind"]
    assert len(unwinds) == 1 and hedge.unwinds == 1, unwinds
    cooldown_ns = int(h.settings.execution.hedge_cooldown_secs * SEC)
    assert hedge.latched_until_ns <= start + 10 * SEC + cooldown_ns  # latched by the one unwind only
    # The legs match in the end: the perp bought back, the late buy sold back once.
    assert h.state.position.size == 0 and h.state.spot.position.size == 0 and not late.pending
    assert [side for side, _size, _status in spot_orders(h)] == [Side.BUY, Side.SELL]


async def test_an_unwind_with_nothing_to_do_fires_once_per_cooldown(tmp_path: Path) -> None:
    # The spot leg alone owes 0.01 BTC (the perp is flat) and the spot venue never answers: the
    # leg risk gives the leg up. The unwind has no perp to reduce and nothing to cancel (the buy
    # working leads toward the hedge), but it latches the carry closed; it fires again only once
    # that latch has ended, not every few ticks.
    h = Harness(tmp_path, {"strategy": {"targets": {"BTC-USD": "0"}},
                           "execution": {"hedge_leg_risk_budget_usd_secs": "1000",
                                         "hedge_cooldown_secs": "20"}})
    late = LateReports(h, 1000)
    await late.run_for(5)
    owed = D("0.01")
    h.engine.hedge_control.set("BTC-USD", replace(h.engine.hedges["BTC-USD"], required=owed, goal=owed))
    with structlog.testing.capture_logs() as logs:
        await late.run_for(50)

    changes = [D(e["perp_change"]) for e in logs if e["event"] == "hedge_unwind"]
    assert changes == [0, 0, 0], changes  # at ~2 s, then as each 20 s latch ends
    assert h.state.position.size == 0 and [side for side, _size, _status in spot_orders(h)] == [Side.BUY]


async def test_a_spot_order_beyond_the_risk_limits_is_refused_unsent(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"strategy": {"targets": {"BTC-USD": "0"}}})
    await h.run_for(5)
    spot = h.engine.order_managers[1]
    price = h.state.spot.book.mid()
    size = ((h.settings.strategy.max_notional_usd * 2) / price).quantize(D("0.001"))
    now = h.clock.now
    plan = TwapPlan("BTC-USDT", Side.BUY, size, False, (now,), (size,), now + 5 * SEC)
    spot.start_parent(plan, decision_id=0)
    await h.run_for(3)

    rows = h.store._read("SELECT status, reason FROM orders WHERE market = 'BTC-USDT'")
    assert rows and all(status == OrderStatus.REJECTED.value and reason.startswith("refused: spot exposure")
                        for status, reason in rows), rows
    assert h.state.spot.position.size == 0 and not h.store.fills("BTC-USDT")


async def test_a_hedge_held_above_the_cap_after_a_rally_is_restored_not_refused(tmp_path: Path) -> None:
    # A cap of 100 USD + 10 USD of slack, and a hedge of 0.01 BTC owed (worth ~650 USD now: as a
    # carry opened within the cap is after a rally). The buy that restores it grows the spot
    # exposure beyond the cap but brings it to the hedge owed: the old guard refused it three
    # times and gave a healthy leg up (spot_rejects unwind); it must pass.
    h = Harness(tmp_path, {"strategy": {"targets": {"BTC-USD": "0"}, "max_notional_usd": "100"},
                           "execution": {"hedge_max_mismatch_usd": "10"}})
    await h.run_for(5)
    owed = D("0.01")
    h.engine.hedge_control.set("BTC-USD", replace(h.engine.hedges["BTC-USD"], required=owed, goal=owed))
    await h.run_for(10)

    assert h.state.spot.position.size == D("0.01"), spot_orders(h)
    assert h.engine.hedges["BTC-USD"].unwinds == 0 and h.engine.hedges["BTC-USD"].rejects == 0
    # Beyond the hedge owed the cap holds: a further buy is refused unsent.
    spot = h.engine.order_managers[1]
    now = h.clock.now
    spot.start_parent(TwapPlan("BTC-USDT", Side.BUY, owed, False, (now,), (owed,), now + 5 * SEC), 0)
    await h.run_for(2)
    rows = spot_orders(h)
    assert rows[-1][2] == OrderStatus.REJECTED.value and h.state.spot.position.size == D("0.01"), rows


async def test_a_perp_fill_reported_after_its_parent_ended_is_still_hedged(tmp_path: Path) -> None:
    # The perp venue's reports 6 s late (a lagging indexer), the parent's window 3 s: its child's
    # fill arrives once the parent ended. The old hedge counted only the running parent's fills:
    # the perp stayed short 0.01 with no spot hedge, and no mismatch or leg risk showed it.
    h = Harness(tmp_path, {"strategy": {"targets": {"BTC-USD": "0"}}})
    queue: list[tuple[int, AccountEvent]] = []
    h.venue.set_account_sink(lambda event: queue.append((h.clock.now + 6 * SEC, event)))
    await h.run_for(5)
    h.engine.hedge_control.set("BTC-USD", replace(h.engine.hedges["BTC-USD"], goal=D("0.01"), ratio=D(-1)))
    h.engine.decider._decision_ids["BTC-USD"] = 1  # as a decision leaves it
    now = h.clock.now
    h.engine.order_managers[0].start_parent(
        TwapPlan("BTC-USD", Side.SELL, D("0.01"), False, (now,), (D("0.01"),), now + 3 * SEC), decision_id=1)
    for _ in range(60):
        for event in [e for t, e in queue if t <= h.clock.now]:
            h.engine.on_account_event(event)
        queue[:] = [(t, e) for t, e in queue if t > h.clock.now]
        await h.run_for(1)

    assert h.state.position.size == D("-0.01") and not queue
    assert h.state.spot.position.size == D("0.01"), h.engine.hedges["BTC-USD"]
    assert h.engine.hedges["BTC-USD"].required == D("0.01")
