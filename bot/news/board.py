"""The news board: which news items are active for a market at a time (pure, O(1) amortised).

Three sources feed it: calendar windows around scheduled events, keyword hits from RSS/Atom
feeds (each active for its feed's window), and operator flags with a TTL. The calendar part is
cached until the next window opens or closes, so the per-evaluation cost does not grow with the
length of the calendar.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

from bot.clock import NS_PER_SEC
from bot.news.calendar import CalendarEvent


@dataclass(frozen=True, slots=True)
class NewsHit:
    """A feed entry that matched a keyword: active until `until_ns`, for `markets` (empty: all)."""

    name: str
    until_ns: int
    markets: tuple[str, ...] = ()
    source: str = "feed"


class NewsBoard:
    """Operator items, calendar windows and feed hits -> the active items at `now_ns`."""

    def __init__(self, events: list[CalendarEvent] | None = None, before_secs: float = 1800.0,
                 after_secs: float = 3600.0) -> None:
        windows = []
        for e in events or ():
            before = e.before_secs if e.before_secs is not None else before_secs
            after = e.after_secs if e.after_secs is not None else after_secs
            windows.append((e.start_ns - int(before * NS_PER_SEC), e.end_ns + int(after * NS_PER_SEC),
                            f"calendar:{e.name}"))
        windows.sort()
        self._windows = windows
        self._opens = [w[0] for w in windows]
        self._max_len = max((w[1] - w[0] for w in windows), default=0)
        self.operator: dict[str, int] = {}  # item -> expiry ns
        self.hits: dict[str, NewsHit] = {}
        self._cal_from = 1
        self._cal_until = 0  # empty cache interval
        self._cal_active: tuple[str, ...] = ()

    # ---- operator --------------------------------------------------------------------------

    def set_operator(self, item: str, until_ns: int) -> None:
        self.operator[item] = until_ns

    def clear_operator(self, item: str | None = None) -> None:
        if item is None:
            self.operator.clear()
        else:
            self.operator.pop(item, None)

    # ---- feeds -----------------------------------------------------------------------------

    def add_hit(self, hit: NewsHit) -> None:
        """Record a feed hit; a later expiry for the same name extends it."""
        old = self.hits.get(hit.name)
        if old is None or hit.until_ns > old.until_ns:
            self.hits[hit.name] = hit

    # ---- reading ---------------------------------------------------------------------------

    def _calendar(self, now_ns: int) -> tuple[str, ...]:
        if self._cal_from <= now_ns < self._cal_until:
            return self._cal_active
        # Only windows opened in the last max_len can be open now.
        lo = bisect.bisect_left(self._opens, now_ns - self._max_len)
        hi = bisect.bisect_right(self._opens, now_ns)
        active = [w for w in self._windows[lo:hi] if w[1] > now_ns]
        until = min((w[1] for w in active), default=2**63)
        if hi < len(self._opens):
            until = min(until, self._opens[hi])
        self._cal_from, self._cal_until = now_ns, until
        self._cal_active = tuple(sorted({w[2] for w in active}))
        return self._cal_active

    def active(self, now_ns: int, market: str | None = None) -> tuple[str, ...]:
        """Names of the items active now for `market` (None: items for every market), sorted."""
        names = set(self._calendar(now_ns))
        names.update(k for k, exp in self.operator.items() if exp > now_ns)
        for hit in self.hits.values():
            if hit.until_ns > now_ns and (not hit.markets or market is None or market in hit.markets):
                names.add(hit.name)
        return tuple(sorted(names))

    def prune(self, now_ns: int) -> None:
        """Forget expired operator items and feed hits."""
        self.operator = {k: v for k, v in self.operator.items() if v > now_ns}
        self.hits = {k: v for k, v in self.hits.items() if v.until_ns > now_ns}

    def describe(self, now_ns: int) -> list[dict[str, Any]]:
        """Active items with their source and remaining time, for status."""
        out: list[dict[str, Any]] = []
        for name in self._calendar(now_ns):
            out.append({"item": name, "source": "calendar"})
        for name, exp in sorted(self.operator.items()):
            if exp > now_ns:
                out.append({"item": name, "source": "operator",
                            "remaining_secs": round((exp - now_ns) / NS_PER_SEC, 1)})
        for name, hit in sorted(self.hits.items()):
            if hit.until_ns > now_ns:
                out.append({"item": name, "source": hit.source, "markets": list(hit.markets),
                            "remaining_secs": round((hit.until_ns - now_ns) / NS_PER_SEC, 1)})
        return out
