"""Map everything the Binance transports raise to our error taxonomy, in one place.

`classify(exc, op, is_submit=...)`: the same failure means different things for a read and for
an order placement, because a placement is not idempotent.

| what happened                                     | read / cancel         | order placement        |
|---------------------------------------------------|-----------------------|------------------------|
| connect error, connect/pool timeout (never sent)  | TransientVenueError   | TransientVenueError    |
| read/write timeout, dropped connection            | TransientVenueError   | OrderStateUnknown      |
| HTTP 5xx (Binance: "execution status UNKNOWN")    | TransientVenueError   | OrderStateUnknown      |
| HTTP 429, -1003 too much weight, -1015 too many   | RateLimited           | RateLimited            |
|   orders (Retry-After honoured)                   |                       |                        |
| HTTP 418: IP banned until Retry-After             | RateLimited           | RateLimited            |
| -1021 timestamp outside recvWindow                | TimestampRejected     | TimestampRejected      |
|   (resync the time offset; rejected before use)   |                       |                        |
| -1022 bad signature, -2014/-2015 bad API key      | VenueError (fatal)    | VenueError (fatal)     |
| -1013 filter failure, -1111 precision, -11xx      | VenueError            | OrderRejected          |
|   bad parameter                                   |                       |                        |
| -2010 insufficient balance                        | -                     | InsufficientMargin     |
| -2010 LIMIT_MAKER would take                      | -                     | PostOnlyWouldCross     |
| -2010 other (duplicate client id, ...)            | -                     | OrderRejected          |
| -2011 unknown order on cancel, -2013 no such order| OrderNotFound         | -                      |
| -1125 listenKey does not exist                    | ListenKeyInvalid      | -                      |
| body that does not decode                         | MalformedMessage      | OrderStateUnknown      |

`OrderNotFound` is an `OrderRejected` (the caller's action is the same: nothing to retry) that
the adapter catches to treat "cancel an order that is no longer open" as done.
"""

from __future__ import annotations

import httpx
import msgspec

from bot.errors import (
    BotError,
    InsufficientMargin,
    MalformedMessage,
    OrderRejected,
    OrderStateUnknown,
    PostOnlyWouldCross,
    RateLimited,
    TransientVenueError,
    VenueError,
)
from bot.venues.binance import wire

VENUE = "binance"

TOO_MANY_REQUESTS = -1003
TOO_MANY_ORDERS = -1015
INVALID_TIMESTAMP = -1021
INVALID_SIGNATURE = -1022
FILTER_FAILURE = -1013
NEW_ORDER_REJECTED = -2010
CANCEL_REJECTED = -2011
NO_SUCH_ORDER = -2013
BAD_API_KEY_FORMAT = -2014
REJECTED_MBX_KEY = -2015
INVALID_LISTEN_KEY = -1125

# Binance error codes and what they mean for us (the -2010 family is split by message below).
CODES: dict[int, str] = {
    -1000: "unknown error",
    -1001: "internal error (disconnected)",
    -1003: "too much request weight",
    -1006: "unexpected response: execution status unknown",
    -1007: "backend timeout: execution status unknown",
    -1008: "server overloaded",
    -1013: "filter failure",
    -1015: "too many new orders",
    -1021: "timestamp outside recvWindow",
    -1022: "invalid signature",
    -1100: "illegal characters in a parameter",
    -1102: "mandatory parameter missing",
    -1111: "precision over the maximum",
    -1121: "invalid symbol",
    -1125: "listenKey does not exist",
    -2010: "new order rejected",
    -2011: "cancel rejected: unknown order",
    -2013: "order does not exist",
    -2014: "API key format invalid",
    -2015: "invalid API key, IP or permissions",
}
_FATAL_AUTH = {INVALID_SIGNATURE, BAD_API_KEY_FORMAT, REJECTED_MBX_KEY}
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
_DECODE_ERROR = msgspec.json.Decoder(wire.ErrorBody)


class OrderNotFound(OrderRejected):
    """The venue does not know the order (or it is no longer open): nothing to cancel or retry."""


class ListenKeyInvalid(VenueError):
    """-1125: the user data stream key expired or was closed: open a new one."""


class TimestampRejected(TransientVenueError):
    """-1021: our timestamp is outside recvWindow; the request was refused before any processing."""


def retry_after_secs(response: httpx.Response, default: float = 1.0) -> float:
    """Seconds to wait from a Retry-After header (seconds form), or the default."""
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


def error_body(response: httpx.Response) -> wire.ErrorBody | None:
    """Binance's `{"code", "msg"}` of an error response, if the body is one."""
    try:
        return _DECODE_ERROR.decode(response.content)
    except msgspec.MsgspecError:
        return None


def error_code(exc: BaseException) -> int | None:
    """The Binance error code carried by an HTTP error, if any."""
    if isinstance(exc, httpx.HTTPStatusError):
        body = error_body(exc.response)
        return body.code if body is not None else None
    return None


def classify(exc: Exception, op: str, *, is_submit: bool = False) -> BotError:
    """Return the BotError the caller should see for an exception raised during `op`.

    `is_submit`: the call placed an order, so anything that may have reached the matching
    engine is OrderStateUnknown (query by client id before anything else; never resend).
    An exception that is none of the above is re-raised (use as `raise classify(exc, op) from exc`).
    """
    if isinstance(exc, BotError):
        return exc
    if isinstance(exc, httpx.HTTPStatusError):
        return _classify_status(exc.response, op, is_submit)
    if isinstance(exc, _NEVER_SENT):
        return TransientVenueError(VENUE, op, f"not sent: {type(exc).__name__}")
    if isinstance(exc, httpx.TransportError):  # timeouts after sending, dropped connections
        if is_submit:
            return OrderStateUnknown(VENUE, op, f"no answer: {type(exc).__name__}")
        return TransientVenueError(VENUE, op, type(exc).__name__)
    if isinstance(exc, msgspec.MsgspecError):
        if is_submit:
            return OrderStateUnknown(VENUE, op, f"undecodable answer: {exc}")
        return MalformedMessage(f"{VENUE} {op}: {exc}")
    if isinstance(exc, httpx.HTTPError | httpx.InvalidURL):  # bad URL, redirects, undecodable stream
        return VenueError(VENUE, op, repr(exc))
    raise exc  # none of the venue's: a bug surfaces as itself


def _classify_status(response: httpx.Response, op: str, is_submit: bool) -> BotError:
    status = response.status_code
    body = error_body(response)
    code = body.code if body is not None else None
    msg = body.msg if body is not None else response.text[:200]
    detail = f"HTTP {status} {code}: {msg}" if code is not None else f"HTTP {status}: {msg}"
    if status in (418, 429) or code in (TOO_MANY_REQUESTS, TOO_MANY_ORDERS):
        return RateLimited(VENUE, op, retry_after_secs(response))
    if status >= 500:
        if is_submit:
            return OrderStateUnknown(VENUE, op, detail)
        return TransientVenueError(VENUE, op, detail)
    if code == INVALID_TIMESTAMP:
        return TimestampRejected(VENUE, op, detail)
    if code in _FATAL_AUTH:
        return VenueError(VENUE, op, detail)
    if code == INVALID_LISTEN_KEY:
        return ListenKeyInvalid(VENUE, op, detail)
    if code in (CANCEL_REJECTED, NO_SUCH_ORDER):
        return OrderNotFound(VENUE, op, detail)
    if is_submit:
        if code == NEW_ORDER_REJECTED:
            lowered = msg.lower()
            if "insufficient balance" in lowered:
                return InsufficientMargin(VENUE, op, detail)
            if "immediately match" in lowered:
                return PostOnlyWouldCross(VENUE, op, detail)
        return OrderRejected(VENUE, op, detail)
    return VenueError(VENUE, op, detail)
