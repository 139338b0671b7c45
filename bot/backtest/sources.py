"""Time-ordered market event sources for backtests: the seeded simulator, OHLCV candles + funding
CSVs, and recordings. Each yields batches `(ts_ns, perp_events, spot_events)` in time order
(`replay.Source`).

The simulator and recordings are here; candles are `candles` (the walk, `CandleData`) over the
synthetic market of `synthetic` (the bar's curve and books), re-exported here, the home of every
source. Reading and validating the CSVs is `history`'s job (times are UTC unless an offset is
given).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from bot.clock import NS_PER_HOUR, NS_PER_SEC
from bot.config import Settings
from bot.domain import MarketEvent, MarketSpec
from bot.sim.market import SimMarket
from bot.venues.registry import sim_market_params as default_params

# Re-exported (the candle source's and the loaders' home was here).
from .candles import (  # noqa: F401
    BAR_PATH_STEPS,
    CandleData,
    candle_source,
    load_candle_data,
    load_candle_source,
)
from .codec import decode_event
from .history import (  # noqa: F401
    Bar,
    SourceError,
    load_candles,
    load_funding,
    parse_time,
)
from .replay import Batch, Source, spot_map
from .synthetic import (  # noqa: F401
    BookShape,
    Ladder,
    TickGrid,
    _path_prices,
    path_at,
)

# Start of simulated runs: a fixed instant, so a seed alone fixes every event.
SIM_EPOCH_NS = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) * NS_PER_SEC


# ---- the seeded simulator (what open_in_process runs, stepped in simulated time) ---------------


def sim_source(settings: Settings, seed: int, hours: float, *, start_ns: int = SIM_EPOCH_NS,
               step_secs: float | None = None, activity: dict[str, float] | None = None) -> Source:
    """SimMarket per perp plus a spot twin per hedged perp, exactly as `open_in_process` builds them.

    `activity` overrides the markets' flow parameters (e.g. `{"taker_trades_per_sec": 40,
    "level_updates_per_sec": 100}` for a busy market); None keeps the simulator's defaults.
    """
    if hours <= 0:
        raise SourceError("--hours", "must be > 0")
    block = settings.sim.block_interval_secs
    perps = {t: SimMarket(replace(default_params(t, block), **(activity or {})), seed + i, start_ns)
             for i, t in enumerate(settings.markets)}
    spot_of = spot_map(settings, settings.markets)
    spots = {spot_of[t]: SimMarket(replace(perps[t].params, ticker=spot_of[t]), seed + i, start_ns)
             for i, t in enumerate(settings.markets) if t in spot_of}
    step_ns = int((step_secs or settings.sim.step_interval_secs) * NS_PER_SEC)
    end_ns = start_ns + int(hours * NS_PER_HOUR)

    def batches() -> Iterator[Batch]:
        perp_markets, spot_markets = list(perps.values()), list(spots.values())
        now = start_ns
        while now <= end_ns:
            perp: list[MarketEvent] = []
            for market in perp_markets:
                perp += market.step(now)
            spot: list[MarketEvent] = []
            for market in spot_markets:
                spot += market.step(now)
            yield now, perp, spot
            now += step_ns

    return Source("sim", {t: m.spec() for t, m in perps.items()}, {t: m.spec() for t, m in spots.items()},
                  spot_of, start_ns, end_ns, batches(),
                  {"seed": seed, "hours": hours, "step_secs": step_ns / NS_PER_SEC})


# ---- recordings ------------------------------------------------------------------------------


def recording_segments(path: Path) -> list[Path]:
    """The file and its rotated successors `FILE.1`, `FILE.2`, ... in order."""
    if not path.exists():
        raise SourceError("--data", f"file not found: {path}")
    out = [path]
    k = 1
    while (nxt := path.with_name(f"{path.name}.{k}")).exists():
        out.append(nxt)
        k += 1
    return out


def _lines(paths: list[Path]) -> Iterator[bytes]:
    for p in paths:
        with p.open("rb") as probe:
            is_gzip = probe.read(2) == b"\x1f\x8b"
        opener: Any = gzip.open if is_gzip else open
        with opener(p, "rb") as f:
            yield from f


def recording_source(path: Path) -> Source:
    """Replay a recording (`perpbot record`): its header gives the markets; events in time order."""
    paths = recording_segments(path)
    specs: dict[str, MarketSpec] = {}
    spot_specs: dict[str, MarketSpec] = {}
    spot_of: dict[str, str] = {}
    first = last = None
    count = 0
    try:
        for line in _lines(paths):
            data = orjson.loads(line)
            if data.get("k") == "header":
                for key, target in (("specs", specs), ("spot_specs", spot_specs)):
                    for t, s in data.get(key, {}).items():
                        target[t] = MarketSpec(t, Decimal(s["tick_size"]), Decimal(s["step_size"]),
                                               Decimal(s["min_order_size"]))
                spot_of.update(data.get("spot_of", {}))
                continue
            ts = int(data["t"])
            first = ts if first is None else first
            last = ts
            count += 1
    except (OSError, EOFError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SourceError("--data", f"{path} is not a recording: {exc}") from None
    if not specs or first is None or last is None:
        raise SourceError("--data", f"{path} has no header or no events")

    def batches() -> Iterator[Batch]:
        ts_batch: int | None = None
        perp: list[MarketEvent] = []
        spot: list[MarketEvent] = []
        high = 0
        for line in _lines(paths):
            data = orjson.loads(line)
            if data.get("k") == "header":
                continue
            venue, event = decode_event(data)
            ts = max(event.ts_recv, high)  # receive times never go backwards in a replay
            high = ts
            if ts_batch is not None and ts != ts_batch:
                yield ts_batch, perp, spot
                perp, spot = [], []
            ts_batch = ts
            (spot if venue == "spot" else perp).append(event)
        if ts_batch is not None:
            yield ts_batch, perp, spot

    return Source("recording", specs, spot_specs, spot_of, first, last, batches(),
                  {"path": str(path), "segments": len(paths), "events": count})
