"""Money moved into or out of the Binance spot account, not by trading (pure): the drawdown peak
scales by it (bot.peak) so a withdrawal does not read as a loss nor a deposit as a gain.

Two sources report the same movement:

* the user data stream's `balanceUpdate` (a deposit, a withdrawal, a transfer between the user's
  own accounts such as spot and funding): asset `a`, balance delta `d`, clear time `T`, no id.
  Key `binance:bu:<asset>:<T>:<E>:<delta>` (two of the same asset, delta and times are one).
* the histories, read at start and after a user stream reconnect:
  GET /sapi/v1/capital/deposit/hisrec: a deposit is in the balance once credited, status 1
  (success) or 6 (credited, not yet withdrawable); 0 pending, 7 wrong deposit, 8 waiting for the
  user and 2 rejected are not. Key `binance:deposit:<id>`, time `completeTime` (else `insertTime`).
  GET /sapi/v1/capital/withdraw/history: the balance is debited when the withdrawal is applied
  for: status 2 (awaiting approval), 4 (processing) and 6 (completed) are out; 1 (cancelled),
  3 (rejected) and 5 (failure) were debited and given back (a debit and its refund); 0 (email
  sent, not confirmed) is not out yet and is read again later. Key `binance:withdraw:<id>` (and
  `...:refund`), time `applyTime` (refund: `completeTime`, else `applyTime`), "YYYY-MM-DD
  HH:MM:SS" UTC. The debit is taken as `amount + transactionFee`; the pairing with the stream
  also accepts `amount` alone (whether the fee is inside `amount` is not documented).
* the universal transfer history, read with them: GET /sapi/v1/asset/transfer (USER_DATA, IP
  weight 1; developers.binance.com/docs/wallet/asset/query-user-universal-transfer): `type` is
  mandatory (one request per type), `current` (from 1) and `size` (default 10, max 100) page,
  only the last 6 months are kept, and without times it answers the last 7 days; the page is
  `{"total", "rows"}` (no `rows` when empty). Rows: `asset`, `amount` (positive), `type`,
  `status` CONFIRMED / FAILED / PENDING, `tranId`, `timestamp` (ms). The types that move money
  into or out of the spot wallet (MAIN) are read (`SPOT_TYPES`): MAIN_<wallet> is out,
  <wallet>_MAIN in (the wallet list of POST /sapi/v1/asset/transfer). A CONFIRMED one is in the
  balance, a FAILED one never was, a PENDING one is read again later. Key
  `binance:transfer:<tranId>`, time `timestamp`.

The catch-up starts at the stored cursor (bot.venues.binance.catch_up): the time the last one
read up to, less `CURSOR_OVERLAP_MS`, held back (at most `MAX_HOLD_MS`) by records that may still
change (a pending deposit, a withdrawal not final, a pending transfer, one with no price yet), and
reads in windows of each endpoint's longest span, from at most `MAX_CATCH_UP_MS` back. A first
start (no cursor) reads `FIRST_CATCH_UP_MS`.

Both carry a `TransferMatch` (asset, quantities, ms) so the peak counts a movement once whichever
source reports it first. The USD amount is the quantity at a price the caller gives: 1 for the
quote assets the account's equity counts at 1 (bot.venues.binance.account_state), the mid of the
market whose base it is otherwise (as the equity values it), none for an asset the equity does not
value (amount 0: it is not in the equity either).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from bot.clock import NS_PER_MS
from bot.domain import ZERO, Transfer, TransferMatch
from bot.errors import MalformedMessage
from bot.venues.binance import wire
from bot.venues.binance.parse import parse_decimal as _dec

QUOTE_ASSETS = ("USDT", "USDC", "FDUSD", "USD")
DAY_MS = 24 * 3600 * 1000
# A first start (no cursor): what every start read before the cursor existed. On a new store
# these are only remembered (the first equity holds them); older ones are in it too.
FIRST_CATCH_UP_MS = 30 * DAY_MS
# The universal transfer history keeps 6 months: a daemon down longer reads from there (logged).
MAX_CATCH_UP_MS = 180 * DAY_MS
CURSOR_OVERLAP_MS = DAY_MS  # a record listed late (the peak's catch-up grace is a day too)
MAX_HOLD_MS = 7 * DAY_MS  # a record pending longer no longer holds the cursor back
# Deposit and withdrawal histories: "the time between startTime and endTime must be less than 90
# days", at most 1000 rows a request (`offset` pages) (developers.binance.com/docs/wallet/capital/
# withdraw-history and deposite-history).
HISTORY_SPAN_MS = 90 * DAY_MS - 1
HISTORY_PAGE_ROWS = 1000
# The universal transfer history documents no longest span, only its 7-day default: windows of 7
# days are what it answers by itself. Pages of 100 rows (its maximum).
TRANSFER_SPAN_MS = 7 * DAY_MS
TRANSFER_PAGE_ROWS = 100
MAX_PAGES = 50  # per window and endpoint (a runaway pager is cut, logged, and the cursor held)
CREDITED = frozenset({1, 6})
DEPOSIT_PENDING = frozenset({0, 8})  # may still be credited
DEBITED = frozenset({2, 4, 6})
REFUNDED = frozenset({1, 3, 5})
WITHDRAW_OPEN = frozenset({0, 2, 4})  # may still go out, or come back
# The universal transfer types that move money out of (MAIN_*) or into (*_MAIN) the spot wallet.
SPOT_OUT = ("MAIN_FUNDING", "MAIN_UMFUTURE", "MAIN_CMFUTURE", "MAIN_MARGIN", "MAIN_ISOLATED_MARGIN",
            "MAIN_OPTION", "MAIN_PORTFOLIO_MARGIN")
SPOT_IN = tuple(f"{t.removeprefix('MAIN_')}_MAIN" for t in SPOT_OUT)
SPOT_TYPES = SPOT_OUT + SPOT_IN


@dataclass(frozen=True, slots=True)
class BalanceChange:
    """One movement of one asset: `delta` is what the balance changed by (signed)."""

    key: str
    asset: str
    delta: Decimal
    ms: int
    by_id: bool
    also: Decimal | None = None  # another quantity the other source may show for it

    def transfer(self, price: Decimal | None) -> Transfer:
        """The domain transfer, valued at `price` USD per unit (None: not valued, amount 0)."""
        quantities = (self.delta,) if self.also is None else (self.delta, self.also)
        return Transfer(self.key, ZERO if price is None else self.delta * price, 0, self.ms * NS_PER_MS,
                        TransferMatch(self.asset, quantities, self.ms, self.by_id))


def _text(amount: Decimal) -> str:
    return format(amount.normalize(), "f")


def _asset(text: str) -> str:
    if not text or len(text) > 20 or not text.isalnum():
        raise MalformedMessage(f"asset {text[:40]!r} is not an asset name")
    return text


def parse_balance_update(event: wire.BalanceUpdate) -> BalanceChange:
    """A balanceUpdate as a change; MalformedMessage when it is not one."""
    asset, delta, ms = _asset(event.a), _dec(event.d, "balance delta"), event.T or event.E
    if ms <= 0:
        raise MalformedMessage(f"balanceUpdate time {ms} is not a time")
    return BalanceChange(f"binance:bu:{asset}:{ms}:{event.E}:{_text(delta)}", asset, delta, ms, False)


def utc_ms(text: str, what: str) -> int:
    """ms of a "YYYY-MM-DD HH:MM:SS" UTC time (the withdrawal history's)."""
    try:
        ms = int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp() * 1000)
    except ValueError:
        ms = 0
    if ms <= 0:
        raise MalformedMessage(f"{what} {text[:40]!r} is not a UTC time")
    return ms


def deposit_change(row: wire.DepositRow) -> BalanceChange | None:
    """A credited deposit as a change; None while it is not in the balance."""
    if row.status not in CREDITED:
        return None
    ref = row.id or row.txId
    amount, ms = _dec(row.amount, "deposit amount"), row.completeTime or row.insertTime
    if not ref or amount <= 0 or ms <= 0:
        raise MalformedMessage(f"deposit {ref[:40]!r}: no id, amount {row.amount[:40]!r} or time {ms}")
    return BalanceChange(f"binance:deposit:{ref}", _asset(row.coin), amount, ms, True)


def withdraw_changes(row: wire.WithdrawRow) -> list[BalanceChange]:
    """A withdrawal's debit and, once it failed or was cancelled, its refund; [] while not debited."""
    if row.status not in DEBITED and row.status not in REFUNDED:
        return []
    amount, fee = _dec(row.amount, "withdrawal amount"), _dec(row.transactionFee or "0", "withdrawal fee")
    if not row.id or amount <= 0 or fee < 0:
        raise MalformedMessage(f"withdrawal {row.id[:40]!r}: amount {row.amount[:40]!r}, fee {fee}")
    asset, applied = _asset(row.coin), utc_ms(row.applyTime, "applyTime")
    out = -(amount + fee)
    debit = BalanceChange(f"binance:withdraw:{row.id}", asset, out, applied, True, -amount if fee else None)
    if row.status in DEBITED:
        return [debit]
    back = utc_ms(row.completeTime, "completeTime") if row.completeTime else applied
    refund = BalanceChange(f"binance:withdraw:{row.id}:refund", asset, -out, back, True,
                           amount if fee else None)
    return [debit, refund]


def transfer_row(raw: bytes) -> wire.TransferRow:
    """One universal transfer history row; MalformedMessage when it is not one."""
    try:
        return wire.TRANSFER_ROW.decode(raw)
    except msgspec.MsgspecError as exc:
        raise MalformedMessage(f"transfer row: {exc}") from None


def transfer_change(row: wire.TransferRow) -> BalanceChange | None:
    """A confirmed transfer into or out of the spot wallet as a change; None when it is not (yet)
    in the balance (PENDING, FAILED); MalformedMessage for an unknown type or status, or a bad row."""
    if row.type not in SPOT_TYPES:
        raise MalformedMessage(f"transfer type {row.type[:40]!r} is not one into or out of the spot wallet")
    if row.status not in ("CONFIRMED", "PENDING", "FAILED"):
        raise MalformedMessage(f"transfer status {row.status[:40]!r} is unknown")
    ref, amount = str(row.tranId), _dec(row.amount, "transfer amount")
    if not ref or ref.startswith("-") or len(ref) > 40 or amount <= 0 or row.timestamp <= 0:
        raise MalformedMessage(f"transfer {ref[:40]!r}: amount {row.amount[:40]!r} or time {row.timestamp}")
    asset = _asset(row.asset)
    if row.status != "CONFIRMED":
        return None
    delta = -amount if row.type in SPOT_OUT else amount
    return BalanceChange(f"binance:transfer:{ref}", asset, delta, row.timestamp, True)


def history_changes(deposits: Sequence[wire.DepositRow], withdrawals: Sequence[wire.WithdrawRow],
                    transfers: Sequence[bytes] = ()) -> tuple[list[BalanceChange], list[str]]:
    """Every change the histories show (`transfers`: raw universal transfer rows), oldest first,
    each once, and one error per malformed row (skipped)."""
    changes: list[BalanceChange] = []
    errors: list[str] = []
    for raw in transfers:
        try:
            change = transfer_change(transfer_row(raw))
        except MalformedMessage as exc:
            errors.append(str(exc))
            continue
        if change is not None:
            changes.append(change)
    for row in deposits:
        try:
            change = deposit_change(row)
        except MalformedMessage as exc:
            errors.append(str(exc))
            continue
        if change is not None:
            changes.append(change)
    for withdrawal in withdrawals:
        try:
            changes += withdraw_changes(withdrawal)
        except MalformedMessage as exc:
            errors.append(str(exc))
    unique = {c.key: c for c in changes}  # a row on two pages (the history moved while paged)
    return sorted(unique.values(), key=lambda c: (c.ms, c.key)), errors


def open_times(deposits: Sequence[wire.DepositRow], withdrawals: Sequence[wire.WithdrawRow],
               transfers: Sequence[bytes] = ()) -> list[int]:
    """The times (ms) of the records that may still change the balance: the cursor must not pass
    them (a malformed row is not one: it is reported by `history_changes`)."""
    times = [row.insertTime for row in deposits if row.status in DEPOSIT_PENDING and row.insertTime > 0]
    for row in withdrawals:
        if row.status in WITHDRAW_OPEN:
            with contextlib.suppress(MalformedMessage):
                times.append(utc_ms(row.applyTime, "applyTime"))
    for raw in transfers:
        with contextlib.suppress(MalformedMessage):
            parsed = transfer_row(raw)
            if parsed.status == "PENDING" and parsed.type in SPOT_TYPES and parsed.timestamp > 0:
                times.append(parsed.timestamp)
    return times


def catch_up_start(cursor_ms: int | None, now_ms: int) -> tuple[int, bool]:
    """(where a catch-up at `now_ms` starts reading, whether the cursor is older than the venue
    keeps: what lies between is not read)."""
    if cursor_ms is None:
        return now_ms - FIRST_CATCH_UP_MS, False
    start = min(cursor_ms, now_ms) - CURSOR_OVERLAP_MS
    floor = now_ms - MAX_CATCH_UP_MS
    return max(start, floor), start < floor


def windows(start_ms: int, end_ms: int, span_ms: int) -> list[tuple[int, int]]:
    """[start, end] cut into consecutive inclusive windows of at most `span_ms` (oldest first)."""
    out: list[tuple[int, int]] = []
    while start_ms <= end_ms:
        last = min(end_ms, start_ms + span_ms)
        out.append((start_ms, last))
        start_ms = last + 1
    return out


def next_cursor(end_ms: int, holds: Sequence[int]) -> int:
    """The cursor after a catch-up that read up to `end_ms`: not past a record that may still
    change (`holds`), nor held more than `MAX_HOLD_MS`."""
    return max(end_ms - MAX_HOLD_MS, min([end_ms, *holds]))
