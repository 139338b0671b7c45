"""Open the perpetual venue the settings ask for: market data, execution, books and specs.

| network | sim.mode    | market data                           | execution (paper / live)         |
|---------|-------------|---------------------------------------|----------------------------------|
| sim     | in_process  | SimFeed over SimMarket (no sockets)   | PaperVenue / (refused by config) |
| sim     | protocol    | dYdX adapter on the embedded simulator | PaperVenue / dYdX adapter        |
|         |             | (or a running `perpbot sim` when the  |                                  |
|         |             | [dydx] endpoints are set)             |                                  |
| testnet, mainnet | -  | dYdX adapter on the public indexer    | PaperVenue / dYdX adapter        |
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from bot.book import OrderBook
from bot.clock import Clock
from bot.config import Settings
from bot.domain import MarketSpec
from bot.errors import ConfigError
from bot.sim.market import SimMarket
from bot.telemetry import Metrics
from bot.venues.dydx.adapter import DydxVenue
from bot.venues.dydx.indexer_rest import IndexerRest
from bot.venues.dydx.node import NodeGateway
from bot.venues.paper.adapter import PaperVenue
from bot.venues.paper.fills import FeeSchedule
from bot.venues.ports import ExecutionVenue
from bot.venues.sim.feed import SimFeed, default_params


@dataclass
class PerpVenue:
    """What the app wires: a market-data service, where orders go, and the shared books."""

    market_data: Any  # MarketData: has `name` and `async run(sink)`
    execution: ExecutionVenue
    specs: dict[str, MarketSpec]
    books: dict[str, OrderBook]
    paper: PaperVenue | None  # present in paper trading: must see every market event
    spot_markets: dict[str, SimMarket] = field(default_factory=dict)  # in-process spot books
    services: list[Any] = field(default_factory=list)  # extra long-lived services (the simulator)
    status: dict[str, Any] = field(default_factory=dict)  # `account` and `sim` for status
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def _paper(settings: Settings, books: dict[str, OrderBook], clock: Clock) -> PaperVenue:
    fees = FeeSchedule(settings.paper.maker_fee_rate, settings.paper.taker_fee_rate)
    return PaperVenue(books, fees, clock, settings.sim.funding_interval_secs)


def open_in_process(settings: Settings, clock: Clock) -> PerpVenue:
    """The in-process simulated market, plus one spot market per hedged perp for the carry leg."""
    start_ns = clock.now_ns()
    perps = {t: SimMarket(default_params(t, settings.sim.block_interval_secs), settings.sim.seed + i,
                          start_ns) for i, t in enumerate(settings.markets)}
    # Same params and seed as its perp, stepped at the same times: spot follows the perp's
    # price path exactly (zero basis). Spot has no oracle and no funding.
    carry = settings.strategy.carry
    spots = {carry.spot_markets[t]: SimMarket(replace(perps[t].params, ticker=carry.spot_markets[t]),
                                              settings.sim.seed + i, start_ns)
             for i, t in enumerate(settings.markets) if carry.enabled and t in carry.spot_markets}
    feed = SimFeed({**perps, **spots}, clock, settings.sim.step_interval_secs)
    specs = {t: m.spec() for t, m in perps.items()}
    books = {t: OrderBook(t) for t in specs}
    paper = _paper(settings, books, clock)
    return PerpVenue(feed, paper, specs, books, paper, spot_markets=spots,
                     status={"sim": {"mode": "in_process", "seed": settings.sim.seed}})


async def open_dydx(settings: Settings, metrics: Metrics, clock: Clock) -> PerpVenue:
    """The dYdX adapter on the simulator's protocol servers or on a public network."""
    services: list[Any] = []
    closers: list[Callable[[], Awaitable[None]]] = []
    endpoints = settings.dydx.endpoints(settings.network)
    mnemonic = settings.dydx_mnemonic.get_secret_value() if settings.dydx_mnemonic else None
    status: dict[str, Any] = {}
    if settings.network == "sim" and not settings.dydx.indexer_rest:
        from bot.sim.runner import Simulator  # imported here: only this mode needs the servers

        sim = Simulator(seed=settings.sim.seed, clock=clock, markets=settings.markets,
                        step_secs=min(settings.sim.step_interval_secs, 0.05))
        sim_endpoints = await sim.start()
        services.append(sim)
        closers.append(sim.stop)
        endpoints = {key: sim_endpoints[key] for key in ("indexer_rest", "indexer_ws", "node_grpc",
                                                          "chain_id")}
        mnemonic = mnemonic or sim_endpoints["accounts"]["dydx"]["mnemonic"]
        status["sim"] = {"mode": "embedded", "seed": settings.sim.seed,
                         **{k: v for k, v in sim_endpoints.items() if k != "accounts"}}
    elif settings.network == "sim":
        status["sim"] = {"mode": "external", **endpoints}
    missing = [k for k, v in endpoints.items() if not v]
    if missing:
        raise ConfigError(f"dydx.{missing[0]}", f"no endpoint for network {settings.network!r}")
    gateway = None
    account = None
    if settings.trading == "live":
        if mnemonic is None:
            raise ConfigError("dydx_mnemonic", "live trading needs PERPBOT_DYDX_MNEMONIC")
        gateway = NodeGateway(
            str(endpoints["node_grpc"]), str(endpoints["chain_id"]), mnemonic,
            subaccount_number=settings.dydx.subaccount_number, owner_address=settings.dydx.address,
            authenticator_ids=list(settings.dydx.authenticator_ids) or None,
            secure=settings.network != "sim", timeout_secs=settings.dydx.node_timeout_secs,
            broadcasts_per_sec=settings.dydx.broadcasts_per_sec,
        )
        account = (gateway.owner, settings.dydx.subaccount_number)
        status["dydx_address"] = gateway.owner
    venue = DydxVenue(IndexerRest(str(endpoints["indexer_rest"])), str(endpoints["indexer_ws"]),
                      settings.markets, metrics, gateway=gateway, account=account,
                      gtb_offset_blocks=settings.dydx.gtb_offset_blocks,
                      long_term_secs=settings.dydx.long_term_secs)
    closers.insert(0, venue.close)
    specs = await venue.load_markets()
    books = {t: OrderBook(t) for t in specs}
    venue.use_books(books)
    paper = _paper(settings, books, clock) if settings.trading == "paper" else None
    return PerpVenue(venue, paper or venue, specs, books, paper, services=services, status=status,
                     closers=closers)
