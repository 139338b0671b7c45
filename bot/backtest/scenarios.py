"""Stress scenarios composable on any backtest data (pure: no IO, no asyncio, no wall clock).

A scenario is a list of steps, each a `kind` active over a window of simulated time:

| kind              | params (defaults)                    | effect on the replay                     |
|-------------------|--------------------------------------|------------------------------------------|
| price_gap         | pct (-10), market (all)              | prices jump by pct, back at the end      |
| crash             | pct (-15), fall_h (2), recover_h (4) | slide to pct over fall_h, then recover   |
| funding           | rate_1h | flip | scale, market (all) | predicted (so settled) funding replaced  |
| liquidity_drought | factor (0.15)                        | perp book sizes scaled by factor         |
| chain_halt        | stale_oracle_h (0)                   | perp stream frozen (no blocks, fills,    |
|                   |                                      | oracle, funding), orders fail; after the |
|                   |                                      | restart the oracle may stay stale        |
| indexer_lag       | blocks (30)                          | perp events arrive blocks x 0.65 s late  |
| bridge_outage     | -                                    | withdrawals gated (a watchdog input)     |
| hedge_delay       | secs (30)                            | spot hedge orders reach the venue late   |
| order_rejects     | rate (0.5), venue (perp|spot|both)   | that share of orders rejected            |

A step starts at `at` (an ISO UTC time, used when it falls inside the data) or else `at_h` hours
after the data starts, and lasts `duration_h` hours. Book-changing steps re-emit the whole
(shifted or thinned) book as a snapshot from a shadow copy of the raw book, so deltas on any
source stay consistent. `StressModel` applies the steps to event batches and answers what the
runner's execution wrappers and watchdog need to know (halted? oracle stale? withdrawals gated?).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

from bot.book import OrderBook
from bot.clock import NS_PER_HOUR, NS_PER_SEC
from bot.domain import (
    BlockHeight,
    BookDelta,
    BookLevel,
    BookSnapshot,
    MarketEvent,
    MarketSpec,
    OracleUpdate,
    Side,
    Trade,
)
from bot.sim.faults import BACKTEST_FAULTS, SIM_FAULTS, Fault, parse_fault

HALT_GATING_BLOCKS = 50  # INCIDENTS.md: exits frozen 50 blocks after an outage of 5+ minutes
HALT_GATING_MIN_NS = 300 * NS_PER_SEC
KINDS = BACKTEST_FAULTS  # the step kinds: bot.sim.faults is the vocabulary the simulator shares
_BOOK_KINDS = (Fault.PRICE_GAP, Fault.CRASH, Fault.LIQUIDITY_DROUGHT)


class ScenarioError(ValueError):
    """A scenario that does not parse; the message names the field."""


@dataclass(frozen=True, slots=True)
class Step:
    kind: Fault
    at_h: float = 0.0
    duration_h: float = 1.0
    at: str | None = None  # ISO time: used when inside the data, else at_h
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        kind = parse_fault(self.kind, KINDS)  # a plain name is accepted, kept as its Fault
        if kind is None:
            raise ValueError(f"{self.kind!r} is not a backtest step kind")
        object.__setattr__(self, "kind", kind)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    steps: tuple[Step, ...]


NAMED: dict[str, Scenario] = {
    "chain-halt-2024-04-08": Scenario(
        "chain-halt-2024-04-08",
        "v4.0.0 upgrade halt: about 9.5 h without blocks, fills, oracle or funding (05:30 UTC)",
        (Step(Fault.CHAIN_HALT, at_h=2, duration_h=9.5, at="2024-04-08T05:30:00+00:00"),)),
    "chain-halt-2025-10-10": Scenario(
        "chain-halt-2025-10-10",
        "liquidation-cascade halt (21:35 UTC, about 8 h) with stale oracle prices for 1.5 h after restart",
        (Step(Fault.CHAIN_HALT, at_h=2, duration_h=8, at="2025-10-10T21:35:00+00:00",
              params={"stale_oracle_h": 1.5}),)),
    "funding-squeeze": Scenario(
        "funding-squeeze",
        "8 h of rich positive funding (carry opens), then 6 h of extreme negative funding (carry exits)",
        (Step(Fault.FUNDING, at_h=0, duration_h=8, params={"rate_1h": "0.0002"}),
         Step(Fault.FUNDING, at_h=8, duration_h=6, params={"rate_1h": "-0.001"}))),
    "bridge-outage-6h": Scenario(
        "bridge-outage-6h", "withdrawals gated for 6 h from hour 1",
        (Step(Fault.BRIDGE_OUTAGE, at_h=1, duration_h=6),)),
    "liquidity-drought": Scenario(
        "liquidity-drought", "perp depth at 15% of normal for 4 h from hour 1",
        (Step(Fault.LIQUIDITY_DROUGHT, at_h=1, duration_h=4, params={"factor": 0.15}),)),
    "crash-day": Scenario(
        "crash-day", "prices slide 15% over 2 h from hour 1, recover over the last 4 h of a 12 h window",
        (Step(Fault.CRASH, at_h=1, duration_h=12, params={"pct": -15, "fall_h": 2, "recover_h": 4}),)),
    "price-gap": Scenario(
        "price-gap", "a 10% gap down at hour 1, for 3 h",
        (Step(Fault.PRICE_GAP, at_h=1, duration_h=3, params={"pct": -10}),)),
    "funding-flip": Scenario(
        "funding-flip", "the funding rate's sign flipped for 12 h from hour 1",
        (Step(Fault.FUNDING, at_h=1, duration_h=12, params={"flip": True}),)),
    "indexer-lag": Scenario(
        "indexer-lag", "the indexer 30 blocks behind for 1 h from hour 1",
        (Step(Fault.INDEXER_LAG, at_h=1, duration_h=1, params={"blocks": 30}),)),
    "hedge-delay": Scenario(
        "hedge-delay", "spot hedge orders 30 s late for 6 h from hour 1",
        (Step(Fault.HEDGE_DELAY, at_h=1, duration_h=6, params={"secs": 30}),)),
    "order-rejects": Scenario(
        "order-rejects", "half of all orders rejected for 4 h from hour 1",
        (Step(Fault.ORDER_REJECTS, at_h=1, duration_h=4, params={"rate": 0.5, "venue": "both"}),)),
}


def _number(params: dict[str, Any], key: str, default: float, where: str) -> float:
    try:
        return float(params.get(key, default))
    except (TypeError, ValueError):
        raise ScenarioError(f"{where}.{key}: must be a number") from None


def parse_step(data: Any, where: str) -> Step:
    """Validate one step; ScenarioError names the field."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{where}: must be an object")
    kind = parse_fault(data.get("kind"), KINDS)
    if kind is None:
        hint = " (a simulator scenario)" if parse_fault(data.get("kind"), SIM_FAULTS) else ""
        raise ScenarioError(f"{where}.kind: unknown kind {data.get('kind')!r}{hint}; "
                            f"known: {', '.join(KINDS)}")
    params = {k: v for k, v in data.items() if k not in ("kind", "at_h", "duration_h", "at")}
    at_h = _number(data, "at_h", 0.0, where)
    duration_h = _number(data, "duration_h", 1.0, where)
    if at_h < 0 or duration_h <= 0:
        raise ScenarioError(f"{where}.duration_h: at_h must be >= 0 and duration_h > 0")
    at = data.get("at")
    if at is not None:
        try:
            datetime.fromisoformat(str(at))
        except ValueError:
            raise ScenarioError(f"{where}.at: {at!r} is not an ISO time") from None
    if kind is Fault.FUNDING and not ({"rate_1h", "flip", "scale"} & params.keys()):
        raise ScenarioError(f"{where}: a funding step needs rate_1h, flip or scale")
    for key in ("pct", "factor", "fall_h", "recover_h", "stale_oracle_h", "blocks", "secs", "rate", "scale"):
        if key in params:
            _number(params, key, 0.0, where)
    if "rate_1h" in params:
        try:
            Decimal(str(params["rate_1h"]))
        except ArithmeticError:
            raise ScenarioError(f"{where}.rate_1h: must be a number") from None
    return Step(kind, at_h, duration_h, None if at is None else str(at), params)


def load_scenario(text: str) -> Scenario:
    """A named scenario, or a JSON/TOML file: `{"name", "description", "steps": [...]}` or a list of steps."""
    if text in NAMED:
        return NAMED[text]
    path = Path(text)
    if not path.suffix or not path.exists():
        raise ScenarioError(f"unknown scenario {text!r} (not a file; named: {', '.join(sorted(NAMED))})")
    try:
        raw = path.read_bytes()
        data = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw.decode())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path} does not parse: {exc}") from None
    steps = data.get("steps") if isinstance(data, dict) else data
    if not isinstance(steps, list) or not steps:
        raise ScenarioError(f"{path}: expected a non-empty list of steps")
    name = data.get("name", path.stem) if isinstance(data, dict) else path.stem
    desc = data.get("description", "") if isinstance(data, dict) else ""
    return Scenario(str(name), str(desc), tuple(parse_step(s, f"steps[{i}]") for i, s in enumerate(steps)))


@dataclass(frozen=True, slots=True)
class Window:
    """A step placed on the data's timeline: [start_ns, end_ns)."""

    scenario: str
    step: Step
    start_ns: int
    end_ns: int

    @property
    def label(self) -> str:
        return f"{self.scenario}:{self.step.kind}"


def place(scenarios: list[Scenario], start_ns: int, end_ns: int) -> list[Window]:
    """Anchor every step: at its ISO time when the data covers it, else `at_h` after the start."""
    windows = []
    for sc in scenarios:
        for step in sc.steps:
            begin = start_ns + int(step.at_h * NS_PER_HOUR)
            if step.at is not None:
                at = datetime.fromisoformat(step.at)
                at_ns = int((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()) * NS_PER_SEC
                if start_ns <= at_ns < end_ns:
                    begin = at_ns
            windows.append(Window(sc.name, step, begin, begin + int(step.duration_h * NS_PER_HOUR)))
    windows.sort(key=lambda w: (w.start_ns, w.label))
    return windows


def is_rejected(client_id: int, rate: float) -> bool:
    """Deterministic reject draw: the same client id always gets the same answer."""
    return (client_id * 2654435761 % 4294967296) / 4294967296 < rate


@dataclass(slots=True)
class _Transform:
    offset_ticks: int = 0
    factor: float = 1.0

    @property
    def is_identity(self) -> bool:
        return self.offset_ticks == 0 and self.factor == 1.0


class StressModel:
    """Apply placed windows to event batches; expose the chain/bridge/venue state they imply."""

    def __init__(self, windows: list[Window], specs: dict[str, MarketSpec], spot_specs: dict[str, MarketSpec],
                 spot_of: dict[str, str], block_secs: float = 0.65) -> None:
        self.windows = windows
        self._pending = list(windows)
        self.active: list[Window] = []
        self._specs = {**specs, **spot_specs}
        self._perps = set(specs)
        self._spot_of = spot_of
        self._perp_of = {s: p for p, s in spot_of.items()}
        self._block_ns = int(block_secs * NS_PER_SEC)
        self._shadow = {t: OrderBook(t) for t in self._specs}
        self._transform = {t: _Transform() for t in self._specs}
        self._ref_price: dict[str, float] = {}
        self._last_oracle: dict[str, OracleUpdate] = {}
        self._frozen_oracle: dict[str, OracleUpdate] = {}
        self._lagged: list[tuple[int, MarketEvent]] = []
        self._resync: set[str] = set()
        self.log: list[tuple[int, str, str, dict[str, Any]]] = []  # (ns, start|end, label, params)
        self.halted_since_ns: int | None = None
        self.oracle_stale_until_ns = 0
        self.gating_until_ns = 0
        self.indexer_lag_blocks = 0
        self.hedge_delay_ns = 0
        self.reject_rate = {"perp": 0.0, "spot": 0.0}

    # ---- state the runner reads -----------------------------------------------------------------

    @property
    def halted(self) -> bool:
        return self.halted_since_ns is not None

    def oracle_stale(self, now_ns: int) -> bool:
        return now_ns < self.oracle_stale_until_ns

    def withdrawals_gated(self, now_ns: int) -> bool:
        return self.halted or now_ns < self.gating_until_ns or any(
            w.step.kind is Fault.BRIDGE_OUTAGE for w in self.active)

    def gating_blocks_left(self, now_ns: int) -> int:
        """Blocks until exits unfreeze (a large number while a bridge outage lasts)."""
        outage = [w.end_ns for w in self.active if w.step.kind is Fault.BRIDGE_OUTAGE]
        until = max([self.gating_until_ns, *outage])
        return max(0, -(-(until - now_ns) // self._block_ns))

    def is_quiet(self, now_ns: int) -> bool:
        """Nothing that a watchdog would see is going on."""
        return not (self.halted or self.indexer_lag_blocks or self.oracle_stale(now_ns)
                    or self.withdrawals_gated(now_ns))

    def next_change_ns(self, now_ns: int) -> int | None:
        """When, after `now_ns`, a window starts or ends (the runner wakes its watchdog then)."""
        times = [w.start_ns for w in self._pending[:1]] + [w.end_ns for w in self.active]
        times += [self.oracle_stale_until_ns, self.gating_until_ns]
        later = [t for t in times if t > now_ns]
        return min(later) if later else None

    # ---- the event path -------------------------------------------------------------------------

    def apply(self, ts: int, perp: list[MarketEvent], spot: list[MarketEvent]) -> tuple[
            list[MarketEvent], list[MarketEvent]]:
        """Transform one batch (raw events in, what the bot sees out)."""
        self._advance(ts)
        for ev in perp:
            self._observe(ev)
        for ev in spot:
            self._observe(ev)
        out_perp: list[MarketEvent] = []
        if self.halted:
            out_perp = []  # the chain is down: the indexer serves nothing new
        elif self.indexer_lag_blocks or self._lagged:
            lag = self.indexer_lag_blocks
            self._lagged.extend((ts + lag * self._block_ns, ev) for ev in perp)
            ready = [ev for due, ev in self._lagged if due <= ts or not lag]
            self._lagged = [(due, ev) for due, ev in self._lagged if due > ts and lag]
            out_perp = self._transform_events(ts, [replace(ev, ts_recv=ts) for ev in ready], perp_leg=True)
        else:
            out_perp = self._transform_events(ts, perp, perp_leg=True)
        out_spot = self._transform_events(ts, spot, perp_leg=False)
        return out_perp, out_spot

    def _observe(self, ev: MarketEvent) -> None:
        if isinstance(ev, BookSnapshot):
            self._shadow[ev.market].apply_snapshot(ev)
        elif isinstance(ev, BookDelta):
            self._shadow[ev.market].apply_delta(ev)
        elif isinstance(ev, OracleUpdate) and not self.halted:
            self._last_oracle[ev.market] = ev

    def _transform_events(self, ts: int, events: list[MarketEvent], perp_leg: bool) -> list[MarketEvent]:
        out: list[MarketEvent] = []
        snap_done: set[str] = set()
        legs = self._perps if perp_leg else self._perp_of
        for market in [m for m in self._resync if m in legs]:
            self._resync.discard(market)
            out.append(self._snapshot(market, ts))
            snap_done.add(market)
        for ev in events:
            if isinstance(ev, BlockHeight):
                out.append(ev)
                continue
            market = ev.market
            tr = self._transform[market]
            if isinstance(ev, OracleUpdate):
                ev = self._oracle(ev, ts)
                if tr.offset_ticks:
                    spec = self._specs[market]
                    ev = replace(ev, oracle_price=ev.oracle_price + tr.offset_ticks * spec.tick_size)
                out.append(ev)
            elif tr.is_identity:
                out.append(ev)
            elif isinstance(ev, BookSnapshot | BookDelta):
                if market not in snap_done:
                    snap_done.add(market)
                    out.append(self._snapshot(market, ts))
            elif isinstance(ev, Trade):
                spec = self._specs[market]
                out.append(replace(ev, price=ev.price + tr.offset_ticks * spec.tick_size,
                                   size=max(spec.min_order_size, _scale(ev.size, tr.factor, spec.step_size))))
            else:
                out.append(ev)
        return out

    def _oracle(self, ev: OracleUpdate, ts: int) -> OracleUpdate:
        frozen = self._frozen_oracle.get(ev.market)
        if frozen is not None and ts < self.oracle_stale_until_ns:
            ev = replace(ev, oracle_price=frozen.oracle_price)
        for w in self.active:
            if w.step.kind is not Fault.FUNDING or w.step.params.get("market", ev.market) != ev.market:
                continue
            p = w.step.params
            if "rate_1h" in p:
                ev = replace(ev, next_funding_rate=Decimal(str(p["rate_1h"])))
            elif p.get("flip"):
                ev = replace(ev, next_funding_rate=-ev.next_funding_rate)
            elif "scale" in p:
                ev = replace(ev, next_funding_rate=ev.next_funding_rate * Decimal(str(p["scale"])))
        return ev

    def _snapshot(self, market: str, ts: int) -> BookSnapshot:
        book, tr, spec = self._shadow[market], self._transform[market], self._specs[market]
        shift = tr.offset_ticks * spec.tick_size

        def side(s: Side) -> tuple[BookLevel, ...]:
            return tuple(BookLevel(lv.price + shift, max(spec.min_order_size, _scale(lv.size, tr.factor,
                                                                                    spec.step_size)))
                         for lv in book.levels(s, 1000) if lv.price + shift > 0)

        return BookSnapshot(market, side(Side.BUY), side(Side.SELL), ts, ts)

    # ---- windows -----------------------------------------------------------------------------------

    def advance(self, ts: int) -> None:
        """Start and end the windows due by `ts` (the watchdog's wake-ups call it: a window starts
        at its own time even when no market event falls on it)."""
        self._advance(ts)

    def _advance(self, ts: int) -> None:
        while self._pending and self._pending[0].start_ns <= ts:
            w = self._pending.pop(0)
            self.active.append(w)
            self._start(w, ts)
        for w in [w for w in self.active if w.end_ns <= ts]:
            self.active.remove(w)
            self._end(w, ts)
        if any(w.step.kind in _BOOK_KINDS for w in self.active) or any(
                not tr.is_identity for tr in self._transform.values()):
            self._update_transforms(ts)

    def _start(self, w: Window, ts: int) -> None:
        p = w.step.params
        self.log.append((ts, "start", w.label, dict(p)))
        if w.step.kind is Fault.CHAIN_HALT:
            self.halted_since_ns = ts
            self._frozen_oracle = dict(self._last_oracle)
        elif w.step.kind is Fault.INDEXER_LAG:
            self.indexer_lag_blocks = int(float(p.get("blocks", 30)))
        elif w.step.kind is Fault.HEDGE_DELAY:
            self.hedge_delay_ns = int(float(p.get("secs", 30)) * NS_PER_SEC)
        elif w.step.kind is Fault.ORDER_REJECTS:
            venue = p.get("venue", "both")
            for leg in ("perp", "spot"):
                if venue in (leg, "both"):
                    self.reject_rate[leg] = float(p.get("rate", 0.5))
        elif w.step.kind in (Fault.PRICE_GAP, Fault.CRASH):
            for market in self._specs:
                mid = self._shadow[market].mid()
                if mid is not None:
                    self._ref_price[f"{w.label}@{w.start_ns}:{market}"] = float(mid)

    def _end(self, w: Window, ts: int) -> None:
        p = w.step.params
        self.log.append((ts, "end", w.label, dict(p)))
        if w.step.kind is Fault.CHAIN_HALT and self.halted_since_ns is not None:
            stale_ns = int(float(p.get("stale_oracle_h", 0)) * NS_PER_HOUR)
            self.oracle_stale_until_ns = ts + stale_ns if stale_ns else 0
            if ts - self.halted_since_ns >= HALT_GATING_MIN_NS:
                self.gating_until_ns = ts + HALT_GATING_BLOCKS * self._block_ns
            self.halted_since_ns = None
            self._resync.update(self._perps)  # the restarted indexer serves fresh snapshots
        elif w.step.kind is Fault.INDEXER_LAG:
            self.indexer_lag_blocks = 0
        elif w.step.kind is Fault.HEDGE_DELAY:
            self.hedge_delay_ns = 0
        elif w.step.kind is Fault.ORDER_REJECTS:
            self.reject_rate = {"perp": 0.0, "spot": 0.0}

    def _update_transforms(self, ts: int) -> None:
        wanted = {t: _Transform() for t in self._specs}
        for w in self.active:
            p = w.step.params
            if w.step.kind is Fault.LIQUIDITY_DROUGHT:
                for t in self._perps:
                    wanted[t].factor *= float(p.get("factor", 0.15))
            elif w.step.kind in (Fault.PRICE_GAP, Fault.CRASH):
                pct = float(p.get("pct", -10 if w.step.kind is Fault.PRICE_GAP else -15)) / 100
                if w.step.kind is Fault.CRASH:
                    fall = float(p.get("fall_h", 2)) * NS_PER_HOUR
                    recover = float(p.get("recover_h", 4)) * NS_PER_HOUR
                    since, left = ts - w.start_ns, w.end_ns - ts
                    pct *= min(1.0, since / fall if fall else 1.0, left / recover if recover else 1.0)
                only = p.get("market")
                for t, spec in self._specs.items():
                    perp = t if t in self._perps else self._perp_of.get(t)
                    ref = self._ref_price.get(f"{w.label}@{w.start_ns}:{t}")
                    if ref is None or (only is not None and perp != only):
                        continue
                    wanted[t].offset_ticks += round(ref * pct / float(spec.tick_size))
        for t, tr in wanted.items():
            if tr != self._transform[t]:
                self._transform[t] = tr
                self._resync.add(t)


def _scale(size: Decimal, factor: float, step: Decimal) -> Decimal:
    if factor == 1.0:
        return size
    return (size * Decimal(repr(factor)) / step).to_integral_value(ROUND_DOWN) * step
