"""Start-up calls to a venue, retried through a transient outage (a 503, a node that is not up yet).

Each client already retries a single read a few times within seconds; this covers the longer
outage a daemon may meet at start (a container restarted during a venue incident). A transient
error is retried with exponential backoff, one `venue_start_retry` line per failed attempt, for
at most `budget_secs`; then the last error propagates and the daemon exits 1 naming it. Anything
else (a market not listed, a rejected key) fails at once: waiting will not fix it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from bot.errors import TransientVenueError

T = TypeVar("T")
log = structlog.get_logger("start")
MAX_WAIT_SECS = 15.0


async def retry_start(what: str, call: Callable[[], Awaitable[T]], budget_secs: float) -> T:
    """Await `call()`, retrying transient venue errors with backoff for up to `budget_secs`."""

    def note(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("venue_start_retry", what=what, attempt=state.attempt_number, error=str(exc),
                    retry_in_secs=round(wait, 1))

    retrying = AsyncRetrying(stop=stop_after_delay(budget_secs),
                             wait=wait_exponential(multiplier=1.0, max=MAX_WAIT_SECS),
                             retry=retry_if_exception_type(TransientVenueError),
                             before_sleep=note, reraise=True)
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable")  # pragma: no cover
