"""Positions, PnL and equity of the account: both legs of every market, rebuilt from the store."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType

import structlog

from bot.accounts import AccountBook, decision_fees
from bot.config import Settings
from bot.domain import ZERO, FeeRates, FundingPayment, Position
from bot.execution.orders import OrderManager
from bot.ledger import NO_PNL, PnlAttribution, attribute_pnl, expected_funding_usd
from bot.market_state import MarketState
from bot.store import Store

log = structlog.get_logger("engine")
_NO_MARKS: Mapping[str, Decimal] = MappingProxyType({})


def restore_positions(store: Store, markets: Mapping[str, MarketState],
                      spot_markets: Mapping[str, MarketState]) -> None:
    """Fold the stored fills and funding payments into the positions and funding ledgers (the carry
    they hold is bot.carry_start's, once the hedges are restored)."""
    for fill in store.fills():
        state = markets.get(fill.market)
        if state is not None:
            state.position.apply_fill(fill)
            continue
        spot_state = spot_markets.get(fill.market)
        if spot_state is not None and spot_state.spot is not None:
            spot_state.spot.position.apply_fill(fill)
    for payment in store.funding_payments():
        state = markets.get(payment.market)
        if state is not None and state.ledger.record(payment):
            state.position.funding_pnl += payment.amount


def leg_value(position: Position, mark: Decimal | None) -> Decimal:
    """Realised PnL less fees plus funding, and the unrealised PnL at `mark`."""
    value = position.realised_pnl - position.fees_paid + position.funding_pnl
    if mark is not None and position.size:
        value += position.unrealised_pnl(mark)
    return value


class Portfolio:
    """Equity, expected funding and PnL attribution over the engine's markets."""

    def __init__(self, markets: Mapping[str, MarketState], settings: Settings, accounts: AccountBook | None,
                 orders: OrderManager, spot_orders: OrderManager | None) -> None:
        self._markets = markets
        self._settings = settings
        self.initial_equity = settings.paper.initial_equity_usd
        self._accounts = accounts
        self._orders = orders
        self._spot_orders = spot_orders
        self._configured_fees: Mapping[str, FeeRates] | None = None
        self._batch: list[tuple[str, FundingPayment]] | None = None  # not yet stored (`batch_funding`)
        self._batched: set[tuple[str, str, int]] = set()

    def batch_funding(self) -> None:
        """Keep funding payments in memory until `flush_funding` (a backtest on a fresh store:
        the store then holds what `on_funding` would have written, one transaction per batch)."""
        self._batch = []

    def flush_funding(self, store: Store) -> None:
        """Write the batched payments (per venue, in order of arrival)."""
        batch = self._batch
        if batch:
            for venue in dict.fromkeys(v for v, _ in batch):
                store.record_funding_many(venue, [p for v, p in batch if v == venue])
            batch.clear()

    def _is_new(self, payment: FundingPayment, store: Store, venue: str) -> bool:
        if self._batch is None:
            return store.record_funding(venue, payment)
        key = (venue, payment.market, payment.ts_event)
        if key in self._batched:
            return False
        self._batched.add(key)
        self._batch.append((venue, payment))
        return True

    def on_funding(self, payment: FundingPayment, store: Store, venue: str) -> None:
        """Store a funding payment once and count it in its market's ledger and position."""
        state = self._markets.get(payment.market)
        if self._is_new(payment, store, venue) and state is not None:
            if state.ledger.record(payment):
                state.position.funding_pnl += payment.amount
            if self._batch is None:  # a backtest's settlements are its funding.json (and ~5 us a line)
                log.info("funding_settled", market=payment.market, rate=str(payment.rate),
                         position=str(payment.position_size), amount=str(payment.amount))

    def perp_positions(self) -> dict[str, Decimal]:
        """Open perp positions by market (signed base units)."""
        return {t: s.position.size for t, s in self._markets.items() if s.position.size}

    def spot_positions(self) -> dict[str, Decimal]:
        """Open spot hedge positions by spot market (signed base units)."""
        return {s.spot.ticker: s.spot.position.size for s in self._markets.values()
                if s.spot is not None and s.spot.position.size}

    def fee_rates(self) -> Mapping[str, FeeRates]:
        """The fee rates decisions use: {"dydx": perp venue, "binance": spot hedge venue}."""
        if self._accounts is not None:
            return decision_fees(self._settings, self._accounts)
        if self._configured_fees is None:  # paper and backtests: the settings', fixed for the run
            self._configured_fees = MappingProxyType(decision_fees(self._settings, None))
        return self._configured_fees

    def equity(self) -> Decimal:
        """Live: what the venues report (zero until read). Paper: initial equity plus every leg's
        realised and unrealised PnL, fees and funding."""
        if self._accounts is not None:
            return self._accounts.equity() or ZERO
        return self.equity_at(_NO_MARKS, _NO_MARKS)

    def equity_at(self, marks: Mapping[str, Decimal], spot_mids: Mapping[str, Decimal]) -> Decimal:
        """Paper equity with the perp marks and spot mids of some markets (by perp ticker) taken
        from the arguments instead of the state: a backtest's intrabar extreme, not applied."""
        total = self.initial_equity
        for ticker, state in self._markets.items():
            mark = marks.get(ticker)
            total += leg_value(state.position, state.mark if mark is None else mark)
            if state.spot is not None:
                mid = spot_mids.get(ticker)
                total += leg_value(state.spot.position, state.spot.book.mid() if mid is None else mid)
        return total

    def expected_funding_market(self, state: MarketState) -> Decimal:
        """Expected funding over the horizon for a market's position (negative: we pay)."""
        mark = state.mark
        if mark is None or not state.position.size:
            return ZERO
        return expected_funding_usd(state.position.size, mark, state.funding.rate_1h,
                                    self._settings.rules.funding_horizon_hours)

    def expected_funding(self) -> Decimal:
        """Expected funding over the horizon for current positions (negative: we pay)."""
        return sum((self.expected_funding_market(s) for s in self._markets.values()), ZERO)

    def pnl(self, state: MarketState) -> PnlAttribution:
        """PnL attribution for one market, both legs: price, slippage, fees, funding."""
        perp = attribute_pnl(state.position, state.mark,
                             self._orders.slippage_usd.get(state.spec.ticker, ZERO),
                             state.ledger.realised_usd)
        spot = state.spot
        if spot is None or self._spot_orders is None:
            return perp
        return perp + attribute_pnl(spot.position, spot.book.mid(),
                                    self._spot_orders.slippage_usd.get(spot.ticker, ZERO), ZERO)

    def total_pnl(self) -> PnlAttribution:
        """PnL attribution summed over every market."""
        total = NO_PNL
        for state in self._markets.values():
            total = total + self.pnl(state)
        return total
