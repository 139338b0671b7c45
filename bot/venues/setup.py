"""Open the perpetual venue the settings ask for: market data, execution, books and specs.

| network | sim.mode    | market data                           | execution (paper / live)         |
|---------|-------------|---------------------------------------|----------------------------------|
| sim     | in_process  | SimFeed over SimMarket (no sockets)   | PaperVenue / (refused by config) |
| sim     | protocol    | dYdX adapter on the embedded simulator | PaperVenue / dYdX adapter        |
|         |             | (or a running `perpbot sim` when the  |                                  |
|         |             | [dydx] endpoints are set)             |                                  |
| testnet, mainnet | -  | dYdX adapter on the public indexer    | PaperVenue / dYdX adapter        |

The carry sleeve's spot hedge leg (`open_hedge`):

| network | sim.mode   | spot market data                          | execution (paper / live)            |
|---------|------------|-------------------------------------------|-------------------------------------|
| sim     | in_process | SimMarket spot books in the same SimFeed  | PaperVenue "paper_spot" / -         |
| sim     | protocol   | Binance adapter on the embedded simulator | PaperVenue "paper_spot" / Binance   |
|         |            | (external `perpbot sim`: the [binance]    | adapter (embedded: its test keys)   |
|         |            | endpoints; unset: no spot leg)            |                                     |
| testnet, mainnet | - | Binance adapter on the [binance] endpoints | PaperVenue "paper_spot" / Binance |
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import structlog
from pydantic import SecretStr

from bot.accounts import AccountBook
from bot.book import OrderBook
from bot.clock import Clock
from bot.config import Settings
from bot.domain import MarketSpec
from bot.errors import ConfigError
from bot.sim.market import SimMarket
from bot.telemetry import Metrics
from bot.venues.binance.account_state import BinanceAccount
from bot.venues.binance.adapter import BinanceVenue, build_venue
from bot.venues.binance.config import BinanceSettings
from bot.venues.binance.key_check import check_key
from bot.venues.dydx.account_state import DydxAccount
from bot.venues.dydx.adapter import DydxVenue
from bot.venues.dydx.credentials import dydx_signer, node_gateway, refuse_owner_key_on_mainnet
from bot.venues.dydx.indexer_rest import IndexerRest
from bot.venues.paper.adapter import PaperVenue
from bot.venues.paper.fills import FeeSchedule
from bot.venues.ports import AccountSource, ExecutionVenue
from bot.venues.sim.feed import SimFeed, default_params
from bot.venues.start_retry import retry_start

log = structlog.get_logger("setup")


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
    sim_accounts: dict[str, Any] = field(default_factory=dict)  # the embedded simulator's test keys
    start_events: list[Any] = field(default_factory=list)  # market status/params read over REST at start


@dataclass
class HedgeVenue:
    """The carry sleeve's spot leg: its books and specs, where its orders go, its market data."""

    execution: ExecutionVenue
    specs: dict[str, MarketSpec]
    books: dict[str, OrderBook]
    paper: PaperVenue | None  # paper trading: fills against `books`, must see spot trades
    market_data: BinanceVenue | None = None  # None: spot events arrive with the perp feed
    status: dict[str, Any] = field(default_factory=dict)
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
    # Spot books step first: the perp's first event (and the start-up audit it triggers) then
    # sees the hedge's book, so a carry the audit should open is not missed for an hour.
    feed = SimFeed({**spots, **perps}, clock, settings.sim.step_interval_secs)
    specs = {t: m.spec() for t, m in perps.items()}
    books = {t: OrderBook(t) for t in specs}
    paper = _paper(settings, books, clock)
    return PerpVenue(feed, paper, specs, books, paper, spot_markets=spots,
                     status={"sim": {"mode": "in_process", "seed": settings.sim.seed}})


async def open_dydx(settings: Settings, metrics: Metrics, clock: Clock) -> PerpVenue:
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
    missing = [k for k, v in endpoints.items() if not v]
    if missing:
        raise ConfigError(f"dydx.{missing[0]}", f"no endpoint for network {settings.network!r}")
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
                      long_term_secs=settings.dydx.long_term_secs)
    closers.insert(0, venue.close)
    specs = await retry_start("dydx markets", venue.load_markets, settings.start_retry_secs)
    books = {t: OrderBook(t) for t in specs}
    venue.use_books(books)
    paper = _paper(settings, books, clock) if settings.trading == "paper" else None
    return PerpVenue(venue, paper or venue, specs, books, paper, services=services, status=status,
                     closers=closers, sim_accounts=sim_accounts, start_events=venue.market_status_events())


def sim_exchange_config(settings: Settings) -> Any:
    """The simulated chain's config from `[sim]`: block interval and the account's fee tier."""
    from bot.sim.exchange import ExchangeConfig

    return ExchangeConfig(block_interval_ns=int(settings.sim.block_interval_secs * 1e9),
                          maker_fee_rate=settings.sim.maker_fee_rate,
                          taker_fee_rate=settings.sim.taker_fee_rate)


def open_accounts(settings: Settings, perp: PerpVenue, hedge: HedgeVenue | None, metrics: Metrics,
                  clock: Clock) -> AccountBook | None:
    """Live trading: the venues' own accounts (equity, margin, fees) for decisions and status.

    None in paper trading, where the paper venue's configured equity and fees are the truth.
    """
    if settings.trading != "live":
        return None
    sources: list[AccountSource] = []
    venue = perp.execution
    if isinstance(venue, DydxVenue) and venue.account is not None:
        chain = venue.gateway.chain_queries() if venue.gateway is not None else None
        sources.append(DydxAccount(venue.rest, venue.account[0], venue.account[1], chain))
    if hedge is not None and isinstance(hedge.execution, BinanceVenue):
        sources.append(BinanceAccount(hedge.execution))
    w = settings.watchdog
    return AccountBook(sources, metrics, clock, poll_secs=w.account_poll_secs)


def _spot_paper(settings: Settings, books: dict[str, OrderBook], clock: Clock) -> PaperVenue:
    carry = settings.strategy.carry
    venue = PaperVenue(books, FeeSchedule(carry.spot_maker_fee_rate, carry.spot_taker_fee_rate), clock,
                       settings.sim.funding_interval_secs)
    venue.name = "paper_spot"
    return venue


async def open_hedge(settings: Settings, perp: PerpVenue, metrics: Metrics,
                     clock: Clock) -> HedgeVenue | None:
    """The spot hedge venue for the settings (table above); None when there is no spot leg."""
    spot_markets = settings.hedged_spot_markets()
    if not spot_markets:
        return None
    if perp.spot_markets:  # in process: the simulated spot books ride on the perp feed
        specs = {t: m.spec() for t, m in perp.spot_markets.items()}
        books = {t: OrderBook(t) for t in specs}
        paper = _spot_paper(settings, books, clock)
        return HedgeVenue(paper, specs, books, paper,
                          status={"venue": paper.name, "market_data": "in_process"})
    binance, keys = _binance_endpoints(settings, perp)
    if binance is None:
        log.warning("hedge_venue_not_configured", reason="network sim with an external simulator: "
                    "set [binance] rest_url/ws_url to its binance_rest/binance_ws for a spot leg")
        return None
    unknown = [m for m in spot_markets if m not in binance.symbols]
    if unknown:
        raise ConfigError(f"binance.symbols.{unknown[0]}", "a hedged spot market has no Binance symbol")
    binance = binance.model_copy(update={"symbols": {m: binance.symbols[m] for m in spot_markets}})
    live = settings.trading == "live"
    if live and keys is None:
        raise ConfigError("binance_api_key", "live trading needs PERPBOT_BINANCE_API_KEY and _SECRET")
    venue = build_venue(binance, metrics, api_key=keys[0] if live and keys else None,
                        api_secret=keys[1] if live and keys else None, clock=clock)
    key_status = None
    try:
        if live:
            key_status = await retry_start("binance key", lambda: check_key(
                venue.rest, network=settings.network, allow_withdraw=settings.allow_withdraw_key == "yes"),
                settings.start_retry_secs)
        specs = await retry_start("binance markets", venue.load_markets, settings.start_retry_secs)
    except BaseException:
        await venue.close()
        raise
    books = {t: OrderBook(t) for t in specs}
    venue.use_books(books)
    paper = None if live else _spot_paper(settings, books, clock)
    status = {"venue": venue.name if live else "paper_spot", "market_data": "binance",
              "rest_url": binance.rest_url, **({"key": key_status} if key_status else {})}
    return HedgeVenue(venue if live else paper, specs, books, paper, market_data=venue,  # type: ignore[arg-type]
                      status=status, closers=[venue.close])


def _binance_endpoints(settings: Settings, perp: PerpVenue
                       ) -> tuple[BinanceSettings | None, tuple[SecretStr, SecretStr] | None]:
    """Binance settings with the endpoints to use, and the keys for live trading (None: none)."""
    binance = settings.binance
    keys = None
    if settings.binance_api_key is not None and settings.binance_api_secret is not None:
        keys = (settings.binance_api_key, settings.binance_api_secret)
    sim = perp.status.get("sim") or {}
    if sim.get("mode") == "embedded":
        binance = binance.model_copy(update={"rest_url": sim["binance_rest"], "ws_url": sim["binance_ws"],
                                             "min_session_secs": 0.5})
        test_keys = perp.sim_accounts.get("binance") or {}
        if keys is None and test_keys:
            keys = (SecretStr(test_keys["api_key"]), SecretStr(test_keys["api_secret"]))
        return binance, keys
    if settings.network == "sim" and binance.rest_url == BinanceSettings().rest_url:
        return None, keys  # an external simulator without its Binance endpoints: never the real venue
    return binance, keys
