"""The Binance REST client's own decode step over a fuzzed body, shared by the Binance fuzzers."""

from __future__ import annotations

from typing import Any

import httpx
from fuzz.known import is_known

from bot.errors import MalformedMessage, VenueError
from bot.venues.binance.rest import BinanceRest


def decoded(kind: Any, body: bytes, path: str) -> Any | None:
    """`body` decoded as `kind` the way the client does (it uses nothing of the instance); None
    when the client refuses it (MalformedMessage, VenueError) or fails in a known, pinned way."""
    try:
        return BinanceRest._decode(None, httpx.Response(200, content=body), kind, "GET", path)  # type: ignore[arg-type]
    except (MalformedMessage, VenueError):
        return None
    except Exception as exc:
        if not is_known(exc):
            raise
        return None
