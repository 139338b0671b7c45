"""What the engine keeps per market: book, position, estimators, flags, gate, targets, spot leg."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bot.book import OrderBook
from bot.clock import NS_PER_HOUR
from bot.config import Settings
from bot.domain import ZERO, MarketSpec, OracleUpdate, Position
from bot.history import MarketHistory
from bot.ledger import FundingLedger
from bot.rules.estimators import EwmaVol, FundingForecast, FundingTrend, RollingMedian, seed_vol
from bot.rules.flags import Flags
from bot.rules.gate import GateState
from bot.strategy.carry import CarryWatch, FundingMedian, entry_trend_for
from bot.strategy.sizing import Target
from bot.strategy.sleeves import SleeveBook
from bot.strategy.volscale import SizingVol


@dataclass(slots=True)
class SpotLeg:
    """The spot hedge of one perp market on the hedge venue."""

    spec: MarketSpec
    book: OrderBook
    position: Position
    target: Decimal = ZERO

    @property
    def ticker(self) -> str:
        return self.spec.ticker


@dataclass(slots=True)
class MarketState:
    spec: MarketSpec
    book: OrderBook
    position: Position
    oracle_price: Decimal | None = None
    funding: FundingForecast = field(default_factory=FundingForecast)
    vol_short: EwmaVol = field(default_factory=lambda: EwmaVol(half_life_secs=60))
    vol_long: EwmaVol = field(default_factory=lambda: EwmaVol(half_life_secs=900))
    # Sizing vol (hourly returns, half-life in days) and the funding trend: set by the engine.
    vol_sizing: EwmaVol = field(default_factory=lambda: EwmaVol(7 * 86400, 3600))
    funding_trend: FundingTrend = field(default_factory=lambda: FundingTrend(168))
    entry_trend: FundingTrend | FundingMedian = field(default_factory=lambda: FundingTrend(168))
    # Both kept across restarts in the store (bot.strategy_state, by the decider).
    carry_watch: CarryWatch = field(default_factory=CarryWatch)
    thesis_held: Decimal | None = None  # the thesis's share at the last refresh (signed; re-risk gate)
    depth_median: RollingMedian = field(default_factory=lambda: RollingMedian(300))
    ledger: FundingLedger = field(default_factory=FundingLedger)
    spot: SpotLeg | None = None
    flags: Flags | None = None
    gate: GateState = field(default_factory=GateState)
    target: Decimal = ZERO
    carry_side: int = 0  # the carry sleeve's committed state: 0 closed, -1 short perp, +1 long
    carry_size: Decimal = ZERO  # and its base size while open (held, not re-sized)
    sleeves: SleeveBook | None = None
    sizing: Target | None = None
    pending_spot_target: Decimal = ZERO
    last_decision: dict[str, Any] | None = None
    last_eval_ns: int = 0
    last_target_ns: int = 0
    depth: Decimal = ZERO  # size within `rules.liquidity_depth_bps` of mid at the last sample
    last_depth_sample_ns: int = 0
    last_event_ns: int = 0

    @property
    def mark(self) -> Decimal | None:
        return self.oracle_price or self.book.mid()


def build_markets(settings: Settings, specs: Mapping[str, MarketSpec], books: Mapping[str, OrderBook],
                  spot_specs: Mapping[str, MarketSpec], spot_books: Mapping[str, OrderBook] | None,
                  ) -> tuple[dict[str, MarketState], dict[str, MarketState]]:
    """Each market's state (on its shared book, when given), and with `spot_books` (a spot hedge
    venue runs) the spot legs of the configured hedges: (markets, spot ticker -> its perp market)."""
    markets = {t: _new_market(settings, t, spec, books.get(t)) for t, spec in specs.items()}
    by_spot: dict[str, MarketState] = {}
    if spot_books is None:
        return markets, by_spot
    for ticker, state in markets.items():
        spot_ticker = settings.strategy.carry.spot_markets.get(ticker)
        if spot_ticker is not None and spot_ticker in spot_specs:
            book = spot_books.get(spot_ticker) or OrderBook(spot_ticker)
            state.spot = SpotLeg(spot_specs[spot_ticker], book, Position(spot_ticker))
            by_spot[spot_ticker] = state
    return markets, by_spot


def _new_market(settings: Settings, ticker: str, spec: MarketSpec, book: OrderBook | None) -> MarketState:
    carry = settings.strategy.carry
    return MarketState(spec, book or OrderBook(ticker), Position(ticker),
                       depth_median=RollingMedian(settings.rules.liquidity_median_window_secs),
                       vol_sizing=SizingVol(settings.strategy.vol_half_life_days,
                                            settings.strategy.vol_baseline_half_life_days,
                                            settings.strategy.stretch_half_life_days),
                       funding_trend=FundingTrend(carry.signal_half_life_hours),
                       entry_trend=entry_trend_for(carry))


def sample_depth(state: MarketState, now_ns: int, depth_bps: Decimal) -> None:
    """Sample the size near mid into the market's rolling median."""
    state.depth = state.book.depth_within_bps(depth_bps)
    state.depth_median.add(state.depth)
    state.last_depth_sample_ns = now_ns


def fold_oracle(state: MarketState, event: OracleUpdate, now_ns: int) -> None:
    """An oracle update moves the mark, the funding forecast and trends, and the vol estimators."""
    price = event.oracle_price
    state.oracle_price = price
    state.funding.on_predicted(event.next_funding_rate, event.ts_event)
    if state.funding.last_realised is not None and state.funding.last_folded_hour is not None:
        state.funding_trend.on_settled(state.funding.last_realised, state.funding.last_folded_hour)
        state.entry_trend.on_settled(state.funding.last_realised, state.funding.last_folded_hour)
    state.vol_short.update(price, now_ns)
    state.vol_long.update(price, now_ns)
    state.vol_sizing.update(price, now_ns)


def seed_history(state: MarketState, history: MarketHistory) -> None:
    """Fold a market's venue history into its sizing vol and funding estimators (bot.history)."""
    seed_vol(state.vol_sizing, history.closes)
    # A rate effective at T settled the hour before T: label it by that hour, as the live
    # forecast labels the hour it settles.
    accrued = [(ts_ns - NS_PER_HOUR, rate) for ts_ns, rate in history.funding]
    state.funding_trend.seed(accrued)
    state.entry_trend.seed(accrued)
    for ts_ns, rate in sorted(accrued):
        state.funding.on_realised(rate, ts_ns // NS_PER_HOUR)
