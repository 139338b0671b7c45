"""Clocks for tests: both satisfy `bot.clock.Clock` (now_ns, monotonic_ns, sleep)."""

from __future__ import annotations

import asyncio

from bot.clock import NS_PER_SEC, Clock, SystemClock

T0_NS = 1_700_000_000 * NS_PER_SEC


class ManualClock:
    """Time that moves only when the test moves it: set `now`, call `advance`, or let code sleep.

    `sleep` records the wait and advances `now` (unless `advance_on_sleep` is off: frozen time). With
    `real_sleep_max_secs` it also really sleeps up to that long (0: just yields to the event loop).
    """

    def __init__(self, now_ns: int = T0_NS, *, advance_on_sleep: bool = True,
                 real_sleep_max_secs: float | None = None) -> None:
        self.now = now_ns
        self.sleeps: list[float] = []
        self._advance_on_sleep = advance_on_sleep
        self._real_sleep_max_secs = real_sleep_max_secs

    def now_ns(self) -> int:
        return self.now

    def monotonic_ns(self) -> int:
        return self.now

    def now_ms(self) -> int:
        return self.now // 1_000_000

    def advance(self, secs: float) -> None:
        self.now += int(secs * NS_PER_SEC)

    async def sleep(self, secs: float) -> None:
        self.sleeps.append(secs)
        if self._advance_on_sleep:
            self.advance(secs)
        if self._real_sleep_max_secs is not None:
            await asyncio.sleep(min(secs, self._real_sleep_max_secs))


class OffsetClock:
    """`base` (the wall clock by default) shifted by `offset_ns`: a host whose clock is off.

    With `virtual_sleep`, sleeping records the wait and moves the offset instead of waiting (then
    yields to the loop), so retry and ban waits take no real time; otherwise it sleeps on `base`.
    """

    def __init__(self, offset_ns: int = 0, *, base: Clock | None = None, virtual_sleep: bool = False) -> None:
        self.offset_ns = offset_ns
        self.base: Clock = base if base is not None else SystemClock()
        self.sleeps: list[float] = []
        self._virtual_sleep = virtual_sleep

    def now_ns(self) -> int:
        return self.base.now_ns() + self.offset_ns

    def monotonic_ns(self) -> int:
        return self.base.monotonic_ns() + self.offset_ns

    def advance(self, secs: float) -> None:
        self.offset_ns += int(secs * NS_PER_SEC)

    async def sleep(self, secs: float) -> None:
        if not self._virtual_sleep:
            await self.base.sleep(secs)
            return
        self.sleeps.append(secs)
        self.advance(secs)
        await asyncio.sleep(0)
