"""`OrderManager.next_wake_ns`: the first time a tick compares the clock differently (backtests
fold the ticks before it while nothing else changes)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

from support.clock import ManualClock

from bot.config import load
from bot.domain import Side, TimeInForce
from bot.execution.orders import CANCEL_RESEND_NS, Child, OrderManager
from bot.execution.twap import TwapPlan
from bot.store import Store
from bot.telemetry import Metrics

SEC = 1_000_000_000
T0 = 1_700_000_000 * SEC


def _manager() -> OrderManager:
    settings = load(None, env_file=None).execution
    # next_wake_ns reads only the parents: the venue is never called
    return OrderManager(SimpleNamespace(name="paper"), Store.open(Path(":memory:")), Metrics(),  # type: ignore[arg-type]
                        ManualClock(T0), settings)


def _plan(passive: bool) -> TwapPlan:
    slices = tuple(T0 + k * 10 * SEC for k in range(6))
    return TwapPlan("BTC-USD", Side.BUY, Decimal("0.6"), False, slices, (Decimal("0.1"),) * 6, T0 + 60 * SEC,
                    passive=passive)


def test_no_parent_no_wake() -> None:
    assert _manager().next_wake_ns(T0) is None


def test_a_taker_parent_wakes_at_its_next_slice_then_after_its_end() -> None:
    m = _manager()
    m.start_parent(_plan(False), 1)
    assert m.next_wake_ns(T0) == T0 + 10 * SEC
    assert m.next_wake_ns(T0 + 15 * SEC) == T0 + 20 * SEC
    assert m.next_wake_ns(T0 + 50 * SEC) == T0 + 60 * SEC + 1  # `now > end_ns` finishes it
    assert m.next_wake_ns(T0 + 60 * SEC + 1) is None


def test_a_passive_parent_wakes_at_its_timeout_tail_and_cancel_resend() -> None:
    m = _manager()
    m.start_parent(_plan(True), 1)
    parent = m.parents["BTC-USD"]
    timeout = int(m._settings.passive_timeout_secs * SEC)
    parent.waiting_since_ns = T0 + 12 * SEC
    assert m.next_wake_ns(T0 + 12 * SEC) == min(T0 + 20 * SEC, T0 + 12 * SEC + timeout)
    parent.waiting_since_ns = None
    assert m.next_wake_ns(T0 + 52 * SEC) == T0 + 55 * SEC  # the tail: half a slice before the end
    parent.children[7] = Child(7, Decimal("0.1"), Decimal(100), TimeInForce.POST_ONLY, is_cancel_pending=True,
                               cancel_sent_ns=T0 + 51 * SEC)
    assert m.next_wake_ns(T0 + 52 * SEC) == T0 + 51 * SEC + CANCEL_RESEND_NS
