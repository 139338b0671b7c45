"""`perpbot watch`: a live terminal view of the running daemon, refreshed in place (rich Live).

Same information as the dashboard: risk mode, per-market flags with their numbers, last
decisions, funding ledger, hedge legs, open orders, watchdog inputs and 24 h sparklines.
Exit codes: 0 on Ctrl-C (or after `--once`), 1 when the token is refused, 3 when the daemon
is unreachable at start or stays unreachable for `give_up_secs`.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from bot.clock import NS_PER_SEC, SYSTEM_CLOCK, monotonic_secs
from bot.control.render import status_view

EXIT_OK, EXIT_RUNTIME, EXIT_UNREACHABLE = 0, 1, 3
HISTORY_REFRESH_SECS = 5.0


class _Unreachable(Exception):
    pass


class _Refused(Exception):
    pass


def _get(client: httpx.Client, path: str) -> dict[str, Any] | None:
    """GET a JSON object; None on 404 (an older daemon without that route)."""
    try:
        response = client.get(path)
    except httpx.TransportError as exc:
        raise _Unreachable(type(exc).__name__) from None
    if response.status_code == 401:
        raise _Refused()
    if response.status_code == 404:
        return None
    if response.status_code >= 300:
        raise _Unreachable(f"HTTP {response.status_code}")
    data: dict[str, Any] = response.json()
    return data


def _frame(url: str, data: dict[str, Any], history: dict[str, Any] | None, interval_secs: float,
           problem: str | None = None, size: tuple[int, int] | None = None) -> Group:
    line = Text(f"perpbot watch  {url}  ", style="bold")
    updated = datetime.fromtimestamp(SYSTEM_CLOCK.now_ns() / NS_PER_SEC)  # local time, for the operator
    line.append(f"updated {updated.strftime('%H:%M:%S')}  every {interval_secs:g}s  Ctrl-C quits",
                style="dim")
    if problem:
        line.append(f"\n{problem}", style="bold red")
    return Group(line, Text(), status_view(data, detail=True, history=history, size=size))


def run_watch(url: str, token: str | None, *, interval_secs: float = 1.0, once: bool = False,
              console: Console | None = None, give_up_secs: float = 15.0) -> int:
    """Render the daemon's status until Ctrl-C; returns the process exit code."""
    console = console or Console()
    errors = Console(stderr=True)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = httpx.Timeout(max(2.0, min(10.0, interval_secs * 3)))
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=timeout) as client:
            try:
                data = _get(client, "/v1/status") or {}
                history = _get(client, "/v1/history")
            except _Unreachable as exc:
                errors.print(f"perpbot: daemon unreachable at {url} ({exc})", highlight=False)
                return EXIT_UNREACHABLE
            except _Refused:
                errors.print("perpbot: control API refused the token (set PERPBOT_CONTROL_TOKEN)")
                return EXIT_RUNTIME
            if once:
                console.print(_frame(url, data, history, interval_secs, size=console.size))
                return EXIT_OK
            return _live(client, console, errors, url, data, history, interval_secs, give_up_secs)
    except KeyboardInterrupt:
        return EXIT_OK


def _live(client: httpx.Client, console: Console, errors: Console, url: str, data: dict[str, Any],
          history: dict[str, Any] | None, interval_secs: float, give_up_secs: float) -> int:
    last_ok = last_history = monotonic_secs(SYSTEM_CLOCK)
    first = _frame(url, data, history, interval_secs, size=console.size)
    with Live(first, console=console, auto_refresh=False, redirect_stdout=False,
              redirect_stderr=False) as live:
        while True:
            time.sleep(interval_secs)
            problem = None
            try:
                data = _get(client, "/v1/status") or data
                if monotonic_secs(SYSTEM_CLOCK) - last_history >= HISTORY_REFRESH_SECS:
                    history, last_history = _get(client, "/v1/history"), monotonic_secs(SYSTEM_CLOCK)
                last_ok = monotonic_secs(SYSTEM_CLOCK)
            except _Refused:
                live.stop()
                errors.print("perpbot: control API refused the token")
                return EXIT_RUNTIME
            except _Unreachable as exc:
                down_secs = monotonic_secs(SYSTEM_CLOCK) - last_ok
                if down_secs >= give_up_secs:
                    live.stop()
                    errors.print(f"perpbot: daemon unreachable at {url} for {down_secs:.0f}s ({exc})",
                                 highlight=False)
                    return EXIT_UNREACHABLE
                problem = f"daemon unreachable for {down_secs:.0f}s ({exc}); showing the last state"
            live.update(_frame(url, data, history, interval_secs, problem, console.size), refresh=True)
