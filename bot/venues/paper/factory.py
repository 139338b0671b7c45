"""The paper venues for a settings object: the perp leg's and the spot hedge leg's."""

from __future__ import annotations

from bot.book import OrderBook
from bot.clock import Clock
from bot.config import Settings
from bot.venues.paper.adapter import PaperVenue
from bot.venues.paper.fills import FeeSchedule


def perp_paper(settings: Settings, books: dict[str, OrderBook], clock: Clock) -> PaperVenue:
    """Fills against the perp books at the `[paper]` fee schedule."""
    fees = FeeSchedule(settings.paper.maker_fee_rate, settings.paper.taker_fee_rate)
    return PaperVenue(books, fees, clock, settings.sim.funding_interval_secs)


def spot_paper(settings: Settings, books: dict[str, OrderBook], clock: Clock) -> PaperVenue:
    """Fills against the spot books at the carry sleeve's spot fee schedule; named `paper_spot`."""
    carry = settings.strategy.carry
    venue = PaperVenue(books, FeeSchedule(carry.spot_maker_fee_rate, carry.spot_taker_fee_rate), clock,
                       settings.sim.funding_interval_secs)
    venue.name = "paper_spot"
    return venue
