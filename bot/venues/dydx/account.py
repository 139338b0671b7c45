"""REST account records -> domain types (pure), for start-up reconciliation."""

from __future__ import annotations

from decimal import Decimal

from bot.domain import Fill, FundingPayment, Liquidity, OrderStatus, Side
from bot.venues.dydx import wire
from bot.venues.dydx.indexer_rest import FundingPaymentWire
from bot.venues.dydx.parse import is_uint, iso_to_ns

# Indexer order status -> (our status, whether the order is still working at the venue).
ORDER_STATUS = {
    "OPEN": OrderStatus.ACKED,
    "BEST_EFFORT_OPENED": OrderStatus.ACKED,
    "UNTRIGGERED": OrderStatus.ACKED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELLED,
    "BEST_EFFORT_CANCELED": OrderStatus.CANCELLED,
}


def client_ids_by_uid(orders: list[wire.OrderWire]) -> dict[str, int]:
    """Map the indexer's order UUID to our integer client id."""
    return {o.id: int(o.clientId) for o in orders if is_uint(o.clientId)}


def fill_from_rest(fill: wire.FillWire, client_id: int) -> Fill:
    """A REST fill as a domain Fill (fee < 0 is a rebate)."""
    return Fill(
        fill_id=fill.id,
        client_id=client_id,
        market=fill.market or fill.ticker,
        side=Side(fill.side),
        price=Decimal(fill.price),
        size=Decimal(fill.size),
        fee=Decimal(fill.fee),
        liquidity=Liquidity.MAKER if fill.liquidity == "MAKER" else Liquidity.TAKER,
        ts_event=iso_to_ns(fill.createdAt),
    )


def order_state(order: wire.OrderWire) -> tuple[OrderStatus, Decimal]:
    """Our status and the filled size of a REST order."""
    status = ORDER_STATUS.get(order.status, OrderStatus.ACKED)
    filled = Decimal(order.totalFilled) if order.totalFilled else Decimal(0)
    if status is OrderStatus.ACKED and filled > 0:
        status = OrderStatus.PARTIALLY_FILLED
    if status is OrderStatus.CANCELLED and order.removalReason == "ORDER_REMOVAL_REASON_EXPIRED":
        status = OrderStatus.EXPIRED
    return status, filled


def funding_from_rest(row: FundingPaymentWire) -> FundingPayment:
    """A settled hourly funding payment (payment > 0: received; the indexer's rate is 1-hour)."""
    size = Decimal(row.size)
    signed = -size if row.side == "SHORT" else size
    return FundingPayment(row.ticker, Decimal(row.rate), signed, Decimal(row.oraclePrice),
                          Decimal(row.payment), iso_to_ns(row.createdAt))
