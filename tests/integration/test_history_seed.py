"""Estimators seeded from venue history at start: the simulator's indexer serves its past as
`/v4/candles` (1HOUR) and `/v4/historicalFunding`; the real dYdX adapter reads them and the engine
starts with a warm sizing volatility and funding trend instead of a blind one."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

from support.clock import ManualClock

from bot.book import OrderBook
from bot.config import load
from bot.domain import Position
from bot.engine import Engine, SpotLeg
from bot.execution.orders import OrderManager
from bot.history import MarketHistory, seed_engine, seed_vol_from_spot
from bot.sim.market import SimMarket
from bot.sim.runner import Simulator
from bot.store import Store
from bot.telemetry import Metrics
from bot.venues.binance.adapter import BinanceVenue
from bot.venues.binance.rest import BinanceRest
from bot.venues.dydx.adapter import DydxVenue
from bot.venues.dydx.indexer_rest import IndexerRest
from bot.venues.paper.adapter import PaperVenue
from bot.venues.paper.fills import FeeSchedule
from bot.venues.sim.feed import default_params


def _engine(tmp_path: Path, specs: dict, now_ns: int) -> Engine:  # type: ignore[type-arg]
    settings = load(None, env_file=None, state_dir=str(tmp_path), markets=list(specs),
                    strategy={"carry": {"enabled": False}})
    store = Store.open(tmp_path / "perpbot.sqlite")
    clock = ManualClock(now_ns)
    books = {t: OrderBook(t) for t in specs}
    fees = FeeSchedule(settings.paper.maker_fee_rate, settings.paper.taker_fee_rate)
    venue = PaperVenue(books, fees, clock)
    orders = OrderManager(venue, store, Metrics(), clock, settings.execution)
    return Engine(settings, specs, store, orders, Metrics(), clock, books)


async def test_a_start_reads_candles_and_funding_from_the_indexer(tmp_path: Path) -> None:
    sim = Simulator(seed=5, markets=("BTC-USD", "ETH-USD"))
    endpoints = await sim.start()
    venue = DydxVenue(IndexerRest(endpoints["indexer_rest"]), endpoints["indexer_ws"], ("BTC-USD", "ETH-USD"),
                      Metrics())
    try:
        specs = await venue.load_markets()
        history = await venue.hourly_history("BTC-USD", 720)
        assert len(history.closes) == 720 and len(history.funding) == 720
        times = [ts for ts, _ in history.closes]
        assert times == sorted(times, reverse=True)  # newest first, one bar per hour
        assert all(a - b == 3600 * 10**9 for a, b in itertools.pairwise(times))
        engine = _engine(tmp_path, specs, sim.clock.now_ns())
        state = engine.markets["BTC-USD"]
        assert engine.sizing_vol(state) is None and state.funding_trend.hours == 0  # blind
        seeded = await seed_engine(engine, venue, 720)
        assert seeded == {"BTC-USD": 720, "ETH-USD": 720}
        vol = engine.sizing_vol(state)
        assert vol is not None and 0.3 < vol < 3  # the simulated market's hourly vol, annualised
        assert state.funding_trend.hours == 720 and state.funding_trend.rate_1h > 0  # BTC funds longs
        assert state.funding.persistence_hours >= 0 and state.funding.hours_seen == 720
    finally:
        await venue.close()
        await sim.stop()


async def test_history_that_cannot_be_read_leaves_the_estimators_to_warm_up_live(tmp_path: Path) -> None:
    class Broken:
        async def hourly_history(self, market: str, hours: int) -> MarketHistory:
            raise OSError("indexer down")
    specs = {"BTC-USD": SimMarket(default_params("BTC-USD", 0.65), 1, 0).spec()}
    engine = _engine(tmp_path, specs, 10**18)
    assert await seed_engine(engine, Broken(), 720) == {}
    assert engine.sizing_vol(engine.markets["BTC-USD"]) is None


async def test_binance_klines_seed_a_cold_sizing_vol_from_the_spot_leg(tmp_path: Path) -> None:

    sim = Simulator(seed=9, markets=("BTC-USD",))
    endpoints = await sim.start()
    spot = BinanceVenue(BinanceRest(endpoints["binance_rest"]), endpoints["binance_ws"],
                        {"BTC-USDT": "BTCUSDT"}, Metrics())
    try:
        history = await spot.hourly_history("BTC-USDT", 720)
        assert len(history.closes) == 720 and history.funding == []
        times = [ts for ts, _ in history.closes]
        assert times == sorted(times) and times[-1] < sim.clock.now_ns()  # oldest first, all past
        bad = await spot.rest._read("GET", "/api/v3/klines", list, {"symbol": "BTCUSDT", "interval": "1h"})
        assert len(bad) == 500  # Binance's default limit
        specs = {"BTC-USD": SimMarket(default_params("BTC-USD", 0.65), 1, 0).spec()}
        engine = _engine(tmp_path, specs, sim.clock.now_ns())
        state = engine.markets["BTC-USD"]
        state.spot = SpotLeg(specs["BTC-USD"], OrderBook("BTC-USDT"), Position("BTC-USDT"))
        state.spot.spec = replace(state.spot.spec, ticker="BTC-USDT")
        assert engine.sizing_vol(state) is None
        assert await seed_vol_from_spot(engine, spot, 720) == {"BTC-USD": 720}
        assert engine.sizing_vol(state) is not None and state.funding_trend.hours == 0
    finally:
        await spot.close()
        await sim.stop()
