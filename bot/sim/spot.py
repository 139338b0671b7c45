"""Simulated Binance-style spot exchange (pure, deterministic, no asyncio, no wall clock).

Each symbol's background liquidity and taker flow come from its own seeded `SimMarket` (started
at the same price as the perp of the same base asset; the two paths then diverge as independent
random walks). Account orders (keyed by API key) are matched with the paper fill model in
`bot.venues.paper.fills`:

* taker orders walk the model book (`fill_taker`); liquidity they take stays hidden from the
  public book in the symbol's `ConsumedLiquidity` until the model restates the level;
* resting orders queue at their price (`RestingOrder`, queue ahead = public size there) and fill
  from the model's taker prints (`on_trade`, `on_book_update`);
* when the model's opposite side moves through a resting order (the model's book is not aware of
  ours), that liquidity is matched against the resting order at the order's price as MAKER
  (walked with `fill_taker`, then re-priced), so the public book is never crossed.

Two account orders never trade with each other: a taker that would cross a resting account order
expires that order first (self-trade prevention EXPIRE_MAKER, applied to every account).

The public book is the model book minus consumed liquidity plus resting account orders. Every
change of it takes one update id per changed level, so `DepthUpdate` ranges `[U, u]` are
contiguous and `depth()` returns the book as of `last_update_id` (Binance's snapshot + diff rule).

Rejections raise `SpotError(code, msg)` with Binance's error codes; nothing here knows JSON field
names (`bot.sim.server.binance` renders records and events on the wire). Amounts are exact
Decimals on the symbol's tick/step grid; commissions are rounded to 8 decimals.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal

from bot.book import OrderBook
from bot.domain import (
    ZERO,
    BookDelta,
    BookLevel,
    BookSnapshot,
    Fill,
    OrderRequest,
    Side,
    TimeInForce,
    Trade,
)
from bot.sim.history import HistoryBar
from bot.sim.market import SimMarket, SimMarketParams
from bot.venues.paper.fills import (
    ConsumedLiquidity,
    FeeSchedule,
    RestingOrder,
    fill_taker,
    on_book_update,
    on_trade,
)

ASSET_DECIMALS = Decimal("0.00000001")  # Binance shows and books 8 decimals
_HUGE = Decimal(10) ** 18
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class SpotError(Exception):
    """A request Binance would refuse: its error `code`, `msg` and HTTP status."""

    def __init__(self, code: int, msg: str, http_status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.http_status = http_status


def _missing(name: str) -> SpotError:
    return SpotError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def _not_required(name: str) -> SpotError:
    return SpotError(-1106, f"Parameter '{name}' sent when not required.")


def _rejected(msg: str) -> SpotError:
    return SpotError(-2010, msg)


INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."


class OrderType(enum.StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"
    LIMIT_MAKER = "LIMIT_MAKER"  # post-only: rejected if it would take


class SpotTimeInForce(enum.StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class SpotOrderStatus(enum.StrEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"  # IOC/FOK/MARKET remainder, or expired by self-trade prevention
    REJECTED = "REJECTED"  # never stored: a rejected placement is a SpotError, as on Binance

    @property
    def is_open(self) -> bool:
        return self in (SpotOrderStatus.NEW, SpotOrderStatus.PARTIALLY_FILLED)


class ExecutionType(enum.StrEnum):
    NEW = "NEW"
    CANCELED = "CANCELED"
    TRADE = "TRADE"
    EXPIRED = "EXPIRED"
    TRADE_PREVENTION = "TRADE_PREVENTION"


@dataclass(frozen=True, slots=True)
class SpotSymbol:
    """A spot pair with its filters (PRICE_FILTER, LOT_SIZE, NOTIONAL) and its market model."""

    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    min_notional: Decimal
    model: SimMarketParams
    max_qty: Decimal = Decimal("9000")
    min_price: Decimal = Decimal("0.01")
    max_price: Decimal = Decimal("1000000")
    max_notional: Decimal = Decimal("9000000")

    def __post_init__(self) -> None:
        m = self.model
        if (m.ticker, m.tick_size, m.step_size) != (self.symbol, self.tick_size, self.step_size):
            raise ValueError(f"{self.symbol}: model ticker/tick/step must match the symbol")


def default_symbols() -> list[SpotSymbol]:
    """BTCUSDT and ETHUSDT with Binance's filters, priced like the simulator's BTC-USD / ETH-USD."""
    d = Decimal
    btc = SimMarketParams(
        ticker="BTCUSDT", initial_price=d("60000"), tick_size=d("0.01"), step_size=d("0.00001"),
        min_order_size=d("0.00001"), level_spacing_ticks=50, spread_ticks=1,
        base_level_size=d("0.5"), mean_trade_size=d("0.05"), taker_trades_per_sec=3.0,
    )
    eth = SimMarketParams(
        ticker="ETHUSDT", initial_price=d("3000"), tick_size=d("0.01"), step_size=d("0.0001"),
        min_order_size=d("0.0001"), level_spacing_ticks=5, spread_ticks=1,
        base_level_size=d("5"), mean_trade_size=d("0.5"), taker_trades_per_sec=3.0,
    )
    return [
        SpotSymbol("BTCUSDT", "BTC", "USDT", d("0.01"), d("0.00001"), d("0.00001"), d("5"), btc),
        SpotSymbol("ETHUSDT", "ETH", "USDT", d("0.01"), d("0.0001"), d("0.0001"), d("5"), eth),
    ]


@dataclass(frozen=True, slots=True)
class SpotConfig:
    maker_commission_rate: Decimal = Decimal("0.001")  # 0.1%, no BNB discount
    taker_commission_rate: Decimal = Decimal("0.001")
    default_balances: Mapping[str, Decimal] = field(default_factory=lambda: {
        "USDT": Decimal("100000"), "BTC": Decimal("1"), "ETH": Decimal("10")})
    first_order_id: int = 1
    first_trade_id: int = 1
    first_update_id: int = 1_000


@dataclass(frozen=True, slots=True)
class NewOrder:
    """A POST /api/v3/order, already parsed (None: parameter not sent)."""

    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal | None = None
    quote_order_qty: Decimal | None = None
    price: Decimal | None = None
    time_in_force: SpotTimeInForce | None = None
    new_client_order_id: str | None = None


@dataclass(slots=True)
class SpotOrder:
    """One account order. Events and return values carry copies (`snapshot()`)."""

    api_key: str
    symbol: str
    order_id: int
    client_order_id: str
    side: Side
    type: OrderType
    time_in_force: SpotTimeInForce  # MARKET orders report GTC, as Binance does
    price: Decimal  # ZERO for MARKET
    orig_qty: Decimal  # for MARKET by quoteOrderQty: the quantity it resolved to
    orig_quote_order_qty: Decimal
    time_ns: int
    update_ns: int
    status: SpotOrderStatus = SpotOrderStatus.NEW
    executed_qty: Decimal = ZERO
    cumm_quote_qty: Decimal = ZERO
    is_working: bool = False  # on the book
    resting: RestingOrder | None = None

    def snapshot(self) -> SpotOrder:
        """Return an immutable-by-convention copy without the queue state."""
        return replace(self, resting=None)


@dataclass(frozen=True, slots=True)
class SpotFill:
    symbol: str
    order_id: int
    trade_id: int
    side: Side
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str  # the asset received
    is_maker: bool
    ts_ns: int


@dataclass(frozen=True, slots=True)
class Balance:
    asset: str
    free: Decimal
    locked: Decimal


# ---- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DepthUpdate:
    """Absolute sizes of the levels that changed (0 deletes) for update ids first..final."""

    symbol: str
    first_update_id: int
    final_update_id: int
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    ts_ns: int


@dataclass(frozen=True, slots=True)
class BookTickerUpdate:
    symbol: str
    update_id: int
    bid: BookLevel | None
    ask: BookLevel | None
    ts_ns: int


@dataclass(frozen=True, slots=True)
class SpotTrade:
    symbol: str
    trade_id: int
    price: Decimal
    qty: Decimal
    is_buyer_maker: bool
    ts_ns: int


@dataclass(frozen=True, slots=True)
class ExecutionReport:
    api_key: str
    order: SpotOrder  # a snapshot after this execution
    execution_type: ExecutionType
    client_order_id: str  # of this request: the cancel's own id for a cancel
    orig_client_order_id: str  # the cancelled order's id for a cancel, else ""
    fill: SpotFill | None
    ts_ns: int


@dataclass(frozen=True, slots=True)
class AccountPosition:
    """Balances of the assets an action touched (outboundAccountPosition)."""

    api_key: str
    balances: tuple[Balance, ...]
    ts_ns: int


SpotEvent = DepthUpdate | BookTickerUpdate | SpotTrade | ExecutionReport | AccountPosition


# ---- internal state ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Wallet:
    free: Decimal = ZERO
    locked: Decimal = ZERO


@dataclass(slots=True)
class _Account:
    api_key: str
    wallets: dict[str, _Wallet] = field(default_factory=dict)
    orders: dict[tuple[str, int], SpotOrder] = field(default_factory=dict)  # every order, by id
    by_client_id: dict[tuple[str, str], SpotOrder] = field(default_factory=dict)  # latest per id
    update_ns: int = 0

    def wallet(self, asset: str) -> _Wallet:
        return self.wallets.setdefault(asset, _Wallet())


@dataclass(slots=True)
class _Symbol:
    spec: SpotSymbol
    market: SimMarket
    book: OrderBook  # the model's book
    consumed: ConsumedLiquidity = field(default_factory=ConsumedLiquidity)
    resting: list[SpotOrder] = field(default_factory=list)  # time priority
    bids: dict[Decimal, Decimal] = field(default_factory=dict)  # the public book as published
    asks: dict[Decimal, Decimal] = field(default_factory=dict)
    last_update_id: int = 0
    top: tuple[BookLevel | None, BookLevel | None] = (None, None)
    next_order_id: int = 1
    next_trade_id: int = 1
    fill_calls: int = 0


class SpotExchange:
    """Symbols, accounts, orders and matching of the simulated spot venue."""

    def __init__(self, seed: int, start_ns: int, symbols: Sequence[SpotSymbol] | None = None,
                 config: SpotConfig | None = None) -> None:
        self.config = cfg = config or SpotConfig()
        self._seed = seed
        self._now_ns = self._market_ns = start_ns
        self._fees = FeeSchedule(cfg.maker_commission_rate, cfg.taker_commission_rate)
        self._symbols: dict[str, _Symbol] = {}
        self._accounts: dict[str, _Account] = {}
        self._pending: list[SpotEvent] = []
        self._client_ids = 0
        for i, spec in enumerate(symbols if symbols is not None else default_symbols()):
            # a separate stream per symbol, independent of the perp markets' seeds
            market = SimMarket(spec.model, seed * 7919 + 104_729 + i, start_ns)
            st = _Symbol(spec, market, OrderBook(spec.symbol), last_update_id=cfg.first_update_id,
                         next_order_id=cfg.first_order_id, next_trade_id=cfg.first_trade_id)
            self._symbols[spec.symbol] = st
            self._apply_model(st, market.step(start_ns), start_ns, [])
            st.bids, st.asks = self._public_side(st, Side.BUY), self._public_side(st, Side.SELL)
            st.top = self._touch(st)

    # ---- reads --------------------------------------------------------------------------------

    @property
    def now_ns(self) -> int:
        return self._now_ns

    def symbols(self) -> list[SpotSymbol]:
        return [st.spec for st in self._symbols.values()]

    def symbol(self, symbol: str) -> SpotSymbol:
        return self._sym(symbol).spec

    def depth(self, symbol: str, limit: int | None = None
              ) -> tuple[int, list[BookLevel], list[BookLevel]]:
        """Return (lastUpdateId, bids best first, asks best first) of the public book."""
        st = self._sym(symbol)
        bids = [BookLevel(p, st.bids[p]) for p in sorted(st.bids, reverse=True)]
        asks = [BookLevel(p, st.asks[p]) for p in sorted(st.asks)]
        if limit is not None:
            bids, asks = bids[:limit], asks[:limit]
        return st.last_update_id, bids, asks

    def book_ticker(self, symbol: str) -> tuple[int, BookLevel | None, BookLevel | None]:
        st = self._sym(symbol)
        return st.last_update_id, st.top[0], st.top[1]

    def klines(self, symbol: str, hours: int) -> list[HistoryBar]:
        """The symbol's past before the simulator started, hourly, oldest first (bot.sim.history)."""
        return self._sym(symbol).market.history(hours)

    def mid(self, symbol: str) -> Decimal | None:
        bid, ask = self._sym(symbol).top
        if bid is None or ask is None:
            return None
        return (bid.price + ask.price) / 2

    def has_account(self, api_key: str) -> bool:
        return api_key in self._accounts

    def create_account(self, api_key: str, balances: Mapping[str, Decimal] | None = None) -> None:
        """Create an account (default balances from the config); an existing one is kept."""
        if api_key in self._accounts:
            return
        acct = self._accounts[api_key] = _Account(api_key, update_ns=self._now_ns)
        for asset, amount in (self.config.default_balances if balances is None else balances).items():
            acct.wallet(asset).free = Decimal(amount)

    def set_balance(self, api_key: str, asset: str, free: Decimal) -> None:
        """Set an asset's free balance (tests, scenarios); locked funds are untouched."""
        self._acct(api_key).wallet(asset).free = free

    def balances(self, api_key: str) -> list[Balance]:
        acct = self._acct(api_key)
        return [Balance(a, w.free, w.locked) for a, w in acct.wallets.items()]

    def account_update_ns(self, api_key: str) -> int:
        return self._acct(api_key).update_ns

    def get_order(self, api_key: str, symbol: str, order_id: int | None = None,
                  orig_client_order_id: str | None = None) -> SpotOrder:
        """Find an order by id (preferred) or client id; -2013 when unknown."""
        self._sym(symbol)
        order = self._find(self._acct(api_key), symbol, order_id, orig_client_order_id)
        if order is None:
            raise SpotError(-2013, "Order does not exist.")
        return order.snapshot()

    def open_orders(self, api_key: str, symbol: str | None = None) -> list[SpotOrder]:
        if symbol is not None:
            self._sym(symbol)
        return [o.snapshot() for o in self._acct(api_key).orders.values()
                if o.status.is_open and (symbol is None or o.symbol == symbol)]

    # ---- time ---------------------------------------------------------------------------------

    def advance(self, now_ns: int) -> list[SpotEvent]:
        """Step every market to now, fill resting orders, and return all events since last call."""
        # Only market steps must be monotonic: an order action may carry a slightly later time
        # than the runner's next step (both read the same clock around an await).
        if now_ns < self._market_ns:
            raise ValueError(f"time went backwards: {now_ns} < {self._market_ns}")
        self._market_ns = now_ns
        self._now_ns = max(self._now_ns, now_ns)
        for st in self._symbols.values():
            touched: list[tuple[_Account, str]] = []
            self._apply_model(st, st.market.step(now_ns), now_ns, touched)
            self._sweep(st, now_ns, touched)
            self._account_positions(touched, now_ns)
            self._refresh(st, now_ns)
        return self.drain_events()

    def drain_events(self) -> list[SpotEvent]:
        """Return and forget the events produced since the last drain (order actions included)."""
        out, self._pending = self._pending, []
        return out

    # ---- orders -------------------------------------------------------------------------------

    def place_order(self, api_key: str, req: NewOrder, now_ns: int) -> tuple[SpotOrder, list[SpotFill]]:
        """Validate, match and rest or expire an order; raise SpotError when Binance would refuse."""
        now = self._clock(now_ns)
        acct = self._acct(api_key)
        st = self._sym(req.symbol)
        spec = st.spec
        self._check_params(req)
        cid = req.new_client_order_id or self._new_client_id()
        existing = acct.by_client_id.get((spec.symbol, cid))
        if existing is not None and existing.status.is_open:
            raise _rejected("Duplicate order sent.")
        self._check_filters(st, req)
        base, quote = acct.wallet(spec.base_asset), acct.wallet(spec.quote_asset)
        price = req.price or ZERO
        if req.type is OrderType.LIMIT_MAKER and self._would_cross(st, req.side, price):
            raise _rejected("Order would immediately match and take.")

        if req.type is OrderType.MARKET:
            qty, limit = self._market_size(st, req)
            cost = self._walk_cost(st, req.side, qty, limit)
            if (req.side is Side.BUY and cost > quote.free) or (req.side is Side.SELL and qty > base.free):
                raise _rejected(INSUFFICIENT_BALANCE)
        else:
            qty, limit = req.quantity or ZERO, price
            lock = qty * price if req.side is Side.BUY else qty
            wallet = quote if req.side is Side.BUY else base
            if lock > wallet.free:
                raise _rejected(INSUFFICIENT_BALANCE)
            wallet.free -= lock
            wallet.locked += lock

        order = SpotOrder(
            api_key, spec.symbol, st.next_order_id, cid, req.side, req.type,
            req.time_in_force or SpotTimeInForce.GTC, price, qty, req.quote_order_qty or ZERO, now, now,
        )
        st.next_order_id += 1
        acct.orders[(spec.symbol, order.order_id)] = order
        acct.by_client_id[(spec.symbol, cid)] = order
        self._report(order, ExecutionType.NEW, now)
        touched: list[tuple[_Account, str]] = [(acct, spec.base_asset), (acct, spec.quote_asset)]
        if req.type is not OrderType.LIMIT_MAKER:
            self._prevent_self_trade(st, order, limit, now, touched)

        fills: list[SpotFill] = []
        fok_short = (order.time_in_force is SpotTimeInForce.FOK
                     and self._available(st, req.side, qty, limit) < qty)
        if req.type is not OrderType.LIMIT_MAKER and not fok_short and qty > 0:
            for f in self._take(st, order, qty, limit, now):
                fills.append(self._apply_fill(st, order, f.price, f.size, is_maker=False, now=now))
        if order.status.is_open:
            if req.type is OrderType.MARKET or order.time_in_force is not SpotTimeInForce.GTC:
                self._close(order, SpotOrderStatus.EXPIRED, ExecutionType.EXPIRED, now)
            else:
                self._rest(st, order)
        self._account_positions(touched, now)
        self._refresh(st, now)
        return order.snapshot(), fills

    def cancel_order(self, api_key: str, symbol: str, now_ns: int, order_id: int | None = None,
                     orig_client_order_id: str | None = None,
                     new_client_order_id: str | None = None) -> tuple[SpotOrder, str]:
        """Cancel an open order; return it and the cancel's own client id (-2011 when not open)."""
        now = self._clock(now_ns)
        st = self._sym(symbol)
        acct = self._acct(api_key)
        order = self._find(acct, symbol, order_id, orig_client_order_id)
        if order is None or not order.status.is_open:
            raise SpotError(-2011, "Unknown order sent.")
        cancel_id = new_client_order_id or self._new_client_id()
        self._close(order, SpotOrderStatus.CANCELED, ExecutionType.CANCELED, now, cancel_id)
        self._account_positions([(acct, st.spec.base_asset), (acct, st.spec.quote_asset)], now)
        self._refresh(st, now)
        return order.snapshot(), cancel_id

    def cancel_open_orders(self, api_key: str, symbol: str, now_ns: int) -> list[tuple[SpotOrder, str]]:
        """Cancel every open order of the account on `symbol` (as cancel_order); -2011 if none."""
        now = self._clock(now_ns)
        st = self._sym(symbol)
        acct = self._acct(api_key)
        orders = [o for o in acct.orders.values() if o.symbol == symbol and o.status.is_open]
        if not orders:
            raise SpotError(-2011, "Unknown order sent.")
        cancel_ids = [self._new_client_id() for _ in orders]
        for order, cancel_id in zip(orders, cancel_ids, strict=True):
            self._close(order, SpotOrderStatus.CANCELED, ExecutionType.CANCELED, now, cancel_id)
        self._account_positions([(acct, st.spec.base_asset), (acct, st.spec.quote_asset)], now)
        self._refresh(st, now)
        return [(o.snapshot(), c) for o, c in zip(orders, cancel_ids, strict=True)]

    # ---- validation ---------------------------------------------------------------------------

    def _check_params(self, req: NewOrder) -> None:
        if req.type is OrderType.MARKET:
            if req.price is not None:
                raise _not_required("price")
            if req.time_in_force is not None:
                raise _not_required("timeInForce")
            if req.quantity is None and req.quote_order_qty is None:
                raise SpotError(-1102, "Param 'quantity' or 'quoteOrderQty' must be sent, "
                                       "but both were empty/null!")
            if req.quantity is not None and req.quote_order_qty is not None:
                raise _not_required("quoteOrderQty")
            return
        if req.quote_order_qty is not None:
            raise _not_required("quoteOrderQty")
        if req.type is OrderType.LIMIT and req.time_in_force is None:
            raise _missing("timeInForce")
        if req.type is OrderType.LIMIT_MAKER and req.time_in_force is not None:
            raise _not_required("timeInForce")
        if req.price is None:
            raise _missing("price")
        if req.quantity is None:
            raise _missing("quantity")

    def _check_filters(self, st: _Symbol, req: NewOrder) -> None:
        spec = st.spec
        if req.price is not None and (req.price < spec.min_price or req.price > spec.max_price
                                      or (req.price - spec.min_price) % spec.tick_size):
            raise SpotError(-1013, "Filter failure: PRICE_FILTER")
        qty = req.quantity
        if qty is not None and (qty < spec.min_qty or qty > spec.max_qty
                                or (qty - spec.min_qty) % spec.step_size):
            raise SpotError(-1013, "Filter failure: LOT_SIZE")
        if req.quote_order_qty is not None:
            if req.quote_order_qty <= 0:
                raise SpotError(-1013, "Filter failure: NOTIONAL")
            notional = req.quote_order_qty
        elif req.type is OrderType.MARKET:
            notional = (self.mid(spec.symbol) or ZERO) * (qty or ZERO)  # Binance: avgPrice x qty
        else:
            notional = (req.price or ZERO) * (qty or ZERO)
        if notional < spec.min_notional:
            raise SpotError(-1013, "Filter failure: NOTIONAL")
        if req.type is not OrderType.MARKET and notional > spec.max_notional:
            raise SpotError(-1013, "Filter failure: NOTIONAL")

    def _would_cross(self, st: _Symbol, side: Side, price: Decimal) -> bool:
        bid, ask = st.top
        if side is Side.BUY:
            return ask is not None and price >= ask.price
        return bid is not None and price <= bid.price

    # ---- matching -----------------------------------------------------------------------------

    def _market_size(self, st: _Symbol, req: NewOrder) -> tuple[Decimal, Decimal | None]:
        """Resolve a MARKET order to (quantity, worst price it reaches; None: the whole book)."""
        taken = st.consumed.taken(req.side, st.book)
        if req.quantity is not None:
            levels = st.book.walk(req.side, req.quantity, None, consumed=taken)
            if sum((lvl.size for lvl in levels), ZERO) < req.quantity:
                return req.quantity, None  # not enough depth: take everything, expire the rest
            return req.quantity, levels[-1].price
        step, remaining = st.spec.step_size, req.quote_order_qty or ZERO
        qty, limit = ZERO, None
        for lvl in st.book.walk(req.side, _HUGE, None, consumed=taken):
            take = min(lvl.size, remaining / lvl.price // step * step)
            if take <= 0:
                break
            qty += take
            remaining -= take * lvl.price
            limit = lvl.price
            if take < lvl.size:
                break
        return qty, limit

    def _walk_cost(self, st: _Symbol, side: Side, qty: Decimal, limit: Decimal | None) -> Decimal:
        taken = st.consumed.taken(side, st.book)
        return sum((lvl.price * lvl.size for lvl in st.book.walk(side, qty, limit, consumed=taken)),
                   ZERO)

    def _available(self, st: _Symbol, side: Side, qty: Decimal, limit: Decimal | None) -> Decimal:
        taken = st.consumed.taken(side, st.book)
        return sum((lvl.size for lvl in st.book.walk(side, qty, limit, consumed=taken)), ZERO)

    def _take(self, st: _Symbol, order: SpotOrder, qty: Decimal, limit: Decimal | None,
              now: int) -> list[Fill]:
        """Walk the model book with the paper taker model; taken size is hidden until restated."""
        if limit is None:
            limit = _HUGE if order.side is Side.BUY else ZERO
        request = OrderRequest(order.order_id, st.spec.symbol, order.side, qty, limit, TimeInForce.IOC)
        st.fill_calls += 1
        return fill_taker(request, st.book, self._fees, f"{st.spec.symbol}:{st.fill_calls}", now,
                          st.consumed)

    def _prevent_self_trade(self, st: _Symbol, order: SpotOrder, limit: Decimal | None, now: int,
                            touched: list[tuple[_Account, str]]) -> None:
        """Expire resting account orders the new order would trade with (EXPIRE_MAKER)."""
        for other in list(st.resting):
            if other.side is order.side:
                continue
            crosses = limit is None or (other.price <= limit if order.side is Side.BUY
                                        else other.price >= limit)
            if crosses:
                self._close(other, SpotOrderStatus.EXPIRED, ExecutionType.TRADE_PREVENTION, now)
                acct = self._accounts[other.api_key]
                touched += [(acct, st.spec.base_asset), (acct, st.spec.quote_asset)]

    def _rest(self, st: _Symbol, order: SpotOrder) -> None:
        levels = st.bids if order.side is Side.BUY else st.asks
        request = OrderRequest(order.order_id, st.spec.symbol, order.side, order.orig_qty,
                               order.price, TimeInForce.GTT)
        # Queue behind everything shown at our price (model size net of consumption, and
        # earlier account orders).
        order.resting = RestingOrder(request, levels.get(order.price, ZERO), f"{order.order_id}",
                                     filled_size=order.executed_qty)
        order.is_working = True
        st.resting.append(order)

    def _apply_model(self, st: _Symbol, events: Iterable[object], now: int,
                     touched: list[tuple[_Account, str]]) -> None:
        for ev in events:
            if isinstance(ev, BookSnapshot):
                st.book.apply_snapshot(ev)
            elif isinstance(ev, BookDelta):
                st.book.apply_delta(ev)
                for order in st.resting:
                    assert order.resting is not None
                    on_book_update(order.resting, st.book)
            elif isinstance(ev, Trade):
                self._pending.append(SpotTrade(st.spec.symbol, st.next_trade_id, ev.price, ev.size,
                                               ev.aggressor is Side.SELL, now))
                st.next_trade_id += 1
                for order in list(st.resting):
                    assert order.resting is not None
                    fill = on_trade(order.resting, ev, self._fees, now)
                    if fill is not None:
                        self._apply_fill(st, order, fill.price, fill.size, is_maker=True, now=now)
                        touched += [(self._accounts[order.api_key], st.spec.base_asset),
                                    (self._accounts[order.api_key], st.spec.quote_asset)]

    def _sweep(self, st: _Symbol, now: int, touched: list[tuple[_Account, str]]) -> None:
        """Fill resting orders the model's opposite side moved through, at the order's price."""
        for order in list(st.resting):
            assert order.resting is not None
            remaining = order.orig_qty - order.executed_qty
            for f in self._take(st, order, remaining, order.price, now):
                order.resting.filled_size += f.size
                self._apply_fill(st, order, order.price, f.size, is_maker=True, now=now)
                touched += [(self._accounts[order.api_key], st.spec.base_asset),
                            (self._accounts[order.api_key], st.spec.quote_asset)]

    def _apply_fill(self, st: _Symbol, order: SpotOrder, price: Decimal, qty: Decimal, *,
                    is_maker: bool, now: int) -> SpotFill:
        spec, acct = st.spec, self._accounts[order.api_key]
        base, quote = acct.wallet(spec.base_asset), acct.wallet(spec.quote_asset)
        rate = self.config.maker_commission_rate if is_maker else self.config.taker_commission_rate
        notional = price * qty
        locks = order.type is not OrderType.MARKET
        if order.side is Side.BUY:
            commission, asset = _round8(qty * rate), spec.base_asset
            if locks:  # the lock was at the limit price; a better price refunds the difference
                quote.locked -= order.price * qty
                quote.free += (order.price - price) * qty
            else:
                quote.free -= notional
            base.free += qty - commission
        else:
            commission, asset = _round8(notional * rate), spec.quote_asset
            if locks:
                base.locked -= qty
            else:
                base.free -= qty
            quote.free += notional - commission
        acct.update_ns = now
        fill = SpotFill(spec.symbol, order.order_id, st.next_trade_id, order.side, price, qty,
                        notional, commission, asset, is_maker, now)
        st.next_trade_id += 1
        order.executed_qty += qty
        order.cumm_quote_qty += notional
        order.update_ns = now
        filled = order.executed_qty >= order.orig_qty
        order.status = SpotOrderStatus.FILLED if filled else SpotOrderStatus.PARTIALLY_FILLED
        if filled and order.is_working:
            order.is_working = False
            st.resting.remove(order)
        self._pending.append(SpotTrade(spec.symbol, fill.trade_id, price, qty,
                                       (order.side is Side.BUY) == is_maker, now))
        self._report(order, ExecutionType.TRADE, now, fill=fill)
        return fill

    def _close(self, order: SpotOrder, status: SpotOrderStatus, exec_type: ExecutionType, now: int,
               cancel_client_id: str = "") -> None:
        """Cancel or expire an open order and release what is still locked for it."""
        st = self._symbols[order.symbol]
        acct = self._accounts[order.api_key]
        remaining = order.orig_qty - order.executed_qty
        if order.type is not OrderType.MARKET and remaining > 0:
            if order.side is Side.BUY:
                wallet, amount = acct.wallet(st.spec.quote_asset), remaining * order.price
            else:
                wallet, amount = acct.wallet(st.spec.base_asset), remaining
            wallet.locked -= amount
            wallet.free += amount
            acct.update_ns = now
        if order.is_working:
            order.is_working = False
            st.resting.remove(order)
        order.status = status
        order.update_ns = now
        if cancel_client_id:
            self._report(order, exec_type, now, client_order_id=cancel_client_id,
                         orig_client_order_id=order.client_order_id)
        else:
            self._report(order, exec_type, now)

    # ---- events -------------------------------------------------------------------------------

    def _report(self, order: SpotOrder, exec_type: ExecutionType, now: int, *,
                fill: SpotFill | None = None, client_order_id: str = "",
                orig_client_order_id: str = "") -> None:
        self._pending.append(ExecutionReport(
            order.api_key, order.snapshot(), exec_type, client_order_id or order.client_order_id,
            orig_client_order_id, fill, now))

    def _account_positions(self, touched: list[tuple[_Account, str]], now: int) -> None:
        per_account: dict[str, list[str]] = {}
        for acct, asset in touched:
            assets = per_account.setdefault(acct.api_key, [])
            if asset not in assets:
                assets.append(asset)
        for api_key, assets in per_account.items():
            acct = self._accounts[api_key]
            balances = tuple(Balance(a, acct.wallet(a).free, acct.wallet(a).locked) for a in assets)
            self._pending.append(AccountPosition(api_key, balances, now))
        touched.clear()

    def _public_side(self, st: _Symbol, side: Side) -> dict[Decimal, Decimal]:
        """Model levels net of consumed liquidity, plus resting account orders; `side` BUY = bids."""
        taken = st.consumed.taken(side.opposite(), st.book)
        out: dict[Decimal, Decimal] = {}
        for lvl in st.book.levels(side, 1_000_000):
            size = lvl.size - taken.get(lvl.price, ZERO)
            if size > 0:
                out[lvl.price] = size
        for order in st.resting:
            if order.side is side:
                out[order.price] = out.get(order.price, ZERO) + order.orig_qty - order.executed_qty
        return out

    def _touch(self, st: _Symbol) -> tuple[BookLevel | None, BookLevel | None]:
        bid = max(st.bids, default=None)
        ask = min(st.asks, default=None)
        return (None if bid is None else BookLevel(bid, st.bids[bid]),
                None if ask is None else BookLevel(ask, st.asks[ask]))

    def _refresh(self, st: _Symbol, now: int) -> None:
        """Publish the public book's changes as one DepthUpdate (one update id per level)."""
        bids, asks = self._public_side(st, Side.BUY), self._public_side(st, Side.SELL)
        bid_changes = _diff(st.bids, bids, best_high=True)
        ask_changes = _diff(st.asks, asks, best_high=False)
        count = len(bid_changes) + len(ask_changes)
        if not count:
            return
        first = st.last_update_id + 1
        st.last_update_id += count
        st.bids, st.asks = bids, asks
        self._pending.append(DepthUpdate(st.spec.symbol, first, st.last_update_id, bid_changes,
                                         ask_changes, now))
        top = self._touch(st)
        if top != st.top:
            st.top = top
            self._pending.append(BookTickerUpdate(st.spec.symbol, st.last_update_id, top[0], top[1],
                                                  now))

    # ---- helpers ------------------------------------------------------------------------------

    def _sym(self, symbol: str) -> _Symbol:
        st = self._symbols.get(symbol)
        if st is None:
            raise SpotError(-1121, "Invalid symbol.")
        return st

    def _acct(self, api_key: str) -> _Account:
        acct = self._accounts.get(api_key)
        if acct is None:
            raise SpotError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        return acct

    def _find(self, acct: _Account, symbol: str, order_id: int | None,
              orig_client_order_id: str | None) -> SpotOrder | None:
        if order_id is not None:  # orderId takes precedence, as on Binance
            return acct.orders.get((symbol, order_id))
        if orig_client_order_id:
            return acct.by_client_id.get((symbol, orig_client_order_id))
        raise SpotError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, "
                               "but both were empty/null!")

    def _clock(self, now_ns: int) -> int:
        # A request may carry a time just before the last market step: keep event time monotonic.
        self._now_ns = max(self._now_ns, now_ns)
        return self._now_ns

    def _new_client_id(self) -> str:
        """A deterministic 22-character id in Binance's auto-generated style."""
        self._client_ids += 1
        n = int.from_bytes(hashlib.sha256(f"{self._seed}:{self._client_ids}".encode()).digest())
        chars = []
        for _ in range(22):
            n, r = divmod(n, 62)
            chars.append(_BASE62[r])
        return "".join(chars)


def _diff(shown: dict[Decimal, Decimal], now: dict[Decimal, Decimal],
          best_high: bool) -> tuple[BookLevel, ...]:
    changed = [p for p, size in now.items() if shown.get(p) != size]
    changed += [p for p in shown if p not in now]
    changed.sort(reverse=best_high)
    return tuple(BookLevel(p, now.get(p, ZERO)) for p in changed)


def _round8(amount: Decimal) -> Decimal:
    return amount.quantize(ASSET_DECIMALS, rounding=ROUND_HALF_UP)
