"""Binance's universal transfers (spot <-> funding, futures, margin, ...) as peak transfers and the
catch-up's cursor arithmetic (bot.venues.binance.transfers), pure: the direction each type gives,
which statuses are in the balance, bad rows and unknown types reported with a count, where a
catch-up starts, how it cuts its windows and where the cursor goes after it."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain import TransferMatch
from bot.errors import MalformedMessage
from bot.venues.binance import wire
from bot.venues.binance.transfers import (
    CURSOR_OVERLAP_MS,
    DAY_MS,
    FIRST_CATCH_UP_MS,
    MAX_CATCH_UP_MS,
    MAX_HOLD_MS,
    SPOT_IN,
    SPOT_OUT,
    SPOT_TYPES,
    catch_up_start,
    history_changes,
    next_cursor,
    open_times,
    transfer_change,
    transfer_row,
    windows,
)

D = Decimal
NOW = 1_796_688_600_000
ROW = {"asset": "USDT", "amount": "1500.5", "type": "MAIN_FUNDING", "status": "CONFIRMED",
       "tranId": 11415955596, "timestamp": NOW - 60_000}


def raw(**kw: Any) -> bytes:
    return json.dumps({**ROW, **kw}).encode()


def row(**kw: Any) -> wire.TransferRow:
    return transfer_row(raw(**kw))


def test_the_spot_types_are_every_documented_wallet_to_and_from_main() -> None:
    assert len(SPOT_TYPES) == 14 and len(set(SPOT_TYPES)) == 14
    assert all(t.startswith("MAIN_") for t in SPOT_OUT) and all(t.endswith("_MAIN") for t in SPOT_IN)
    assert {"MAIN_UMFUTURE", "UMFUTURE_MAIN", "FUNDING_MAIN", "MARGIN_MAIN", "CMFUTURE_MAIN",
            "PORTFOLIO_MARGIN_MAIN", "ISOLATED_MARGIN_MAIN", "OPTION_MAIN"} <= set(SPOT_TYPES)


def test_a_confirmed_transfer_out_of_spot_is_a_debit_keyed_by_its_tran_id() -> None:
    change = transfer_change(row())
    assert change is not None
    assert (change.key, change.asset, change.delta, change.ms, change.by_id) == (
        "binance:transfer:11415955596", "USDT", D("-1500.5"), NOW - 60_000, True)
    # The stream's balanceUpdate of the same move has the same delta: the peak pairs them.
    assert change.transfer(D(1)).match == TransferMatch("USDT", (D("-1500.5"),), NOW - 60_000, True)


@pytest.mark.parametrize("kind", SPOT_IN)
def test_a_confirmed_transfer_into_spot_is_a_credit(kind: str) -> None:
    change = transfer_change(row(type=kind, tranId="42"))
    assert change is not None and change.delta == D("1500.5") and change.key == "binance:transfer:42"


@pytest.mark.parametrize("status", ["PENDING", "FAILED"])
def test_a_pending_or_failed_transfer_is_not_in_the_balance(status: str) -> None:
    assert transfer_change(row(status=status)) is None


@pytest.mark.parametrize("kw", [
    {"type": "MARGIN_UMFUTURE"},  # between two other wallets: spot does not move
    {"type": "MAIN_MOON"}, {"type": ""}, {"status": "DONE"}, {"amount": "-5"}, {"amount": "0"},
    {"amount": "NaN"}, {"amount": "1e999999"}, {"amount": "lots"}, {"tranId": -7}, {"tranId": ""},
    {"timestamp": 0}, {"asset": "US/DT"}, {"asset": ""},
])
def test_an_unknown_type_or_a_bad_row_is_malformed(kw: dict[str, Any]) -> None:
    with pytest.raises(MalformedMessage):
        transfer_change(row(**kw))


@pytest.mark.parametrize("body", [b'{"asset":"USDT"}', b'[1,2]', b'{"asset":"USDT","amount":1,"type":"X",'
                                  b'"status":"CONFIRMED","tranId":1,"timestamp":1}', b"\xff", b"{"])
def test_a_row_that_does_not_decode_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedMessage):
        transfer_row(body)


def test_transfer_rows_join_the_histories_once_each_with_bad_ones_counted() -> None:
    rows = [raw(), raw(), raw(tranId=2, type="FUNDING_MAIN", timestamp=NOW - 120_000), raw(type="NOPE"),
            raw(status="PENDING", tranId=3), b"{}"]
    changes, errors = history_changes([], [], rows)
    assert [(c.key, c.delta) for c in changes] == [("binance:transfer:2", D("1500.5")),
                                                    ("binance:transfer:11415955596", D("-1500.5"))]
    assert len(errors) == 2


def test_records_that_may_still_change_hold_the_cursor() -> None:
    deposits = [msgspec.convert({"amount": "1", "coin": "BTC", "status": s, "id": f"d{s}",
                                 "insertTime": NOW - s * 1000}, wire.DepositRow) for s in (0, 1, 6, 7, 8)]
    withdrawals = [msgspec.convert({"id": f"w{s}", "amount": "1", "coin": "BTC", "status": s,
                                    "applyTime": "2026-12-08 00:00:00"}, wire.WithdrawRow) for s in range(7)]
    transfers = [raw(status="PENDING", timestamp=NOW - 5), raw(status="CONFIRMED", timestamp=NOW - 6),
                 raw(status="PENDING", type="NOPE", timestamp=NOW - 7), b"nonsense"]
    applied = NOW - 600_000  # 2026-12-08 00:00:00
    assert sorted(open_times(deposits, withdrawals, transfers)) == sorted(
        [NOW, NOW - 8000, applied, applied, applied, NOW - 5])


def test_a_first_start_reads_the_first_catch_up_span() -> None:
    assert catch_up_start(None, NOW) == (NOW - FIRST_CATCH_UP_MS, False)


def test_a_catch_up_starts_a_day_before_the_cursor_and_never_past_the_venues_reach() -> None:
    assert catch_up_start(NOW - 3 * DAY_MS, NOW) == (NOW - 3 * DAY_MS - CURSOR_OVERLAP_MS, False)
    assert catch_up_start(NOW - 45 * DAY_MS, NOW) == (NOW - 46 * DAY_MS, False)  # down 45 days: all of it
    assert catch_up_start(NOW - 400 * DAY_MS, NOW) == (NOW - MAX_CATCH_UP_MS, True)
    assert catch_up_start(NOW + DAY_MS, NOW) == (NOW - CURSOR_OVERLAP_MS, False)  # a cursor from the future


@given(start=st.integers(0, 10**13), length=st.integers(-5, 400 * DAY_MS),
       span=st.integers(DAY_MS, 100 * DAY_MS))
def test_windows_cover_the_range_once_each_within_the_span(start: int, length: int, span: int) -> None:
    end = start + length
    cut = windows(start, end, span)
    if end < start:
        assert cut == []
        return
    assert cut[0][0] == start and cut[-1][1] == end
    assert all(a <= b and b - a <= span for a, b in cut)
    assert all(nxt[0] == prev[1] + 1 for prev, nxt in itertools.pairwise(cut))
    assert len(cut) == -(-(length + 1) // (span + 1))  # each window holds span + 1 ms


def test_the_cursor_moves_to_the_read_unless_something_may_still_change() -> None:
    assert next_cursor(NOW, []) == NOW
    assert next_cursor(NOW, [NOW - 5000, NOW - 3000]) == NOW - 5000
    assert next_cursor(NOW, [NOW + 5000]) == NOW
    assert next_cursor(NOW, [NOW - 30 * DAY_MS]) == NOW - MAX_HOLD_MS  # pending for a month: let go
