"""`perpbot decode`: recorded venue messages -> the domain events the bot would see."""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot.errors import MalformedMessage
from bot.venues.registry import feed_parser


def event_to_json(event: Any) -> dict[str, Any]:
    """Return a domain event as JSON-ready data: Decimal as strings, enums as values."""
    return {"event": type(event).__name__, **_plain(dataclasses.asdict(event))}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        if set(value) == {"price", "size"}:
            return [_plain(value["price"]), _plain(value["size"])]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def read_messages(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield (message number, raw JSON) from a JSON file (object or list) or JSON lines.

    Bytes throughout: a line that is not UTF-8 is one malformed message, not a failed file.
    """
    data = path.read_bytes()
    try:
        whole = json.loads(data)
    except (ValueError, RecursionError):  # JSON lines, or not JSON (too deep to read is not JSON)
        whole = None
    if isinstance(whole, list):
        for i, item in enumerate(whole, 1):
            yield i, json.dumps(item).encode()
        return
    if isinstance(whole, dict):
        yield 1, data
        return
    for i, line in enumerate(data.splitlines(), 1):
        if line.strip():
            yield i, line


def decode_file(path: Path, venue: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Decode every message; return (events, one error line per malformed message)."""
    parser = feed_parser(venue)
    events: list[dict[str, Any]] = []
    errors: list[str] = []
    for number, raw in read_messages(path):
        try:
            parsed = parser.parse(raw, ts_recv=0)
        except MalformedMessage as exc:
            errors.append(f"message {number}: {exc}")
            continue
        if parsed.type == "error":
            errors.append(f"message {number}: venue error: {parsed.error}")
        events.extend(event_to_json(e) for e in parsed.events)
    return events, errors
