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
Transfers between the user's own accounts are only on the stream.

Both carry a `TransferMatch` (asset, quantities, ms) so the peak counts a movement once whichever
source reports it first. The USD amount is the quantity at a price the caller gives: 1 for the
quote assets the account's equity counts at 1 (bot.venues.binance.account_state), the mid of the
market whose base it is otherwise (as the equity values it), none for an asset the equity does not
value (amount 0: it is not in the equity either).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from bot.clock import NS_PER_MS
from bot.domain import ZERO, Transfer, TransferMatch
from bot.errors import MalformedMessage
from bot.venues.binance import wire
from bot.venues.binance.parse import parse_decimal as _dec

QUOTE_ASSETS = ("USDT", "USDC", "FDUSD", "USD")
LOOKBACK_MS = 30 * 24 * 3600 * 1000  # how far back the histories are read at start (the venue allows 90 days)
RECONNECT_LOOKBACK_MS = 24 * 3600 * 1000  # after a user stream reconnect (a gap of seconds to hours)
CREDITED = frozenset({1, 6})
DEBITED = frozenset({2, 4, 6})
REFUNDED = frozenset({1, 3, 5})


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


def history_changes(deposits: Sequence[wire.DepositRow], withdrawals: Sequence[wire.WithdrawRow]
                    ) -> tuple[list[BalanceChange], list[str]]:
    """Every change the histories show, oldest first, and one error per malformed row (skipped)."""
    changes: list[BalanceChange] = []
    errors: list[str] = []
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
    return sorted(changes, key=lambda c: (c.ms, c.key)), errors
