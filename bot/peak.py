"""Live peak equity for the drawdown stop: kept in the store and adjusted for deposits and withdrawals.

The sizing's drawdown stop compares equity with this peak (bot.strategy.sizing). Live, two things
move equity that are not trading results, and neither may move the stop:

* a restart: the peak is read back from the store (meta `peak_equity`), so a daemon restarted in a
  drawdown keeps its stop instead of taking the trough as a new peak;
* a transfer (deposit, withdrawal, transfer in or out): the peak is scaled by equity_after /
  equity_before, the time-weighted convention of a fund's high-water mark per unit. The drawdown
  fraction 1 - equity / peak is the same after the flow as before it. Subtracting a withdrawal in
  dollars instead deepens a drawdown under way (peak 1000, equity 800, withdraw 700: 20% becomes 67%)
  and can trip the stop by itself.

A transfer is reported by the account stream, the equity by account reads (bot.accounts) that
may predate it. Transfers wait as `pending` until the transfers' venue (the perp venue: dYdX) was
read by a refresh that started after the last of them; the equity E then (the venues' sum) is the
equity after them, and the peak is scaled by E / (E - pending). Until then peak and equity both
show the account before the flow.
Paper and backtests have no transfers and keep their configured peak (bot.engine).

An operator who accepts a loss resets the peak to the equity now (`perpbot reset-peak --confirm`,
`LivePeak.reset`), or, with the daemon stopped, clears it (`--direct`, `clear`): the first read
after the next start sets it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import structlog

from bot.clock import Clock
from bot.domain import ZERO, Transfer

log = structlog.get_logger("peak")
META_KEY = "peak_equity"
MAX_KEYS = 500  # transfer keys remembered against replays (a restart's catch-up, a resent frame)


def adjust_peak(peak: Decimal, equity_after: Decimal, net_transfers: Decimal) -> Decimal:
    """The peak after net transfers that brought equity to `equity_after` (pure).

    Scaled by equity_after / equity_before so the drawdown fraction does not move. No peak yet
    (zero): none. Nothing left: zero (the next equity starts it again). An account that held
    nothing before the flow starts afresh at `equity_after`.
    """
    if peak <= 0 or not net_transfers:
        return peak
    if equity_after <= 0:
        return ZERO
    before = equity_after - net_transfers
    if before <= 0:
        return equity_after
    return peak * equity_after / before


def drawdown(peak: Decimal, equity: Decimal) -> Decimal:
    """1 - equity / peak (0 without a peak)."""
    return 1 - equity / peak if peak > 0 else ZERO


class Equities(Protocol):
    """What the peak reads of the venues' accounts (bot.accounts.AccountBook)."""

    def equity(self) -> Decimal | None: ...

    def read_since(self, venue: str, ns: int) -> bool: ...

    def nudge(self) -> None: ...


@dataclass(slots=True)
class PeakRecord:
    """What the store keeps: the peak, transfers not yet in a read, and the transfers seen."""

    peak: Decimal = ZERO
    pending: Decimal = ZERO
    keys: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"peak": str(self.peak), "pending": str(self.pending),
                           "keys": self.keys[-MAX_KEYS:]})

    @classmethod
    def from_json(cls, text: str) -> PeakRecord:
        raw: Any = json.loads(text)
        keys = raw.get("keys", [])
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValueError("keys is not a list of strings")
        peak, pending = Decimal(str(raw["peak"])), Decimal(str(raw.get("pending", "0")))
        if not (peak.is_finite() and pending.is_finite()) or peak < 0:
            raise ValueError(f"peak {peak} or pending {pending} is not a finite amount")
        return cls(peak, pending, keys)


class Store(Protocol):
    def meta_get(self, key: str) -> str | None: ...

    def meta_set(self, key: str, value: str) -> None: ...


class LivePeak:
    """The live account's peak equity: restored from the store, raised by account reads, scaled by
    transfers. `value` is what the drawdown stop uses."""

    def __init__(self, store: Store, accounts: Equities, clock: Clock, venue: str) -> None:
        self._store, self._accounts, self._clock, self._venue = store, accounts, clock, venue
        self._record = load(store)
        self._pending_ns = clock.now_ns() if self._record.pending else 0  # a restart reads afresh
        if self._record.peak > 0:
            log.info("peak_restored", peak=str(self._record.peak), pending=str(self._record.pending))

    @property
    def value(self) -> Decimal:
        return self._record.peak

    @property
    def pending(self) -> Decimal:
        """Net transfers seen on the stream and not yet in an account read."""
        return self._record.pending

    def observe(self) -> Decimal:
        """Fold the venues' current equity in: apply pending transfers once a read shows them,
        then raise the peak to the equity. Returns the peak."""
        equity = self._accounts.equity()
        if equity is None:
            return self._record.peak
        record, changed = self._record, False
        if record.pending:
            if not self._accounts.read_since(self._venue, self._pending_ns):
                return record.peak  # the equity read may predate the transfers
            old = record.peak
            record.peak = adjust_peak(record.peak, equity, record.pending)
            log.info("peak_adjusted_for_transfers", net_transfers=str(record.pending), equity=str(equity),
                     old_peak=str(old), peak=str(record.peak))
            record.pending, changed = ZERO, True
        if equity > record.peak:
            record.peak, changed = equity, True
        if changed:
            self._store.meta_set(META_KEY, record.to_json())
        return record.peak

    def reset(self) -> tuple[Decimal, Decimal]:
        """Operator: accept the drawdown; the peak becomes the venues' equity now. Returns (old, new).

        Pending transfers the equity read already includes are cleared; those it predates stay
        pending and scale the new peak when a read shows them, which keeps the drawdown at zero.
        Raises ValueError before the first positive equity read (there is nothing to reset to).
        """
        equity = self._accounts.equity()
        if equity is None or equity <= 0:
            raise ValueError(f"no positive account equity read yet ({equity}): nothing to reset the peak to")
        record = self._record
        if record.pending and self._accounts.read_since(self._venue, self._pending_ns):
            record.pending = ZERO
        old, record.peak = record.peak, equity
        self._store.meta_set(META_KEY, record.to_json())
        log.warning("peak_reset", old_peak=str(old), peak=str(equity), pending=str(record.pending))
        return old, equity

    def on_transfer(self, transfer: Transfer) -> None:
        """Hold a new transfer until an account read shows it; a replayed one is ignored."""
        record = self._record
        if transfer.key in record.keys:
            return
        record.keys = [*record.keys[-(MAX_KEYS - 1):], transfer.key]
        if record.peak > 0:  # before the first read there is no peak: that read includes it
            record.pending += transfer.amount
            self._pending_ns = self._clock.now_ns()
            self._accounts.nudge()
        log.info("transfer_seen", key=transfer.key, amount=str(transfer.amount), height=transfer.height,
                 pending=str(record.pending))
        self._store.meta_set(META_KEY, record.to_json())

    def catch_up(self, transfers: list[Transfer]) -> int:
        """At start, before the first account read: the venue's recent transfers not seen by a
        previous run (it was down) are pending. Without a stored peak they are all in the first
        equity: only remembered. Returns how many are pending."""
        new = [t for t in transfers if t.key not in self._record.keys]
        if self._record.peak <= 0:
            self._record.keys = [*self._record.keys, *(t.key for t in new)][-MAX_KEYS:]
            self._store.meta_set(META_KEY, self._record.to_json())
            return 0
        for transfer in sorted(new, key=lambda t: (t.height, t.ts_event)):
            self.on_transfer(transfer)
        if new:
            log.warning("transfers_while_down", count=len(new), net=str(sum((t.amount for t in new), ZERO)))
        return len(new)


def clear(store: Store) -> Decimal:
    """With the daemon stopped: forget the stored peak and pending transfers, so the first equity
    read of the next run starts it. The transfer keys stay (a replayed transfer still counts once).
    Returns the old peak."""
    record = load(store)
    old = record.peak
    store.meta_set(META_KEY, PeakRecord(keys=record.keys).to_json())
    log.warning("peak_reset", old_peak=str(old), peak="0", pending=str(record.pending), direct=True)
    return old


def load(store: Store) -> PeakRecord:
    """The stored peak; none (a new store, or an unreadable record, logged) starts at the first read."""
    text = store.meta_get(META_KEY)
    if text is None:
        return PeakRecord()
    try:
        return PeakRecord.from_json(text)
    except (ValueError, KeyError, TypeError, AttributeError, InvalidOperation) as exc:
        log.error("peak_unreadable", error=repr(exc))
        return PeakRecord()
