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
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal

from bot.domain import BlockHeight, BookDelta, BookSnapshot, OracleUpdate, Side, Trade

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


ExchangeEvent = BookSnapshot | BookDelta | Trade | OracleUpdate | BlockHeight | AccountUpdate


@dataclass(slots=True)
class ScenarioState:
    """Fault switches the admin endpoint and scenario files flip (see bot.sim.scenarios)."""

    chain_halted: bool = False  # no blocks, BroadcastTx fails
    indexer_lag_blocks: int = 0  # indexer reports height - lag
    withdrawals_gated: bool = False
    liquidity_factor: float = 1.0  # < 1 thins background depth
    funding_spike_1h: Decimal | None = None  # overrides the funding rate while set
    extra: dict[str, object] = field(default_factory=dict)


class SimExchange:
    """Markets, accounts, order matching, funding and margin for the simulator."""

    def __init__(self, markets: list[object], seed: int, start_ns: int,
                 config: ExchangeConfig | None = None) -> None:
        """`markets` is a list of bot.sim.market.SimMarketParams; clob pair ids follow the order."""
        raise NotImplementedError

    # ---- time --------------------------------------------------------------------------------
    def advance(self, now_ns: int) -> list[ExchangeEvent]:
        """Advance markets and blocks to now; expire orders, match flow, settle funding, liquidate."""
        raise NotImplementedError

    @property
    def height(self) -> int:
        raise NotImplementedError

    @property
    def block_time_ns(self) -> int:
        """Time of the latest block."""
        raise NotImplementedError

    @property
    def scenario(self) -> ScenarioState:
        raise NotImplementedError

    # ---- markets -----------------------------------------------------------------------------
    def markets(self) -> dict[str, MarketInfo]:
        raise NotImplementedError

    def market_by_clob_pair(self, clob_pair_id: int) -> MarketInfo:
        """Raise ChainError('clob', 3000+, ...) for an unknown clob pair."""
        raise NotImplementedError

    def book(self, ticker: str) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """Aggregated (bids, asks), best first, account orders included."""
        raise NotImplementedError

    def trades(self, ticker: str, limit: int = 100) -> list[tuple[str, Trade, int]]:
        """Newest first: (trade id, trade, height)."""
        raise NotImplementedError

    def historical_funding(self, ticker: str, limit: int = 100) -> list[HistoricalFunding]:
        """Newest first."""
        raise NotImplementedError

    # ---- accounts ----------------------------------------------------------------------------
    def create_account(self, owner: str, usdc: Decimal, subaccount_number: int = 0) -> int:
        """Create (or top up) an account; returns its account number."""
        raise NotImplementedError

    def account(self, owner: str) -> tuple[int, int]:
        """(account_number, sequence); ChainError for an unknown address."""
        raise NotImplementedError

    def check_sequence(self, owner: str, sequence: int, is_stateful: bool) -> None:
        """Stateful txs need sequence == account sequence and bump it; short-term ones skip both."""
        raise NotImplementedError

    def subaccount(self, owner: str, number: int = 0) -> SubaccountInfo:
        raise NotImplementedError

    def orders(self, owner: str, number: int = 0, open_only: bool = False) -> list[OrderRecord]:
        raise NotImplementedError

    def fills(self, owner: str, number: int = 0, limit: int = 100) -> list[FillRecord]:
        """Newest first."""
        raise NotImplementedError

    def positions(self, owner: str, number: int = 0, open_only: bool = True) -> list[PositionRecord]:
        raise NotImplementedError

    def funding_payments(self, owner: str, number: int = 0) -> list[FundingRecord]:
        raise NotImplementedError

    def transfers(self, owner: str, number: int = 0) -> list[TransferRecord]:
        raise NotImplementedError

    # ---- orders (the node front-end calls these after decoding and verifying a tx) -------------
    def place_order(self, request: OrderRequest, now_ns: int) -> None:
        """Validate against chain rules and match or rest; raise ChainError on rejection."""
        raise NotImplementedError

    def cancel_order(self, order_id: OrderId, now_ns: int, good_til_block: int | None = None,
                     good_til_block_time: int | None = None) -> None:
        raise NotImplementedError

    def batch_cancel(self, owner: str, subaccount_number: int,
                     batches: list[tuple[int, list[int]]], good_til_block: int, now_ns: int) -> None:
        """Cancel short-term orders by (clob_pair_id, client ids); at most 100 in total."""
        raise NotImplementedError
