"""Scheduled-event calendars (ICS or TOML) parsed into events (pure; `load_calendar` reads a file).

TOML layout:

    [[events]]
    name = "FOMC"
    start = 2025-12-10T19:00:00Z      # TOML datetime or ISO-8601 string; naive means UTC
    end = 2025-12-10T19:30:00Z        # optional, defaults to start
    before_secs = 3600                # optional: overrides [news] calendar_before_secs
    after_secs = 7200                 # optional: overrides [news] calendar_after_secs

ICS: every VEVENT with a DTSTART (SUMMARY is the name, DTEND/DURATION optional). All-day events
start at 00:00 UTC. Recurrence rules (RRULE) are not expanded: list each occurrence.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.clock import NS_PER_SEC
from bot.errors import ConfigError

_KEY = "news.calendar_path"


@dataclass(frozen=True, slots=True)
class CalendarEvent:
    """A scheduled event; its news window is [start - before, end + after]."""

    name: str
    start_ns: int
    end_ns: int
    before_secs: float | None = None  # None: the configured default
    after_secs: float | None = None


def _to_ns(value: Any) -> int:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(value.timestamp()) * NS_PER_SEC + value.microsecond * 1000
    if isinstance(value, dt.date):
        return _to_ns(dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC))
    raise ValueError(f"not a date or time: {value!r}")


def parse_toml(text: str) -> list[CalendarEvent]:
    """Parse a TOML calendar; raises ConfigError naming the bad event."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_KEY, f"invalid TOML calendar: {exc}") from None
    events = []
    for i, raw in enumerate(data.get("events", [])):
        try:
            start = _to_ns(raw["start"])
            end = _to_ns(raw["end"]) if "end" in raw else start
            before = float(raw["before_secs"]) if "before_secs" in raw else None
            after = float(raw["after_secs"]) if "after_secs" in raw else None
            events.append(CalendarEvent(str(raw["name"]), start, max(start, end), before, after))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(_KEY, f"calendar event {i}: {exc!r}") from None
    return sorted(events, key=lambda e: e.start_ns)


def parse_ics(data: bytes | str) -> list[CalendarEvent]:
    """Parse an iCalendar file's VEVENTs; raises ConfigError on a file that is not ICS."""
    import icalendar

    try:
        cal = icalendar.Calendar.from_ical(data)
    except ValueError as exc:
        raise ConfigError(_KEY, f"invalid ICS calendar: {exc}") from None
    events = []
    for comp in cal.walk("VEVENT"):
        start_prop = comp.get("DTSTART")
        if start_prop is None:
            continue
        start = _to_ns(start_prop.dt)
        end = start
        if comp.get("DTEND") is not None:
            end = _to_ns(comp.get("DTEND").dt)
        elif comp.get("DURATION") is not None:
            end = start + int(comp.get("DURATION").dt.total_seconds() * NS_PER_SEC)
        events.append(CalendarEvent(str(comp.get("SUMMARY", "event")), start, max(start, end)))
    return sorted(events, key=lambda e: e.start_ns)


def load_calendar(path: Path) -> list[CalendarEvent]:
    """Read a calendar file: `.ics` as iCalendar, anything else as TOML."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(_KEY, f"cannot read {path}: {exc.strerror}") from None
    if path.suffix.lower() == ".ics":
        return parse_ics(raw)
    return parse_toml(raw.decode("utf-8", errors="replace"))
