"""Domain order -> Binance spot order parameters (pure): filter grid, order type, client id.

| domain tif | Binance                     | why                                             |
|------------|-----------------------------|-------------------------------------------------|
| IOC        | LIMIT, timeInForce=IOC      | marketable limit bounded by our slippage cap    |
| POST_ONLY  | LIMIT_MAKER                 | rejected (-2010) instead of taking liquidity    |
| GTT        | LIMIT, timeInForce=GTC      | spot has no good-til-time; we cancel it ourselves |

Prices go on the PRICE_FILTER grid rounded away from the other side (buys down, sells up):
a passive order never becomes more aggressive than asked, and a marketable limit never
exceeds its slippage cap. Quantities are floored to the LOT_SIZE step. An order that ends
up below minQty or minNotional (or outside the filters' maxima) is refused here, before any
request is signed. Spot has no reduce-only flag: without margin a sell cannot exceed the
base balance anyway (-2010 insufficient balance).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from bot.domain import MarketSpec, OrderRequest, Side, TimeInForce
from bot.errors import OrderRejected

VENUE = "binance"
CLIENT_ID_PREFIX = "pb-"  # ours among every order of the account (manual ones, other bots)
_CLIENT_ID_RE = re.compile(r"^pb-([0-9]{1,20})$")
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class SpotSpec:
    """A Binance spot symbol under our market name, with its PRICE_FILTER/LOT_SIZE/NOTIONAL."""

    market: str  # ours, e.g. "BTC-USDT"
    symbol: str  # Binance's, e.g. "BTCUSDT"
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    min_notional: Decimal
    min_price: Decimal = ZERO  # 0: that side of the filter is off (Binance's convention)
    max_price: Decimal = ZERO
    max_qty: Decimal = ZERO
    max_notional: Decimal = ZERO

    def market_spec(self) -> MarketSpec:
        return MarketSpec(self.market, self.tick_size, self.step_size, max(self.min_qty, self.step_size))


@dataclass(frozen=True, slots=True)
class SpotOrder:
    """The parameters of one POST /api/v3/order (without timestamp and signature)."""

    symbol: str
    side: Side
    type: str  # LIMIT or LIMIT_MAKER
    time_in_force: str | None  # GTC/IOC for LIMIT; None for LIMIT_MAKER
    quantity: Decimal
    price: Decimal
    client_order_id: str

    def params(self) -> dict[str, str]:
        """Request parameters in the order Binance documents them."""
        out = {"symbol": self.symbol, "side": self.side.value, "type": self.type}
        if self.time_in_force is not None:
            out["timeInForce"] = self.time_in_force
        out |= {"quantity": format_decimal(self.quantity), "price": format_decimal(self.price),
                "newClientOrderId": self.client_order_id, "newOrderRespType": "ACK"}
        return out


def client_order_id(client_id: int) -> str:
    """Our integer client id as Binance's newClientOrderId ("pb-<id>")."""
    if client_id < 0:
        raise ValueError(f"client id must be >= 0: {client_id}")
    return f"{CLIENT_ID_PREFIX}{client_id}"


def client_id_of(text: str | None) -> int | None:
    """Our integer client id from a Binance client order id; None for an order not ours."""
    if not text:
        return None
    match = _CLIENT_ID_RE.match(text)
    return int(match.group(1)) if match else None


def format_decimal(value: Decimal) -> str:
    """Plain decimal text without exponent or trailing zeros (Binance rejects '5E+4')."""
    text = format(value.normalize(), "f")
    return text


def round_price(price: Decimal, side: Side, spec: SpotSpec) -> Decimal:
    """Put a price on the tick grid: buys round down, sells round up."""
    rounding = ROUND_FLOOR if side is Side.BUY else ROUND_CEILING
    ticks = ((price - spec.min_price) / spec.tick_size).to_integral_value(rounding)
    return spec.min_price + ticks * spec.tick_size


def floor_qty(qty: Decimal, spec: SpotSpec) -> Decimal:
    """Floor a quantity to the LOT_SIZE step (relative to minQty, as the filter checks it)."""
    if qty < spec.min_qty:
        return ZERO
    steps = ((qty - spec.min_qty) / spec.step_size).to_integral_value(ROUND_FLOOR)
    return spec.min_qty + steps * spec.step_size


def to_spot_order(order: OrderRequest, spec: SpotSpec) -> SpotOrder:
    """Map a domain order to Binance parameters on the filter grid; refuse what the filters would."""
    if order.market != spec.market:
        raise ValueError(f"order for {order.market} mapped with the spec of {spec.market}")
    if order.size <= 0 or order.price <= 0:
        raise OrderRejected(VENUE, "place", f"size and price must be positive: {order.size} @ {order.price}")
    price = round_price(order.price, order.side, spec)
    qty = floor_qty(order.size, spec)
    if price <= 0 or price < spec.min_price or (spec.max_price and price > spec.max_price):
        raise OrderRejected(VENUE, "place", f"price {order.price} outside PRICE_FILTER")
    if qty < spec.min_qty or qty <= 0:
        raise OrderRejected(VENUE, "place", f"size {order.size} below minQty {spec.min_qty}")
    if spec.max_qty and qty > spec.max_qty:
        raise OrderRejected(VENUE, "place", f"size {order.size} above maxQty {spec.max_qty}")
    notional = price * qty
    if notional < spec.min_notional:
        raise OrderRejected(VENUE, "place", f"notional {notional} below minNotional {spec.min_notional}")
    if spec.max_notional and notional > spec.max_notional:
        raise OrderRejected(VENUE, "place", f"notional {notional} above maxNotional {spec.max_notional}")
    if order.tif is TimeInForce.POST_ONLY:
        order_type, tif = "LIMIT_MAKER", None
    elif order.tif is TimeInForce.IOC:
        order_type, tif = "LIMIT", "IOC"
    else:
        order_type, tif = "LIMIT", "GTC"
    return SpotOrder(spec.symbol, order.side, order_type, tif, qty, price, client_order_id(order.client_id))
