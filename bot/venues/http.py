"""The HTTP client the venues' REST adapters share: JSON, bounded pool, short connect timeout."""

from __future__ import annotations

import httpx


def venue_client(base_url: str, timeout_secs: float,
                 transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """An httpx client for one venue's REST API (connect timeout capped at 3 s)."""
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        timeout=httpx.Timeout(timeout_secs, connect=min(timeout_secs, 3.0)),
        limits=httpx.Limits(max_connections=10, max_keepalive_connections=5),
        transport=transport,
        headers={"Accept": "application/json"},
    )
