"""The simulated clock: time is whatever the backtest says it is; sleeping never waits."""

from __future__ import annotations

import asyncio

from bot.clock import NS_PER_SEC


class SimClock:
    """A Clock (bot.clock) driven by the backtest: `set` moves time, `sleep` advances it at once."""

    __slots__ = ("now",)

    def __init__(self, start_ns: int) -> None:
        self.now = start_ns

    def now_ns(self) -> int:
        return self.now

    def monotonic_ns(self) -> int:
        return self.now

    def set(self, now_ns: int) -> None:
        """Move to `now_ns` (never backwards: events are replayed in time order)."""
        if now_ns > self.now:
            self.now = now_ns

    async def sleep(self, secs: float) -> None:
        """Advance simulated time by `secs` and yield once to the loop (no real waiting)."""
        self.now += int(secs * NS_PER_SEC)
        await asyncio.sleep(0)
