"""The venues for a settings object: the one place that knows which concrete venue serves which role.

Perp leg:

| network | sim.mode    | market data                           | execution (paper / live)         |
|---------|-------------|---------------------------------------|----------------------------------|
| sim     | in_process  | SimFeed over SimMarket (no sockets)   | PaperVenue / (refused by config) |
| sim     | protocol    | dYdX adapter on the embedded simulator | PaperVenue / dYdX adapter        |
|         |             | (or a running `perpbot sim` when the  |                                  |
|         |             | [dydx] endpoints are set)             |                                  |
| testnet, mainnet | -  | dYdX adapter on the public indexer    | PaperVenue / dYdX adapter        |

The carry sleeve's spot hedge leg:

| network | sim.mode   | spot market data                          | execution (paper / live)            |
|---------|------------|-------------------------------------------|-------------------------------------|
| sim     | in_process | SimMarket spot books in the same SimFeed  | PaperVenue "paper_spot" / -         |
| sim     | protocol   | Binance adapter on the embedded simulator | PaperVenue "paper_spot" / Binance   |
|         |            | (external `perpbot sim`: the [binance]    | adapter (embedded: its test keys)   |
|         |            | endpoints; unset: no spot leg)            |                                     |
| testnet, mainnet | - | Binance adapter on the [binance] endpoints | PaperVenue "paper_spot" / Binance |

In paper trading each leg's market data is wrapped in a PaperFeed, so its paper venue sees every
event after the engine: the daemon wires paper and live alike. Concrete venues are imported when
they are needed (a `kill --direct` must not pay for adapters it does not use).
"""

from __future__ import annotations

import asyncio
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.clock import Clock
from bot.config import Settings
from bot.telemetry import Metrics
from bot.venues.leg import Leg
from bot.venues.ports import AccountSource, HealthProbes

if TYPE_CHECKING:
    from bot.accounts import AccountBook
    from bot.book import OrderBook
    from bot.venues.paper.adapter import PaperVenue


@dataclass
class Venues:
    """Both legs as the composition root wires them (`hedge` None: no spot leg)."""

    perp: Leg
    hedge: Leg | None

    @property
    def legs(self) -> list[Leg]:
        return [self.perp] + ([self.hedge] if self.hedge is not None else [])

    async def close(self) -> None:
        for leg in ([self.hedge] if self.hedge is not None else []) + [self.perp]:
            await leg.close()


async def open_perp(settings: Settings, metrics: Metrics, clock: Clock) -> Leg:
    """The perp leg (table above); paper wrapping happens in `open_venues`."""
    if settings.network == "sim" and settings.sim.mode == "in_process":
        from bot.venues.sim.factory import open_in_process

        return open_in_process(settings, clock)
    from bot.venues.dydx.factory import open_dydx

    return await open_dydx(settings, metrics, clock)


async def open_hedge(settings: Settings, perp: Leg, metrics: Metrics, clock: Clock) -> Leg | None:
    """The spot hedge leg for the settings (table above); None when there is no spot leg."""
    if not settings.hedged_spot_markets():
        return None
    if perp.spot_markets:  # in process: the simulated spot books ride on the perp feed
        from bot.venues.sim.factory import in_process_hedge

        return in_process_hedge(settings, perp, clock)
    from bot.venues.binance.factory import open_binance

    return await open_binance(settings, perp, metrics, clock)


async def open_venues(settings: Settings, metrics: Metrics, clock: Clock) -> Venues:
    """Open both legs and put their paper venues behind their market data."""
    perp = await open_perp(settings, metrics, clock)
    try:
        hedge = await open_hedge(settings, perp, metrics, clock)
    except BaseException:
        await perp.close()
        raise
    _wrap_paper(perp, hedge)
    return Venues(perp, hedge)


def _wrap_paper(perp: Leg, hedge: Leg | None) -> None:
    from bot.venues.paper.feed import PaperFeed

    riding = hedge if hedge is not None and hedge.market_data is None else None  # spot on the perp feed
    spot_paper = riding.paper if riding is not None else None
    if perp.market_data is not None and (perp.paper is not None or spot_paper is not None):
        perp.market_data = PaperFeed(perp.market_data, perp.paper, spot_paper,
                                     riding.books if riding is not None else ())
    if hedge is not None and hedge.market_data is not None and hedge.paper is not None:
        hedge.market_data = PaperFeed(hedge.market_data, None, hedge.paper, hedge.books)


def open_accounts(settings: Settings, venues: Venues, metrics: Metrics, clock: Clock) -> AccountBook | None:
    """Live trading: the venues' own accounts (equity, margin, fees) for decisions and status.

    None in paper trading, where the paper venue's configured equity and fees are the truth.
    """
    if settings.trading != "live":
        return None
    from bot.accounts import AccountBook
    from bot.venues.binance.factory import account_source as binance_account
    from bot.venues.dydx.factory import account_source as dydx_account

    sources: list[AccountSource] = []
    if (dydx := dydx_account(venues.perp)) is not None:
        sources.append(dydx)
    if venues.hedge is not None and (spot := binance_account(venues.hedge)) is not None:
        sources.append(spot)
    return AccountBook(sources, metrics, clock, poll_secs=settings.watchdog.account_poll_secs)


def open_health(settings: Settings, perp: Leg) -> HealthProbes:
    """What the watchdog samples for the perp leg (nothing for the in-process simulator)."""
    if perp.venue is None:
        return HealthProbes()
    from bot.venues.dydx.probes import health_probes

    return health_probes(settings, perp)


async def open_market_data(settings: Settings, clock: Clock) -> Leg:
    """`perpbot record`: the perp leg's market data only (no keys, no paper venue)."""
    return await open_perp(settings.model_copy(update={"trading": "paper"}), Metrics(), clock)


# ---- `kill --direct`: the live venues, without the daemon ---------------------------------------


def kill_signer_missing(settings: Settings) -> bool:
    """True when no dYdX key is configured to sign the cancels with."""
    from bot.venues.dydx.credentials import dydx_signer

    return dydx_signer(settings) is None


def perp_for_kill(settings: Settings) -> Any:
    """The live dYdX venue with the configured key (check `kill_signer_missing` first)."""
    from bot.venues.dydx.factory import venue_for_kill

    return venue_for_kill(settings)


def spot_for_kill(settings: Settings) -> tuple[Any, Any]:
    """The hedge venue's settings (hedged symbols only) and keys; (None, None) without a spot leg."""
    from bot.venues.binance.kill import settings_for_kill

    return settings_for_kill(settings)


async def open_spot_for_kill(spot: Any, keys: Any) -> Any:
    """The live Binance venue for `spot_for_kill`'s settings and keys (markets not loaded yet)."""
    # The adapter's imports (httpx and what it pulls in) take a few hundred ms of a kill that must
    # finish within 2 s: load them on a thread while the dYdX side waits on the network.
    adapter = await asyncio.to_thread(importlib.import_module, "bot.venues.binance.adapter")
    return adapter.build_venue(spot, Metrics(), api_key=keys[0], api_secret=keys[1])


# ---- parts other entry points build on their own ---------------------------------------------


def paper_venues(settings: Settings, books: dict[str, OrderBook], spot_books: dict[str, OrderBook],
                 clock: Clock) -> tuple[PaperVenue, PaperVenue]:
    """The backtest's paper venues: the same fee schedules and funding as the daemon's."""
    from bot.venues.paper.factory import perp_paper, spot_paper

    return perp_paper(settings, books, clock), spot_paper(settings, spot_books, clock)


def feed_parser(venue: str) -> Any:
    """`perpbot decode`: the parser that turns the venue's recorded stream messages into events."""
    if venue != "dydx":
        raise ValueError(f"venue {venue!r} has no decoder yet (only 'dydx')")
    from bot.venues.dydx.parse import FeedParser

    return FeedParser()


def sim_market_params(ticker: str, block_interval_secs: float) -> Any:
    """The in-process simulator's market parameters for `ticker` (the backtest's seeded source)."""
    from bot.venues.sim.feed import default_params

    return default_params(ticker, block_interval_secs)


def sim_exchange_config(settings: Settings) -> Any:
    """The simulated chain's config from `[sim]` (`perpbot sim`, the embedded simulator)."""
    from bot.venues.sim.factory import sim_exchange_config as config

    return config(settings)

