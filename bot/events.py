"""Operator events: one in-process stream of what a person watching the bot cares about.

Risk-mode changes, kills, fills, decisions that traded, watchdog alerts and component errors
are published here; notifications and the dashboard subscribe. Publishing never blocks and
never fails: a subscriber whose queue is full loses the event (counted), so a slow consumer
can never delay trading.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

KINDS = ("risk_mode_changed", "kill", "fill", "decision", "watchdog_alert", "component_error",
         "daily_summary", "market_status")


@dataclass(frozen=True, slots=True)
class OperatorEvent:
    kind: str
    ts_ns: int
    fields: dict[str, Any] = field(default_factory=dict)


class EventBus:
    """Fan out OperatorEvents to bounded subscriber queues."""

    def __init__(self) -> None:
        self._queues: list[asyncio.Queue[OperatorEvent]] = []
        self.dropped = 0

    def subscribe(self, maxsize: int = 1000) -> asyncio.Queue[OperatorEvent]:
        queue: asyncio.Queue[OperatorEvent] = asyncio.Queue(maxsize)
        self._queues.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[OperatorEvent]) -> None:
        if queue in self._queues:
            self._queues.remove(queue)

    def publish(self, kind: str, ts_ns: int, **fields: Any) -> None:
        event = OperatorEvent(kind, ts_ns, fields)
        for queue in self._queues:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self.dropped += 1
