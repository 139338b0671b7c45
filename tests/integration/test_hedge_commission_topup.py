"""The hedge and a spot venue that takes a buy's commission out of the base asset (Binance without
the BNB discount): the perp fills' spot parents buy exactly what the perp sold, and the commission
the account lacks is bought back by a parent of its own once both legs are idle, so the carry ends
delta-neutral on what the account holds. In-process: the engine, the paper venues on simulated
markets (test_rule_scenarios' harness), the spot fills reshaped the way the Binance adapter books them.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import structlog
from integration.test_rule_scenarios import SEC, Harness

from bot.domain import AccountEvent, Fill, Side
from bot.execution.twap import TwapPlan

D = Decimal
RATE = D("0.001")


async def test_a_carry_open_buys_back_the_base_commission_once_both_legs_are_idle(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"strategy": {"targets": {"BTC-USD": "0"}}})
    binance_like(h)
    await h.run_for(5)
    # A carry opening: the perp sells 0.3 in three slices and the spot leg follows its fills.
    hedge = replace(h.engine.hedges["BTC-USD"], goal=D("0.3"), ratio=D(-1))
    h.engine.hedge_control.set("BTC-USD", hedge)
    now = h.clock.now
    orders = h.engine.order_managers[0]
    orders.start_parent(TwapPlan("BTC-USD", Side.SELL, D("0.3"), False, (now, now + 5 * SEC, now + 10 * SEC),
                                 (D("0.1"),) * 3, now + 30 * SEC), decision_id=1)
    await h.run_for(60)

    assert h.state.position.size == D("-0.3") and "BTC-USD" not in orders.parents
    spot = h.state.spot.position.size
    withheld = sum((f.withheld for f in h.store.fills("BTC-USDT")), D(0))
    assert withheld > 0
    # What the account holds matches the perp within the commission on the buy-back itself.
    assert D(0) <= D("0.3") - spot < D("0.000001"), spot
    rows = h.store._read("SELECT size, created_ns FROM orders WHERE market = 'BTC-USDT' ORDER BY client_id")
    sizes = [D(size) for size, _ in rows]
    last_perp_fill = max(f.ts_event for f in h.store.fills("BTC-USD"))
    # The perp fills' parents bought 0.3 exactly; one more, after the perp leg was done, the commission.
    assert sum(sizes[:-1], D(0)) == D("0.3") and sizes[-1] == D("0.0003"), sizes
    assert rows[-1][1] > last_perp_fill


def binance_like(h: Harness) -> None:
    """The paper spot venue's buys booked as Binance books them: net of a base-asset commission."""
    paper_sink = h.engine.on_spot_account_event

    def as_binance_books(event: AccountEvent) -> None:
        if isinstance(event, Fill) and event.side is Side.BUY:
            commission = (event.size * RATE).quantize(D("0.00000001"))
            event = replace(event, size=event.size - commission, withheld=commission,
                            fee=commission * event.price)
        paper_sink(event)

    h.spot_venue.set_account_sink(as_binance_books)


def spot_order_sizes(h: Harness) -> list[Decimal]:
    rows = h.store._read("SELECT size FROM orders WHERE market = 'BTC-USDT' ORDER BY client_id")
    return [D(size) for (size,) in rows]


async def sell_perp(h: Harness, size: Decimal, slices: int, goal: Decimal) -> None:
    """A carry opening toward `goal` spot: the perp sells `size` in `slices`, the spot leg follows."""
    h.engine.hedge_control.set("BTC-USD", replace(h.engine.hedges["BTC-USD"], goal=goal, ratio=D(-1)))
    now = h.clock.now
    h.engine.order_managers[0].start_parent(
        TwapPlan("BTC-USD", Side.SELL, size, False, tuple(now + 5 * SEC * i for i in range(slices)),
                 (size / slices,) * slices, now + 30 * SEC), decision_id=1)
    await h.run_for(60)


async def test_the_commission_owed_survives_a_restart(tmp_path: Path) -> None:
    """A restart between two perp slices of a carry opening: the first buy's commission (too small
    to buy back alone) is still owed after it, so the next spot parents buy exactly what the perp
    sells and one parent buys all the commission back at the end (a forgetful hedge folded the
    old commission into the first parent the perp fills called for)."""
    h = Harness(tmp_path, {"strategy": {"targets": {"BTC-USD": "0"}}})
    binance_like(h)
    await h.run_for(5)
    await sell_perp(h, D("0.1"), 1, D("0.3"))
    assert h.state.spot.position.size == D("0.0999")  # the commission, too small to buy alone
    before = len(spot_order_sizes(h))
    h.store.close()

    h = Harness(tmp_path, {"strategy": {"targets": {"BTC-USD": "0"}}})  # the restarted daemon
    binance_like(h)
    await h.run_for(5)
    assert h.engine.hedges["BTC-USD"].required == D("0.1")
    await sell_perp(h, D("0.2"), 2, D("0.3"))

    assert h.state.position.size == D("-0.3")
    after = spot_order_sizes(h)[before:]
    # The perp fills' parents bought 0.2 exactly; the last order, all three buys' commission.
    assert sum(after[:-1], D(0)) == D("0.2") and after[-1] == D("0.0003"), after
    assert D(0) <= D("0.3") - h.state.spot.position.size < D("0.000001")


async def test_an_unreadable_commission_record_is_logged_and_nothing_is_owed(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"strategy": {"targets": {"BTC-USD": "0"}}})
    h.store.meta_set("hedge_withheld_covered:BTC-USDT", "NaN")
    h.store.close()
    with structlog.testing.capture_logs() as logs:
        h = Harness(tmp_path, {"strategy": {"targets": {"BTC-USD": "0"}}})
    assert [e["value"] for e in logs if e["event"] == "hedge_withheld_unreadable"] == ["NaN"]
    assert h.store.meta_get("hedge_withheld_covered:BTC-USDT") == "0"  # rewritten from the store's fills
