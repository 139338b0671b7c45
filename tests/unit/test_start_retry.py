"""Start-up venue calls: transient errors are retried (a line per attempt, bounded); others fail at once."""

from __future__ import annotations

import pytest
import structlog

from bot.errors import OrderRejected, TransientVenueError
from bot.venues import start_retry
from bot.venues.start_retry import retry_start


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(start_retry, "MAX_WAIT_SECS", 0.01)


def failing(times: int, exc: Exception) -> tuple[list[int], object]:
    calls: list[int] = []

    async def call() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise exc
        return "markets"

    return calls, call


async def test_a_transient_outage_at_start_is_waited_out_with_one_line_per_attempt() -> None:
    calls, call = failing(3, TransientVenueError("binance", "exchange_info", "HTTP 503"))
    with structlog.testing.capture_logs() as logs:
        assert await retry_start("binance markets", call, 30.0) == "markets"  # type: ignore[arg-type]
    assert len(calls) == 4
    lines = [e for e in logs if e["event"] == "venue_start_retry"]
    assert [e["attempt"] for e in lines] == [1, 2, 3]
    assert all("503" in e["error"] and e["what"] == "binance markets" for e in lines)


async def test_the_retry_is_bounded_and_the_last_reason_propagates() -> None:
    calls, call = failing(10**6, TransientVenueError("dydx", "markets", "connect error"))
    with pytest.raises(TransientVenueError, match="connect error"):
        await retry_start("dydx markets", call, 0.3)  # type: ignore[arg-type]
    assert 1 < len(calls) < 10**6


async def test_a_permanent_error_is_not_retried() -> None:
    calls, call = failing(1, OrderRejected("dydx", "markets", "XYZ-USD is not listed"))
    with pytest.raises(OrderRejected):
        await retry_start("dydx markets", call, 30.0)  # type: ignore[arg-type]
    assert len(calls) == 1
