"""The dYdX leg from settings: on the embedded protocol simulator, a running `perpbot sim`, or a
public network; market data always, execution when trading live."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot.book import OrderBook
from bot.clock import Clock
from bot.config import Settings
from bot.errors import ConfigError
from bot.telemetry import Metrics
from bot.venues.dydx.account_state import DydxAccount
from bot.venues.dydx.adapter import DydxVenue
from bot.venues.dydx.credentials import dydx_signer, node_gateway, refuse_owner_key_on_mainnet
from bot.venues.dydx.indexer_rest import IndexerRest
from bot.venues.leg import Leg
from bot.venues.paper.factory import perp_paper
from bot.venues.start_retry import retry_start


def _endpoints_or_exit(endpoints: dict[str, Any], network: str) -> None:
    missing = [k for k, v in endpoints.items() if not v]
    if missing:
        raise ConfigError(f"dydx.{missing[0]}", f"no endpoint for network {network!r}")


async def open_dydx(settings: Settings, metrics: Metrics, clock: Clock) -> Leg:
    """The dYdX adapter on the simulator's protocol servers or on a public network."""
    services: list[Any] = []
    closers: list[Callable[[], Awaitable[None]]] = []
    if settings.trading == "live":
        refuse_owner_key_on_mainnet(settings)
    endpoints = settings.dydx.endpoints(settings.network)
    sim_mnemonic = None
    status: dict[str, Any] = {}
    sim_accounts: dict[str, Any] = {}
    if settings.network == "sim" and not settings.dydx.indexer_rest:
        from bot.sim.runner import Simulator  # imported here: only this mode needs the servers
        from bot.venues.sim.factory import sim_exchange_config

        sim = Simulator(seed=settings.sim.seed, clock=clock, markets=settings.markets,
                        step_secs=min(settings.sim.step_interval_secs, 0.05),
                        config=sim_exchange_config(settings),
                        account_equity_usd=settings.sim.account_equity_usd)
        sim_endpoints = await sim.start()
        services.append(sim)
        closers.append(sim.stop)
        endpoints = {key: sim_endpoints[key] for key in ("indexer_rest", "indexer_ws", "node_grpc",
                                                          "chain_id")}
        sim_mnemonic = sim_endpoints["accounts"]["dydx"]["mnemonic"]
        sim_accounts = sim_endpoints["accounts"]
        status["sim"] = {"mode": "embedded", "seed": settings.sim.seed,
                         **{k: v for k, v in sim_endpoints.items() if k != "accounts"}}
    elif settings.network == "sim":
        status["sim"] = {"mode": "external", **endpoints}
    _endpoints_or_exit(endpoints, settings.network)
    gateway = None
    account = None
    if settings.trading == "live":
        signer = dydx_signer(settings, sim_mnemonic)
        if signer is None:
            raise ConfigError("dydx_trading_mnemonic", "live trading needs PERPBOT_DYDX_TRADING_MNEMONIC")
        gateway = node_gateway(settings, endpoints, signer)
        account = (gateway.owner, settings.dydx.subaccount_number)
        status["dydx_account"] = {"address": gateway.owner, "key": signer.key}
    venue = DydxVenue(IndexerRest(str(endpoints["indexer_rest"])), str(endpoints["indexer_ws"]),
                      settings.markets, metrics, gateway=gateway, account=account,
                      gtb_offset_blocks=settings.dydx.gtb_offset_blocks,
                      long_term_secs=settings.dydx.long_term_secs, clock=clock)
    closers.insert(0, venue.close)
    specs = await retry_start("dydx markets", venue.load_markets, settings.start_retry_secs)
    books = {t: OrderBook(t) for t in specs}
    venue.use_books(books)
    paper = perp_paper(settings, books, clock) if settings.trading == "paper" else None
    return Leg(venue, paper or venue, specs, books, paper, services=services, status=status,
               closers=closers, sim_accounts=sim_accounts, start_events=venue.market_status_events(),
               venue=venue)


def account_source(leg: Leg) -> DydxAccount | None:
    """The subaccount's equity, margin and fees as the venue reports them (live trading only)."""
    venue = leg.venue
    if not isinstance(venue, DydxVenue) or venue.account is None or leg.execution is not venue:
        return None
    chain = venue.gateway.chain_queries() if venue.gateway is not None else None
    return DydxAccount(venue.rest, venue.account[0], venue.account[1], chain)


def venue_for_kill(settings: Settings) -> DydxVenue:
    """The live dYdX venue `kill --direct` cancels and flattens on (the trading key when configured).

    Call only with a signer configured (`has_signer`): the latch is written before this runs.
    """
    endpoints = settings.dydx.endpoints(settings.network)
    _endpoints_or_exit(endpoints, settings.network)
    signer = dydx_signer(settings)
    assert signer is not None  # checked before the latch
    d = settings.dydx
    gateway = node_gateway(settings, endpoints, signer)
    return DydxVenue(IndexerRest(str(endpoints["indexer_rest"])), str(endpoints["indexer_ws"]),
                     settings.markets, Metrics(), gateway=gateway,
                     account=(gateway.owner, d.subaccount_number),
                     gtb_offset_blocks=d.gtb_offset_blocks, long_term_secs=d.long_term_secs)


def has_signer(settings: Settings) -> bool:
    """A key to sign cancels with (PERPBOT_DYDX_TRADING_MNEMONIC or PERPBOT_DYDX_MNEMONIC)."""
    return dydx_signer(settings) is not None
