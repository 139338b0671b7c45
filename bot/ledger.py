"""Funding ledger and PnL attribution (pure).

Funding is a recurring expense line, reported next to fees and slippage. Sign convention as on
dYdX v4: rates are 1-hour rates, positive means longs pay and shorts receive, and one hour's
payment is `-size_signed x oracle_price x rate_1h` (USDC; > 0 received). Funding accrues on the
position held at each hourly settlement, so adding to or partly closing a position between two
settlements changes the next payment only, never one already booked; each settlement is booked
once (keyed by its hour).

PnL attribution per market (all in quote currency, > 0 is a gain):
    price     mark-to-market against the arrival mids of our orders (what the market did to us)
    slippage  -(fill price - mid when the child was sent) x size x side (what execution cost)
    fees      -fees paid (a maker rebate shows as a gain)
    funding   realised funding payments
so price + slippage = realised + unrealised trading PnL, and the four sum to the total.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from bot.domain import ZERO, FundingPayment, Position, Side

_CENT = Decimal("0.000001")


def funding_amount_usd(size: Decimal, oracle_price: Decimal, rate_1h: Decimal) -> Decimal:
    """One hour of funding on a signed position: > 0 received, < 0 paid."""
    return ZERO - size * oracle_price * rate_1h


def expected_funding_usd(size: Decimal, mark: Decimal, rate_1h: Decimal, hours: int) -> Decimal:
    """Expected funding over `hours` at the forecast rate (< 0: an expense we expect to pay)."""
    return funding_amount_usd(size, mark, rate_1h) * hours


def slippage_cost_usd(side: Side, price: Decimal, size: Decimal, arrival_mid: Decimal) -> Decimal:
    """Execution cost of a fill against the mid when its order was sent (> 0: a cost)."""
    return (price - arrival_mid) * size * side.sign


class FundingLedger:
    """Realised funding for one market, each settlement booked once."""

    __slots__ = ("_seen", "last_rate", "last_ts_ns", "paid_usd", "payments", "received_usd")

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self.received_usd = ZERO
        self.paid_usd = ZERO
        self.payments = 0
        self.last_rate: Decimal | None = None
        self.last_ts_ns: int | None = None

    def record(self, payment: FundingPayment) -> bool:
        """Book one settlement; a settlement already booked (same time) is ignored."""
        if payment.ts_event in self._seen:
            return False
        self._seen.add(payment.ts_event)
        if payment.amount >= 0:
            self.received_usd += payment.amount
        else:
            self.paid_usd -= payment.amount
        self.payments += 1
        if self.last_ts_ns is None or payment.ts_event >= self.last_ts_ns:
            self.last_rate, self.last_ts_ns = payment.rate, payment.ts_event
        return True

    @property
    def realised_usd(self) -> Decimal:
        """Net funding realised: received minus paid."""
        return self.received_usd - self.paid_usd

    def as_dict(self, expected_usd: Decimal) -> dict[str, str | int | None]:
        return {
            "realised": _money(self.realised_usd),
            "received": _money(self.received_usd),
            "paid": _money(self.paid_usd),
            "expected": _money(expected_usd),
            "payments": self.payments,
            "last_rate_1h": None if self.last_rate is None else str(self.last_rate),
        }


@dataclass(frozen=True, slots=True)
class PnlAttribution:
    price: Decimal
    slippage: Decimal
    fees: Decimal
    funding: Decimal

    @property
    def total(self) -> Decimal:
        return self.price + self.slippage + self.fees + self.funding

    def __add__(self, other: PnlAttribution) -> PnlAttribution:
        return PnlAttribution(self.price + other.price, self.slippage + other.slippage,
                              self.fees + other.fees, self.funding + other.funding)

    def as_dict(self) -> dict[str, str]:
        return {"price": _money(self.price), "slippage": _money(self.slippage),
                "fees": _money(self.fees), "funding": _money(self.funding), "total": _money(self.total)}


NO_PNL = PnlAttribution(ZERO, ZERO, ZERO, ZERO)


def attribute_pnl(position: Position, mark: Decimal | None, slippage_cost: Decimal,
                  funding_usd: Decimal) -> PnlAttribution:
    """Split a position's PnL into price, slippage, fees and funding."""
    trading = position.realised_pnl
    if mark is not None and position.size:
        trading += position.unrealised_pnl(mark)
    return PnlAttribution(trading + slippage_cost, -slippage_cost, -position.fees_paid, funding_usd)


def _money(value: Decimal) -> str:
    return str(value.quantize(_CENT))
