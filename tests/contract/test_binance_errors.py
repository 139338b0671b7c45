"""Binance error mapping per operation: `classify` on what a real httpx client raises.

Responses come from `httpx.MockTransport` (allowed here only, for classify); the adapter's
behaviour on the same errors is tested against the simulator in tests/integration.
"""

from __future__ import annotations

import json

import httpx
import msgspec
import pytest

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
from bot.venues.binance.errors import (
    CODES,
    ListenKeyInvalid,
    OrderNotFound,
    TimestampRejected,
    classify,
    error_code,
)


async def http_error(status: int, body: object,
                     headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    def handler(request: httpx.Request) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.Response(status, content=content, headers=headers or {})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://binance") as client:
        response = await client.post("/api/v3/order")
    with pytest.raises(httpx.HTTPStatusError) as info:
        response.raise_for_status()
    return info.value


async def transport_error(exc: Exception) -> httpx.HTTPError:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://binance") as client:
        with pytest.raises(httpx.HTTPError) as info:
            await client.post("/api/v3/order")
    return info.value


def rejected(code: int, msg: str) -> dict[str, object]:
    return {"code": code, "msg": msg}


# (status, body, headers) -> (type for a read/cancel, type for an order placement)
CASES: list[tuple[str, int, object, dict[str, str], type[BotError], type[BotError]]] = [
    ("429 weight", 429, rejected(-1003, "Too much request weight used"), {"Retry-After": "7"},
     RateLimited, RateLimited),
    ("418 ban", 418, rejected(-1003, "Way too much request weight used; IP banned"), {"Retry-After": "120"},
     RateLimited, RateLimited),
    ("too many orders", 429, rejected(-1015, "Too many new orders"), {"Retry-After": "1"},
     RateLimited, RateLimited),
    ("500 internal", 500, rejected(-1001, "Internal error"), {}, TransientVenueError, OrderStateUnknown),
    ("503 overloaded", 503, rejected(-1008, "Server is currently overloaded"), {},
     TransientVenueError, OrderStateUnknown),
    ("502 html", 502, b"<html>Bad Gateway</html>", {}, TransientVenueError, OrderStateUnknown),
    ("timestamp", 400, rejected(-1021, "Timestamp for this request is outside of the recvWindow."), {},
     TimestampRejected, TimestampRejected),
    ("signature", 400, rejected(-1022, "Signature for this request is not valid."), {},
     VenueError, VenueError),
    ("bad key", 401, rejected(-2015, "Invalid API-key, IP, or permissions for action."), {},
     VenueError, VenueError),
    ("key format", 401, rejected(-2014, "API-key format invalid."), {}, VenueError, VenueError),
    ("filter", 400, rejected(-1013, "Filter failure: NOTIONAL"), {}, VenueError, OrderRejected),
    ("precision", 400, rejected(-1111, "Precision is over the maximum defined for this asset."), {},
     VenueError, OrderRejected),
    ("balance", 400, rejected(-2010, "Account has insufficient balance for requested action."), {},
     VenueError, InsufficientMargin),
    ("maker would take", 400, rejected(-2010, "Order would immediately match and take."), {},
     VenueError, PostOnlyWouldCross),
    ("duplicate", 400, rejected(-2010, "Duplicate order sent."), {}, VenueError, OrderRejected),
    ("unknown order", 400, rejected(-2011, "Unknown order sent."), {}, OrderNotFound, OrderNotFound),
    ("no such order", 400, rejected(-2013, "Order does not exist."), {}, OrderNotFound, OrderNotFound),
    ("listen key", 400, rejected(-1125, "This listenKey does not exist."), {},
     ListenKeyInvalid, ListenKeyInvalid),
    ("waf", 403, b"Forbidden", {}, VenueError, OrderRejected),
]


@pytest.mark.parametrize(("name", "status", "body", "headers", "read_type", "submit_type"), CASES,
                         ids=[c[0] for c in CASES])
async def test_http_errors_map_by_operation(name: str, status: int, body: object, headers: dict[str, str],
                                            read_type: type[BotError], submit_type: type[BotError]) -> None:
    exc = await http_error(status, body, headers)
    read = classify(exc, "GET /api/v3/order")
    submit = classify(exc, "POST /api/v3/order", is_submit=True)
    assert type(read) is read_type, read
    assert type(submit) is submit_type, submit
    if isinstance(read, VenueError):
        assert read.venue == "binance" and read.op == "GET /api/v3/order"
    if isinstance(body, dict):
        assert error_code(exc) == body["code"] and body["code"] in CODES


async def test_retry_after_is_carried() -> None:
    limited = classify(await http_error(429, rejected(-1003, "x"), {"Retry-After": "7"}), "GET /x")
    assert isinstance(limited, RateLimited) and limited.retry_after_secs == 7
    no_header = classify(await http_error(418, rejected(-1003, "x")), "GET /x")
    assert isinstance(no_header, RateLimited) and no_header.retry_after_secs == 1.0


@pytest.mark.parametrize(("exc", "read_type", "submit_type"), [
    (httpx.ConnectError("refused"), TransientVenueError, TransientVenueError),  # never sent
    (httpx.ConnectTimeout("slow connect"), TransientVenueError, TransientVenueError),
    (httpx.PoolTimeout("pool"), TransientVenueError, TransientVenueError),
    (httpx.ReadTimeout("no answer"), TransientVenueError, OrderStateUnknown),  # may have been executed
    (httpx.WriteTimeout("half sent"), TransientVenueError, OrderStateUnknown),
    (httpx.RemoteProtocolError("dropped"), TransientVenueError, OrderStateUnknown),
    (httpx.ReadError("reset"), TransientVenueError, OrderStateUnknown),
])
async def test_transport_errors_map_by_whether_the_order_may_have_left(
        exc: Exception, read_type: type[BotError], submit_type: type[BotError]) -> None:
    raised = await transport_error(exc)
    assert type(classify(raised, "GET /api/v3/depth")) is read_type
    assert type(classify(raised, "POST /api/v3/order", is_submit=True)) is submit_type


def test_undecodable_bodies_and_passthrough() -> None:
    bad = msgspec.DecodeError("truncated")
    assert isinstance(classify(bad, "GET /api/v3/depth"), MalformedMessage)
    assert isinstance(classify(bad, "POST /api/v3/order", is_submit=True), OrderStateUnknown)
    mine = RateLimited("binance", "x", 3)
    assert classify(mine, "x") is mine
    with pytest.raises(RuntimeError, match="boom"):  # not the venue's: a bug surfaces as itself
        classify(RuntimeError("boom"), "x")
    odd = classify(httpx.InvalidURL("no host"), "x")  # httpx's own, not a transport failure
    assert type(odd) is VenueError and "no host" in str(odd)


def test_caller_action_groups() -> None:
    assert issubclass(OrderNotFound, OrderRejected)  # nothing to retry
    assert issubclass(TimestampRejected, TransientVenueError)  # refused before processing: safe to re-send
    assert issubclass(ListenKeyInvalid, VenueError) and not issubclass(ListenKeyInvalid, TransientVenueError)
