"""The live peak (bot.peak): the transfer adjustment as a pure function (hypothesis), and `LivePeak`
over a real SQLite store with a stand-in for the venues' account reads."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.clock import ManualClock

from bot.domain import Transfer
from bot.peak import META_KEY, LivePeak, adjust_peak, clear, drawdown, load
from bot.store import Store

money = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(10_000_000), places=2)
CLOSE = Decimal("1e-20")


@given(peak=money, equity_before=money, flow=money, withdraw=st.booleans())
def test_a_transfer_leaves_the_drawdown_where_it_was(peak: Decimal, equity_before: Decimal, flow: Decimal,
                                                      withdraw: bool) -> None:
    peak = max(peak, equity_before)  # the peak is never below the equity it was raised to
    amount = -flow if withdraw else flow
    after = equity_before + amount
    adjusted = adjust_peak(peak, after, amount)
    if after <= 0:
        assert adjusted == 0  # everything withdrawn: the next equity starts the peak again
        return
    assert abs(drawdown(adjusted, after) - drawdown(peak, equity_before)) < CLOSE
    assert adjusted >= after - CLOSE  # still a peak of the equity it now scales


@given(peak=money, equity=money, flow=money)
def test_a_deposit_then_its_withdrawal_give_the_peak_back(peak: Decimal, equity: Decimal,
                                                          flow: Decimal) -> None:
    peak = max(peak, equity)
    up = adjust_peak(peak, equity + flow, flow)
    assert abs(adjust_peak(up, equity, -flow) - peak) < CLOSE * peak


@given(equity=money, flow=money)
def test_no_peak_and_no_flow_change_nothing(equity: Decimal, flow: Decimal) -> None:
    assert adjust_peak(Decimal(0), equity, flow) == 0
    assert adjust_peak(equity, equity, Decimal(0)) == equity


def test_dollar_and_scaled_conventions_differ_in_a_drawdown() -> None:
    """Peak 1000, equity 800 (20% down), 700 withdrawn: scaled, still 20% down (a dollar peak of
    300 would make it 67%, past any stop)."""
    assert adjust_peak(Decimal(1000), Decimal(100), Decimal(-700)) == Decimal(125)
    assert adjust_peak(Decimal(1000), Decimal(500), Decimal(500)) == Decimal(500)  # empty, then funded


class Accounts:
    """The venues' reads as `LivePeak` sees them (bot.accounts.AccountBook's surface)."""

    def __init__(self, equity: str | None) -> None:
        self.value = None if equity is None else Decimal(equity)
        self.read_ns = 0
        self.nudges = 0

    def equity(self) -> Decimal | None:
        return self.value

    def read_since(self, venue: str, ns: int) -> bool:
        assert venue == "dydx"
        return self.read_ns > ns

    def nudge(self) -> None:
        self.nudges += 1

    def read(self, equity: str, at_ns: int) -> None:
        self.value, self.read_ns = Decimal(equity), at_ns


def withdrawal(amount: str, key: str = "tx1:WITHDRAWAL") -> Transfer:
    return Transfer(key, -Decimal(amount), 10, 0)


def test_the_peak_waits_for_a_read_after_the_transfer(tmp_path: Path) -> None:
    clock, accounts = ManualClock(1_000), Accounts("10000")
    with Store.open(tmp_path / "db.sqlite") as store:
        peak = LivePeak(store, accounts, clock, "dydx")
        assert peak.value == 0 and peak.observe() == Decimal(10000)
        clock.now = 2_000
        peak.on_transfer(withdrawal("3000"))
        assert accounts.nudges == 1
        # An equity read from before the transfer neither scales nor raises the peak.
        accounts.value = Decimal(10100)
        assert peak.observe() == Decimal(10000)
        accounts.read("7000", 2_001)
        assert peak.observe() == Decimal(7000)
        peak.on_transfer(withdrawal("3000"))  # the same transfer again (a resent frame)
        accounts.read("7000", 3_000)
        assert peak.observe() == Decimal(7000)


def test_two_transfers_before_a_read_scale_once_by_their_sum(tmp_path: Path) -> None:
    clock, accounts = ManualClock(1_000), Accounts("8000")
    with Store.open(tmp_path / "db.sqlite") as store:
        peak = LivePeak(store, accounts, clock, "dydx")
        store.meta_set(META_KEY, '{"peak": "10000"}')
        peak = LivePeak(store, accounts, clock, "dydx")  # restored: 20% down
        peak.on_transfer(withdrawal("1000", "a"))
        peak.on_transfer(Transfer("b", Decimal(4000), 11, 0))
        accounts.read("11000", 1_001)
        assert peak.observe() == Decimal(10000) * 11000 / 8000
        assert drawdown(peak.value, Decimal(11000)) == drawdown(Decimal(10000), Decimal(8000))


def test_a_restart_reads_the_peak_and_its_pending_transfers_back(tmp_path: Path) -> None:
    clock, accounts = ManualClock(1_000), Accounts("10000")
    with Store.open(tmp_path / "db.sqlite") as store:
        LivePeak(store, accounts, clock, "dydx").observe()
        accounts.read("6000", 1_500)  # a loss: 40% down
        LivePeak(store, accounts, clock, "dydx").observe()
        peak = LivePeak(store, accounts, clock, "dydx")
        peak.on_transfer(withdrawal("1000"))
    clock.now = 5_000
    with Store.open(tmp_path / "db.sqlite") as store:
        restarted = LivePeak(store, Accounts("5000"), clock, "dydx")
        assert restarted.value == Decimal(10000)  # not the trough
        assert restarted.observe() == Decimal(10000)  # the read predates the restart: waits
        later = Accounts("5000")
        later.read("5000", 5_001)
        assert LivePeak(store, later, clock, "dydx").observe() == Decimal(10000) * 5000 / 6000


def test_an_unreadable_stored_peak_is_logged_and_started_afresh(tmp_path: Path) -> None:
    clock = ManualClock(1_000)
    with Store.open(tmp_path / "db.sqlite") as store:
        for bad in ("not json", '{"peak": "NaN"}', '{"peak": "-1"}', '{"nope": 1}',
                    '{"peak": "1", "keys": 3}', "[]"):
            store.meta_set(META_KEY, bad)
            peak = LivePeak(store, Accounts("500"), clock, "dydx")
            assert peak.value == 0 and peak.observe() == Decimal(500)


def test_reset_takes_the_equity_now_and_survives_a_restart(tmp_path: Path) -> None:
    clock, accounts = ManualClock(1_000), Accounts("10000")
    with Store.open(tmp_path / "db.sqlite") as store:
        peak = LivePeak(store, accounts, clock, "dydx")
        peak.observe()
        accounts.read("6000", 1_500)  # 40% down: the stop holds
        assert peak.observe() == Decimal(10000)
        assert peak.reset() == (Decimal(10000), Decimal(6000))
        assert LivePeak(store, accounts, clock, "dydx").value == Decimal(6000)  # stored


def test_reset_keeps_transfers_its_read_predates_and_clears_those_it_includes(tmp_path: Path) -> None:
    clock, accounts = ManualClock(1_000), Accounts("10000")
    with Store.open(tmp_path / "db.sqlite") as store:
        peak = LivePeak(store, accounts, clock, "dydx")
        peak.observe()
        accounts.read("8000", 1_500)
        clock.now = 2_000
        peak.on_transfer(withdrawal("2000"))
        assert peak.reset() == (Decimal(10000), Decimal(8000)) and peak.pending == Decimal(-2000)
        accounts.read("6000", 2_001)  # the withdrawal shows: scaled, the drawdown stays zero
        assert peak.observe() == Decimal(6000) and peak.pending == 0
        peak.on_transfer(withdrawal("1000", "tx2"))
        accounts.read("5000", 2_002)  # this read already includes it
        assert peak.reset() == (Decimal(6000), Decimal(5000)) and peak.pending == 0
        assert LivePeak(store, accounts, clock, "dydx").observe() == Decimal(5000)


def test_reset_refuses_before_an_equity_read_and_clear_keeps_the_transfer_keys(tmp_path: Path) -> None:
    clock = ManualClock(1_000)
    with Store.open(tmp_path / "db.sqlite") as store:
        with pytest.raises(ValueError, match="no positive account equity"):
            LivePeak(store, Accounts(None), clock, "dydx").reset()
        peak = LivePeak(store, Accounts("10000"), clock, "dydx")
        peak.observe()
        peak.on_transfer(withdrawal("1000"))
        assert clear(store) == Decimal(10000)
        restarted = LivePeak(store, Accounts("7000"), clock, "dydx")
        assert restarted.value == 0 and restarted.pending == 0
        assert load(store).keys == ["tx1:WITHDRAWAL"]  # a replay of it still counts once
        assert restarted.observe() == Decimal(7000)
