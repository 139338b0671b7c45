"""Per-market strategy state kept across restarts: the carry's exit watch and the thesis's held share.

Both are read by the next evaluation (bot.strategy.decide) and live in `MarketState`; the decider
stores them in the store's meta (`strategy_state:<market>`) whenever either changes and reads them
back at start, before the first decision (bot.decider). Without them a restart would restart an
exit confirmation under way from zero (`carry.exit_confirm_hours`, an exit delayed by up to that
long) and re-risk a thesis at once in a fall (`strategy.rerisk_on_trend`), what the gate is for.

What a restored value means after downtime:

* the carry watch is kept only while the carry restored from the positions is open on the side
  it was counted for (closed, or open the other way: a fresh watch). Its adverse count is kept as
  it was: the hours the daemon was down neither add to the run nor break it. A kept count can
  only bring an exit nearer by hours that were really adverse, and the first settled hour whose
  outlook is fine resets it (conservative); a count from zero could delay an exit by up to
  `exit_confirm_hours`. The hour of the count's last change is kept too, so a restart within
  the hour does not count that hour twice.
* the held share is kept as it was, whatever the downtime: the position was held all along, and
  the gate only lets the share fall at once or rise once price is back at its trend, so a
  restart during a fall keeps the thesis at its share instead of re-risking it. A thesis now on
  the other side is ungated as before (`volscale.rerisk_gate`).

Every mode keeps it in its own store, as the hedge state is: paper restarts like live; a backtest
opens a new store, so it starts flat. A stored value that does not parse is logged and ignored
(the market starts fresh), never a failed start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import structlog

from bot.store.meta import MetaStore
from bot.strategy.carry import CarryWatch

log = structlog.get_logger("strategy_state")
META_PREFIX = "strategy_state:"


@dataclass(frozen=True, slots=True)
class StrategyRecord:
    """The carry side the watch was counted for, the watch, and the thesis's held share (signed)."""

    carry_side: int
    watch: CarryWatch
    thesis_held: Decimal | None

    def worth_saving_over(self, saved: StrategyRecord | None) -> bool:
        """Whether this differs from `saved` in what a restart reads. The watch's hour alone is
        not: it moves every hour a carry is open, and the hour of the last change of the count
        is enough not to count an hour twice (an hour that left the count at zero is re-read)."""
        return saved is None or (self.carry_side, self.watch.adverse_hours, self.thesis_held) != (
            saved.carry_side, saved.watch.adverse_hours, saved.thesis_held)

    def to_json(self) -> str:
        held = None if self.thesis_held is None else str(self.thesis_held)
        return json.dumps({"carry_side": self.carry_side, "adverse_hours": self.watch.adverse_hours,
                           "hour": self.watch.hour, "thesis_held": held})

    @classmethod
    def from_json(cls, text: str) -> StrategyRecord:
        raw: Any = json.loads(text)
        side, adverse, hour = raw["carry_side"], raw["adverse_hours"], raw["hour"]
        if not _is_int(side) or side not in (-1, 0, 1):
            raise ValueError(f"carry_side {side!r} is not -1, 0 or 1")
        if not _is_int(adverse) or adverse < 0:
            raise ValueError(f"adverse_hours {adverse!r} is not a count")
        if hour is not None and (not _is_int(hour) or hour < 0):
            raise ValueError(f"hour {hour!r} is not an hour since the epoch")
        held = raw["thesis_held"]
        if held is not None:
            if not isinstance(held, str):
                raise ValueError(f"thesis_held {held!r} is not a decimal string")
            held = Decimal(held)
            if not held.is_finite() or abs(held) > 1:
                raise ValueError(f"thesis_held {held} is not a share")
        return cls(side, CarryWatch(adverse, hour), held)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load(store: MetaStore, market: str) -> StrategyRecord | None:
    """The market's stored record; None without one, or for one that does not parse (logged)."""
    text = store.meta_get(META_PREFIX + market)
    if text is None:
        return None
    try:
        return StrategyRecord.from_json(text)
    except (ValueError, KeyError, TypeError, AttributeError, InvalidOperation) as exc:
        log.error("strategy_state_unreadable", market=market, error=repr(exc))
        return None


def restored(record: StrategyRecord, carry_side: int) -> tuple[CarryWatch, Decimal | None]:
    """What a market starts with given its stored record and the carry side its positions show
    (pure): the watch only for the same open side, the held share as stored."""
    same = carry_side != 0 and record.carry_side == carry_side
    return (record.watch if same else CarryWatch()), record.thesis_held


def save(store: MetaStore, market: str, record: StrategyRecord) -> None:
    store.meta_set(META_PREFIX + market, record.to_json())
