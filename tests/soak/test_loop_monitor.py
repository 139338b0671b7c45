"""bot.loop_monitor: a blocked event loop shows as lag, and live tasks are counted."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from bot.loop_monitor import LoopMonitor
from bot.telemetry import Metrics


def value(metrics: Metrics, name: str, **labels: str) -> float:
    sample = metrics.registry.get_sample_value(name, labels)
    assert sample is not None, name
    return sample


async def test_a_blocked_loop_is_lag_and_tasks_are_counted() -> None:
    metrics = Metrics()
    monitor = asyncio.create_task(LoopMonitor(metrics, interval_secs=0.05).run())
    sleepers = [asyncio.create_task(asyncio.sleep(30)) for _ in range(5)]
    try:
        await asyncio.sleep(0.2)
        assert value(metrics, "perpbot_asyncio_tasks") >= 1 + 1 + 5  # this test, the monitor, the sleepers
        slow_before = value(metrics, "perpbot_event_loop_lag_count") - value(
            metrics, "perpbot_event_loop_lag_bucket", le="0.25")
        time.sleep(0.4)  # noqa: ASYNC251  (the point: block the loop; the monitor wakes ~0.4 s late)
        await asyncio.sleep(0.12)
        slow_after = value(metrics, "perpbot_event_loop_lag_count") - value(
            metrics, "perpbot_event_loop_lag_bucket", le="0.25")
        assert slow_after == slow_before + 1
    finally:
        for task in [monitor, *sleepers]:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        LoopMonitor(Metrics(), interval_secs=0)
