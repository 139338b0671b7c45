"""Map everything the dYdX transports raise to our error taxonomy, in one place.

| what happened                                   | becomes               | caller does              |
|-------------------------------------------------|-----------------------|--------------------------|
| connect error, read/write timeout, pool timeout | TransientVenueError   | retry with backoff       |
| HTTP 429 (Retry-After honoured)                 | RateLimited           | wait, then retry         |
| HTTP 5xx                                        | TransientVenueError   | retry with backoff       |
| HTTP 4xx other than 429                         | VenueError            | no retry; fix the call   |
| body that does not decode to the expected shape | MalformedMessage      | count, log; no retry     |
| other httpx errors (bad URL, redirects, decode) | VenueError            | no retry; fix the call   |
| any gRPC error or timeout on a query            | TransientVenueError   | retry with backoff       |
| any failure after a signed tx may have left     | OrderStateUnknown     | query by client id first |
|                                                 | (bot.venues.dydx.node)|                          |
| anything else (a bug, not the venue)            | re-raised as it is    | crash loudly             |
"""

from __future__ import annotations

import grpc
import httpx
import msgspec

from bot.errors import BotError, MalformedMessage, RateLimited, TransientVenueError, VenueError

VENUE = "dydx"


def retry_after_secs(response: httpx.Response, default: float = 1.0) -> float:
    """Seconds to wait from a Retry-After header (seconds form), or the default."""
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


def classify(exc: Exception, op: str) -> BotError:
    """Return the BotError the caller should see for an exception raised during `op`; re-raise
    an exception that is none of the above (use as `raise classify(exc, op) from exc`)."""
    if isinstance(exc, BotError):
        return exc
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        if status == 429:
            return RateLimited(VENUE, op, retry_after_secs(exc.response))
        if status >= 500:
            return TransientVenueError(VENUE, op, f"HTTP {status}")
        return VenueError(VENUE, op, f"HTTP {status}: {exc.response.text[:200]}")
    if isinstance(exc, httpx.TransportError):
        return TransientVenueError(VENUE, op, type(exc).__name__)
    if isinstance(exc, httpx.HTTPError | httpx.InvalidURL):
        return VenueError(VENUE, op, repr(exc))
    # msgspec raises UnicodeDecodeError on invalid UTF-8 inside a string, RecursionError on deep nesting
    if isinstance(exc, msgspec.MsgspecError | UnicodeDecodeError | RecursionError):
        return MalformedMessage(f"{op}: {exc}")
    if isinstance(exc, grpc.RpcError):
        return TransientVenueError(VENUE, op, f"gRPC {exc.code().name}")  # type: ignore[attr-defined]
    if isinstance(exc, TimeoutError):
        return TransientVenueError(VENUE, op, "timeout")
    raise exc
