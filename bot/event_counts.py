"""Market-event counts for the Prometheus counter, added in batches: one counter lock per event is
measurable on the hot path, so each (market, kind) reaches the counter every `batch` events and
on every `flush` (the engine flushes at each evaluation, so counts are at most that late)."""

from __future__ import annotations

from typing import Any

EVENT_COUNT_BATCH = 64


class EventCounts:
    """Count market events per (market, kind) into a labelled Prometheus counter, in batches."""

    def __init__(self, counter: Any, batch: int = EVENT_COUNT_BATCH) -> None:
        self._counter = counter  # labelled by (market, event kind name)
        self._batch = batch
        self._pending: dict[tuple[str, type], list[Any]] = {}

    def add(self, market: str, kind: type) -> None:
        """Count one event; the counter sees it with the batch it completes, or at the next flush."""
        pending = self._pending.get((market, kind))
        if pending is None:
            pending = self._pending[(market, kind)] = [self._counter.labels(market, kind.__name__), 0]
        pending[1] += 1
        if pending[1] >= self._batch:
            pending[0].inc(pending[1])
            pending[1] = 0

    def flush(self) -> None:
        """Add every pending count to the counter."""
        for pending in self._pending.values():
            if pending[1]:
                pending[0].inc(pending[1])
                pending[1] = 0
