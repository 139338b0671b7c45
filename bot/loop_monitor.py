"""Event-loop health as metrics: how late a timer fires (lag) and how many asyncio tasks live.

Lag is measured with the loop's own clock: sleep `interval_secs`, see how much later than asked
the loop woke up. A loop that blocks (a slow callback, CPU-bound work, a sync call in a
coroutine) shows as lag; a task count that only grows is a leak. The soak test reads both.
"""

from __future__ import annotations

import asyncio

from bot.telemetry import Metrics


class LoopMonitor:
    """Samples event-loop lag and the asyncio task count into `metrics` until cancelled."""

    name = "loop_monitor"

    def __init__(self, metrics: Metrics, interval_secs: float = 1.0) -> None:
        if interval_secs <= 0:
            raise ValueError("interval_secs must be positive")
        self._metrics = metrics
        self._interval = interval_secs

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self._interval
            await asyncio.sleep(self._interval)
            self.record(max(0.0, loop.time() - asked), len(asyncio.all_tasks(loop)))

    def record(self, lag_secs: float, tasks: int) -> None:
        self._metrics.loop_lag_seconds.set(lag_secs)
        self._metrics.loop_lag.observe(lag_secs)
        self._metrics.asyncio_tasks.set(tasks)
