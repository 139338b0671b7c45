"""Binance's diff-depth synchronisation procedure for one symbol, as a pure state machine.

The venue's documented way to keep a local book:
1. open the `<symbol>@depth` stream and buffer its events (each covers update ids [U, u]);
2. fetch a REST snapshot (`lastUpdateId` = L);
3. if L is older than the buffered events (L + 1 < first U), fetch another snapshot;
4. drop buffered events with u <= L;
5. the first event applied must satisfy U <= L + 1 <= u;
6. each following event must have U == previous u + 1; anything else means an event was lost:
   discard the book and start again from 1 (keeping the event that revealed the gap).

`DepthSync` decides, per event, whether to buffer, apply, skip or resync; it never touches a
book, a socket or a clock. It is generic over the event payload so the stream can buffer its
wire structs as they are. The buffer is kept contiguous: an event that does not chain onto the
last buffered one drops the older ones (no snapshot could bridge that gap).
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Generic, TypeVar

E = TypeVar("E")
DEFAULT_MAX_BUFFER = 10_000


class Step(enum.Enum):
    BUFFER = "buffer"  # no usable snapshot yet: held until one arrives
    APPLY = "apply"  # apply the event to the book now
    SKIP = "skip"  # already contained in the book (u <= its update id)
    RESYNC = "resync"  # the chain broke: clear the book and fetch a snapshot (the event is buffered)


class DepthSync(Generic[E]):
    """Track one symbol's update ids between a snapshot and the diff stream."""

    __slots__ = ("_buffer", "_is_chained", "max_buffer", "update_id")

    def __init__(self, max_buffer: int = DEFAULT_MAX_BUFFER) -> None:
        if max_buffer < 1:
            raise ValueError("max_buffer must be positive")
        self.max_buffer = max_buffer
        self._buffer: deque[tuple[int, int, E]] = deque()
        self.update_id: int | None = None  # the book's last update id; None: not in sync
        self._is_chained = False  # an event has been applied on top of the snapshot

    @property
    def is_synced(self) -> bool:
        return self.update_id is not None

    @property
    def has_buffered(self) -> bool:
        return bool(self._buffer)

    @property
    def first_buffered_id(self) -> int | None:
        return self._buffer[0][0] if self._buffer else None

    def reset(self) -> None:
        """Forget the book and the buffer (a new connection: nothing before it can be trusted)."""
        self._buffer.clear()
        self.update_id = None
        self._is_chained = False

    def on_diff(self, first_id: int, final_id: int, event: E) -> Step:
        """Decide what to do with a stream event covering update ids [first_id, final_id]."""
        if final_id < first_id:
            raise ValueError(f"update id range [{first_id}, {final_id}] is reversed")
        if self.update_id is None:
            self._buffer_event(first_id, final_id, event)
            return Step.BUFFER
        if final_id <= self.update_id:
            return Step.SKIP
        expected = self.update_id + 1
        is_next = first_id == expected if self._is_chained else first_id <= expected
        if not is_next:
            self.reset()
            self._buffer_event(first_id, final_id, event)
            return Step.RESYNC
        self.update_id = final_id
        self._is_chained = True
        return Step.APPLY

    def on_snapshot(self, last_update_id: int) -> list[E] | None:
        """Take a snapshot at `last_update_id`; return the buffered events to apply on top of it.

        None: the snapshot is older than the buffered events, fetch another (state unchanged).
        After a list is returned the symbol is in sync: apply the snapshot, then the events.
        """
        if self.update_id is not None:
            raise ValueError("already in sync: a snapshot is only taken after reset or RESYNC")
        buffer = self._buffer
        if buffer and last_update_id + 1 < buffer[0][0]:
            return None
        while buffer and buffer[0][1] <= last_update_id:
            buffer.popleft()
        # The buffer is contiguous and started at or before L + 1, so the first event left
        # (if any) satisfies U <= L + 1 <= u.
        events = [event for _, _, event in buffer]
        self.update_id = buffer[-1][1] if buffer else last_update_id
        self._is_chained = bool(buffer)
        buffer.clear()
        return events

    def _buffer_event(self, first_id: int, final_id: int, event: E) -> None:
        buffer = self._buffer
        if buffer and first_id != buffer[-1][1] + 1:
            buffer.clear()  # not contiguous: what came before can never be bridged
        elif len(buffer) >= self.max_buffer:
            buffer.clear()  # snapshot far too slow: start over from this event
        buffer.append((first_id, final_id, event))
