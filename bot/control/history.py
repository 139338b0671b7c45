"""What the dashboard's charts are drawn from: sampled live state, the store, and the thresholds.

`StatusHistory` samples the control core's status every few seconds into two bounded tiers (every
sample for the last two hours, one a minute for the last seven days), so a 7-day chart costs
about 10,000 small samples. Decisions (with their reasons and tripped flags) and settled funding
payments come from the store, so their markers survive restarts and reach back past the memory
window ("all"). Floats here are for drawing only; nothing is stored or sent as money from them.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bot.clock import NS_PER_SEC, Clock
from bot.control.fmt import dec
from bot.control.svg import CHARTABLE_MAX

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.store.repo import Store

HISTORY_INTERVAL_SECS = 5.0
FINE_WINDOW_SECS = 2 * 3600.0
COARSE_INTERVAL_SECS = 60.0
COARSE_WINDOW_SECS = 7 * 86400.0
STORE_REFRESH_SECS = 30.0
MAX_DECISIONS = 2000
MAX_PAYMENTS = 20_000
MAX_CHART_POINTS = 360
JSON_MAX_POINTS = 2000
RANGES = {"1h": 3600.0, "24h": 86400.0, "7d": 7 * 86400.0, "all": None}
DEFAULT_RANGE = "24h"
FLAG_NAMES = ("funding", "liquidity", "volatility", "news")

StatusFn = Callable[[], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class MarketSample:
    position: float
    target: float
    rate_1h: float | None


@dataclass(frozen=True, slots=True)
class Sample:
    """One point of the dashboard charts (floats: display only, never stored as money)."""

    ts_ns: int
    equity_usd: float
    gross_exposure_usd: float
    net_exposure_usd: float
    funding_realised_usd: float
    funding_expected_usd: float
    pnl_price: float = 0.0
    pnl_funding: float = 0.0
    pnl_fees: float = 0.0
    pnl_slippage: float = 0.0
    pnl_total: float = 0.0
    risk_mode: str = "NORMAL"
    markets: dict[str, MarketSample] = field(default_factory=dict, compare=False)


SCALAR_COLUMNS = tuple(f.name for f in fields(Sample) if f.name != "markets")


def sample_from_status(status: dict[str, Any], ts_ns: int) -> Sample:
    """Equity, exposure (perp and spot legs at their marks), funding, PnL and positions of a status."""
    gross = net = 0.0
    markets: dict[str, MarketSample] = {}
    for ticker, market in _dict(status.get("markets")).items():
        if not isinstance(market, dict):
            continue
        for notional in _leg_notionals(market):
            gross += abs(notional)
            net += notional
        markets[str(ticker)] = MarketSample(_float(market.get("position")), _float(market.get("target")),
                                            _finite(market.get("funding_rate_1h")))
    funding = _dict(status.get("funding"))
    pnl = _dict(status.get("pnl"))
    return Sample(ts_ns, _float(status.get("equity")), gross, net,
                  _float(funding.get("realised")), _float(funding.get("expected")),
                  _float(pnl.get("price")), _float(pnl.get("funding")), _float(pnl.get("fees")),
                  _float(pnl.get("slippage")), _float(pnl.get("total")),
                  str(status.get("risk_mode") or "NORMAL"), markets)


@dataclass(frozen=True, slots=True)
class Marker:
    """A logged decision, drawn on the position chart; hover shows reason and tripped flags."""

    ts_ns: int
    market: str
    reason: str
    summary: str
    tripped: tuple[str, ...]
    target: float | None


@dataclass(frozen=True, slots=True)
class Payment:
    """A settled funding payment: the realised hourly rate and what it paid (>0 received)."""

    ts_ns: int
    market: str
    rate: float
    amount_usd: float


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Lines drawn on the charts: carry entry/exit as hourly funding rates, watchdog limits."""

    carry_entry_rate_1h: tuple[float, ...] = ()
    carry_exit_rate_1h: tuple[float, ...] = ()
    # input name (or 'feed:' prefix) -> (degraded, critical or None, unit)
    watchdog: dict[str, tuple[float, float | None, str]] = field(default_factory=dict)


def carry_rates(settings: Settings, fees: Any = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The carry sleeve's entry and exit edges as hourly funding rates, priced with the sleeve's own
    cost model. Fees: the configured schedules, or the taker rates a status reports under
    `fees.dydx` / `fees.binance` (live venues report their own)."""
    from bot.strategy.sleeves import BPS, carry_economics

    carry = settings.strategy.carry
    perp_fee = settings.paper.taker_fee_rate
    fees = _dict(fees)
    reported_perp = dec(_dict(fees.get("dydx")).get("taker"))
    reported_spot = dec(_dict(fees.get("binance")).get("taker"))
    if reported_perp is not None:
        perp_fee = reported_perp
    if reported_spot is not None:
        carry = carry.model_copy(update={"spot_taker_fee_rate": reported_spot})
    scale = Decimal(carry.horizon_hours) * BPS
    entries: list[float] = []
    exits: list[float] = []
    sides = (-1, 1) if carry.allow_spot_short else (-1,)
    for side in sides:  # a short perp receives a positive rate, a long one a negative rate
        costs = carry_economics(Decimal(0), side, carry, perp_fee)
        entries.append(float(-side * (carry.entry_threshold_bps - costs.net_open_bps) / scale))
        exits.append(float(-side * (carry.exit_threshold_bps - costs.net_stay_bps) / scale))
    return tuple(entries), tuple(exits)


def thresholds_from(settings: Settings | None, fees: Any = None) -> Thresholds:
    """The carry edges (see `carry_rates`) and the watchdog's limits, from the running config."""
    if settings is None:
        return Thresholds()
    entries, exits = carry_rates(settings, fees)
    w = settings.watchdog
    watchdog = {
        "chain_head_age": (w.head_stall_degraded_secs, w.head_stall_critical_secs, "s"),
        "block_interval": (w.block_interval_degraded_secs, None, "s"),
        "indexer_lag": (float(w.indexer_lag_degraded_blocks), float(w.indexer_lag_critical_blocks), "blocks"),
        "error_rate": (w.error_rate_degraded, w.error_rate_critical, "ratio"),
        "feed:": (w.feed_stale_degraded_secs, w.feed_stale_critical_secs, "s"),
        "withdrawal_gating": (1.0, None, "blocks"),
        "withdrawal_capacity": (float(w.min_withdrawal_capacity_usd), None, "usd"),
    }
    return Thresholds(tuple(entries), tuple(exits), watchdog)


class StatusHistory:
    """Samples the status every `interval_secs` into two bounded tiers; reads the store's markers."""

    name = "dashboard_history"

    def __init__(self, status_fn: StatusFn, clock: Clock, interval_secs: float = HISTORY_INTERVAL_SECS,
                 window_secs: float = FINE_WINDOW_SECS, store: Store | None = None,
                 settings: Settings | None = None, coarse_window_secs: float = COARSE_WINDOW_SECS,
                 store_refresh_secs: float = STORE_REFRESH_SECS) -> None:
        self._status_fn = status_fn
        self._clock = clock
        self._interval_secs = interval_secs
        self._window_ns = int(window_secs * NS_PER_SEC)
        self._coarse_window_ns = int(coarse_window_secs * NS_PER_SEC)
        self.samples: deque[Sample] = deque(maxlen=int(window_secs / interval_secs) + 2)
        self.coarse: deque[Sample] = deque(maxlen=int(coarse_window_secs / COARSE_INTERVAL_SECS) + 2)
        self._store = store
        self._store_read_ns: int | None = None
        self._store_refresh_ns = int(store_refresh_secs * NS_PER_SEC)
        self.markers: list[Marker] = []
        self.payments: list[Payment] = []
        self.settings = settings
        self.thresholds = thresholds_from(settings)

    async def run(self) -> None:
        while True:
            self.record(self._status_fn())
            await self._clock.sleep(self._interval_secs)

    def record(self, status: dict[str, Any]) -> Sample:
        """Append a sample taken from `status` now; drop samples older than each tier's window."""
        now = self._clock.now_ns()
        sample = sample_from_status(status, now)
        self.samples.append(sample)
        while self.samples and now - self.samples[0].ts_ns > self._window_ns:
            self.samples.popleft()
        if not self.coarse or now - self.coarse[-1].ts_ns >= COARSE_INTERVAL_SECS * NS_PER_SEC:
            self.coarse.append(sample)
        while self.coarse and now - self.coarse[0].ts_ns > self._coarse_window_ns:
            self.coarse.popleft()
        if self._store is not None and (self._store_read_ns is None
                                        or now - self._store_read_ns >= self._store_refresh_ns):
            self.refresh_store(now)
        return sample

    def refresh_store(self, now_ns: int) -> None:
        """Reload the decision markers and funding payments (bounded, oldest first)."""
        if self._store is None:
            return
        self._store_read_ns = now_ns
        self.markers = [marker_from_record(r) for r in reversed(self._store.decisions(limit=MAX_DECISIONS))]
        self.payments = [Payment(p.ts_event, p.market, float(p.rate), float(p.amount))
                         for p in self._store.funding_payments()[-MAX_PAYMENTS:]]

    def as_json(self) -> dict[str, Any]:
        """The last 24 h for terminal clients (`perpbot watch`): column names and rows, oldest first."""
        rows = self.series(max_points=JSON_MAX_POINTS, range_secs=RANGES["24h"])
        return {"interval_secs": self._interval_secs, "columns": list(SCALAR_COLUMNS),
                "rows": [[getattr(s, c) for c in SCALAR_COLUMNS] for s in rows]}

    def series(self, live: Sample | None = None, max_points: int = MAX_CHART_POINTS,
               range_secs: float | None = None) -> list[Sample]:
        """At most `max_points` samples over the last `range_secs` (None: everything kept), evenly
        thinned, oldest first, ending with `live` if given."""
        now = live.ts_ns if live is not None else self._clock.now_ns()
        start = None if range_secs is None else now - int(range_secs * NS_PER_SEC)
        fine = list(self.samples)
        step_ns = int(self._interval_secs * NS_PER_SEC)
        covers_range = start is not None and fine and fine[0].ts_ns <= start + step_ns
        if fine and (covers_range or self.coarse[0].ts_ns >= fine[0].ts_ns):
            points = fine  # the fine tier holds the whole range, or everything there is
        else:  # one a minute throughout (evenly spaced), then the samples since the last of those
            last_coarse = self.coarse[-1].ts_ns if self.coarse else 0
            points = list(self.coarse) + [s for s in fine if s.ts_ns > last_coarse]
        if start is not None:
            points = [s for s in points if s.ts_ns >= start]
        return thin(points, max_points - 1) + ([live] if live is not None else [])


def thin(points: list[Any], max_points: int) -> list[Any]:
    """Evenly spaced picks, keeping the first and the last."""
    if len(points) <= max_points:
        return points
    step = (len(points) - 1) / (max_points - 1)
    return [points[round(i * step)] for i in range(max_points)]


def marker_from_record(record: Any) -> Marker:
    flags = record.flags if isinstance(record.flags, dict) else {}
    plan = record.plan if isinstance(record.plan, dict) else {}
    tripped = tuple(n for n in FLAG_NAMES if isinstance(flags.get(n), dict) and flags[n].get("tripped"))
    target = dec(plan.get("target_after"))
    return Marker(record.ts_ns, record.market, str(record.reason), str(plan.get("summary") or ""),
                  tripped, None if target is None else float(target))


def marker_from_status(market: str, decision: Any) -> Marker | None:
    """The live `last_decision` of a market (it may be newer than the last store read)."""
    if not isinstance(decision, dict) or not isinstance(decision.get("ts_ns"), int):
        return None
    target = dec(decision.get("target"))
    summary = decision.get("summary")
    return Marker(decision["ts_ns"], market, str(decision.get("reason", "")),
                  summary if isinstance(summary, str) else json.dumps(decision.get("plan")),
                  tuple(str(t) for t in decision.get("tripped") or ()),
                  None if target is None else float(target))


def _leg_notionals(market: dict[str, Any]) -> Iterable[float]:
    perp = _notional(market.get("position"), market.get("oracle_price") or market.get("mid"))
    if perp is not None:
        yield perp
    spot = _dict(market.get("spot"))
    spot_notional = _notional(spot.get("position"), spot.get("mid"))
    if spot_notional is not None:
        yield spot_notional



def _notional(size: Any, price: Any) -> float | None:
    a, b = _finite(size), _finite(price)
    return None if a is None or b is None else a * b


def _float(value: Any) -> float:
    number = _finite(value)
    return 0.0 if number is None else number


def _finite(value: Any) -> float | None:
    """A status number as a chartable float; None for missing, non-finite or absurd values."""
    number = dec(value)
    if number is None or not number.is_finite() or abs(number) > CHARTABLE_MAX:
        return None
    return float(number)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
