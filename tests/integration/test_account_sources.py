"""The account sources and the market-status stream against the simulator's real-protocol servers,
with the real clients: the dYdX subaccount over indexer REST and its fee tier over the node's gRPC,
the Binance account (balances at the mid, commission) over signed REST, and a market status
change reaching a `v4_markets` subscriber as a MarketStatus event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from pydantic import SecretStr
from support.sim import running_simulator

from bot.book import OrderBook
from bot.domain import MarketEvent, MarketStatus, MarketStatusKind
from bot.sim.perp.records import ExchangeConfig
from bot.sim.runner import Simulator
from bot.telemetry import Metrics
from bot.venues.binance.account_state import BinanceAccount
from bot.venues.binance.adapter import build_venue
from bot.venues.binance.config import BinanceSettings
from bot.venues.dydx.account_state import DydxAccount
from bot.venues.dydx.adapter import DydxVenue
from bot.venues.dydx.chain import ChainQueries
from bot.venues.dydx.indexer_rest import IndexerRest


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    config = ExchangeConfig(maker_fee_rate=Decimal("0.00003"), taker_fee_rate=Decimal("0.00042"))
    async with running_simulator(seed=9, step_secs=0.02, config=config,
                                 account_equity_usd=Decimal("2345.67")) as simulator:
        yield simulator


async def test_dydx_account_is_the_funded_subaccount_with_the_node_fee_tier(sim: Simulator) -> None:
    endpoints = sim.endpoints()
    rest = IndexerRest(endpoints["indexer_rest"])
    chain = ChainQueries.connect(endpoints["node_grpc"], secure=False, timeout_secs=2)
    try:
        source = DydxAccount(rest, sim.accounts["dydx"]["address"], 0, chain)
        state = await source.read()
    finally:
        await rest.aclose()
        chain.close()
    assert state.venue == "dydx" and state.equity_usd == Decimal("2345.67")
    assert state.free_collateral_usd == Decimal("2345.67") and state.initial_margin_usd == 0
    assert state.balances == {"USDC": Decimal("2345.67")}
    assert state.fees is not None
    assert (state.fees.maker, state.fees.taker) == (Decimal("0.00003"), Decimal("0.00042"))
    assert state.fees.source == "dydx:fee_tier 1"


async def test_binance_account_values_balances_at_the_mid_with_the_account_commission(sim: Simulator) -> None:
    endpoints = sim.endpoints()
    keys = sim.accounts["binance"]
    settings = BinanceSettings().model_copy(update={"rest_url": endpoints["binance_rest"],
                                                    "ws_url": endpoints["binance_ws"],
                                                    "symbols": {"BTC-USDT": "BTCUSDT"}})
    venue = build_venue(settings, Metrics(), api_key=SecretStr(keys["api_key"]),
                        api_secret=SecretStr(keys["api_secret"]))
    try:
        specs = await venue.load_markets()
        books = {t: OrderBook(t) for t in specs}
        venue.use_books(books)
        book = await venue.rest.depth("BTCUSDT", 20)
        books["BTC-USDT"].apply_snapshot_levels([(b[0], b[1]) for b in book.bids],
                                                [(a[0], a[1]) for a in book.asks], 1)
        state = await BinanceAccount(venue).read()
    finally:
        await venue.close()
    mid = books["BTC-USDT"].mid()
    assert mid is not None
    expected = state.balances.get("USDT", Decimal(0)) + state.balances.get("BTC", Decimal(0)) * mid
    assert state.equity_usd == expected and state.equity_usd > 0
    assert state.fees is not None and state.fees.source == "binance:account"
    assert state.fees.taker == sim.spot.config.taker_commission_rate


async def test_a_status_change_reaches_the_feed_as_a_market_status_event(sim: Simulator) -> None:
    endpoints = sim.endpoints()
    venue = DydxVenue(IndexerRest(endpoints["indexer_rest"]), endpoints["indexer_ws"], ("BTC-USD",),
                      Metrics())
    await venue.load_markets()
    at_start = [(e.market, e.status) for e in venue.market_status_events() if isinstance(e, MarketStatus)]
    assert at_start == [("BTC-USD", MarketStatusKind.ACTIVE)]  # read over REST by load_markets
    venue.use_books({"BTC-USD": OrderBook("BTC-USD")})
    statuses = {MarketStatusKind.ACTIVE: asyncio.Event(), MarketStatusKind.CANCEL_ONLY: asyncio.Event()}

    def sink(event: MarketEvent) -> None:
        if isinstance(event, MarketStatus) and event.status in statuses:
            statuses[event.status].set()

    task = asyncio.create_task(venue.run(sink))
    try:
        async with asyncio.timeout(10):
            await statuses[MarketStatusKind.ACTIVE].wait()  # the v4_markets snapshot
            sim.exchange.set_market_status("BTC-USD", "CANCEL_ONLY")
            await statuses[MarketStatusKind.CANCEL_ONLY].wait()  # a `trading` update
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await venue.close()
