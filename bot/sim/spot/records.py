"""The simulated spot venue's records, events, errors and internal state (pure data)."""


from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal

from bot.book import OrderBook
from bot.domain import (
    ZERO,
    BookLevel,
    Side,
)
from bot.sim.market import SimMarket, SimMarketParams
from bot.venues.paper.fills import (
    ConsumedLiquidity,
    RestingOrder,
)

ASSET_DECIMALS = Decimal("0.00000001")  # Binance shows and books 8 decimals
HUGE = Decimal(10) ** 18
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class SpotError(Exception):
    """A request Binance would refuse: its error `code`, `msg` and HTTP status."""

    def __init__(self, code: int, msg: str, http_status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.http_status = http_status


def missing_param(name: str) -> SpotError:
    return SpotError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def not_required(name: str) -> SpotError:
    return SpotError(-1106, f"Parameter '{name}' sent when not required.")


def rejected(msg: str) -> SpotError:
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


@dataclass(frozen=True, slots=True)
class WalletTransfer:
    """A deposit (`amount` credited), a completed withdrawal (`amount` + `fee` debited) or a
    confirmed universal transfer (`kind` its type: MAIN_FUNDING debits, FUNDING_MAIN credits)."""

    kind: str  # DEPOSIT | WITHDRAWAL | a universal transfer type touching MAIN
    transfer_id: str
    asset: str
    amount: Decimal
    fee: Decimal
    ts_ns: int
    tx_id: str


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


@dataclass(frozen=True, slots=True)
class BalanceUpdate:
    """A balance moved by a deposit or withdrawal, not by trading (balanceUpdate)."""

    api_key: str
    asset: str
    delta: Decimal
    ts_ns: int


SpotEvent = DepthUpdate | BookTickerUpdate | SpotTrade | ExecutionReport | AccountPosition | BalanceUpdate


# ---- internal state ---------------------------------------------------------------------------


@dataclass(slots=True)
class WalletState:
    free: Decimal = ZERO
    locked: Decimal = ZERO


@dataclass(slots=True)
class AccountState:
    api_key: str
    wallets: dict[str, WalletState] = field(default_factory=dict)
    orders: dict[tuple[str, int], SpotOrder] = field(default_factory=dict)  # every order, by id
    by_client_id: dict[tuple[str, str], SpotOrder] = field(default_factory=dict)  # latest per id
    trades: list[SpotFill] = field(default_factory=list)  # every fill of the account (myTrades)
    transfers: list[WalletTransfer] = field(default_factory=list)  # wallet moves in and out, oldest first
    update_ns: int = 0

    def wallet(self, asset: str) -> WalletState:
        return self.wallets.setdefault(asset, WalletState())


@dataclass(slots=True)
class SymbolState:
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



def diff_levels(shown: dict[Decimal, Decimal], now: dict[Decimal, Decimal],
          best_high: bool) -> tuple[BookLevel, ...]:
    changed = [p for p, size in now.items() if shown.get(p) != size]
    changed += [p for p in shown if p not in now]
    changed.sort(reverse=best_high)
    return tuple(BookLevel(p, now.get(p, ZERO)) for p in changed)


def round8(amount: Decimal) -> Decimal:
    return amount.quantize(ASSET_DECIMALS, rounding=ROUND_HALF_UP)

