"""A spot hedge buy never asks for more than the free quote balance pays for (as sells never sell
more than the free base balance, `hedge_sell_capped`).

Binance locks quantity x limit price of the quote asset when a limit buy is placed and refuses
one the free quote does not cover (-2010). The hedge's buys are marketable limits bounded by the
slippage cap (bot.execution.twap.size_child), so a buy of q base units may lock up to
q x best ask x (1 + slippage_cap_bps / 10,000): the cap divides the free quote by that. The free
quote is what the venue's user stream last reported (no round trip); quote locked by our open
buys is not free, and a new parent takes over the running one's unsent part, so nothing else is
promised. A capped buy too small to send (`min_order_size`, `execution.min_notional_usd`) is none.
A venue whose positions are not balances (paper) is not capped.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

import structlog

from bot.config import ExecutionSettings
from bot.domain import ZERO, Side
from bot.market_state import SpotLeg
from bot.venues.ports import ExecutionVenue

log = structlog.get_logger("hedge")
BPS = Decimal(10_000)


class QuoteBalances(Protocol):
    def cached_free_quote(self) -> dict[str, Decimal]: ...  # per market: its quote asset, not locked


def buyable(free_quote: Decimal, price: Decimal, step: Decimal) -> Decimal:
    """Base units the free quote pays for at `price`, floored to the lot step (pure)."""
    if price <= 0 or step <= 0 or free_quote <= 0:
        return ZERO
    return (free_quote / price // step) * step


def cap_buy(venue: ExecutionVenue, spot: SpotLeg, gap: Decimal, ex: ExecutionSettings,
            reported: dict[str, tuple[Decimal, Decimal]]) -> Decimal:
    """`gap` (base units the hedge still needs; > 0 buys), a buy capped at what the free quote
    balance pays for at the touch plus the slippage cap; logged (`hedge_buy_capped`) when it bites,
    once per (wanted, buyable) change: `reported` keeps the last logged per spot market."""
    free = getattr(venue, "cached_free_quote", None)
    if gap <= 0 or free is None or not venue.capabilities.positions_are_balances:
        return gap
    ask = spot.book.best_ask()
    if ask is None:
        return gap
    price = ask.price * (1 + ex.slippage_cap_bps / BPS)
    quote = free().get(spot.ticker, ZERO)
    most = buyable(quote, price, spot.spec.step_size)
    if gap <= most:
        return gap
    if most < spot.spec.min_order_size or most * ask.price < ex.min_notional_usd:
        most = ZERO  # a buy the venue would refuse as too small: none (a refusal counts toward an unwind)
    if reported.get(spot.ticker) != (gap, most):
        reported[spot.ticker] = (gap, most)
        log.warning("hedge_buy_capped", market=spot.ticker, side=Side.BUY.value, wanted=str(gap),
                    buyable=str(most), free_quote=str(quote), price=str(price))
    return most
