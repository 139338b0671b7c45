"""Time as a dependency: the core never reads the wall clock, it is handed a Clock."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

NS_PER_MS = 1_000_000
NS_PER_SEC = 1_000_000_000
NS_PER_HOUR = 3600 * NS_PER_SEC
NS_PER_DAY = 86_400 * NS_PER_SEC
SECS_PER_YEAR = 365 * 86_400


class Clock(Protocol):
    """Something that tells the time in integer ns since the epoch and can sleep.

    `monotonic_ns` is for deadlines and durations: it never jumps back (its origin is arbitrary).
    """

    def now_ns(self) -> int: ...

    def monotonic_ns(self) -> int: ...

    async def sleep(self, secs: float) -> None: ...


class SystemClock:
    """Wall-clock time for the live daemon."""

    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    async def sleep(self, secs: float) -> None:
        await asyncio.sleep(secs)


SYSTEM_CLOCK = SystemClock()


def monotonic_secs(clock: Clock) -> float:
    """`clock`'s monotonic reading in seconds."""
    return clock.monotonic_ns() / NS_PER_SEC
