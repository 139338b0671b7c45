"""The simulated exchange: markets + a matching engine with the dYdX v4 chain's order rules.

Pure and deterministic (no asyncio, no sockets, no wall clock): time is passed in as integer ns,
randomness comes from the seed. The protocol servers in `bot.sim.server` translate wire
messages into these calls and these records into wire messages; nothing here knows JSON or
protobuf field names.

Model: each market's background liquidity and taker flow come from `SimMarket`. Account orders
(ours) rest on top of that level book with queue position (a new order at a price queues behind
the size already there), are matched by price-time priority, and fill against the market's
taker flow. An account taker order walks the level book and really consumes that liquidity.

Units: prices and sizes are Decimal on the market's tick/step grid; chain integers (quantums,
subticks) are converted by the node front-end using `MarketInfo`.

THIS FILE IS THE CONTRACT between the exchange core and its front-ends (indexer REST/WS, node
gRPC, admin). Change a signature only together with every caller.

Events: `advance` returns everything that happened since the previous call, in order: what
`place_order` / `cancel_order` / `batch_cancel` / `create_account` produced in between (also
available at once through `drain()`), then per block and per model step the markets' book
events (the AGGREGATED book: model levels + account orders, so a client applying them equals
`book()`), trades (each followed by the delta of the level it consumed), oracle updates and
one BlockHeight per block, and finally one AccountUpdate per subaccount that changed.

Accounting: `usdc_balance` is cash (deposits - withdrawals + realised PnL - fees + funding);
equity = cash + unrealised PnL at the oracle. dYdX's own USDC asset position is cash minus the
cost of open positions: `asset_usdc()`. Liquidation closes every position at the oracle price
(status LIQUIDATED, a fill with an empty order uid and no fee) when equity < maintenance margin.

Chain errors (codespace "clob" unless noted; codes from dydxprotocol/v4-chain
protocol/x/clob/types/errors.go). `ChainError.log` carries the message the chain wraps the
error with (cosmos prints "<log>: <description>" in raw_log).

| code | chain name | raised when |
|---|---|---|
| 4 | ErrInvalidOrderQuantums | size <= 0 |
| 5 | ErrInvalidOrderGoodTilBlock | short-term order/cancel without good_til_block |
| 6 | ErrInvalidOrderSubticks | price <= 0 |
| 7 | ErrOrderIsCanceled | re-placing a short-term id whose cancel (GTB >= order GTB) is in force |
| 8 | ErrInvalidClob | unknown clob_pair_id (place, cancel, batch cancel, market_by_clob_pair) |
| 9 | ErrMemClobCancelAlreadyExists | a short-term cancel with >= GTB exists for that id |
| 10 | ErrHeightExceedsGoodTilBlock | good_til_block <= height (place or cancel) |
| 11 | ErrGoodTilBlockExceedsShortBlockWindow | good_til_block > height + short_block_window |
| 12 | ErrInvalidPlaceOrder | price not on the tick grid, size not on the step grid or < 1 step |
| 20 | ErrInvalidReplacement | same short-term id: GTB not greater, or side/tif/reduce-only changed |
| 24 | ErrOrderFullyFilled | re-placing a fully filled short-term id before its GTB passed |
| 34 | ErrOrderConflictsWithClobPairStatus | market not ACTIVE (POST_ONLY: post-only only; FINAL_SETTLEMENT: |
|    |                                     | reduce-only only, see below) |
| 45 | ErrInvalidBatchCancel | batch cancel with 0 or more than 100 client ids |
| 48 | ErrDeprecatedField | TIME_IN_FORCE_FILL_OR_KILL |
| 2003 | ErrPostOnlyWouldCrossMakerOrder | post-only order that would take (chain: removed; here rejected) |
| 3000 | ErrInvalidOrderFlag | order_flags not 0, 32 or 64 |
| 3001 | ErrInvalidStatefulOrderGoodTilBlockTime | stateful order/cancel without good_til_block_time |
| 3002 | ErrLongTermOrdersCannotRequireImmediateExecution | long-term IOC |
| 3003 | ErrTimeExceedsGoodTilBlockTime | good_til_block_time <= block time |
| 3004 | ErrGoodTilBlockTimeExceedsStatefulOrderTimeWindow | good_til_block_time > block time + 95 days |
| 3005 | ErrStatefulOrderAlreadyExists | long-term order id already open |
| 3006 | ErrStatefulOrderDoesNotExist | cancel of a stateful order that is not open |
| 3007 | ErrStatefulOrderCollateralizationCheckFailed | order would breach initial margin (*) |
| 9002 | ErrNotImplemented | conditional orders (flags 32): not modelled |
| 9003 | ErrReduceOnlyDisabled | reduce_only without IOC (log: see below) |
| sdk 5 | ErrInsufficientFunds | withdrawal above free collateral |
| sdk 9 | ErrUnknownAddress | unknown account |
| sdk 20 | ErrMempoolIsFull | chain halted (scenario): every tx is refused so clients back off |
| sdk 32 | ErrWrongSequence | stateful tx with sequence != account sequence (or a bad timestamp nonce) |
| subaccounts 7 | UpdateResult WithdrawalsAndTransfersBlocked (code NOT verified) | withdrawal while gated |

(*) also for short-term orders, which the chain instead removes as undercollateralized.
FINAL_SETTLEMENT: the chain refuses every order once a pair is in final settlement and closes the
positions by deleveraging at the oracle price (x/clob keeper `validateOrderAgainstClobPairStatus`);
the notice comes earlier, with the delisting proposal. The model folds that notice window into the
status: while a `market_final_settlement` scenario runs, reduce-only orders are accepted, and when it
ends every position left is closed at the oracle (`set_market_status`).
9003's log is exactly "reduce only orders must be short term IOC orders".
"""

from __future__ import annotations

import enum
import hashlib
import uuid
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

from bot.domain import (
    ZERO,
    BlockHeight,
    BookDelta,
    BookSnapshot,
    Fill,
    Liquidity,
    MarketEvent,
    MarketSpec,
    OracleUpdate,
    Position,
    Side,
    Trade,
)
from bot.domain import OrderRequest as DomainOrder
from bot.domain import TimeInForce as DomainTif
from bot.sim.event_drafts import block_height
from bot.sim.event_drafts import trade as make_trade
from bot.sim.history import NS_PER_HOUR, HistoryBar
from bot.sim.market import PreEmitHook, SimMarket, SimMarketParams, TakerHook
from bot.venues.paper.fills import (
    FeeSchedule,
    RestingOrder,
    funding_payment,
    join_queue,
    on_book_update,
    on_trade,
)

# ---- chain constants --------------------------------------------------------------------------

ORDER_FLAGS_SHORT_TERM = 0
ORDER_FLAGS_CONDITIONAL = 32
ORDER_FLAGS_LONG_TERM = 64
MAX_BATCH_CANCEL = 100
STATEFUL_ORDER_WINDOW_SECS = 95 * 24 * 3600


class ChainError(Exception):
    """A transaction the chain rejects: carried to the client as TxResponse code/codespace/raw_log."""

    def __init__(self, codespace: str, code: int, log: str) -> None:
        super().__init__(f"{codespace}/{code}: {log}")
        self.codespace = codespace
        self.code = code
        self.log = log


class TimeInForce(enum.StrEnum):
    """The chain's Order.TimeInForce values (UNSPECIFIED rests as GTT)."""

    UNSPECIFIED = "UNSPECIFIED"
    IOC = "IOC"
    POST_ONLY = "POST_ONLY"
    FILL_OR_KILL = "FILL_OR_KILL"


class OrderState(enum.StrEnum):
    """Indexer order statuses."""

    BEST_EFFORT_OPENED = "BEST_EFFORT_OPENED"
    OPEN = "OPEN"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    BEST_EFFORT_CANCELED = "BEST_EFFORT_CANCELED"


@dataclass(frozen=True, slots=True)
class ExchangeConfig:
    chain_id: str = "dydx-sim-1"
    block_interval_ns: int = 650_000_000
    short_block_window: int = 40  # 20 before protocol v9.5
    maker_fee_rate: Decimal = Decimal("0.0001")  # tier 1
    taker_fee_rate: Decimal = Decimal("0.0005")
    funding_interval_ns: int = 3_600_000_000_000


@dataclass(frozen=True, slots=True)
class MarketInfo:
    """A perpetual as the indexer's /v4/perpetualMarkets describes it."""

    ticker: str
    clob_pair_id: int
    status: str  # "ACTIVE" | "PAUSED" | "CANCEL_ONLY" | ...
    oracle_price: Decimal
    next_funding_rate: Decimal  # 1-hour rate, positive: longs pay
    initial_margin_fraction: Decimal
    maintenance_margin_fraction: Decimal
    atomic_resolution: int
    quantum_conversion_exponent: int
    step_base_quantums: int
    subticks_per_tick: int
    tick_size: Decimal
    step_size: Decimal
    open_interest: Decimal
    volume_24h: Decimal


@dataclass(frozen=True, slots=True)
class OrderId:
    owner: str  # bech32 dydx1... address
    subaccount_number: int
    client_id: int  # uint32
    order_flags: int  # 0 short-term, 32 conditional, 64 long-term
    clob_pair_id: int


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A MsgPlaceOrder, already converted to Decimal price/size."""

    order_id: OrderId
    side: Side
    size: Decimal
    price: Decimal
    time_in_force: TimeInForce
    reduce_only: bool = False
    good_til_block: int | None = None  # short-term
    good_til_block_time: int | None = None  # long-term/conditional, unix seconds
    client_metadata: int = 0


@dataclass(slots=True)
class OrderRecord:
    """One order as the indexer reports it (REST /v4/orders and v4_subaccounts updates)."""

    uid: str  # stable id derived from the OrderId (the indexer's order UUID)
    request: OrderRequest
    ticker: str
    status: OrderState
    total_filled: Decimal
    created_at_height: int
    updated_at_height: int
    updated_ns: int
    removal_reason: str | None = None  # e.g. "ORDER_REMOVAL_REASON_EXPIRED"

    def copy(self) -> OrderRecord:
        """An independent copy (what callers get: the exchange keeps updating its own)."""
        return OrderRecord(self.uid, self.request, self.ticker, self.status, self.total_filled,
                           self.created_at_height, self.updated_at_height, self.updated_ns,
                           self.removal_reason)


@dataclass(frozen=True, slots=True)
class FillRecord:
    fill_id: str
    order_uid: str
    owner: str
    subaccount_number: int
    ticker: str
    side: Side
    liquidity: str  # "MAKER" | "TAKER"
    price: Decimal
    size: Decimal
    fee: Decimal  # USDC, negative for a rebate
    client_metadata: int
    height: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class PositionRecord:
    owner: str
    subaccount_number: int
    ticker: str
    size: Decimal  # signed
    entry_price: Decimal
    realized_pnl: Decimal
    net_funding: Decimal
    status: str  # "OPEN" | "CLOSED" | "LIQUIDATED"
    height: int


@dataclass(frozen=True, slots=True)
class FundingRecord:
    """Funding settled on one position at one hourly tick (amount > 0: received)."""

    owner: str
    subaccount_number: int
    ticker: str
    rate: Decimal
    oracle_price: Decimal
    position_size: Decimal
    amount: Decimal
    height: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class TransferRecord:
    transfer_id: str
    owner: str
    subaccount_number: int
    kind: str  # "DEPOSIT" | "WITHDRAWAL" | "TRANSFER_IN" | "TRANSFER_OUT"
    amount: Decimal
    height: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class SubaccountInfo:
    owner: str
    subaccount_number: int
    usdc_balance: Decimal
    equity: Decimal
    free_collateral: Decimal
    positions: tuple[PositionRecord, ...]
    height: int


@dataclass(frozen=True, slots=True)
class HistoricalFunding:
    ticker: str
    rate: Decimal
    price: Decimal
    height: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class AccountUpdate:
    """Everything that changed for one subaccount in one step (one v4_subaccounts message)."""

    owner: str
    subaccount_number: int
    orders: tuple[OrderRecord, ...] = ()
    fills: tuple[FillRecord, ...] = ()
    positions: tuple[PositionRecord, ...] = ()
    transfers: tuple[TransferRecord, ...] = ()
    funding: tuple[FundingRecord, ...] = ()
    height: int = 0


@dataclass(frozen=True, slots=True)
class MarketChange:
    """A market's status or parameters changed (the indexer sends a v4_markets `trading` update)."""

    ticker: str


ExchangeEvent = BookSnapshot | BookDelta | Trade | OracleUpdate | BlockHeight | AccountUpdate | MarketChange


@dataclass(slots=True)
class ScenarioState:
    """Fault switches the admin endpoint and scenario files flip (see bot.sim.scenarios)."""

    chain_halted: bool = False  # no blocks, BroadcastTx fails
    indexer_lag_blocks: int = 0  # indexer reports height - lag
    withdrawals_gated: bool = False
    liquidity_factor: float = 1.0  # < 1 thins background depth
    funding_spike_1h: Decimal | None = None  # overrides the funding rate while set
    extra: dict[str, object] = field(default_factory=dict)


# ---- chain parameters and errors -------------------------------------------------------------

CODESPACE_CLOB = "clob"
CODESPACE_SDK = "sdk"
ERR_INVALID_ORDER_QUANTUMS = 4
ERR_INVALID_ORDER_GOOD_TIL_BLOCK = 5
ERR_INVALID_ORDER_SUBTICKS = 6
ERR_ORDER_IS_CANCELED = 7
ERR_INVALID_CLOB = 8
ERR_CANCEL_ALREADY_EXISTS = 9
ERR_HEIGHT_EXCEEDS_GOOD_TIL_BLOCK = 10
ERR_GOOD_TIL_BLOCK_EXCEEDS_SHORT_BLOCK_WINDOW = 11
ERR_INVALID_PLACE_ORDER = 12
ERR_INVALID_REPLACEMENT = 20
ERR_ORDER_FULLY_FILLED = 24
ERR_ORDER_CONFLICTS_WITH_CLOB_PAIR_STATUS = 34
ERR_INVALID_BATCH_CANCEL = 45
ERR_DEPRECATED_FIELD = 48
ERR_POST_ONLY_WOULD_CROSS_MAKER_ORDER = 2003
ERR_INVALID_ORDER_FLAG = 3000
ERR_INVALID_STATEFUL_ORDER_GOOD_TIL_BLOCK_TIME = 3001
ERR_LONG_TERM_ORDERS_CANNOT_REQUIRE_IMMEDIATE_EXECUTION = 3002
ERR_TIME_EXCEEDS_GOOD_TIL_BLOCK_TIME = 3003
ERR_GOOD_TIL_BLOCK_TIME_EXCEEDS_STATEFUL_ORDER_TIME_WINDOW = 3004
ERR_STATEFUL_ORDER_ALREADY_EXISTS = 3005
ERR_STATEFUL_ORDER_DOES_NOT_EXIST = 3006
ERR_STATEFUL_ORDER_COLLATERALIZATION_CHECK_FAILED = 3007
ERR_NOT_IMPLEMENTED = 9002
ERR_REDUCE_ONLY_DISABLED = 9003
SDK_ERR_INSUFFICIENT_FUNDS = 5
SDK_ERR_UNKNOWN_ADDRESS = 9
SDK_ERR_MEMPOOL_IS_FULL = 20
SDK_ERR_WRONG_SEQUENCE = 32

REMOVAL_USER_CANCELED = "ORDER_REMOVAL_REASON_USER_CANCELED"
REMOVAL_EXPIRED = "ORDER_REMOVAL_REASON_EXPIRED"
REMOVAL_IOC_WOULD_REST = "ORDER_REMOVAL_REASON_IMMEDIATE_OR_CANCEL_WOULD_REST_ON_BOOK"
REMOVAL_SELF_TRADE = "ORDER_REMOVAL_REASON_SELF_TRADE_ERROR"
REMOVAL_REDUCE_ONLY = "ORDER_REMOVAL_REASON_REDUCE_ONLY_RESIZE"
REMOVAL_REPLACED = "ORDER_REMOVAL_REASON_REPLACED"
REMOVAL_LIQUIDATED = "ORDER_REMOVAL_REASON_FULLY_FILLED"  # unused by the model; kept for the table

TIMESTAMP_NONCE_MIN = 2**40  # x/accountplus: a sequence this large is a unix-ms timestamp nonce
_TIMESTAMP_NONCE_WINDOW_MS = 30_000
_TIMESTAMP_NONCES_KEPT = 20
_QUOTE_RESOLUTION = -6
_NS_PER_SEC = 1_000_000_000
_TRADES_KEPT = 1000
_DAY_SECS = 24 * 3600
_VOLUME_SECONDS = _DAY_SECS + 1  # per-second volume buckets kept before old ones are expired
_FUNDING_KEPT = 5000
_UUID_NS = uuid.UUID("0b5c53c0-5d0f-4c52-9d3e-7a0f4f3f5e11")
_UUID_NS_BYTES = _UUID_NS.bytes

# Margin fractions of the real markets (indexer, Dec 2025); other tickers get MarketSpec's defaults.
_MARGIN_FRACTIONS: dict[str, tuple[Decimal, Decimal]] = {
    "BTC-USD": (Decimal("0.02"), Decimal("0.012")),
    "ETH-USD": (Decimal("0.02"), Decimal("0.012")),
}
_DEFAULT_MARGIN = (MarketSpec("X", Decimal(1), Decimal(1), Decimal(1)).initial_margin_fraction,
                   MarketSpec("X", Decimal(1), Decimal(1), Decimal(1)).maintenance_margin_fraction)


def _clob(code: int, log: str) -> ChainError:
    return ChainError(CODESPACE_CLOB, code, log)


def chain_params(tick: Decimal, step: Decimal) -> tuple[int, int, int, int]:
    """Return (atomic_resolution, quantum_conversion_exponent, step_base_quantums, subticks_per_tick).

    Follows the mainnet convention: stepBaseQuantums = step mantissa x 10^6 and subticksPerTick =
    tick mantissa x 10^5, so BTC-USD (1, 0.0001) gives (-10, -9, 1_000_000, 100_000) and ETH-USD
    (0.1, 0.001) gives (-9, -9, 1_000_000, 100_000). Invariants (DYDX_V4.md §4.6):
    step = SBQ x 10^AR and tick = SPT x 10^(QCE - AR - 6).
    """
    if tick <= 0 or step <= 0:
        raise ValueError("tick and step must be positive")
    step_m, step_e = _mantissa(step)
    tick_m, tick_e = _mantissa(tick)
    atomic_resolution = step_e - 6
    quantum_conversion_exponent = tick_e + atomic_resolution + 1
    return atomic_resolution, quantum_conversion_exponent, step_m * 10**6, tick_m * 10**5


def tick_step_from_chain(atomic_resolution: int, quantum_conversion_exponent: int,
                         step_base_quantums: int, subticks_per_tick: int) -> tuple[Decimal, Decimal]:
    """Return (tick_size, step_size) from the four chain integers (the inverse of chain_params)."""
    step = Decimal(step_base_quantums).scaleb(atomic_resolution)
    tick = Decimal(subticks_per_tick).scaleb(
        quantum_conversion_exponent - atomic_resolution + _QUOTE_RESOLUTION)
    return tick.normalize(), step.normalize()


def _mantissa(value: Decimal) -> tuple[int, int]:
    _sign, digits, exponent = value.normalize().as_tuple()
    assert isinstance(exponent, int)
    return int("".join(map(str, digits))), exponent


def order_uid(order_id: OrderId) -> str:
    """Return the indexer-style order UUID: deterministic from the full OrderId."""
    return _uuid5(f"{order_id.owner}-{order_id.subaccount_number}-{order_id.client_id}-"
                  f"{order_id.clob_pair_id}-{order_id.order_flags}")


def _uuid5(name: str) -> str:
    """Return str(uuid.uuid5(_UUID_NS, name)), without building the UUID object on the way."""
    digest = bytearray(hashlib.sha1(_UUID_NS_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# ---- internal state ---------------------------------------------------------------------------

_OPEN_STATES = (OrderState.BEST_EFFORT_OPENED, OrderState.OPEN)
_LIQUIDITY = {"MAKER": Liquidity.MAKER, "TAKER": Liquidity.TAKER}
_DOMAIN_TIF = {TimeInForce.UNSPECIFIED: DomainTif.GTT, TimeInForce.IOC: DomainTif.IOC,
               TimeInForce.POST_ONLY: DomainTif.POST_ONLY, TimeInForce.FILL_OR_KILL: DomainTif.IOC}


class _LevelView:
    """The `size_at` the paper fill model asks of a book: the model's own size at a price."""

    __slots__ = ("_market",)

    def __init__(self, market: _Market) -> None:
        self._market = market

    def size_at(self, side: Side, price: Decimal) -> Decimal:
        m = self._market
        return m.step * m.sim.background(side).get(int(price / m.tick), 0)


@dataclass(slots=True, eq=False)
class _Market:
    ticker: str
    clob_pair_id: int
    sim: SimMarket
    tick: Decimal
    step: Decimal
    chain: tuple[int, int, int, int]
    imf: Decimal
    mmf: Decimal
    status: str = "ACTIVE"
    # resting account orders: side -> price ticks -> orders in time priority
    book: dict[Side, dict[int, list[_Order]]] = field(default_factory=dict)
    # (index in its block, trade, height): the trade id is formatted when read (trades())
    trades: deque[tuple[int, Trade, int]] = field(default_factory=lambda: deque(maxlen=_TRADES_KEPT))
    # traded notional in ticks x steps, per second [second, units], oldest first, and its total
    volume: deque[list[int]] = field(default_factory=deque)
    volume_units: int = 0
    funding: deque[HistoricalFunding] = field(default_factory=lambda: deque(maxlen=_FUNDING_KEPT))
    view: _LevelView | None = None

    def price(self, ticks: int) -> Decimal:
        return self.sim.price_of(ticks)

    def size(self, steps: int) -> Decimal:
        return self.sim.size_of(steps)

    def add_volume(self, ts_ns: int, units: int) -> None:
        """Count `units` (ticks x steps) of notional traded at `ts_ns`."""
        second = ts_ns // _NS_PER_SEC
        volume = self.volume
        if volume and volume[-1][0] == second:
            volume[-1][1] += units
        else:
            volume.append([second, units])
            if len(volume) > _VOLUME_SECONDS:
                self._expire_volume()
        self.volume_units += units

    def volume_24h(self) -> Decimal:
        """Notional traded in the 24 hours up to the latest trade (to the second)."""
        self._expire_volume()
        return self.tick * self.step * self.volume_units

    def _expire_volume(self) -> None:
        volume = self.volume
        if volume:
            cutoff = volume[-1][0] - _DAY_SECS
            while volume[0][0] <= cutoff:
                self.volume_units -= volume.popleft()[1]


@dataclass(slots=True, eq=False)
class _Order:
    record: OrderRecord
    market: _Market
    sub: _Subaccount
    price_ticks: int
    size_steps: int
    filled_steps: int = 0
    resting: RestingOrder | None = None

    @property
    def remaining_steps(self) -> int:
        return self.size_steps - self.filled_steps

    @property
    def is_open(self) -> bool:
        return self.record.status in _OPEN_STATES


@dataclass(slots=True, eq=False)
class _Position:
    pos: Position
    net_funding: Decimal = ZERO
    status: str = "OPEN"


@dataclass(slots=True, eq=False)
class _Subaccount:
    owner: str
    number: int
    usdc: Decimal = ZERO
    positions: dict[str, _Position] = field(default_factory=dict)
    history: list[PositionRecord] = field(default_factory=list)  # closed and liquidated
    orders: dict[str, _Order] = field(default_factory=dict)  # uid -> order, every order seen
    fills: list[FillRecord] = field(default_factory=list)
    funding: list[FundingRecord] = field(default_factory=list)
    transfers: list[TransferRecord] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class _Account:
    number: int
    sequence: int = 0
    nonces: deque[int] = field(default_factory=lambda: deque(maxlen=_TIMESTAMP_NONCES_KEPT))
    subaccounts: dict[int, _Subaccount] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class _Changes:
    orders: dict[str, _Order] = field(default_factory=dict)
    fills: list[FillRecord] = field(default_factory=list)
    positions: dict[str, None] = field(default_factory=dict)
    transfers: list[TransferRecord] = field(default_factory=list)
    funding: list[FundingRecord] = field(default_factory=list)


class SimExchange:
    """Markets, accounts, order matching, funding and margin for the simulator."""

    def __init__(self, markets: list[object], seed: int, start_ns: int,
                 config: ExchangeConfig | None = None) -> None:
        """`markets` is a list of bot.sim.market.SimMarketParams; clob pair ids follow the order."""
        self.config = config or ExchangeConfig()
        self._fees = FeeSchedule(self.config.maker_fee_rate, self.config.taker_fee_rate)
        self._scenario = ScenarioState()
        self._applied_liquidity = 1.0
        self._applied_spike: Decimal | None = None
        self._scenario_status: dict[str, str] = {}  # ticker -> status a scenario imposes
        self._scenario_margin: tuple[str, Decimal, Decimal] | None = None
        self._markets: list[_Market] = []
        self._by_ticker: dict[str, _Market] = {}
        for i, params in enumerate(markets):
            if not isinstance(params, SimMarketParams):
                raise TypeError(f"markets[{i}] is not a SimMarketParams")
            if params.ticker in self._by_ticker:
                raise ValueError(f"duplicate market {params.ticker}")
            imf, mmf = _MARGIN_FRACTIONS.get(params.ticker, _DEFAULT_MARGIN)
            market = _Market(params.ticker, i, SimMarket(params, seed + i, start_ns),
                             params.tick_size, params.step_size,
                             chain_params(params.tick_size, params.step_size), imf, mmf)
            market.book = {Side.BUY: {}, Side.SELL: {}}
            market.view = _LevelView(market)
            market.sim.set_hooks(taker=self._taker_hook(market), pre_emit=self._uncross_hook(market),
                                 emit_heights=False, taker_needs_overlay=True)
            self._markets.append(market)
            self._by_ticker[params.ticker] = market
        first = markets[0] if markets else None
        self._height = first.initial_height if isinstance(first, SimMarketParams) else 1
        self._block_time_ns = start_ns
        self._next_block_ns = start_ns + self.config.block_interval_ns
        self._now_ns = start_ns
        self._funding_epoch = start_ns // self.config.funding_interval_ns
        self._trade_index = 0  # per block, for trade ids
        self._fill_seq = 0
        self._transfer_seq = 0
        self._accounts: dict[str, _Account] = {}
        self._short_cancels: dict[OrderId, int] = {}  # short-term cancel -> its good_til_block
        self._short_expiry: dict[int, list[_Order]] = {}  # good_til_block -> orders
        self._stateful_open: dict[str, _Order] = {}  # uid -> open long-term order
        self._open: dict[OrderId, _Order] = {}
        self._events: list[ExchangeEvent] = []
        self._changes: dict[tuple[str, int], _Changes] = {}

    # ---- time --------------------------------------------------------------------------------
    def advance(self, now_ns: int) -> list[ExchangeEvent]:
        """Advance markets and blocks to now; expire orders, match flow, settle funding, liquidate."""
        if now_ns < self._now_ns:
            raise ValueError(f"time went backwards: {now_ns} < {self._now_ns}")
        self._now_ns = now_ns
        self._apply_scenario()
        interval = self.config.block_interval_ns
        if self._scenario.chain_halted:
            # The whole chain stops: no blocks, no matching, no oracle. Markets gap on resume.
            self._next_block_ns = max(self._next_block_ns, now_ns + interval)
        else:
            while self._next_block_ns <= now_ns:
                block_ns = self._next_block_ns
                self._step_markets(block_ns)
                self._produce_block(block_ns)
                self._next_block_ns += interval
            self._step_markets(now_ns)
        self._flush_changes()
        return self.drain()

    def drain(self) -> list[ExchangeEvent]:
        """Return and clear the events produced since the last call (advance calls this)."""
        events, self._events = self._events, []
        return events

    @property
    def height(self) -> int:
        return self._height

    @property
    def block_time_ns(self) -> int:
        """Time of the latest block."""
        return self._block_time_ns

    @property
    def scenario(self) -> ScenarioState:
        return self._scenario

    # ---- markets -----------------------------------------------------------------------------
    def markets(self) -> dict[str, MarketInfo]:
        return {m.ticker: self._market_info(m) for m in self._markets}

    def market_by_clob_pair(self, clob_pair_id: int) -> MarketInfo:
        """Raise ChainError('clob', 8 ErrInvalidClob, ...) for an unknown clob pair."""
        return self._market_info(self._market(clob_pair_id))

    def set_market_status(self, ticker: str, status: str) -> None:
        """Set a market's ClobPair status (ACTIVE, POST_ONLY, CANCEL_ONLY, PAUSED, ...).

        Leaving FINAL_SETTLEMENT settles every position left in the market at the oracle price
        (the chain closes them; the model then lets the market trade again, for repeatable tests).
        """
        m = self._by_ticker[ticker]
        if m.status == status:
            return
        if m.status == "FINAL_SETTLEMENT":
            self._final_settle(m, self._now_ns)
        m.status = status
        self._events.append(MarketChange(ticker))

    def set_margin_fractions(self, ticker: str, imf: Decimal, mmf: Decimal) -> None:
        """Change a market's initial and maintenance margin fractions (governance)."""
        m = self._by_ticker[ticker]
        if (m.imf, m.mmf) != (imf, mmf):
            m.imf, m.mmf = imf, mmf
            self._events.append(MarketChange(ticker))

    def sim_market(self, ticker: str) -> SimMarket:
        """Return the market model behind `ticker` (tests, scenarios)."""
        return self._by_ticker[ticker].sim

    def book(self, ticker: str) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """Aggregated (bids, asks), best first, account orders included."""
        sim = self._by_ticker[ticker].sim
        bids, asks = sim.shown(Side.BUY), sim.shown(Side.SELL)
        price, size = sim.price_of, sim.size_of
        return ([(price(t), size(bids[t])) for t in sorted(bids, reverse=True)],
                [(price(t), size(asks[t])) for t in sorted(asks)])

    def trades(self, ticker: str, limit: int = 100) -> list[tuple[str, Trade, int]]:
        """Newest first: (trade id, trade, height)."""
        trades = self._by_ticker[ticker].trades
        return [(f"{height:08X}{0:08X}{index:08X}", trade, height)
                for index, trade, height in (trades[-1 - k] for k in range(min(limit, len(trades))))]

    def historical_funding(self, ticker: str, limit: int = 100) -> list[HistoricalFunding]:
        """Newest first: the settlements since the simulator started."""
        funding = self._by_ticker[ticker].funding
        return [funding[-1 - k] for k in range(min(limit, len(funding)))]

    def past_funding(self, ticker: str, hours: int) -> list[HistoricalFunding]:
        """Newest first: the hourly settlements of the market's past (bot.sim.history)."""
        market = self._by_ticker[ticker]
        blocks_per_hour = max(1, NS_PER_HOUR // market.sim.params.block_interval_ns)
        first = market.sim.params.initial_height
        return [HistoricalFunding(ticker, bar.funding_rate_1h, bar.close, max(1, first - k * blocks_per_hour),
                                  bar.ts_ns + NS_PER_HOUR)
                for k, bar in enumerate(reversed(self.history(ticker, hours)))]

    def history(self, ticker: str, hours: int) -> list[HistoryBar]:
        """The hourly bars (oldest first) of a market's past before the simulator started."""
        return self._by_ticker[ticker].sim.history(hours)

    # ---- accounts ----------------------------------------------------------------------------
    def create_account(self, owner: str, usdc: Decimal, subaccount_number: int = 0) -> int:
        """Create (or top up) an account; returns its account number."""
        account = self._accounts.get(owner)
        if account is None:
            account = self._accounts[owner] = _Account(len(self._accounts) + 1)
        sub = self._sub(owner, subaccount_number, create=True)
        if usdc:
            self._transfer(sub, "DEPOSIT", usdc)
        self._flush_changes()
        return account.number

    def deposit(self, owner: str, amount: Decimal, subaccount_number: int = 0) -> None:
        """Credit USDC to a subaccount (MsgDepositToSubaccount)."""
        self._check_running()
        if amount <= 0:
            raise ChainError(CODESPACE_SDK, SDK_ERR_INSUFFICIENT_FUNDS, "amount must be positive")
        self._transfer(self._sub(owner, subaccount_number), "DEPOSIT", amount)
        self._flush_changes()

    def withdraw(self, owner: str, amount: Decimal, subaccount_number: int = 0) -> None:
        """Debit USDC from a subaccount (MsgWithdrawFromSubaccount); gated and collateral-checked."""
        self._check_running()
        sub = self._sub(owner, subaccount_number)
        if self._scenario.withdrawals_gated:
            raise ChainError("subaccounts", 7,
                             "WithdrawalsAndTransfersBlocked: failed to apply subaccount updates")
        if amount <= 0 or amount > self._free_collateral(sub):
            raise ChainError(CODESPACE_SDK, SDK_ERR_INSUFFICIENT_FUNDS,
                             f"insufficient free collateral for withdrawal of {amount}")
        self._transfer(sub, "WITHDRAWAL", -amount)
        self._flush_changes()

    def account(self, owner: str) -> tuple[int, int]:
        """(account_number, sequence); ChainError for an unknown address."""
        account = self._account(owner)
        return account.number, account.sequence

    def check_sequence(self, owner: str, sequence: int, is_stateful: bool) -> None:
        """Stateful txs need sequence == account sequence and bump it; short-term ones skip both.

        A sequence >= 2^40 is a timestamp nonce (unix ms): it must be within 30 s of the block
        time and unused, and it leaves the account sequence alone.
        """
        account = self._account(owner)
        if not is_stateful:
            return
        if sequence >= TIMESTAMP_NONCE_MIN:
            block_ms = self._block_time_ns // 1_000_000
            if abs(sequence - block_ms) > _TIMESTAMP_NONCE_WINDOW_MS or sequence in account.nonces:
                raise ChainError(CODESPACE_SDK, SDK_ERR_WRONG_SEQUENCE,
                                 f"timestamp nonce {sequence} is outside the window or already used")
            account.nonces.append(sequence)
            return
        if sequence != account.sequence:
            raise ChainError(CODESPACE_SDK, SDK_ERR_WRONG_SEQUENCE,
                             f"account sequence mismatch, expected {account.sequence}, got {sequence}: "
                             "incorrect account sequence")
        account.sequence += 1

    def subaccount(self, owner: str, number: int = 0) -> SubaccountInfo:
        sub = self._sub(owner, number)
        equity = self._equity(sub)
        return SubaccountInfo(owner, number, sub.usdc, equity, equity - self._initial_margin(sub),
                              tuple(self._position_record(sub, t) for t in sub.positions), self._height)

    def asset_usdc(self, owner: str, number: int = 0) -> Decimal:
        """Return the USDC asset position as dYdX reports it: cash minus the cost of open positions."""
        sub = self._sub(owner, number)
        return sub.usdc - sum((p.pos.size * p.pos.avg_entry for p in sub.positions.values()), ZERO)

    def orders(self, owner: str, number: int = 0, open_only: bool = False) -> list[OrderRecord]:
        sub = self._sub(owner, number)
        return [o.record.copy() for o in sub.orders.values() if not open_only or o.is_open]

    def fills(self, owner: str, number: int = 0, limit: int = 100) -> list[FillRecord]:
        """Newest first."""
        fills = self._sub(owner, number).fills
        return [fills[-1 - k] for k in range(min(limit, len(fills)))]

    def positions(self, owner: str, number: int = 0, open_only: bool = True) -> list[PositionRecord]:
        sub = self._sub(owner, number)
        current = [self._position_record(sub, t) for t in sub.positions]
        return current if open_only else [*sub.history, *current]

    def funding_payments(self, owner: str, number: int = 0) -> list[FundingRecord]:
        return list(self._sub(owner, number).funding)

    def transfers(self, owner: str, number: int = 0) -> list[TransferRecord]:
        return list(self._sub(owner, number).transfers)

    # ---- orders (the node front-end calls these after decoding and verifying a tx) -------------
    def place_order(self, request: OrderRequest, now_ns: int) -> None:
        """Validate against chain rules and match or rest; raise ChainError on rejection."""
        self._check_running()
        oid = request.order_id
        market, price_ticks, size_steps = self._validate_basic(request)
        sub = self._sub(oid.owner, oid.subaccount_number)
        self._validate_state(request, market)
        existing = self._open.get(oid)
        uid = order_uid(oid)
        if oid.order_flags == ORDER_FLAGS_SHORT_TERM:
            self._validate_short_term_id(request, existing, sub.orders.get(uid))
        elif existing is not None:
            raise _clob(ERR_STATEFUL_ORDER_ALREADY_EXISTS,
                        "Existing stateful order has higher-or-equal priority than the new one")
        if request.time_in_force is TimeInForce.POST_ONLY and self._would_cross(
                market, request.side, price_ticks):
            raise _clob(ERR_POST_ONLY_WOULD_CROSS_MAKER_ORDER,
                        "Post-only order would cross one or more maker orders")
        if not request.reduce_only:
            self._check_margin(sub, market, request.side, size_steps, price_ticks)
        ts = max(now_ns, self._now_ns)
        if existing is not None:  # a valid short-term replacement: the old one leaves the book
            self._remove(existing, OrderState.CANCELED, REMOVAL_REPLACED, ts)
        status = (OrderState.BEST_EFFORT_OPENED if oid.order_flags == ORDER_FLAGS_SHORT_TERM
                  else OrderState.OPEN)
        record = OrderRecord(uid, request, market.ticker, status, ZERO, self._height,
                             self._height, ts)
        order = _Order(record, market, sub, price_ticks, size_steps)
        sub.orders.pop(record.uid, None)  # a re-used id moves to the end (newest)
        sub.orders[record.uid] = order
        self._touch(order)
        if request.reduce_only:
            limit = self._reduce_only_limit(sub, market, request.side)
            if limit <= 0:
                self._finish(order, OrderState.CANCELED, REMOVAL_REDUCE_ONLY, ts)
                self._after_call(ts)
                return
            order.size_steps = min(order.size_steps, limit)
        self._match(order, ts)
        if order.remaining_steps > 0 and order.is_open:
            if request.time_in_force is TimeInForce.IOC:
                self._finish(order, OrderState.CANCELED, REMOVAL_IOC_WOULD_REST, ts)
            else:
                self._rest(order)
        self._after_call(ts)

    def cancel_order(self, order_id: OrderId, now_ns: int, good_til_block: int | None = None,
                     good_til_block_time: int | None = None) -> None:
        self._check_running()
        self._market(order_id.clob_pair_id)
        self._sub(order_id.owner, order_id.subaccount_number)
        ts = max(now_ns, self._now_ns)
        order = self._open.get(order_id)
        if order_id.order_flags == ORDER_FLAGS_SHORT_TERM:
            if not good_til_block:
                raise _clob(ERR_INVALID_ORDER_GOOD_TIL_BLOCK, "cancel goodTilBlock cannot be 0")
            self._check_good_til_block(good_til_block)
            previous = self._short_cancels.get(order_id)
            if previous is not None and previous >= good_til_block:
                raise _clob(ERR_CANCEL_ALREADY_EXISTS, "A cancel already exists in the memclob for this "
                            "order with a greater than or equal GoodTilBlock")
            self._short_cancels[order_id] = good_til_block
        elif order_id.order_flags in (ORDER_FLAGS_LONG_TERM, ORDER_FLAGS_CONDITIONAL):
            if not good_til_block_time:
                raise _clob(ERR_INVALID_STATEFUL_ORDER_GOOD_TIL_BLOCK_TIME,
                            "cancellation goodTilBlockTime cannot be 0")
            self._check_good_til_block_time(good_til_block_time)
            if order is None:
                raise _clob(ERR_STATEFUL_ORDER_DOES_NOT_EXIST, f"Stateful order does not exist: {order_id}")
        else:
            raise _clob(ERR_INVALID_ORDER_FLAG, f"invalid order flag {order_id.order_flags}")
        if order is not None:
            self._remove(order, OrderState.CANCELED, REMOVAL_USER_CANCELED, ts)
        self._after_call(ts)

    def batch_cancel(self, owner: str, subaccount_number: int,
                     batches: list[tuple[int, list[int]]], good_til_block: int, now_ns: int) -> None:
        """Cancel short-term orders by (clob_pair_id, client ids); at most 100 in total."""
        self._check_running()
        total = sum(len(ids) for _, ids in batches)
        if total == 0 or total > MAX_BATCH_CANCEL:
            raise _clob(ERR_INVALID_BATCH_CANCEL,
                        f"Batch cancel cannot have zero orders or more than {MAX_BATCH_CANCEL} orders "
                        f"specified. Got {total}")
        if not good_til_block:
            raise _clob(ERR_INVALID_ORDER_GOOD_TIL_BLOCK, "batch cancel goodTilBlock cannot be 0")
        self._check_good_til_block(good_til_block)
        for clob_pair_id, _ in batches:
            self._market(clob_pair_id)
        self._sub(owner, subaccount_number)
        ts = max(now_ns, self._now_ns)
        for clob_pair_id, client_ids in batches:
            for client_id in client_ids:
                oid = OrderId(owner, subaccount_number, client_id, ORDER_FLAGS_SHORT_TERM, clob_pair_id)
                if self._short_cancels.get(oid, -1) < good_til_block:
                    self._short_cancels[oid] = good_til_block
                order = self._open.get(oid)
                if order is not None:
                    self._remove(order, OrderState.CANCELED, REMOVAL_USER_CANCELED, ts)
        self._after_call(ts)

    # ---- validation --------------------------------------------------------------------------
    def _check_running(self) -> None:
        if self._scenario.chain_halted:
            raise ChainError(CODESPACE_SDK, SDK_ERR_MEMPOOL_IS_FULL,
                             "mempool is full: chain halted, no blocks are being produced")

    def _market(self, clob_pair_id: int) -> _Market:
        if not 0 <= clob_pair_id < len(self._markets):
            raise _clob(ERR_INVALID_CLOB, f"ClobPair ID {clob_pair_id} does not reference a valid CLOB")
        return self._markets[clob_pair_id]

    def _validate_basic(self, request: OrderRequest) -> tuple[_Market, int, int]:
        """MsgPlaceOrder.ValidateBasic, then the ClobPair grid checks; returns (market, ticks, steps)."""
        oid, tif = request.order_id, request.time_in_force
        if tif is TimeInForce.FILL_OR_KILL:
            raise _clob(ERR_DEPRECATED_FIELD, "Fill-or-kill has been deprecated")
        if request.size <= 0:
            raise _clob(ERR_INVALID_ORDER_QUANTUMS, "order size quantums cannot be 0")
        if oid.order_flags == ORDER_FLAGS_SHORT_TERM:
            if not request.good_til_block:
                raise _clob(ERR_INVALID_ORDER_GOOD_TIL_BLOCK, "order goodTilBlock cannot be 0")
        elif oid.order_flags in (ORDER_FLAGS_LONG_TERM, ORDER_FLAGS_CONDITIONAL):
            if not request.good_til_block_time:
                raise _clob(ERR_INVALID_STATEFUL_ORDER_GOOD_TIL_BLOCK_TIME,
                            "stateful order goodTilBlockTime cannot be 0")
        else:
            raise _clob(ERR_INVALID_ORDER_FLAG, f"invalid order flag {oid.order_flags}")
        if oid.order_flags == ORDER_FLAGS_LONG_TERM and tif is TimeInForce.IOC:
            raise _clob(ERR_LONG_TERM_ORDERS_CANNOT_REQUIRE_IMMEDIATE_EXECUTION,
                        "Stateful orders cannot require immediate execution")
        if request.reduce_only and tif is not TimeInForce.IOC:
            raise _clob(ERR_REDUCE_ONLY_DISABLED, "reduce only orders must be short term IOC orders")
        if request.price <= 0:
            raise _clob(ERR_INVALID_ORDER_SUBTICKS, "order subticks cannot be 0 for this order type")
        if oid.order_flags == ORDER_FLAGS_CONDITIONAL:
            raise _clob(ERR_NOT_IMPLEMENTED, "conditional orders are not supported by the simulator")
        market = self._market(oid.clob_pair_id)
        ticks, tick_rest = divmod(request.price, market.tick)
        if tick_rest:
            raise _clob(ERR_INVALID_PLACE_ORDER, f"Order price {request.price} must be a multiple of "
                        f"the ClobPair's tick size {market.tick} (SubticksPerTick {market.chain[3]})")
        steps, step_rest = divmod(request.size, market.step)
        if step_rest or steps < 1:
            raise _clob(ERR_INVALID_PLACE_ORDER, f"Order size {request.size} must be a multiple of "
                        f"the ClobPair's step size {market.step} (StepBaseQuantums {market.chain[2]})")
        return market, int(ticks), int(steps)

    def _validate_state(self, request: OrderRequest, market: _Market) -> None:
        status = market.status
        if status != "ACTIVE" and not (
                (status == "POST_ONLY" and request.time_in_force is TimeInForce.POST_ONLY)
                or (status == "FINAL_SETTLEMENT" and request.reduce_only)):
            raise _clob(ERR_ORDER_CONFLICTS_WITH_CLOB_PAIR_STATUS,
                        f"Order conflicts with ClobPair status {status}")
        if request.order_id.order_flags == ORDER_FLAGS_SHORT_TERM:
            assert request.good_til_block is not None
            self._check_good_til_block(request.good_til_block)
        else:
            assert request.good_til_block_time is not None
            self._check_good_til_block_time(request.good_til_block_time)

    def _check_good_til_block(self, good_til_block: int) -> None:
        if good_til_block <= self._height:
            raise _clob(ERR_HEIGHT_EXCEEDS_GOOD_TIL_BLOCK,
                        f"GoodTilBlock {good_til_block} is less than or equal to the current "
                        f"blockHeight {self._height}")
        limit = self._height + self.config.short_block_window
        if good_til_block > limit:
            raise _clob(ERR_GOOD_TIL_BLOCK_EXCEEDS_SHORT_BLOCK_WINDOW,
                        f"The GoodTilBlock {good_til_block} is further than ShortBlockWindow "
                        f"{self.config.short_block_window} blocks into the future (max {limit})")

    def _check_good_til_block_time(self, good_til_block_time: int) -> None:
        block_secs = self._block_time_ns // _NS_PER_SEC
        if good_til_block_time <= block_secs:
            raise _clob(ERR_TIME_EXCEEDS_GOOD_TIL_BLOCK_TIME,
                        f"GoodTilBlockTime {good_til_block_time} is less than or equal to the block "
                        f"time {block_secs}")
        if good_til_block_time > block_secs + STATEFUL_ORDER_WINDOW_SECS:
            raise _clob(ERR_GOOD_TIL_BLOCK_TIME_EXCEEDS_STATEFUL_ORDER_TIME_WINDOW,
                        f"GoodTilBlockTime {good_til_block_time} is further than StatefulOrderTimeWindow "
                        f"({STATEFUL_ORDER_WINDOW_SECS} s) into the future")

    def _validate_short_term_id(self, request: OrderRequest, existing: _Order | None,
                                previous: _Order | None) -> None:
        """`existing`: the open order with this id; `previous`: the last order with it, open or not."""
        oid = request.order_id
        assert request.good_til_block is not None
        cancelled = self._short_cancels.get(oid)
        if cancelled is not None and cancelled >= request.good_til_block:
            raise _clob(ERR_ORDER_IS_CANCELED, f"Attempt to place an order that is already canceled "
                        f"(cancel GoodTilBlock {cancelled})")
        if existing is None:
            if (previous is not None and previous.record.status is OrderState.FILLED
                    and (previous.record.request.good_til_block or 0) >= self._height):
                raise _clob(ERR_ORDER_FULLY_FILLED, "Order is fully filled")
            return
        old = existing.record.request
        assert old.good_til_block is not None
        if (request.good_til_block <= old.good_til_block or request.side is not old.side
                or request.time_in_force is not old.time_in_force
                or request.reduce_only != old.reduce_only
                or (request.time_in_force is TimeInForce.IOC and existing.filled_steps > 0)):
            raise _clob(ERR_INVALID_REPLACEMENT, "Replacing an existing order failed: a replacement needs "
                        "a greater GoodTilBlock and the same side, time in force and reduce-only")

    def _would_cross(self, m: _Market, side: Side, ticks: int) -> bool:
        opposite = m.sim.shown(side.opposite())
        if not opposite:
            return False
        return ticks >= min(opposite) if side is Side.BUY else ticks <= max(opposite)

    def _check_margin(self, sub: _Subaccount, m: _Market, side: Side, steps: int, ticks: int) -> None:
        """Reject an order that increases risk beyond initial margin if it filled in full at its price."""
        current = sub.positions.get(m.ticker)
        size_now = current.pos.size if current is not None else ZERO
        signed = m.size(steps) * side.sign
        after = size_now + signed
        if abs(after) <= abs(size_now):
            return  # risk-reducing orders are always allowed
        oracle = m.sim.oracle_price()
        # expected fill price: the limit, or the touch if that is better (marketable limits are wide)
        opposite = m.sim.shown(side.opposite())
        if opposite:
            ticks = min(ticks, min(opposite)) if side is Side.BUY else max(ticks, max(opposite))
        price = m.price(ticks)
        equity = self._equity(sub) + signed * (oracle - price) - self._fees.fee(price, abs(signed),
                                                                                 Liquidity.TAKER)
        required = self._initial_margin(sub) - abs(size_now) * oracle * m.imf + abs(after) * oracle * m.imf
        if required > equity:
            raise _clob(ERR_STATEFUL_ORDER_COLLATERALIZATION_CHECK_FAILED,
                        f"Order collateralization check failed: initial margin {required} exceeds "
                        f"equity {equity}")

    def _reduce_only_limit(self, sub: _Subaccount, m: _Market, side: Side) -> int:
        current = sub.positions.get(m.ticker)
        if current is None or current.pos.size * side.sign >= 0:
            return 0
        return int(abs(current.pos.size) / m.step)

    # ---- matching ----------------------------------------------------------------------------
    def _match(self, order: _Order, ts: int) -> None:
        """Fill `order` as a taker: model levels and other accounts' orders by price-time priority."""
        m, side = order.market, order.record.request.side
        maker_side = side.opposite()
        bg = m.sim.background(maker_side)
        over = m.sim.overlay(maker_side)
        makers_by_price = m.book[maker_side]
        buy = side is Side.BUY
        limit = order.price_ticks
        while order.remaining_steps > 0 and order.is_open:
            best_bg = (min(bg) if buy else max(bg)) if bg else None
            best_acct = (min(over) if buy else max(over)) if over else None
            candidates = [p for p in (best_bg, best_acct) if p is not None]
            if not candidates:
                break
            price = min(candidates) if buy else max(candidates)
            if (price > limit) if buy else (price < limit):
                break
            traded = 0
            makers = list(makers_by_price.get(price, ()))
            if makers:
                first = makers[0].resting
                assert first is not None
                ahead = min(int(first.queue_ahead / m.step), bg.get(price, 0))
                traded += self._take_background(order, price, min(ahead, order.remaining_steps), ts)
                for maker in makers:
                    if order.remaining_steps <= 0:
                        break
                    if maker.sub is order.sub:
                        self._remove(maker, OrderState.CANCELED, REMOVAL_SELF_TRADE, ts)
                        continue
                    qty = min(order.remaining_steps, maker.remaining_steps)
                    self._fill(maker, price, qty, "MAKER", ts)
                    self._fill(order, price, qty, "TAKER", ts)
                    traded += qty
            if order.remaining_steps > 0 and bg.get(price, 0) > 0:
                traded += self._take_background(order, price, order.remaining_steps, ts)
            if traded:
                trade = make_trade(m.ticker, m.price(price), m.size(traded), side, ts)
                self._record_trade(m, trade, price, traded)
                self._events.append(trade)
            elif not makers:
                break  # nothing left at the best price (should not happen)
        self._events.extend(m.sim.flush(ts))

    def _take_background(self, order: _Order, price: int, steps: int, ts: int) -> int:
        """Take up to `steps` of the model's size at exactly `price`; fill `order`; shrink queues."""
        if steps <= 0:
            return 0
        m, side = order.market, order.record.request.side
        got = sum(s for _, s in m.sim.take(side, steps, price))
        if got:
            self._fill(order, price, got, "TAKER", ts)
            for maker in m.book[side.opposite()].get(price, ()):
                resting = maker.resting
                assert resting is not None
                resting.queue_ahead = max(ZERO, resting.queue_ahead - m.size(got))
        return got

    def _rest(self, order: _Order) -> None:
        m, request = order.market, order.record.request
        side = request.side
        domain = DomainOrder(request.order_id.client_id, m.ticker, side, m.size(order.size_steps),
                             m.price(order.price_ticks), _DOMAIN_TIF[request.time_in_force],
                             request.reduce_only)
        assert m.view is not None
        order.resting = join_queue(domain, m.view, order.record.uid)  # type: ignore[arg-type]
        order.resting.filled_size = m.size(order.filled_steps)
        m.book[side].setdefault(order.price_ticks, []).append(order)
        self._set_overlay(m, side, order.price_ticks)
        oid = request.order_id
        self._open[oid] = order
        if oid.order_flags == ORDER_FLAGS_SHORT_TERM:
            assert request.good_til_block is not None
            self._short_expiry.setdefault(request.good_til_block, []).append(order)
        else:
            self._stateful_open[order.record.uid] = order

    def _set_overlay(self, m: _Market, side: Side, ticks: int) -> None:
        orders = m.book[side].get(ticks)
        m.sim.set_overlay(side, ticks, sum(o.remaining_steps for o in orders) if orders else 0)

    def _unbook(self, order: _Order) -> None:
        """Take a resting order off the book (overlay and price level)."""
        if order.resting is None:
            return
        m, side = order.market, order.record.request.side
        level = m.book[side].get(order.price_ticks)
        if level is not None:
            if order in level:
                level.remove(order)
            if not level:
                del m.book[side][order.price_ticks]
        self._set_overlay(m, side, order.price_ticks)
        order.resting = None

    def _remove(self, order: _Order, status: OrderState, reason: str | None, ts: int) -> None:
        self._unbook(order)
        self._finish(order, status, reason, ts)

    def _finish(self, order: _Order, status: OrderState, reason: str | None, ts: int) -> None:
        oid = order.record.request.order_id
        if self._open.get(oid) is order:
            del self._open[oid]
        self._stateful_open.pop(order.record.uid, None)
        record = order.record
        record.status = status
        record.removal_reason = reason
        record.updated_at_height = self._height
        record.updated_ns = ts
        self._touch(order)

    def _fill(self, order: _Order, ticks: int, steps: int, liquidity: str, ts: int) -> None:
        """Book one fill of `order` (already matched): order, fill record, position, USDC."""
        m, sub = order.market, order.sub
        price, size = m.price(ticks), m.size(steps)
        fee = self._fees.fee(price, size, _LIQUIDITY[liquidity])
        order.filled_steps += steps
        record = order.record
        record.total_filled = m.size(order.filled_steps)
        record.updated_at_height = self._height
        record.updated_ns = ts
        request = record.request
        self._fill_seq += 1
        fill = FillRecord(_uuid5(f"fill-{self._fill_seq}"), record.uid,
                          sub.owner, sub.number, m.ticker, request.side, liquidity, price, size, fee,
                          request.client_metadata, self._height, ts)
        self._apply_fill(sub, m, fill, request.order_id.client_id)
        if order.resting is not None:
            order.resting.filled_size = size_now = m.size(order.filled_steps)
            assert size_now <= order.resting.order.size
            self._set_overlay(m, request.side, order.price_ticks)
        if order.remaining_steps <= 0:
            self._unbook(order)
            self._finish(order, OrderState.FILLED, None, ts)
        else:
            if record.status is OrderState.BEST_EFFORT_OPENED:
                record.status = OrderState.OPEN
            self._touch(order)

    def _apply_fill(self, sub: _Subaccount, m: _Market, fill: FillRecord, client_id: int) -> None:
        holder = sub.positions.get(m.ticker)
        if holder is None:
            holder = sub.positions[m.ticker] = _Position(Position(m.ticker))
        pos = holder.pos
        realised_before = pos.realised_pnl
        pos.apply_fill(Fill(fill.fill_id, client_id, m.ticker, fill.side, fill.price, fill.size,
                            fill.fee, _LIQUIDITY[fill.liquidity], fill.ts_ns))
        sub.usdc += pos.realised_pnl - realised_before - fill.fee
        sub.fills.append(fill)
        changes = self._changes_for(sub)
        changes.fills.append(fill)
        changes.positions[m.ticker] = None
        if pos.size == 0:
            self._close_position(sub, m.ticker, "CLOSED")

    def _close_position(self, sub: _Subaccount, ticker: str, status: str) -> None:
        holder = sub.positions[ticker]
        holder.status = status
        sub.history.append(self._position_record(sub, ticker))
        self._changes_for(sub).positions[ticker] = None
        del sub.positions[ticker]

    # ---- hooks called from inside SimMarket.step ---------------------------------------------
    def _taker_hook(self, m: _Market) -> TakerHook:
        sim = m.sim
        over_bids, over_asks = sim.overlay(Side.BUY), sim.overlay(Side.SELL)
        best_level = sim.best_level

        def hook(is_buy: bool, want: int, now_ns: int, events: list[MarketEvent]) -> bool:
            if is_buy:
                if not over_asks:
                    return False
                price = min(over_asks)
                best = best_level(Side.SELL)
                if best is not None and best < price:
                    return False
                maker_side = Side.SELL
            else:
                if not over_bids:
                    return False
                price = max(over_bids)
                best = best_level(Side.BUY)
                if best is not None and best > price:
                    return False
                maker_side = Side.BUY
            self._taker_at_account_level(m, maker_side, price, want, now_ns, events)
            return True

        return hook

    def _taker_at_account_level(self, m: _Market, maker_side: Side, price: int, want: int,
                                now_ns: int, events: list[MarketEvent]) -> None:
        """A Poisson taker hits a touch where account orders rest: the paper model fills them."""
        sim = m.sim
        bg = sim.background(maker_side)
        bg_at = bg.get(price, 0)
        bg_avail = bg_at if len(bg) > 1 else max(0, bg_at - sim.min_steps)
        printed = min(want, bg_avail + sim.overlay(maker_side).get(price, 0))
        if printed <= 0:
            return
        aggressor = maker_side.opposite()
        volume = m.size(printed)
        filled_steps = 0
        assert m.view is not None
        for maker in list(m.book[maker_side].get(price, ())):
            resting = maker.resting
            if resting is None or volume <= 0:
                continue
            on_book_update(resting, m.view)  # type: ignore[arg-type]
            fill = on_trade(resting, make_trade(m.ticker, m.price(price), volume, aggressor, now_ns),
                            self._fees, now_ns)
            if fill is None:
                continue
            steps = int(fill.size / m.step)
            volume -= fill.size
            filled_steps += steps
            self._fill(maker, price, steps, "MAKER", now_ns)
        bg_taken = min(bg_avail, printed - filled_steps)
        if bg_taken > 0:
            sim.reduce_level(maker_side, price, bg_taken)
        total = filled_steps + bg_taken
        if total > 0:
            events.append(make_trade(m.ticker, m.price(price), m.size(total), aggressor, now_ns))
            m.add_volume(now_ns, price * total)  # (its id: _step_markets, with the model's trades)
            events.extend(sim.flush(now_ns))

    def _uncross_hook(self, m: _Market) -> PreEmitHook:
        sim = m.sim
        over_bids, over_asks = sim.overlay(Side.BUY), sim.overlay(Side.SELL)

        def hook(now_ns: int, events: list[MarketEvent]) -> None:
            if not over_bids and not over_asks:  # no account order rests in this market
                return
            # Cheap test first: the model's real touch is at or behind its target touch.
            best_bid, best_ask = sim.model_touch()
            if over_bids and max(over_bids) >= best_ask:
                self._uncross(m, Side.BUY, now_ns, events)
            if over_asks and min(over_asks) <= best_bid:
                self._uncross(m, Side.SELL, now_ns, events)

        return hook

    def _uncross(self, m: _Market, maker_side: Side, now_ns: int, events: list[MarketEvent]) -> None:
        """The model's levels moved through resting account orders: those orders fill as makers."""
        sim = m.sim
        over = sim.overlay(maker_side)
        opposite = sim.background(maker_side.opposite())
        taker_side = maker_side.opposite()
        is_bid = maker_side is Side.BUY
        while over and opposite:
            price = max(over) if is_bid else min(over)
            best = min(opposite) if is_bid else max(opposite)
            if (best > price) if is_bid else (best < price):
                break
            progressed = False
            for maker in list(m.book[maker_side].get(price, ())):
                # the model's crossing orders are the takers, but in the book they are the levels
                # our maker order consumes: take them as if our order were the aggressor
                got = sum(s for _, s in sim.take(maker_side, maker.remaining_steps, price))
                if not got:
                    break
                progressed = True
                self._fill(maker, price, got, "MAKER", now_ns)
                events.append(make_trade(m.ticker, m.price(price), m.size(got), taker_side, now_ns))
                m.add_volume(now_ns, price * got)
            if not progressed:
                break

    # ---- blocks ------------------------------------------------------------------------------
    def _step_markets(self, now_ns: int) -> None:
        for m in self._markets:
            sim = m.sim
            if now_ns == sim.now_ns and sim.is_started:
                continue
            events = sim.step(now_ns)
            trades = [event for event in events if event.__class__ is Trade]
            if trades:  # their ids: (height, index in the block); the model's volume (the hooks' is in)
                index, height, record = self._trade_index, self._height, m.trades.append
                for trade in trades:
                    index += 1
                    record((index, trade, height))
                self._trade_index = index
                m.add_volume(now_ns, sim.drain_traded_units())
            self._events += events

    def _record_trade(self, m: _Market, trade: Trade, ticks: int, steps: int) -> None:
        """Give an exchange-made trade its id; count its volume (model trades: _step_markets)."""
        self._trade_index += 1
        m.trades.append((self._trade_index, trade, self._height))
        m.add_volume(trade.ts_event, ticks * steps)

    def _produce_block(self, block_ns: int) -> None:
        self._height += 1
        self._block_time_ns = block_ns
        self._trade_index = 0
        height = self._height
        self._events.append(block_height(height, block_ns))
        # short-term orders whose good_til_block < height
        for gtb in [g for g in self._short_expiry if g < height]:
            for order in self._short_expiry.pop(gtb):
                if order.is_open and order.record.request.good_til_block == gtb:
                    self._remove(order, OrderState.CANCELED, REMOVAL_EXPIRED, block_ns)
        if self._short_cancels:
            self._short_cancels = {k: v for k, v in self._short_cancels.items() if v >= height}
        block_secs = block_ns // _NS_PER_SEC
        for order in [o for o in self._stateful_open.values()
                      if (o.record.request.good_til_block_time or 0) <= block_secs]:
            self._remove(order, OrderState.CANCELED, REMOVAL_EXPIRED, block_ns)
        epoch = block_ns // self.config.funding_interval_ns
        if epoch > self._funding_epoch:
            self._funding_epoch = epoch
            self._settle_funding(epoch * self.config.funding_interval_ns, block_ns)
        self._liquidate(block_ns)
        for m in self._markets:
            self._events.extend(m.sim.flush(block_ns))

    def _funding_rate(self, m: _Market, boundary_ns: int) -> Decimal:
        spike = self._scenario.funding_spike_1h
        if spike is not None:
            return spike
        settled = m.sim.last_funding_settlement()
        if settled is not None and settled[0] == boundary_ns:
            return settled[1]
        return m.sim.funding_rate_1h()

    def _settle_funding(self, boundary_ns: int, block_ns: int) -> None:
        for m in self._markets:
            rate = self._funding_rate(m, boundary_ns)
            oracle = m.sim.oracle_price()
            m.funding.append(HistoricalFunding(m.ticker, rate, oracle, self._height, block_ns))
            for sub in self._subaccounts():
                holder = sub.positions.get(m.ticker)
                if holder is None:
                    continue
                payment = funding_payment(m.ticker, holder.pos.size, oracle, rate, block_ns)
                sub.usdc += payment.amount
                holder.net_funding += payment.amount
                holder.pos.funding_pnl += payment.amount
                record = FundingRecord(sub.owner, sub.number, m.ticker, rate, oracle, holder.pos.size,
                                       payment.amount, self._height, block_ns)
                sub.funding.append(record)
                changes = self._changes_for(sub)
                changes.funding.append(record)
                changes.positions[m.ticker] = None

    def _liquidate(self, block_ns: int) -> None:
        for sub in self._subaccounts():
            if not sub.positions:
                continue
            if self._equity(sub) >= self._maintenance_margin(sub):
                continue
            for ticker in list(sub.positions):
                self._close_at_oracle(sub, ticker, block_ns, "LIQUIDATED")

    def _close_at_oracle(self, sub: _Subaccount, ticker: str, ts: int, status: str) -> None:
        """Close a position at the oracle price: a fill with no order and no fee."""
        pos = sub.positions[ticker].pos
        oracle = self._by_ticker[ticker].sim.oracle_price()
        side = Side.SELL if pos.size > 0 else Side.BUY
        self._fill_seq += 1
        fill = FillRecord(_uuid5(f"fill-{self._fill_seq}"), "", sub.owner, sub.number, ticker, side, "TAKER",
                          oracle, abs(pos.size), ZERO, 0, self._height, ts)
        realised_before = pos.realised_pnl
        pos.apply_fill(Fill(fill.fill_id, 0, ticker, side, oracle, fill.size, ZERO, Liquidity.TAKER, ts))
        sub.usdc += pos.realised_pnl - realised_before
        sub.fills.append(fill)
        self._changes_for(sub).fills.append(fill)
        self._close_position(sub, ticker, status)

    def _final_settle(self, m: _Market, ts: int) -> None:
        """Close every position in `m` at the oracle (no fee) and cancel its open orders."""
        for order in [o for o in self._open.values() if o.record.ticker == m.ticker and o.is_open]:
            self._remove(order, OrderState.CANCELED, REMOVAL_USER_CANCELED, ts)
        for sub in self._subaccounts():
            if m.ticker in sub.positions:
                self._close_at_oracle(sub, m.ticker, ts, "CLOSED")
        self._flush_changes()

    # ---- margin ------------------------------------------------------------------------------
    def _equity(self, sub: _Subaccount) -> Decimal:
        equity = sub.usdc
        for ticker, holder in sub.positions.items():
            pos = holder.pos
            equity += pos.size * (self._by_ticker[ticker].sim.oracle_price() - pos.avg_entry)
        return equity

    def _initial_margin(self, sub: _Subaccount) -> Decimal:
        total = ZERO
        for ticker, holder in sub.positions.items():
            m = self._by_ticker[ticker]
            total += abs(holder.pos.size) * m.sim.oracle_price() * m.imf
        return total

    def _maintenance_margin(self, sub: _Subaccount) -> Decimal:
        total = ZERO
        for ticker, holder in sub.positions.items():
            m = self._by_ticker[ticker]
            total += abs(holder.pos.size) * m.sim.oracle_price() * m.mmf
        return total

    def _free_collateral(self, sub: _Subaccount) -> Decimal:
        return self._equity(sub) - self._initial_margin(sub)

    # ---- bookkeeping -------------------------------------------------------------------------
    def _account(self, owner: str) -> _Account:
        account = self._accounts.get(owner)
        if account is None:
            raise ChainError(CODESPACE_SDK, SDK_ERR_UNKNOWN_ADDRESS, f"account {owner} not found")
        return account

    def _sub(self, owner: str, number: int, create: bool = False) -> _Subaccount:
        account = self._accounts.get(owner)
        if account is None:
            if not create:
                raise ChainError(CODESPACE_SDK, SDK_ERR_UNKNOWN_ADDRESS, f"account {owner} not found")
            account = self._accounts[owner] = _Account(len(self._accounts) + 1)
        sub = account.subaccounts.get(number)
        if sub is None:
            sub = account.subaccounts[number] = _Subaccount(owner, number)
        return sub

    def _subaccounts(self) -> list[_Subaccount]:
        return [s for a in self._accounts.values() for s in a.subaccounts.values()]

    def _transfer(self, sub: _Subaccount, kind: str, amount: Decimal) -> None:
        self._transfer_seq += 1
        record = TransferRecord(_uuid5(f"transfer-{self._transfer_seq}"), sub.owner,
                                sub.number, kind, abs(amount), self._height, self._event_ts())
        sub.usdc += amount
        sub.transfers.append(record)
        self._changes_for(sub).transfers.append(record)

    def _position_record(self, sub: _Subaccount, ticker: str) -> PositionRecord:
        holder = sub.positions[ticker]
        pos = holder.pos
        return PositionRecord(sub.owner, sub.number, ticker, pos.size, pos.avg_entry, pos.realised_pnl,
                              holder.net_funding, holder.status, self._height)

    def _market_info(self, m: _Market) -> MarketInfo:
        ar, qce, sbq, spt = m.chain
        open_interest = sum((h.pos.size for s in self._subaccounts() for t, h in s.positions.items()
                             if t == m.ticker and h.pos.size > 0), ZERO)
        rate = self._scenario.funding_spike_1h
        return MarketInfo(m.ticker, m.clob_pair_id, m.status, m.sim.oracle_price(),
                          rate if rate is not None else m.sim.funding_rate_1h(), m.imf, m.mmf, ar, qce,
                          sbq, spt, m.tick, m.step, open_interest, m.volume_24h())

    def _apply_scenario(self) -> None:
        s = self._scenario
        if s.liquidity_factor != self._applied_liquidity:
            self._applied_liquidity = s.liquidity_factor
            for m in self._markets:
                m.sim.set_depth_factor(s.liquidity_factor)
        if s.funding_spike_1h != self._applied_spike:
            self._applied_spike = s.funding_spike_1h
            for m in self._markets:
                m.sim.set_funding_override(s.funding_spike_1h)
        wanted = {str(v): k.split(":", 1)[1] for k, v in s.extra.items() if k.startswith("market_status:")}
        for ticker in sorted(set(self._scenario_status) | set(wanted)):
            if ticker in self._by_ticker and wanted.get(ticker) != self._scenario_status.get(ticker):
                self.set_market_status(ticker, wanted.get(ticker, "ACTIVE"))
        self._scenario_status = {t: v for t, v in wanted.items() if t in self._by_ticker}
        margin = s.extra.get("margin_fractions")
        margin_key = ((str(margin["market"]), Decimal(str(margin["imf"])), Decimal(str(margin["mmf"])))
                      if isinstance(margin, dict) and margin.get("market") in self._by_ticker else None)
        if margin_key != self._scenario_margin:
            if self._scenario_margin is not None:
                ticker = self._scenario_margin[0]
                self.set_margin_fractions(ticker, *_MARGIN_FRACTIONS.get(ticker, _DEFAULT_MARGIN))
            if margin_key is not None:
                self.set_margin_fractions(*margin_key)
            self._scenario_margin = margin_key
        gap = s.extra.pop("price_gap", None)
        if isinstance(gap, dict) and gap.get("market") in self._by_ticker:
            self._by_ticker[str(gap["market"])].sim.shift_price(float(gap.get("pct", 0)))

    def _event_ts(self) -> int:
        return self._now_ns

    def _touch(self, order: _Order) -> None:
        self._changes_for(order.sub).orders[order.record.uid] = order

    def _changes_for(self, sub: _Subaccount) -> _Changes:
        key = (sub.owner, sub.number)
        changes = self._changes.get(key)
        if changes is None:
            changes = self._changes[key] = _Changes()
        return changes

    def _after_call(self, ts: int) -> None:
        for m in self._markets:
            self._events.extend(m.sim.flush(ts))
        self._flush_changes()

    def _flush_changes(self) -> None:
        if not self._changes:
            return
        for (owner, number), ch in self._changes.items():
            sub = self._sub(owner, number)
            positions = []
            for ticker in ch.positions:
                if ticker in sub.positions:
                    positions.append(self._position_record(sub, ticker))
                else:
                    closed = [p for p in sub.history if p.ticker == ticker]
                    if closed:
                        positions.append(closed[-1])
            self._events.append(AccountUpdate(
                owner, number, tuple(o.record.copy() for o in ch.orders.values()), tuple(ch.fills),
                tuple(positions), tuple(ch.transfers), tuple(ch.funding), self._height))
        self._changes = {}
