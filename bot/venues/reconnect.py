"""The minimum-session guard every venue socket puts over the websockets reconnect iterator.

`async for ws in websockets.connect(...)` retries failed connects with its own backoff, but that
backoff starts over after every successful handshake, so a server that accepts and then drops us
at once would be reconnected to in a tight loop. A session shorter than `min_session_secs` counts
as short; each short one in a row doubles our own wait before the next connect (0.5 s, 1 s, 2 s,
... up to `max_backoff_secs`); a session that lasted starts the count over.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SessionGuard:
    """Call `started()` when a connection opens and `ended()` when it closes; `ended()` returns
    how long to wait before the next connect (0 after a session that lasted)."""

    def __init__(self, min_session_secs: float, max_backoff_secs: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._min_session_secs = min_session_secs
        self._max_backoff_secs = max_backoff_secs
        self._monotonic = monotonic
        self._started = monotonic()
        self.short_sessions = 0

    def started(self) -> None:
        self._started = self._monotonic()

    def ended(self) -> float:
        if self._monotonic() - self._started >= self._min_session_secs:
            self.short_sessions = 0
            return 0.0
        self.short_sessions += 1
        return min(self._max_backoff_secs, 0.5 * 2 ** min(self.short_sessions, 10))
