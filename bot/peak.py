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

A transfer is reported by an account stream, the equity by account reads (bot.accounts) that
may predate it. Transfers wait as `pending` until each venue that reported one (the perp venue,
dYdX; the spot hedge venue, Binance) was read by a refresh that started after its last one; the
equity E then (the venues' sum) is the equity after them, and the peak is scaled by
E / (E - pending). Until then peak and equity both show the account before the flow.

Each transfer counts once: its key is remembered (across restarts, with the peak). A venue that
reports a transfer without an id on its stream (Binance's balanceUpdate) and with one in its
history (the catch-up at start and after a reconnect) gives both a `TransferMatch`: the second
report of a pair (same asset, a common quantity, within `PAIR_WINDOW_MS`, one with an id and one
without) is remembered and not applied again. Reports waiting for their pair are kept (the newest
`MAX_UNPAIRED`); a transfer only one source ever reports (Binance: between the user's own
accounts, on the stream only) simply stays there.
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
from bot.domain import ZERO, Transfer, TransferMatch
from bot.store.meta import MetaStore

log = structlog.get_logger("peak")
META_KEY = "peak_equity"
MAX_KEYS = 500  # transfer keys remembered against replays (a restart's catch-up, a resent frame)
MAX_UNPAIRED = 200  # reports waiting for the same transfer from the venue's other source
# A balanceUpdate's time against its history record's (a withdrawal's applyTime, a deposit's
# completeTime or, without one, insertTime: a deposit is credited after its confirmations).
PAIR_WINDOW_MS = 6 * 3600 * 1000
# A catch-up takes a venue's transfers from this long before the newest one an earlier catch-up of
# it listed: older ones were listed then (counted, or known), even once their keys are forgotten.
CATCH_UP_GRACE_NS = 24 * 3600 * 10**9


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


def pair_index(waiting: list[tuple[str, TransferMatch]], match: TransferMatch) -> int | None:
    """The waiting report `match` is the other report of (pure): the other source (one with an id,
    one without), the same asset, a quantity in common, within the window; the closest in time."""
    best: tuple[int, int] | None = None
    for i, (_, other) in enumerate(waiting):
        gap = abs(other.ms - match.ms)
        if (other.by_id != match.by_id and other.asset == match.asset and gap <= PAIR_WINDOW_MS
                and set(other.quantities) & set(match.quantities) and (best is None or gap < best[0])):
            best = (gap, i)
    return None if best is None else best[1]


def _match_json(key: str, match: TransferMatch) -> dict[str, Any]:
    return {"key": key, "asset": match.asset, "q": [str(q) for q in match.quantities], "ms": match.ms,
            "id": match.by_id}


def _match_of(raw: Any) -> tuple[str, TransferMatch]:
    quantities = tuple(Decimal(str(q)) for q in raw["q"])
    if not all(q.is_finite() for q in quantities) or not isinstance(raw["ms"], int):
        raise ValueError(f"unpaired transfer {raw!r} is malformed")
    return str(raw["key"]), TransferMatch(str(raw["asset"]), quantities, raw["ms"], bool(raw["id"]))


class Equities(Protocol):
    """What the peak reads of the venues' accounts (bot.accounts.AccountBook)."""

    def equity(self) -> Decimal | None: ...

    def read_since(self, venue: str, ns: int) -> bool: ...

    def nudge(self) -> None: ...


@dataclass(slots=True)
class PeakRecord:
    """What the store keeps: the peak, transfers not yet in a read (and the venues that reported
    them), the transfers seen, the reports waiting for their pair, and per venue the newest
    transfer time (ns) a catch-up listed."""

    peak: Decimal = ZERO
    pending: Decimal = ZERO
    keys: list[str] = field(default_factory=list)
    venues: list[str] = field(default_factory=list)
    unpaired: list[tuple[str, TransferMatch]] = field(default_factory=list)
    listed: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"peak": str(self.peak), "pending": str(self.pending),
                           "keys": self.keys[-MAX_KEYS:], "venues": self.venues,
                           "unpaired": [_match_json(k, m) for k, m in self.unpaired[-MAX_UNPAIRED:]],
                           "listed": self.listed})

    @classmethod
    def from_json(cls, text: str) -> PeakRecord:
        raw: Any = json.loads(text)
        keys = raw.get("keys", [])
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValueError("keys is not a list of strings")
        peak, pending = Decimal(str(raw["peak"])), Decimal(str(raw.get("pending", "0")))
        if not (peak.is_finite() and pending.is_finite()) or peak < 0:
            raise ValueError(f"peak {peak} or pending {pending} is not a finite amount")
        venues = raw.get("venues", [])
        if not isinstance(venues, list) or not all(isinstance(v, str) for v in venues):
            raise ValueError("venues is not a list of strings")
        listed = raw.get("listed", {})
        if not isinstance(listed, dict) or not all(isinstance(v, int) for v in listed.values()):
            raise ValueError("listed is not a map of venue to ns")
        return cls(peak, pending, keys, venues, [_match_of(u) for u in raw.get("unpaired", [])],
                   {str(k): v for k, v in listed.items()})


class LivePeak:
    """The live account's peak equity: restored from the store, raised by account reads, scaled by
    transfers. `value` is what the drawdown stop uses."""

    def __init__(self, store: MetaStore, accounts: Equities, clock: Clock, venue: str) -> None:
        self._store, self._accounts, self._clock, self._venue = store, accounts, clock, venue
        self._record = load(store)
        # venue -> when its last pending transfer was seen; a restart reads every one afresh
        pending = self._record.venues or ([venue] if self._record.pending else [])
        self._pending_ns = dict.fromkeys(pending, clock.now_ns())
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
        if self._pending_ns:
            if not self._read_since_pending():
                return record.peak  # the equity read may predate the transfers
            old = record.peak
            record.peak = adjust_peak(record.peak, equity, record.pending)
            log.info("peak_adjusted_for_transfers", net_transfers=str(record.pending), equity=str(equity),
                     old_peak=str(old), peak=str(record.peak), venues=record.venues)
            self._clear_pending()
            changed = True
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
        if self._pending_ns and self._read_since_pending():
            self._clear_pending()
        old, record.peak = record.peak, equity
        self._store.meta_set(META_KEY, record.to_json())
        log.warning("peak_reset", old_peak=str(old), peak=str(equity), pending=str(record.pending))
        return old, equity

    def _read_since_pending(self) -> bool:
        return all(self._accounts.read_since(v, ns) for v, ns in self._pending_ns.items())

    def _clear_pending(self) -> None:
        self._record.pending, self._record.venues, self._pending_ns = ZERO, [], {}

    def on_transfer(self, transfer: Transfer, venue: str | None = None) -> None:
        """Hold a new transfer of `venue` (default: the perp venue) until a read of it shows it; a
        replayed one, or the second report of a pair, is ignored."""
        if self._take(transfer):
            self._apply(transfer, venue or self._venue)
            self._store.meta_set(META_KEY, self._record.to_json())

    def _take(self, transfer: Transfer) -> bool:
        """Remember a transfer; True when it is new money (not a replay, not the other report of a
        transfer already counted)."""
        record = self._record
        if transfer.key in record.keys:
            return False
        record.keys = [*record.keys[-(MAX_KEYS - 1):], transfer.key]
        match = transfer.match
        if match is not None:
            i = pair_index(record.unpaired, match)
            if i is not None:
                other, _ = record.unpaired.pop(i)
                log.info("transfer_paired", key=transfer.key, counted_as=other, amount=str(transfer.amount))
                self._store.meta_set(META_KEY, record.to_json())
                return False
            record.unpaired = [*record.unpaired[-(MAX_UNPAIRED - 1):], (transfer.key, match)]
        return True

    def _apply(self, transfer: Transfer, venue: str) -> None:
        record = self._record
        if record.peak > 0:  # before the first read there is no peak: that read includes it
            record.pending += transfer.amount
            self._pending_ns[venue] = self._clock.now_ns()
            record.venues = sorted(self._pending_ns)
            self._accounts.nudge()
        log.info("transfer_seen", key=transfer.key, amount=str(transfer.amount), height=transfer.height,
                 venue=venue, pending=str(record.pending))

    def catch_up(self, transfers: list[Transfer], venue: str | None = None) -> int:
        """At start (before the first account read): the venue's recent transfers not seen yet
        are pending; those older than `CATCH_UP_GRACE_NS` before the newest an earlier catch-up
        listed are not taken (a key forgotten is no new transfer). Without a stored peak they are
        all in the first equity: only remembered. Returns how many are pending."""
        name, record = venue or self._venue, self._record
        horizon = record.listed.get(name, 0) - CATCH_UP_GRACE_NS
        if transfers:
            record.listed[name] = max(record.listed.get(name, 0), max(t.ts_event for t in transfers))
        new = [t for t in sorted(transfers, key=lambda t: (t.height, t.ts_event))
               if t.ts_event >= horizon and self._take(t)]
        if self._record.peak > 0:
            for transfer in new:
                self._apply(transfer, name)
        self._store.meta_set(META_KEY, self._record.to_json())
        if not new or self._record.peak <= 0:
            return 0
        log.warning("transfers_while_down", count=len(new), venue=name,
                    net=str(sum((t.amount for t in new), ZERO)))
        return len(new)


def clear(store: MetaStore) -> Decimal:
    """With the daemon stopped: forget the stored peak and pending transfers, so the first equity
    read of the next run starts it. The transfer keys stay (a replayed transfer still counts once),
    and so do the reports waiting for their pair. Returns the old peak."""
    record = load(store)
    old = record.peak
    store.meta_set(META_KEY, PeakRecord(keys=record.keys, unpaired=record.unpaired,
                                        listed=record.listed).to_json())
    log.warning("peak_reset", old_peak=str(old), peak="0", pending=str(record.pending), direct=True)
    return old


def load(store: MetaStore) -> PeakRecord:
    """The stored peak; none (a new store, or an unreadable record, logged) starts at the first read."""
    text = store.meta_get(META_KEY)
    if text is None:
        return PeakRecord()
    try:
        return PeakRecord.from_json(text)
    except (ValueError, KeyError, TypeError, AttributeError, InvalidOperation) as exc:
        log.error("peak_unreadable", error=repr(exc))
        return PeakRecord()
