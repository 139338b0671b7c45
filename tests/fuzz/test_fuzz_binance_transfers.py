"""Fuzz Binance's transfer reports (bot.venues.binance.transfers) with mutated payloads of the
documented shapes: a balanceUpdate frame decodes or raises msgspec's errors, and what decodes
parses into a finite change or raises MalformedMessage; a deposit or withdrawal history body
decodes or raises the client's MalformedMessage/VenueError, and its rows become finite changes
with the malformed ones reported (never raised)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import msgspec
from fuzz.known import is_known
from fuzz.mutate import fuzz_settings, mutated_bytes
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import MalformedMessage, VenueError
from bot.venues.binance import wire
from bot.venues.binance.rest import BinanceRest
from bot.venues.binance.transfers import BalanceChange, history_changes, parse_balance_update

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
@given(case=st.sampled_from([(wire.DepositRow, DEPOSITS), (wire.WithdrawRow, WITHDRAWALS)]), data=st.data())
def test_history_bodies_decode_and_parse_or_report(case: tuple[type, Any], data: st.DataObject) -> None:
    kind, seed = case
    body = data.draw(mutated_bytes([seed]))
    try:
        rows = BinanceRest._decode(None, httpx.Response(200, content=body), list[kind],  # type: ignore[arg-type, valid-type]
                                   "GET", "/sapi/v1/capital/x")
    except (MalformedMessage, VenueError):
        return
    except Exception as exc:
        if not is_known(exc):
            raise
        return
    changes, errors = history_changes(rows if kind is wire.DepositRow else [],
                                      rows if kind is wire.WithdrawRow else [])
    assert len(errors) <= len(rows)
    for change in changes:
        check(change)
