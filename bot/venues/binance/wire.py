"""Wire structs for Binance spot REST and streams, field names verbatim (tolerant of new fields).

Binance's stream payloads use one-letter keys that differ only in case (`t` trade id, `T`
trade time; `c` client order id, `C` original client order id): they are kept verbatim, with
the meaning next to each. Amounts are decimal strings and stay strings here; `parse.py`
turns them into domain types. Decoders are built once at import.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

Level = tuple[str, str]  # (price, quantity)
T = TypeVar("T")


# ---- REST -------------------------------------------------------------------------------------


class ErrorBody(msgspec.Struct, frozen=True):
    code: int
    msg: str = ""


class ServerTime(msgspec.Struct, frozen=True):
    serverTime: int


class Filter(msgspec.Struct, frozen=True):
    """Any symbol filter; only the fields of its `filterType` are set."""

    filterType: str
    minPrice: str = ""
    maxPrice: str = ""
    tickSize: str = ""
    minQty: str = ""
    maxQty: str = ""
    stepSize: str = ""
    minNotional: str = ""  # NOTIONAL and the older MIN_NOTIONAL
    maxNotional: str = ""


class SymbolInfo(msgspec.Struct, frozen=True):
    symbol: str
    status: str
    baseAsset: str
    quoteAsset: str
    filters: list[Filter] = []
    orderTypes: list[str] = []


class RateLimit(msgspec.Struct, frozen=True):
    rateLimitType: str
    interval: str
    intervalNum: int
    limit: int


class ExchangeInfo(msgspec.Struct, frozen=True):
    symbols: list[SymbolInfo]
    rateLimits: list[RateLimit] = []
    serverTime: int = 0


class DepthSnapshot(msgspec.Struct, frozen=True):
    lastUpdateId: int
    bids: list[Level]
    asks: list[Level]


# A kline is a JSON array: [open time ms, open, high, low, close, volume, close time ms, ...].
Kline = list[Any]


class OrderAck(msgspec.Struct, frozen=True):
    symbol: str
    orderId: int
    clientOrderId: str
    transactTime: int = 0


class OrderInfo(msgspec.Struct, frozen=True):
    """GET /api/v3/order and /api/v3/openOrders rows, and DELETE /api/v3/order's answer (where
    `clientOrderId` is the cancel request's own id and `origClientOrderId` the order's)."""

    symbol: str
    orderId: int
    clientOrderId: str
    price: str
    origQty: str
    executedQty: str
    status: str
    timeInForce: str
    type: str
    side: str
    cummulativeQuoteQty: str = "0"
    time: int = 0
    updateTime: int = 0
    origClientOrderId: str = ""


class MyTrade(msgspec.Struct, frozen=True):
    """GET /api/v3/myTrades rows: one fill of ours (no client order id: matched by orderId)."""

    symbol: str
    id: int
    orderId: int
    price: str
    qty: str
    commission: str
    commissionAsset: str
    time: int
    isBuyer: bool
    isMaker: bool


class AccountBalance(msgspec.Struct, frozen=True):
    asset: str
    free: str
    locked: str


class CommissionRates(msgspec.Struct, frozen=True):
    maker: str
    taker: str


class Account(msgspec.Struct, frozen=True):
    balances: list[AccountBalance]
    makerCommission: int | None = None  # basis points (older field; commissionRates is exact)
    takerCommission: int | None = None
    commissionRates: CommissionRates | None = None
    updateTime: int = 0
    canTrade: bool = True


class ApiRestrictions(msgspec.Struct, frozen=True):
    """GET /sapi/v1/account/apiRestrictions: what the API key may do (absent: the unsafe answer)."""

    ipRestrict: bool = False
    enableWithdrawals: bool = True
    enableReading: bool = True
    enableSpotAndMarginTrading: bool = False
    enableInternalTransfer: bool = False


class DepositRow(msgspec.Struct, frozen=True):
    """GET /sapi/v1/capital/deposit/hisrec rows. `status`: 0 pending, 6 credited but not yet
    withdrawable, 1 success, 7 wrong deposit, 8 waiting for the user's confirmation, 2 rejected."""

    amount: str
    coin: str
    status: int
    id: str = ""
    txId: str = ""
    insertTime: int = 0  # ms
    completeTime: int = 0  # ms (absent on older records)


class WithdrawRow(msgspec.Struct, frozen=True):
    """GET /sapi/v1/capital/withdraw/history rows. `status`: 0 email sent, 1 cancelled, 2 awaiting
    approval, 3 rejected, 4 processing, 5 failure, 6 completed. `applyTime` and `completeTime` are
    "YYYY-MM-DD HH:MM:SS" UTC strings."""

    id: str
    amount: str
    coin: str
    status: int
    transactionFee: str = "0"
    applyTime: str = ""
    completeTime: str = ""
    txId: str = ""


class TransferRow(msgspec.Struct, frozen=True):
    """GET /sapi/v1/asset/transfer rows (the universal transfer history): `type` is FROM_TO of the
    owner's own wallets (MAIN is the spot wallet), `status` CONFIRMED / FAILED / PENDING,
    `timestamp` ms."""

    asset: str
    amount: str
    type: str
    status: str
    tranId: int | str
    timestamp: int


class TransferPage(msgspec.Struct, frozen=True):
    """One page of the universal transfer history: `rows` raw, so a malformed row is one row's
    error (bot.venues.binance.transfers), not the page's; an empty page has no `rows` at all."""

    total: int = 0
    rows: list[msgspec.Raw] = []


class ListenKey(msgspec.Struct, frozen=True):
    listenKey: str


class Empty(msgspec.Struct, frozen=True):
    pass


# ---- market streams ---------------------------------------------------------------------------


class DepthUpdate(msgspec.Struct, frozen=True, gc=False, tag_field="e", tag="depthUpdate"):
    E: int  # event time, ms
    s: str  # symbol
    U: int  # first update id in the event
    u: int  # final update id in the event
    b: list[Level]  # bids: absolute quantities, "0" removes
    a: list[Level]  # asks


class TradeEvent(msgspec.Struct, frozen=True, gc=False, tag_field="e", tag="trade"):
    E: int  # event time, ms
    s: str
    t: int  # trade id
    p: str  # price
    q: str  # quantity
    T: int  # trade time, ms
    m: bool  # is the buyer the maker (then the aggressor sold)


class Combined(msgspec.Struct, frozen=True, gc=False):
    """A `/stream?streams=...` frame: the stream name and its payload, decoded in one pass."""

    stream: str
    data: DepthUpdate | TradeEvent


class StreamReply(msgspec.Struct, frozen=True):
    """A reply to a request on the stream connection, or an error frame."""

    id: int | str | None = None
    result: object = None
    code: int | None = None
    msg: str = ""


# ---- user data stream -------------------------------------------------------------------------


class ExecutionReport(msgspec.Struct, frozen=True, tag_field="e", tag="executionReport"):
    E: int  # event time, ms
    s: str  # symbol
    c: str  # client order id (of the cancel request when x == CANCELED)
    S: str  # side
    o: str  # order type
    f: str  # time in force
    q: str  # order quantity
    p: str  # order price
    x: str  # execution type: NEW, CANCELED, REPLACED, REJECTED, TRADE, EXPIRED, TRADE_PREVENTION
    X: str  # order status
    i: int  # order id
    l: str  # noqa: E741  last executed quantity
    z: str  # cumulative filled quantity
    L: str  # last executed price
    n: str = "0"  # commission of this execution
    N: str | None = None  # commission asset
    T: int = 0  # transaction time, ms
    t: int = -1  # trade id
    m: bool = False  # was this execution the maker side
    C: str = ""  # original client order id (set on cancels)
    r: str = "NONE"  # reject reason


class BalanceWire(msgspec.Struct, frozen=True):
    a: str  # asset
    f: str  # free
    l: str  # noqa: E741  locked


class OutboundAccountPosition(msgspec.Struct, frozen=True, tag_field="e", tag="outboundAccountPosition"):
    E: int
    B: list[BalanceWire]
    u: int = 0  # time of last account update, ms


class BalanceUpdate(msgspec.Struct, frozen=True, tag_field="e", tag="balanceUpdate"):
    """A deposit, a withdrawal or a transfer between the user's own accounts (no id)."""

    E: int  # event time, ms
    a: str  # asset
    d: str  # balance delta
    T: int = 0  # clear time, ms


class ListenKeyExpired(msgspec.Struct, frozen=True, tag_field="e", tag="listenKeyExpired"):
    E: int
    listenKey: str = ""


class EventType(msgspec.Struct, frozen=True):
    e: str = ""


UserEvent = ExecutionReport | OutboundAccountPosition | BalanceUpdate | ListenKeyExpired


class StreamDecoder(Generic[T]):
    """A msgspec JSON decoder whose every failure is a msgspec.DecodeError.

    msgspec itself raises UnicodeDecodeError on invalid UTF-8 in a string and RecursionError
    on deep nesting; the streams read raw bytes (`recv(decode=False)`), so either can come
    off the wire, and the callers catch MsgspecError.
    """

    __slots__ = ("_decode",)

    def __init__(self, kind: type[T]) -> None:
        self._decode = msgspec.json.Decoder(kind).decode

    def decode(self, raw: bytes | str) -> T:
        try:
            return self._decode(raw)
        except (UnicodeDecodeError, RecursionError) as exc:
            raise msgspec.DecodeError(f"JSON is malformed: {type(exc).__name__}: {exc}") from None


COMBINED = StreamDecoder(Combined)
STREAM_REPLY = StreamDecoder(StreamReply)
USER_EVENT: StreamDecoder[UserEvent] = StreamDecoder(UserEvent)  # type: ignore[arg-type]  # a Union, not a type
EVENT_TYPE = StreamDecoder(EventType)
TRANSFER_ROW = StreamDecoder(TransferRow)
