"""Domain order -> dYdX chain order (pure): exact quantums/subticks, GoodTilBlock, chain rules.

The client's own helpers round in float and silently round sizes below one step up to a
step (DYDX_V4.md §4.6); here everything is Decimal/int and such sizes are refused.
Reduce-only is accepted on chain only for IOC orders and FOK is rejected, so both are
refused before anything is signed (§4.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import NamedTuple

from v4_proto.dydxprotocol.clob.order_pb2 import Order, OrderId
from v4_proto.dydxprotocol.subaccounts.subaccount_pb2 import SubaccountId

from bot.domain import OrderRequest, Side, TimeInForce
from bot.errors import OrderRejected
from bot.venues.dydx import protowire as pw

ORDER_FLAGS_SHORT_TERM = 0
ORDER_FLAGS_LONG_TERM = 64
QUOTE_ATOMIC_RESOLUTION = -6
# GoodTilBlock must be in (height, height + window]; the window is 20 before protocol v9.5 and
# 40 after. An offset inside [3, 20] is valid on both and leaves room for a few blocks of
# latency; faster blocks only shorten the order's life in seconds, never break the window.
MIN_GTB_OFFSET, MAX_GTB_OFFSET = 3, 20
# Enum values read once (each protobuf enum attribute lookup goes through a wrapper).
TIF_UNSPECIFIED = Order.TimeInForce.TIME_IN_FORCE_UNSPECIFIED
TIF_IOC = Order.TimeInForce.TIME_IN_FORCE_IOC
TIF_POST_ONLY = Order.TimeInForce.TIME_IN_FORCE_POST_ONLY
SIDE_BUY, SIDE_SELL = Order.Side.SIDE_BUY, Order.Side.SIDE_SELL


@dataclass(frozen=True, slots=True)
class MarketParams:
    """The four integers that define a dYdX market's grid, plus its identity."""

    ticker: str
    clob_pair_id: int
    atomic_resolution: int
    quantum_conversion_exponent: int
    step_base_quantums: int
    subticks_per_tick: int
    # Derived once: every order maps through them.
    step_size: Decimal = field(init=False, repr=False, compare=False)
    tick_size: Decimal = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        step = _plain(Decimal(self.step_base_quantums).scaleb(self.atomic_resolution))
        exponent = self.quantum_conversion_exponent - self.atomic_resolution + QUOTE_ATOMIC_RESOLUTION
        tick = _plain(Decimal(self.subticks_per_tick).scaleb(exponent))
        object.__setattr__(self, "step_size", step)
        object.__setattr__(self, "tick_size", tick)


def _plain(value: Decimal) -> Decimal:
    """Drop trailing zeros without switching to exponent notation (1E+1 -> 10)."""
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal.as_tuple().exponent > 0 else normal  # type: ignore[operator]


class VenueOrder(NamedTuple):
    """The chain's view of one order (a tuple: built once per order on the signing path)."""

    client_id: int
    clob_pair_id: int
    order_flags: int
    side: Side
    quantums: int
    subticks: int
    time_in_force: int  # Order.TimeInForce value
    reduce_only: bool
    good_til_block: int | None = None
    good_til_block_time: int | None = None

    @property
    def is_stateful(self) -> bool:
        return self.order_flags != ORDER_FLAGS_SHORT_TERM


def size_to_quantums(size: Decimal, market: MarketParams) -> int:
    """Floor a size onto the step grid in quantums; refuse anything below one step."""
    steps = (size / market.step_size).to_integral_value(rounding=ROUND_FLOOR)
    if steps < 1:
        raise OrderRejected("dydx", "place", f"size {size} is below one step ({market.step_size})")
    return int(steps) * market.step_base_quantums


def price_to_subticks(price: Decimal, side: Side, market: MarketParams) -> int:
    """Round a price onto the tick grid on the passive side: buys down, sells up."""
    rounding = ROUND_FLOOR if side is Side.BUY else ROUND_CEILING
    ticks = (price / market.tick_size).to_integral_value(rounding=rounding)
    if ticks < 1:
        raise OrderRejected("dydx", "place", f"price {price} is below one tick ({market.tick_size})")
    return int(ticks) * market.subticks_per_tick


def quantums_to_size(quantums: int, market: MarketParams) -> Decimal:
    return Decimal(quantums).scaleb(market.atomic_resolution)


def subticks_to_price(subticks: int, market: MarketParams) -> Decimal:
    exponent = market.quantum_conversion_exponent - market.atomic_resolution + QUOTE_ATOMIC_RESOLUTION
    return Decimal(subticks).scaleb(exponent)


def good_til_block(height: int, offset: int) -> int:
    """GoodTilBlock for a short-term order from a fresh height."""
    if not MIN_GTB_OFFSET <= offset <= MAX_GTB_OFFSET:
        raise ValueError(f"GoodTilBlock offset {offset} outside [{MIN_GTB_OFFSET}, {MAX_GTB_OFFSET}]")
    return height + offset


def to_venue_order(
    order: OrderRequest,
    market: MarketParams,
    height: int,
    now_secs: int,
    *,
    gtb_offset: int = 10,
    long_term_secs: int = 3600,
) -> VenueOrder:
    """Map a domain order to the chain's order: IOC and post-only go short-term, GTT long-term."""
    if order.market != market.ticker:
        raise ValueError(f"order for {order.market} mapped with {market.ticker} params")
    if order.reduce_only and order.tif is not TimeInForce.IOC:
        raise OrderRejected("dydx", "place", "reduce-only is accepted only on IOC orders")
    if not 0 < order.client_id < 2**32:
        raise OrderRejected("dydx", "place", f"client id {order.client_id} is not a uint32")
    quantums = size_to_quantums(order.size, market)
    subticks = price_to_subticks(order.price, order.side, market)
    if order.tif is TimeInForce.GTT:
        return VenueOrder(order.client_id, market.clob_pair_id, ORDER_FLAGS_LONG_TERM, order.side,
                          quantums, subticks, TIF_UNSPECIFIED, order.reduce_only,
                          None, now_secs + long_term_secs)
    tif = TIF_IOC if order.tif is TimeInForce.IOC else TIF_POST_ONLY
    return VenueOrder(order.client_id, market.clob_pair_id, ORDER_FLAGS_SHORT_TERM, order.side,
                      quantums, subticks, tif, order.reduce_only, good_til_block(height, gtb_offset))


def order_id_proto(venue: VenueOrder, owner: str, subaccount_number: int) -> OrderId:
    return OrderId(
        subaccount_id=SubaccountId(owner=owner, number=subaccount_number),
        client_id=venue.client_id,
        order_flags=venue.order_flags,
        clob_pair_id=venue.clob_pair_id,
    )


def to_proto(venue: VenueOrder, owner: str, subaccount_number: int) -> Order:
    """Build the chain's Order message (what the client's `Market.order` would, without floats)."""
    return Order(
        order_id=order_id_proto(venue, owner, subaccount_number),
        side=SIDE_BUY if venue.side is Side.BUY else SIDE_SELL,
        quantums=venue.quantums,
        subticks=venue.subticks,
        good_til_block=venue.good_til_block,
        good_til_block_time=venue.good_til_block_time,
        time_in_force=venue.time_in_force,
        reduce_only=venue.reduce_only,
        client_metadata=0,
    )


# ---- MsgPlaceOrder bytes without protobuf objects ---------------------------------------------------
# What `place_order(to_proto(...)).SerializeToString()` returns, written directly: building the
# three nested protobuf messages costs more than the rest of the order path together. Proto3
# wire rules (DYDX_V4.md §6): fields in number order, zero scalars omitted, the good-til oneof
# written when set (even 0). Field types from dydxprotocol/clob/order.proto: client_id and
# good_til_block_time are fixed32, the other integers varints. The unit tests compare every byte
# with protobuf's own serialisation for random orders.

PLACE_ORDER_TYPE_URL = "/dydxprotocol.clob.MsgPlaceOrder"


def subaccount_field(owner: str, subaccount_number: int) -> bytes:
    """OrderId field 1 (SubaccountId), constant for a gateway: build it once."""
    payload = (pw.field(b"\x0a", owner.encode()) if owner else b"") + (
        b"\x10" + pw.varint(subaccount_number) if subaccount_number else b"")
    return pw.field(b"\x0a", payload)


def order_id_bytes(venue: VenueOrder, subaccount: bytes) -> bytes:
    """The serialised OrderId, given `subaccount_field(...)`."""
    out = subaccount
    if venue.client_id:
        out += b"\x15" + venue.client_id.to_bytes(4, "little")
    if venue.order_flags:
        out += b"\x18" + pw.varint(venue.order_flags)
    if venue.clob_pair_id:
        out += b"\x20" + pw.varint(venue.clob_pair_id)
    return out


def place_order_bytes(venue: VenueOrder, subaccount: bytes) -> bytes:
    """The serialised MsgPlaceOrder for `venue` (client_metadata 0, no conditions)."""
    order = pw.field(b"\x0a", order_id_bytes(venue, subaccount))
    order += b"\x10\x01" if venue.side is Side.BUY else b"\x10\x02"
    if venue.quantums:
        order += b"\x18" + pw.varint(venue.quantums)
    if venue.subticks:
        order += b"\x20" + pw.varint(venue.subticks)
    if venue.good_til_block is not None:
        order += b"\x28" + pw.varint(venue.good_til_block)
    elif venue.good_til_block_time is not None:
        order += b"\x35" + venue.good_til_block_time.to_bytes(4, "little")
    if venue.time_in_force:
        order += b"\x38" + pw.varint(venue.time_in_force)
    if venue.reduce_only:
        order += b"\x40\x01"
    return pw.field(b"\x0a", order)
