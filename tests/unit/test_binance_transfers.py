"""Binance deposits, withdrawals and balanceUpdates as peak transfers (bot.venues.binance.transfers),
pure: which history statuses are in the balance, the keys and pairing data each gets, valuation, and
malformed rows and events reported, never raised past the parser."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from bot.domain import TransferMatch
from bot.errors import MalformedMessage
from bot.venues.binance import wire
from bot.venues.binance.transfers import (
    deposit_change,
    history_changes,
    parse_balance_update,
    utc_ms,
    withdraw_changes,
)

D = Decimal
APPLIED = "2026-12-08 00:10:00"
APPLIED_MS = 1_796_688_600_000


def bu(raw: bytes) -> wire.BalanceUpdate:
    event = wire.USER_EVENT.decode(raw)
    assert isinstance(event, wire.BalanceUpdate)
    return event


def deposit(status: int, **kw: object) -> wire.DepositRow:
    row = {"id": "d1", "amount": "250.5", "coin": "USDT", "status": status, "txId": "0xabc",
           "insertTime": 1_000, "completeTime": 2_000, **kw}
    return msgspec.convert(row, wire.DepositRow)


def withdrawal(status: int, **kw: object) -> wire.WithdrawRow:
    row = {"id": "w1", "amount": "0.5", "transactionFee": "0.0002", "coin": "BTC", "status": status,
           "applyTime": APPLIED, **kw}
    return msgspec.convert(row, wire.WithdrawRow)


def test_a_balance_update_is_a_change_keyed_by_its_asset_times_and_delta() -> None:
    change = parse_balance_update(bu(b'{"e":"balanceUpdate","E":1573200697110,"a":"BTC",'
                                     b'"d":"-100.00000000","T":1573200697068}'))
    assert (change.key, change.asset, change.delta, change.ms) == (
        "binance:bu:BTC:1573200697068:1573200697110:-100", "BTC", D(-100), 1573200697068)
    transfer = change.transfer(D(60_000))
    assert transfer.amount == D(-6_000_000) and transfer.ts_event == 1573200697068 * 1_000_000
    assert transfer.match == TransferMatch("BTC", (D(-100),), 1573200697068, False)
    assert change.transfer(None).amount == 0  # an asset the equity does not value either


@pytest.mark.parametrize("raw", [
    b'{"e":"balanceUpdate","E":1,"a":"BTC","d":"abc","T":1}',
    b'{"e":"balanceUpdate","E":1,"a":"BTC","d":"NaN","T":1}',
    b'{"e":"balanceUpdate","E":1,"a":"BTC","d":"1e999999","T":1}',
    b'{"e":"balanceUpdate","E":1,"a":"B/../x","d":"1","T":1}',
    b'{"e":"balanceUpdate","E":0,"a":"BTC","d":"1","T":0}',
])
def test_a_malformed_balance_update_is_malformed_not_a_crash(raw: bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse_balance_update(bu(raw))


def test_a_balance_update_without_its_fields_does_not_decode() -> None:
    with pytest.raises(msgspec.DecodeError):
        wire.USER_EVENT.decode(b'{"e":"balanceUpdate","E":1,"a":"BTC"}')


@pytest.mark.parametrize("status", [0, 2, 7, 8])
def test_a_deposit_not_credited_is_not_in_the_balance(status: int) -> None:
    assert deposit_change(deposit(status)) is None


@pytest.mark.parametrize("status", [1, 6])
def test_a_credited_deposit_counts_from_its_completion(status: int) -> None:
    change = deposit_change(deposit(status))
    assert change is not None
    assert (change.key, change.asset, change.delta, change.ms, change.by_id) == (
        "binance:deposit:d1", "USDT", D("250.5"), 2_000, True)
    older = deposit_change(deposit(status, id="", completeTime=0))  # an older record: txId, insertTime
    assert older is not None and (older.key, older.ms) == ("binance:deposit:0xabc", 1_000)


@pytest.mark.parametrize("status", [2, 4, 6])
def test_a_withdrawal_applied_for_is_out_with_its_fee(status: int) -> None:
    [debit] = withdraw_changes(withdrawal(status))
    assert (debit.key, debit.delta, debit.ms) == ("binance:withdraw:w1", D("-0.5002"), APPLIED_MS)
    assert debit.transfer(D(100)).match == TransferMatch("BTC", (D("-0.5002"), D("-0.5")), APPLIED_MS, True)


@pytest.mark.parametrize("status", [1, 3, 5])
def test_a_cancelled_rejected_or_failed_withdrawal_is_a_debit_and_its_refund(status: int) -> None:
    debit, refund = withdraw_changes(withdrawal(status, completeTime="2026-12-08 00:20:00"))
    assert debit.delta + refund.delta == 0 and refund.key == "binance:withdraw:w1:refund"
    assert refund.ms == APPLIED_MS + 600_000


def test_a_withdrawal_waiting_for_its_email_confirmation_is_read_again_later() -> None:
    assert withdraw_changes(withdrawal(0)) == []


def test_history_rows_oldest_first_and_malformed_ones_reported_and_skipped() -> None:
    changes, errors = history_changes(
        [deposit(1), deposit(1, id="d2", amount="-5"), deposit(1, id="d3", amount="x"),
         deposit(1, id="", txId="")],
        [withdrawal(6), withdrawal(6, id="w2", applyTime="yesterday"), withdrawal(6, id="w3", coin=""),
         withdrawal(6, id="w4", transactionFee="-1")])
    assert [c.key for c in changes] == ["binance:deposit:d1", "binance:withdraw:w1"]
    assert len(errors) == 6


def test_utc_times_read_as_utc() -> None:
    assert utc_ms(APPLIED, "applyTime") == APPLIED_MS
    for bad in ("2026-13-01 00:00:00", "1969-12-31 23:59:59", "", "2026-12-08T00:10:00Z"):
        with pytest.raises(MalformedMessage):
            utc_ms(bad, "applyTime")
