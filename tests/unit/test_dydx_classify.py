"""dYdX error mapping: one `classify` for REST and gRPC; what it does not know is re-raised."""

from __future__ import annotations

import grpc
import httpx
import msgspec
import pytest

from bot.errors import MalformedMessage, RateLimited, TransientVenueError, VenueError
from bot.venues.dydx.errors import classify


class Unavailable(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE


def status_error(code: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "http://indexer/v4/height")
    response = httpx.Response(code, headers=headers, request=request, text="nope")
    return httpx.HTTPStatusError("status", request=request, response=response)


@pytest.mark.parametrize(("exc", "kind", "text"), [
    (status_error(429, {"Retry-After": "3"}), RateLimited, ""),
    (status_error(503), TransientVenueError, "HTTP 503"),
    (status_error(404), VenueError, "HTTP 404"),
    (httpx.ConnectError("refused"), TransientVenueError, "ConnectError"),
    (httpx.InvalidURL("no host"), VenueError, "no host"),
    (httpx.DecodingError("bad gzip"), VenueError, "bad gzip"),
    (msgspec.DecodeError("truncated"), MalformedMessage, "truncated"),
    (Unavailable(), TransientVenueError, "gRPC UNAVAILABLE"),
    (TimeoutError(), TransientVenueError, "timeout"),
])
def test_known_failures_map_to_the_taxonomy(exc: Exception, kind: type, text: str) -> None:
    mapped = classify(exc, "op")
    assert type(mapped) is kind and text in str(mapped)


def test_a_bot_error_passes_and_anything_else_is_re_raised() -> None:
    mine = RateLimited("dydx", "x", 3)
    assert classify(mine, "x") is mine
    with pytest.raises(KeyError):
        classify(KeyError("a bug"), "x")
