"""Binance spot wire structs -> domain types (pure; the only place that reads wire structs).

Times on the wire are integer ms; domain times are integer ns. A fill's commission is
reported in whatever asset Binance charged (the base asset on buys, the quote asset on
sells, or BNB with the discount on): domain fees are in the quote asset, so a base-asset
commission is converted at the fill price and any other asset is reported as 0 (the
adapter logs it; the balance stream still shows what was really charged).

A base-asset commission never reaches the account: a buy of 1 ETH charged 0.001 ETH credits
0.999 ETH. Its fill is booked at that net size (the position is what the account holds) with
the commission as `withheld`, so the order's filled quantity (`z`, `executedQty`) is still
`size + withheld`; the price is unchanged, so price x gross = price x net + fee: cash is exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from bot.clock import NS_PER_MS
from bot.domain import (
    BookDelta,
    BookLevel,
    BookSnapshot,
    Fill,
    Liquidity,
    OrderStatus,
    OrderUpdate,
    Side,
    Trade,
)
from bot.errors import MalformedMessage
from bot.venues.binance import wire
from bot.venues.binance.orders import ZERO, SpotSpec, client_id_of

MAX_EXPONENT = 30  # amounts beyond 1e30 (or, non-zero, below 1e-30) are no real price or quantity

_STATUS = {
    "NEW": OrderStatus.ACKED,
    "PENDING_NEW": OrderStatus.ACKED,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELLED,
    "PENDING_CANCEL": OrderStatus.ACKED,  # Binance: currently unused
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,  # IOC remainder, or expired by self-trade prevention
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
}
_SIDES = {"BUY": Side.BUY, "SELL": Side.SELL}


@dataclass(frozen=True, slots=True)
class AssetBalance:
    asset: str
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


def ms_to_ns(ms: int) -> int:
    return ms * NS_PER_MS


def _dec(text: str, what: str) -> Decimal:
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        raise MalformedMessage(f"{what} is not a decimal: {text!r}") from None
    if not value.is_finite():
        raise MalformedMessage(f"{what} is not finite: {text!r}")
    # '1e999999' is a finite Decimal, but fee arithmetic and normalize() on it overflow.
    if value and not -MAX_EXPONENT <= value.adjusted() <= MAX_EXPONENT:
        raise MalformedMessage(f"{what} is out of range: {text[:40]!r}")
    return value


parse_decimal = _dec  # the checks every amount from the venue goes through


def _levels(levels: list[wire.Level], what: str) -> tuple[BookLevel, ...]:
    return tuple(BookLevel(_dec(p, f"{what} price"), _dec(q, f"{what} quantity")) for p, q in levels)


def _side(text: str) -> Side:
    side = _SIDES.get(text)
    if side is None:
        raise MalformedMessage(f"unknown side {text!r}")
    return side


def order_status(text: str) -> OrderStatus:
    """Domain status of a Binance order status."""
    status = _STATUS.get(text)
    if status is None:
        raise MalformedMessage(f"unknown order status {text!r}")
    return status


# ---- exchange info ------------------------------------------------------------------------------


def parse_spec(info: wire.SymbolInfo, market: str) -> SpotSpec:
    """A SpotSpec from a symbol's PRICE_FILTER, LOT_SIZE and NOTIONAL (or MIN_NOTIONAL) filters."""
    filters = {f.filterType: f for f in info.filters}
    price, lot = filters.get("PRICE_FILTER"), filters.get("LOT_SIZE")
    notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL")
    if price is None or lot is None:
        raise MalformedMessage(f"{info.symbol}: PRICE_FILTER and LOT_SIZE are required")
    tick = _dec(price.tickSize, "tickSize")
    step = _dec(lot.stepSize, "stepSize")
    if tick <= 0 or step <= 0:
        raise MalformedMessage(f"{info.symbol}: tickSize and stepSize must be positive")

    def opt(text: str, what: str) -> Decimal:
        return _dec(text, what) if text else ZERO

    return SpotSpec(
        market=market, symbol=info.symbol, base_asset=info.baseAsset, quote_asset=info.quoteAsset,
        tick_size=tick.normalize(), step_size=step.normalize(),
        min_qty=opt(lot.minQty, "minQty").normalize(),
        min_notional=opt(notional.minNotional, "minNotional").normalize() if notional else ZERO,
        min_price=opt(price.minPrice, "minPrice").normalize(),
        max_price=opt(price.maxPrice, "maxPrice").normalize(),
        max_qty=opt(lot.maxQty, "maxQty").normalize(),
        max_notional=opt(notional.maxNotional, "maxNotional").normalize() if notional else ZERO,
    )


# ---- market data --------------------------------------------------------------------------------


def parse_depth_snapshot(snap: wire.DepthSnapshot, market: str, ts_event: int, ts_recv: int) -> BookSnapshot:
    """A REST depth snapshot as a domain snapshot (bids and asks best first, as Binance sends them)."""
    return BookSnapshot(market, _levels(snap.bids, "bid"), _levels(snap.asks, "ask"), ts_event, ts_recv)


def parse_depth_update(event: wire.DepthUpdate, market: str, ts_recv: int) -> BookDelta:
    """A diff-depth event as absolute level sizes (0 deletes)."""
    return BookDelta(market, _levels(event.b, "bid"), _levels(event.a, "ask"), ms_to_ns(event.E), ts_recv)


def parse_trade(event: wire.TradeEvent, market: str, ts_recv: int) -> Trade:
    """A public trade; the aggressor sold when the buyer was the maker."""
    return Trade(market, _dec(event.p, "trade price"), _dec(event.q, "trade quantity"),
                 Side.SELL if event.m else Side.BUY, ms_to_ns(event.T), ts_recv)


# ---- account ------------------------------------------------------------------------------------


def report_client_id(event: wire.ExecutionReport) -> int | None:
    """Our client id of the order an executionReport is about (None: not our order).

    On a cancel, `c` is the cancel request's own id and `C` the order's original one.
    """
    if event.x == "CANCELED" and event.C:
        return client_id_of(event.C)
    return client_id_of(event.c)


def fee_in_quote(commission: Decimal, asset: str | None, price: Decimal, spec: SpotSpec) -> Decimal | None:
    """Commission in the quote asset; None when it was charged in a third asset (BNB)."""
    if not commission or asset is None or asset == spec.quote_asset:
        return commission
    if asset == spec.base_asset:
        return commission * price
    return None


def _fill(fill_id: str, client_id: int, spec: SpotSpec, side: Side, price: Decimal, qty: Decimal,
          commission: Decimal, asset: str | None, liquidity: Liquidity, ts_event: int) -> Fill:
    """A fill of `qty` at `price`: a commission in the base asset is withheld from the size booked."""
    fee = fee_in_quote(commission, asset, price, spec)
    withheld = ZERO
    if commission and asset == spec.base_asset:
        # The account gets (a buy) or gives up (a sell, not Binance's rule) qty -/+ commission.
        if not ZERO < commission < qty:
            raise MalformedMessage(f"base-asset commission {commission} of a fill of {qty}")
        withheld = commission if side is Side.BUY else -commission
    return Fill(fill_id=fill_id, client_id=client_id, market=spec.market, side=side, price=price,
                size=qty - withheld, fee=ZERO if fee is None else fee, liquidity=liquidity,
                ts_event=ts_event, withheld=withheld)


def parse_execution_report(event: wire.ExecutionReport, spec: SpotSpec
                           ) -> tuple[OrderUpdate | None, Fill | None]:
    """The order update (and fill, on a TRADE execution) of one of our orders; (None, None) if not ours."""
    client_id = report_client_id(event)
    if client_id is None:
        return None, None
    ts_event = ms_to_ns(event.T or event.E)
    filled = _dec(event.z, "cumulative quantity")
    reason = "" if event.r in ("", "NONE") else event.r
    if event.x == "TRADE_PREVENTION" and not reason:
        reason = "self-trade prevention"
    update = OrderUpdate(client_id, spec.market, order_status(event.X), filled, ts_event, reason)
    fill = None
    if event.x == "TRADE":
        fill = _fill(fill_id(event.s, event.t), client_id, spec, _side(event.S), _dec(event.L, "last price"),
                     _dec(event.l, "last quantity"), _dec(event.n or "0", "commission"), event.N,
                     Liquidity.MAKER if event.m else Liquidity.TAKER, ts_event)
    return update, fill


def fill_id(symbol: str, trade_id: int) -> str:
    """Our id of a Binance fill, the same from the user stream and from myTrades (trade ids are
    unique per symbol, order ids too: neither alone names a fill across symbols)."""
    return f"{symbol}-{trade_id}"


def parse_my_trade(row: wire.MyTrade, spec: SpotSpec, client_id: int) -> Fill:
    """One fill of one of our orders from GET /api/v3/myTrades."""
    return _fill(fill_id(row.symbol, row.id), client_id, spec, Side.BUY if row.isBuyer else Side.SELL,
                 _dec(row.price, "price"), _dec(row.qty, "qty"), _dec(row.commission, "commission"),
                 row.commissionAsset, Liquidity.MAKER if row.isMaker else Liquidity.TAKER, ms_to_ns(row.time))


def parse_order_info(row: wire.OrderInfo, spec: SpotSpec) -> OrderUpdate | None:
    """The state of one of our orders from a REST query or cancel; None if the order is not ours."""
    client_id = client_id_of(row.origClientOrderId or row.clientOrderId)
    if client_id is None:
        return None
    return OrderUpdate(client_id, spec.market, order_status(row.status), _dec(row.executedQty, "executedQty"),
                       ms_to_ns(row.updateTime or row.time))


def parse_account_position(event: wire.OutboundAccountPosition) -> dict[str, AssetBalance]:
    """The balances an outboundAccountPosition reports (only the assets that changed)."""
    return {b.a: AssetBalance(b.a, _dec(b.f, "free"), _dec(b.l, "locked")) for b in event.B}


def parse_account(account: wire.Account) -> dict[str, AssetBalance]:
    """Every balance of GET /api/v3/account."""
    return {b.asset: AssetBalance(b.asset, _dec(b.free, "free"), _dec(b.locked, "locked"))
            for b in account.balances}


def base_positions(balances: Mapping[str, AssetBalance], specs: Mapping[str, SpotSpec]) -> dict[str, Decimal]:
    """Spot 'positions': the total base-asset balance of each market (free + locked in orders)."""
    out: dict[str, Decimal] = {}
    for market, spec in specs.items():
        balance = balances.get(spec.base_asset)
        out[market] = balance.total if balance is not None else ZERO
    return out
