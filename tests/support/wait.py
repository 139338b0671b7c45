"""Wait on an outcome, not a fixed sleep: poll a condition until it holds or a deadline passes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


def _poller(cond: Callable[[], Any], timeout_secs: float, what: str) -> Callable[[], Any]:
    """One poll: `cond()`'s value when truthy, None while there is time left, AssertionError after."""
    deadline = time.monotonic() + timeout_secs

    def poll() -> Any:
        if value := cond():
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout_secs}s")
        return None

    return poll


def eventually(cond: Callable[[], Any], timeout_secs: float = 10.0, interval_secs: float = 0.05,
               what: str = "condition") -> Any:
    """Poll `cond` until it returns something truthy (returned); fail after the timeout."""
    poll = _poller(cond, timeout_secs, what)
    while True:
        if (value := poll()) is not None:
            return value
        time.sleep(interval_secs)


async def eventually_async(cond: Callable[[], Any], timeout_secs: float = 10.0, interval_secs: float = 0.02,
                           what: str = "condition", poke: Callable[[], Awaitable[Any]] | None = None) -> Any:
    """`eventually` for a test on the event loop: the loop keeps running while it waits, and
    `poke` (say, a REST sweep) runs about once a second meanwhile."""
    poll = _poller(cond, timeout_secs, what)
    last_poke = time.monotonic()
    while True:
        if (value := poll()) is not None:
            return value
        if poke is not None and time.monotonic() - last_poke > 1.0:
            last_poke = time.monotonic()
            await poke()
        await asyncio.sleep(interval_secs)
