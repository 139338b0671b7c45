"""The in-process simulated market as a perp leg (plus its spot twins), and the simulated chain's
config for the protocol simulator."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bot.book import OrderBook
from bot.clock import Clock
from bot.config import Settings
from bot.sim.market import SimMarket
from bot.venues.leg import Leg
from bot.venues.paper.factory import perp_paper, spot_paper
from bot.venues.sim.feed import SimFeed, default_params


def open_in_process(settings: Settings, clock: Clock) -> Leg:
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
    paper = perp_paper(settings, books, clock)
    return Leg(feed, paper, specs, books, paper, spot_markets=spots,
               status={"sim": {"mode": "in_process", "seed": settings.sim.seed}})


def in_process_hedge(settings: Settings, perp: Leg, clock: Clock) -> Leg:
    """The spot leg whose books ride on the in-process perp feed (paper only)."""
    specs = {t: m.spec() for t, m in perp.spot_markets.items()}
    books = {t: OrderBook(t) for t in specs}
    paper = spot_paper(settings, books, clock)
    return Leg(None, paper, specs, books, paper, status={"venue": paper.name, "market_data": "in_process"})


def sim_exchange_config(settings: Settings) -> Any:
    """The simulated chain's config from `[sim]`: block interval and the account's fee tier."""
    from bot.sim.exchange import ExchangeConfig

    return ExchangeConfig(block_interval_ns=int(settings.sim.block_interval_secs * 1e9),
                          maker_fee_rate=settings.sim.maker_fee_rate,
                          taker_fee_rate=settings.sim.taker_fee_rate)
