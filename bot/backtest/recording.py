"""`perpbot record`: capture market events as gzip JSON lines with receive timestamps.

Each segment starts with a header line (`{"k": "header", "specs": ..., "spot_specs": ...,
"spot_of": ...}`) followed by one event per line (`codec.encode_event`). A segment rotates when
its uncompressed size passes `rotate_bytes` or it spans `rotate_secs` of receive time; segments
are FILE, FILE.1, FILE.2, ... and `sources.recording_source(FILE)` replays them in order.

Sources: the in-process simulator (SimFeed over SimMarket perps and spot twins, as the daemon
runs it, in real time or, with `simulated=True`, in simulated time without waiting) and the dYdX
adapter's event stream (`DydxVenue.run(sink)`: testnet, mainnet, or the embedded protocol
simulator with `sim.mode = "protocol"`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from pathlib import Path
from typing import Any

import orjson

from bot.clock import NS_PER_SEC, Clock, SystemClock
from bot.config import Settings
from bot.domain import BlockHeight, MarketEvent, MarketSpec
from bot.venues.registry import open_market_data

from .clock import SimClock
from .codec import encode_event
from .sources import SIM_EPOCH_NS


class _Done(Exception):
    """The simulated recording reached its end time."""


def _spec_dict(specs: dict[str, MarketSpec]) -> dict[str, dict[str, str]]:
    return {t: {"tick_size": str(s.tick_size), "step_size": str(s.step_size),
                "min_order_size": str(s.min_order_size)} for t, s in specs.items()}


class RecordWriter:
    """Append events to rotating gzip JSON-lines segments."""

    def __init__(self, path: Path, specs: dict[str, MarketSpec],
                 spot_specs: dict[str, MarketSpec] | None = None, spot_of: dict[str, str] | None = None, *,
                 rotate_bytes: int = 64 << 20, rotate_secs: float = 3600.0) -> None:
        self.path = path
        header = {"k": "header", "specs": _spec_dict(specs), "spot_specs": _spec_dict(spot_specs or {}),
                  "spot_of": spot_of or {}}
        self._header = orjson.dumps(header) + b"\n"
        self._spot = set(spot_specs or {})
        self._rotate_bytes = rotate_bytes
        self._rotate_ns = int(rotate_secs * NS_PER_SEC)
        self._file: gzip.GzipFile | None = None
        self._segment = -1
        self._bytes = 0
        self._first_ns: int | None = None
        self.events = 0
        self.segments: list[Path] = []
        path.parent.mkdir(parents=True, exist_ok=True)

    def _open(self) -> None:
        if self._file is not None:
            self._file.close()
        self._segment += 1
        target = self.path if self._segment == 0 else self.path.with_name(f"{self.path.name}.{self._segment}")
        self._file = gzip.open(target, "wb", compresslevel=5)
        self.segments.append(target)
        self._file.write(self._header)
        self._bytes = len(self._header)
        self._first_ns = None

    def write(self, event: MarketEvent) -> None:
        """Record one event; spot events are the ones whose market is a spot market."""
        venue = "spot" if not isinstance(event, BlockHeight) and event.market in self._spot else "perp"
        line = orjson.dumps(encode_event(event, venue)) + b"\n"
        ts = event.ts_recv
        if self._file is None or self._bytes >= self._rotate_bytes or (
                self._first_ns is not None and ts - self._first_ns >= self._rotate_ns):
            self._open()
        assert self._file is not None
        if self._first_ns is None:
            self._first_ns = ts
        self._file.write(line)
        self._bytes += len(line)
        self.events += 1

    def close(self) -> None:
        if self._file is None:
            self._open()  # an empty recording still has its header
        assert self._file is not None
        self._file.close()


async def record_sim(settings: Settings, path: Path, duration_secs: float, *, simulated: bool = False,
                     **rotation: Any) -> RecordWriter:
    """Record the in-process simulator (perps + spot twins) for `duration_secs`."""
    clock: Clock = SimClock(SIM_EPOCH_NS) if simulated else SystemClock()
    perp = await open_market_data(settings, clock)
    spot_specs = {t: m.spec() for t, m in perp.spot_markets.items()}
    spot_of = {p: s for p, s in settings.strategy.carry.spot_markets.items() if s in spot_specs}
    writer = RecordWriter(path, perp.specs, spot_specs, spot_of, **rotation)
    feed = perp.market_data
    assert feed is not None
    try:
        if simulated:
            end = clock.now_ns() + int(duration_secs * NS_PER_SEC)

            def sink(event: MarketEvent) -> None:
                if event.ts_recv > end:
                    raise _Done
                writer.write(event)

            with contextlib.suppress(_Done):
                await feed.run(sink)
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(duration_secs):
                    await feed.run(writer.write)
    finally:
        writer.close()
    return writer


async def record_venue(settings: Settings, path: Path, duration_secs: float | None,
                       **rotation: Any) -> RecordWriter:
    """Record the dYdX adapter's market events (books, trades, oracle/funding, heights)."""
    perp = await open_market_data(settings, SystemClock())  # market data only: no keys needed
    writer = RecordWriter(path, perp.specs, **rotation)
    feed = perp.market_data
    assert feed is not None
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration_secs), asyncio.TaskGroup() as tg:
                for service in perp.services:
                    tg.create_task(service.run(), name=service.name)
                tg.create_task(feed.run(writer.write), name="record_feed")
    finally:
        writer.close()
        await perp.close()
    return writer
