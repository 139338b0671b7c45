"""A backtest's samples: equity, PnL, exposure, flags and risk mode every `sample_secs`, and the
settled funding rate at each top of the hour (for the baselines).

The runner calls `Sampler.sample` at each sample time with the equity it already knows (or
computes). Values are kept raw in the loop and formatted as the samples' and funding rows'
strings once it is done (`rows`, `funding_rows`), outside the engine loop. Flag changes and
the sizing's drawdown stop go to the run's timeline as they are seen.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from bot.clock import NS_PER_HOUR, NS_PER_SEC
from bot.domain import ZERO, RiskMode
from bot.engine import Engine

from .summary import drain, format_samples, money


class Sampler:
    __slots__ = ("_drawdown_stop", "_engine", "_funding", "_horizon", "_last_mode", "_last_tripped", "_raw",
                 "_sample_secs", "bus", "mode_secs", "timeline")

    def __init__(self, engine: Engine, bus: asyncio.Queue[Any], timeline: list[dict[str, Any]],
                 sample_ns: int, funding_horizon_hours: int) -> None:
        self._engine = engine
        self.bus = bus  # the engine's events: risk mode changes go to the timeline
        self.timeline = timeline
        self._sample_secs = sample_ns / NS_PER_SEC
        self._horizon = funding_horizon_hours
        self._raw: list[tuple[Any, ...]] = []  # what `sample` saw; `rows()` once formatted
        self._funding: list[tuple[int, str, Decimal, Decimal]] = []  # (ts, market, rate_1h, oracle)
        self._last_mode: str | None = None  # the previous sample's risk mode (for mode_secs)
        self._drawdown_stop = False
        self._last_tripped: dict[str, tuple[str, ...]] = {}
        self.mode_secs: dict[str, float] = {m.value: 0.0 for m in RiskMode} | {"DRAWDOWN_STOP": 0.0}

    def sample(self, now: int, equity: Decimal) -> None:
        """Record equity (the engine's, at `now`), PnL, exposure and flags at `now`."""
        engine = self._engine
        pnl = engine.total_pnl()
        markets = []
        gross = net = ZERO
        stopped = False
        top_of_hour = now % NS_PER_HOUR == 0
        last_tripped = self._last_tripped
        for t, st in engine.markets.items():
            mark = st.mark
            pos = st.position.size
            perp_notional = pos * mark if mark is not None else ZERO
            gross += abs(perp_notional)
            net += perp_notional
            spot_row = None
            if st.spot is not None:
                mid = st.spot.book.mid()
                spot_pos = st.spot.position.size
                spot_notional = spot_pos * mid if mid is not None else ZERO
                spot_row = (spot_pos, mid)
                gross += abs(spot_notional)
                net += spot_notional
            tripped = st.flags.tripped if st.flags is not None else ()
            if tripped != last_tripped.get(t, ()):
                self.timeline.append({"ts_ns": now, "kind": "flags", "market": t, "tripped": list(tripped),
                                      "previous": list(last_tripped.get(t, ()))})
                last_tripped[t] = tripped
            stopped = stopped or (st.sizing is not None and st.sizing.limited_by == "drawdown")
            funding = st.funding
            markets.append((t, pos, mark, funding.rate_1h, st.carry_side, st.target, spot_row, tripped))
            if top_of_hour and funding.predicted is not None and st.oracle_price is not None:
                self._funding.append((now, t, funding.predicted, st.oracle_price))
        if self.bus.qsize():
            self.drain_modes()
        if stopped != self._drawdown_stop:  # the sizing's drawdown stop: shown with the risk modes
            self._drawdown_stop = stopped
            new = "DRAWDOWN_STOP" if stopped else engine.risk_mode.value
            self.timeline.append({"ts_ns": now, "kind": "risk_mode", "old": "", "new": new,
                                  "reason": f"drawdown_stop: equity {money(equity)} vs peak "
                                            f"{money(engine.peak_equity)}"})
        realised = sum((st.ledger.realised_usd for st in engine.markets.values()), ZERO)
        expected_1h = engine.expected_funding() / self._horizon
        mode = engine.risk_mode.value
        if self._last_mode is not None:
            self.mode_secs[self._last_mode] += self._sample_secs
        self._last_mode = "DRAWDOWN_STOP" if stopped else mode
        self._raw.append((now, equity, mode, stopped, pnl, realised, expected_1h, gross, net, markets))

    def drain_modes(self) -> None:
        """The engine's risk mode changes so far, onto the timeline."""
        for event in drain(self.bus):
            if event.kind == "risk_mode_changed":
                self.timeline.append({"ts_ns": event.ts_ns, "kind": "risk_mode", **event.fields})

    def rows(self) -> list[dict[str, Any]]:
        """The samples so far as `samples.json` rows (and forgets them)."""
        out = format_samples(self._raw)
        self._raw = []
        return out

    def funding_rows(self) -> list[dict[str, Any]]:
        """The settled-funding rows (`funding.json`, the baselines' rates): rate and oracle as strings."""
        return [{"ts_ns": ts, "market": t, "rate_1h": str(rate), "oracle": str(oracle)}
                for ts, t, rate, oracle in self._funding]
