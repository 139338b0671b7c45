"""Fuzz Binance's transfer reports (bot.venues.binance.transfers) with mutated payloads of the
documented shapes: a balanceUpdate frame decodes or raises msgspec's errors, and what decodes
parses into a finite change or raises MalformedMessage; a deposit, withdrawal or universal
transfer history body decodes or raises the client's MalformedMessage/VenueError, and its rows
become finite changes with the malformed ones (an unknown transfer type too) reported, never
raised."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
from fuzz.binance_body import decoded
from fuzz.mutate import fuzz_settings, mutated_bytes
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import MalformedMessage
from bot.venues.binance import wire
from bot.venues.binance.transfers import (
    BalanceChange,
    history_changes,
    open_times,
    parse_balance_update,
    transfer_change,
    transfer_row,
)

BALANCE_UPDATE = {"e": "balanceUpdate", "E": 1573200697110, "a": "BTC", "d": "100.00000000",
                  "T": 1573200697068}
DEPOSITS = [{"id": "769800519366885376", "amount": "0.001", "coin": "BNB", "network": "BNB", "status": 1,
             "address": "bnb136ns6lfw4zs5hg4n85vdthaad7hq5m4gtkgf23", "addressTag": "101764890",
             "txId": "98A3EA560C6B3336D348B6C83F0F95ECE4F1F5919E94BD006E5BF3BF264FACFC",
             "insertTime": 1661493146000, "completeTime": 1661493146000, "transferType": 0,
             "confirmTimes": "1/1", "unlockConfirm": 0, "walletType": 0}]
WITHDRAWALS = [{"id": "b6ae22b3aa844210a7041aee7589627c", "amount": "8.91000000", "transactionFee": "0.004",
                "coin": "USDT", "status": 6, "address": "0x94df8b352de7f46f64b01d3666bf6e936e44ce60",
                "txId": "0xb5ef8c13b968a406cc62a93a8bd80f9e9a906ef1b3fcf20a2e48573c17659268",
                "applyTime": "2019-10-12 11:12:02", "network": "ETH", "transferType": 0,
                "withdrawOrderId": "WITHDRAWtest123", "info": "", "confirmNo": 3, "walletType": 1,
                "txKey": "", "completeTime": "2023-03-23 16:52:41"}]
TRANSFERS = {"total": 3, "rows": [
    {"asset": "USDT", "amount": "1", "type": "MAIN_UMFUTURE", "status": "CONFIRMED", "tranId": 11415955596,
     "timestamp": 1544433328000},
    {"asset": "BTC", "amount": "0.25", "type": "FUNDING_MAIN", "status": "CONFIRMED", "tranId": 11366865406,
     "timestamp": 1544433328000},
    {"asset": "USDT", "amount": "2", "type": "MAIN_MARGIN", "status": "PENDING", "tranId": 11366865407,
     "timestamp": 1544433329000}]}


def check(change: BalanceChange) -> None:
    assert change.delta.is_finite() and change.delta != 0 and change.ms > 0 and change.asset.isalnum()
    transfer = change.transfer(Decimal("60000.5"))
    assert transfer.amount.is_finite() and transfer.match is not None


@fuzz_settings(200)
@given(raw=mutated_bytes([BALANCE_UPDATE]))
def test_balance_updates_decode_and_parse_or_refuse(raw: bytes) -> None:
    try:
        event = wire.USER_EVENT.decode(raw)
    except msgspec.MsgspecError:
        return
    if not isinstance(event, wire.BalanceUpdate):
        return
    try:
        change = parse_balance_update(event)
    except MalformedMessage:
        return
    if change.delta:
        check(change)


@fuzz_settings(150)
@given(case=st.sampled_from([(list[wire.DepositRow], DEPOSITS), (list[wire.WithdrawRow], WITHDRAWALS),
                             (wire.TransferPage, TRANSFERS)]), data=st.data())
def test_history_bodies_decode_and_parse_or_report(case: tuple[Any, Any], data: st.DataObject) -> None:
    kind, seed = case
    body = decoded(kind, data.draw(mutated_bytes([seed])), "/sapi/v1/x")
    if body is None:
        return
    rows = [bytes(r) for r in body.rows] if kind is wire.TransferPage else body
    deposits = [r for r in rows if isinstance(r, wire.DepositRow)]
    withdrawals = [r for r in rows if isinstance(r, wire.WithdrawRow)]
    transfers = [r for r in rows if isinstance(r, bytes)]
    changes, errors = history_changes(deposits, withdrawals, transfers)
    assert len(errors) <= len(rows) and len(changes) <= len(rows) * 2
    for change in changes:
        check(change)
    open_times(deposits, withdrawals, transfers)  # never raises either


@fuzz_settings(200)
@given(raw=mutated_bytes(TRANSFERS["rows"]))
def test_transfer_rows_parse_or_are_reported(raw: bytes) -> None:
    try:
        row = transfer_row(raw)
        change = transfer_change(row)
    except MalformedMessage:
        return
    if change is not None:
        check(change)
        assert change.key.startswith("binance:transfer:")
        assert (change.delta < 0) == row.type.startswith("MAIN_")
