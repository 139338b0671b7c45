"""Time as a dependency: the core never reads the wall clock, it is handed a Clock."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

NS_PER_SEC = 1_000_000_000


class Clock(Protocol):
    """Something that tells the time in integer ns since the epoch and can sleep."""

    def now_ns(self) -> int: ...

    async def sleep(self, secs: float) -> None: ...


class SystemClock:
    """Wall-clock time for the live daemon."""

    def now_ns(self) -> int:
        return time.time_ns()

    async def sleep(self, secs: float) -> None:
        await asyncio.sleep(secs)
