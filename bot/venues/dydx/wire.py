"""Wire structs for the dYdX v4 indexer, field names verbatim (tolerant of new fields).

Decoders are built once at import. Numbers arrive as decimal strings and stay strings here;
`parse.py` turns them into domain types.

Order book frames, the bulk of the stream, also have whole-frame structs (`OrderbookData`,
`OrderbookBatch`, `OrderbookSubscribed`, tagged by `type`) so that `ORDERBOOK_FRAME` decodes
envelope and levels in one pass, skipping the envelope fields we do not read
(`connection_id`, `version`); `channel` is a Literal, so a frame of another channel is
rejected as soon as that field is read. Any frame it rejects goes through `FRAME` as before.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Level = tuple[str, str]


class Frame(msgspec.Struct, frozen=True):
    """Any server frame; `contents` is decoded per channel."""

    type: str
    connection_id: str = ""
    message_id: int = -1
    channel: str = ""
    id: str = ""
    version: str = ""
    message: str = ""
    contents: msgspec.Raw = msgspec.Raw(b"null")


class PriceLevel(msgspec.Struct, frozen=True):
    price: str
    size: str


class OrderbookSnapshot(msgspec.Struct, frozen=True):
    bids: list[PriceLevel] = []
    asks: list[PriceLevel] = []


class OrderbookUpdate(msgspec.Struct, frozen=True):
    bids: list[Level] = []
    asks: list[Level] = []


class OrderbookData(msgspec.Struct, frozen=True, gc=False, tag_field="type", tag="channel_data"):
    """A whole `v4_orderbook` `channel_data` frame."""

    channel: Literal["v4_orderbook"]
    id: str = ""
    message_id: int = -1
    contents: OrderbookUpdate = OrderbookUpdate()


class OrderbookBatch(msgspec.Struct, frozen=True, gc=False, tag_field="type", tag="channel_batch_data"):
    """A whole `v4_orderbook` `channel_batch_data` frame: updates to apply in list order."""

    channel: Literal["v4_orderbook"]
    id: str = ""
    message_id: int = -1
    contents: list[OrderbookUpdate] = []


class OrderbookSubscribed(msgspec.Struct, frozen=True, gc=False, tag_field="type", tag="subscribed"):
    """A whole `v4_orderbook` `subscribed` frame: the snapshot."""

    channel: Literal["v4_orderbook"]
    id: str = ""
    message_id: int = -1
    contents: OrderbookSnapshot = OrderbookSnapshot()


OrderbookFrame = OrderbookData | OrderbookBatch | OrderbookSubscribed


class TradeWire(msgspec.Struct, frozen=True):
    id: str
    side: str
    size: str
    price: str
    createdAt: str
    type: str = "LIMIT"


class Trades(msgspec.Struct, frozen=True):
    trades: list[TradeWire] = []


class PerpetualMarket(msgspec.Struct, frozen=True):
    ticker: str = ""
    clobPairId: str = ""
    status: str = ""
    oraclePrice: str | None = None
    nextFundingRate: str | None = None
    initialMarginFraction: str | None = None
    maintenanceMarginFraction: str | None = None
    atomicResolution: int | None = None
    quantumConversionExponent: int | None = None
    stepBaseQuantums: int | None = None
    subticksPerTick: int | None = None
    tickSize: str | None = None
    stepSize: str | None = None
    marketType: str | None = None  # "CROSS" | "ISOLATED"; absent from most `trading` updates


class OraclePrice(msgspec.Struct, frozen=True):
    oraclePrice: str
    effectiveAt: str = ""
    effectiveAtHeight: str = ""
    marketId: int | None = None


class Markets(msgspec.Struct, frozen=True):
    markets: dict[str, PerpetualMarket] | None = None
    trading: dict[str, PerpetualMarket] | None = None
    oraclePrices: dict[str, OraclePrice] | None = None


class BlockHeight(msgspec.Struct, frozen=True):
    time: str = ""
    height: str | None = None
    blockHeight: str | None = None


class OrderWire(msgspec.Struct, frozen=True):
    id: str
    clientId: str = ""
    clobPairId: str = ""
    ticker: str = ""
    side: str = ""
    size: str = ""
    price: str = ""
    status: str = ""
    totalFilled: str | None = None
    timeInForce: str = ""
    postOnly: bool = False
    reduceOnly: bool = False
    orderFlags: str = "0"
    goodTilBlock: str | None = None
    goodTilBlockTime: str | None = None
    removalReason: str | None = None
    updatedAt: str | None = None


class FillWire(msgspec.Struct, frozen=True):
    id: str
    side: str
    liquidity: str
    price: str
    size: str
    createdAt: str
    fee: str = "0"
    orderId: str | None = None
    ticker: str = ""
    market: str = ""
    type: str = "LIMIT"
    clientMetadata: str | None = None
    createdAtHeight: str = ""


class PerpetualPosition(msgspec.Struct, frozen=True):
    market: str
    size: str
    side: str = ""
    status: str = ""
    entryPrice: str | None = None
    netFunding: str | None = None


class AssetPosition(msgspec.Struct, frozen=True):
    symbol: str
    size: str
    side: str = "LONG"


class Subaccount(msgspec.Struct, frozen=True):
    """A subaccount as REST /v4/addresses/{a}/subaccountNumber/{n} and the WS snapshot show it."""

    equity: str
    freeCollateral: str
    address: str = ""
    subaccountNumber: int = 0
    openPerpetualPositions: dict[str, PerpetualPosition] = {}
    assetPositions: dict[str, AssetPosition] = {}
    latestProcessedBlockHeight: str = ""


class SubaccountUpdate(msgspec.Struct, frozen=True):
    blockHeight: str | None = None
    orders: list[OrderWire] = []
    fills: list[FillWire] = []
    perpetualPositions: list[PerpetualPosition] = []
    subaccount: dict[str, object] | None = None
    transfers: dict[str, object] | None = None
    tradingReward: dict[str, object] | None = None


class Candle(msgspec.Struct, frozen=True):
    ticker: str
    resolution: str
    startedAt: str
    open: str
    high: str
    low: str
    close: str


FRAME = msgspec.json.Decoder(Frame)
ORDERBOOK_SNAPSHOT = msgspec.json.Decoder(OrderbookSnapshot)
ORDERBOOK_UPDATE = msgspec.json.Decoder(OrderbookUpdate)
ORDERBOOK_BATCH = msgspec.json.Decoder(list[OrderbookUpdate])
ORDERBOOK_FRAME = msgspec.json.Decoder(OrderbookFrame)
TRADES = msgspec.json.Decoder(Trades)
TRADES_BATCH = msgspec.json.Decoder(list[Trades])
MARKETS = msgspec.json.Decoder(Markets)
MARKETS_BATCH = msgspec.json.Decoder(list[Markets])
BLOCK_HEIGHT = msgspec.json.Decoder(BlockHeight)
BLOCK_HEIGHT_BATCH = msgspec.json.Decoder(list[BlockHeight])
SUBACCOUNT = msgspec.json.Decoder(SubaccountUpdate)
SUBACCOUNT_BATCH = msgspec.json.Decoder(list[SubaccountUpdate])
CANDLE = msgspec.json.Decoder(Candle)
