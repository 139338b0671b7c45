"""A small control-API client on the standard library.

The CLI uses it instead of httpx on purpose: `perpbot kill` must start fast, and importing httpx
(and what it pulls in) costs about half a second on our machines.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from bot.errors import DaemonUnreachable


def request(method: str, url: str, *, body: dict[str, Any] | None = None,
            params: dict[str, Any] | None = None, token: str | None = None,
            timeout: float = 10.0) -> tuple[int, bytes]:
    """Send one request; return (status, body). Raise DaemonUnreachable when nothing answers."""
    if params:
        url = f"{url}?{urllib.parse.urlencode(params, doseq=True)}"
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DaemonUnreachable(f"{url.split('?')[0]}: {type(reason).__name__}") from None
