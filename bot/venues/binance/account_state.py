"""The Binance spot account as the venue reports it (AccountSource): balances valued at the mid.

Equity is the quote-asset balances (at 1 USD) plus each traded market's base balance at that
market's mid; an asset with no market and no quote role is listed in `balances` but not valued.
Commission rates come from GET /api/v3/account (`commissionRates`, else the basis-point fields).
A spot account holds no margin: free collateral is the free quote balance.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

from bot.domain import ZERO, AccountState, FeeRates
from bot.errors import MalformedMessage
from bot.venues.binance import wire
from bot.venues.binance.adapter import BinanceVenue
from bot.venues.binance.parse import parse_account
from bot.venues.binance.transfers import QUOTE_ASSETS

VENUE = "binance"
BPS = Decimal(10_000)


def commission_rates(account: wire.Account) -> FeeRates | None:
    """Maker/taker commission of the account; None when the venue sent neither form."""
    rates = account.commissionRates
    try:
        if rates is not None:
            return FeeRates(Decimal(rates.maker), Decimal(rates.taker), "binance:account")
    except ArithmeticError:
        raise MalformedMessage(f"commissionRates not decimal: {rates!r}") from None
    if account.makerCommission is not None and account.takerCommission is not None:
        return FeeRates(Decimal(account.makerCommission) / BPS, Decimal(account.takerCommission) / BPS,
                        "binance:account_bps")
    return None


class BinanceAccount:
    """AccountSource over the venue's REST client and the shared spot books (for the mids)."""

    name = VENUE

    def __init__(self, venue: BinanceVenue, now_ns: Callable[[], int] = time.time_ns) -> None:
        self._venue = venue
        self._now_ns = now_ns

    async def read(self) -> AccountState:
        account = await self._venue.rest.account()
        parsed = parse_account(account)
        balances = {asset: b.total for asset, b in parsed.items()}
        equity = sum((b.total for b in parsed.values() if b.asset in QUOTE_ASSETS), ZERO)
        free_quote = sum((b.free for b in parsed.values() if b.asset in QUOTE_ASSETS), ZERO)
        positions: dict[str, Decimal] = {}
        for market, spec in self._venue.spot_specs.items():
            amount = balances.get(spec.base_asset, ZERO)
            positions[market] = amount
            book = self._venue.books.get(market)
            mid = book.mid() if book is not None else None
            if amount and mid is None:
                raise MalformedMessage(f"no mid to value {spec.base_asset} (book of {market} empty)")
            equity += amount * (mid or ZERO)
        return AccountState(VENUE, equity, free_quote, ZERO, ZERO, balances, positions,
                            commission_rates(account), self._now_ns())
