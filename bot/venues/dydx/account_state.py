"""The dYdX subaccount as the venue reports it (AccountSource): equity, collateral, margin, fees.

- equity and free collateral: the indexer's subaccount (REST), which the chain computes at the
  oracle price;
- initial / maintenance margin requirement: sum over open positions of |size| x oracle x the
  market's initial / maintenance margin fraction (`/v4/perpetualMarkets`, all markets: a position
  in a market the bot does not trade still uses margin);
- fee rates: the account's fee tier from the node (`dydxprotocol.feetiers.Query/UserFeeTier`),
  re-read every `fee_refresh_secs` (tiers move with 30-day volume, not by the minute); when the
  node cannot be asked, the last tier read stands.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

import structlog

from bot.domain import ZERO, AccountState, FeeRates
from bot.errors import BotError, MalformedMessage
from bot.venues.dydx import wire
from bot.venues.dydx.chain import ChainQueries, FeeTier
from bot.venues.dydx.indexer_rest import IndexerRest

log = structlog.get_logger("dydx.account")
VENUE = "dydx"
PPM = Decimal(1_000_000)


def _dec(text: str | None, what: str) -> Decimal:
    try:
        value = Decimal(text) if text is not None else None
    except ArithmeticError:
        value = None
    if value is None or not value.is_finite():
        raise MalformedMessage(f"{what} is not a decimal: {text!r}")
    return value


def fee_rates(tier: FeeTier) -> FeeRates:
    """Fee rates of a chain fee tier (ppm -> fraction)."""
    return FeeRates(Decimal(tier.maker_ppm) / PPM, Decimal(tier.taker_ppm) / PPM,
                    f"dydx:fee_tier {tier.name or tier.index}")


def account_state(sub: wire.Subaccount, markets: dict[str, wire.PerpetualMarket],
                  fees: FeeRates | None, ts_ns: int) -> AccountState:
    """Build the AccountState of a subaccount from the indexer's subaccount and market table."""
    initial = maintenance = ZERO
    positions: dict[str, Decimal] = {}
    for ticker, pos in sub.openPerpetualPositions.items():
        size = _dec(pos.size, f"{ticker} size")
        if not size:
            continue
        positions[ticker] = size
        market = markets.get(ticker)
        if market is None or market.oraclePrice is None:
            raise MalformedMessage(f"no oracle price or margin fractions for position market {ticker}")
        notional = abs(size) * _dec(market.oraclePrice, f"{ticker} oraclePrice")
        initial += notional * _dec(market.initialMarginFraction, f"{ticker} initialMarginFraction")
        maintenance += notional * _dec(market.maintenanceMarginFraction,
                                       f"{ticker} maintenanceMarginFraction")
    balances = {}
    for symbol, asset in sub.assetPositions.items():
        amount = _dec(asset.size, f"{symbol} size")
        balances[symbol] = -abs(amount) if asset.side == "SHORT" else amount
    return AccountState(VENUE, _dec(sub.equity, "equity"), _dec(sub.freeCollateral, "freeCollateral"),
                        initial, maintenance, balances, positions, fees, ts_ns)


class DydxAccount:
    """AccountSource for one subaccount: indexer REST for the account, the node for the fee tier."""

    name = VENUE

    def __init__(self, rest: IndexerRest, address: str, subaccount_number: int,
                 chain: ChainQueries | None, *, fee_refresh_secs: float = 600.0,
                 now_ns: Callable[[], int] = time.time_ns) -> None:
        self._rest = rest
        self._address = address
        self._number = subaccount_number
        self._chain = chain
        self._fee_refresh_ns = int(fee_refresh_secs * 1e9)
        self._now_ns = now_ns
        self._fees: FeeRates | None = None
        self._fees_read_ns: int | None = None

    async def read(self) -> AccountState:
        sub = await self._rest.subaccount_state(self._address, self._number)
        markets = await self._rest.perpetual_markets() if sub.openPerpetualPositions else {}
        return account_state(sub, markets, await self._fee_rates(), self._now_ns())

    async def _fee_rates(self) -> FeeRates | None:
        now = self._now_ns()
        due = self._fees_read_ns is None or now - self._fees_read_ns >= self._fee_refresh_ns
        if self._chain is not None and due:
            try:
                fees = fee_rates(await self._chain.user_fee_tier(self._address))
            except BotError as exc:
                log.warning("fee_tier_read_failed", error=str(exc), kept=self._fees is not None)
            else:
                if fees != self._fees:
                    log.info("fee_rates", venue=VENUE, maker=str(fees.maker), taker=str(fees.taker),
                             source=fees.source)
                self._fees, self._fees_read_ns = fees, now
        return self._fees
