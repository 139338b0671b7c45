"""dYdX v4 indexer frames -> domain events (pure; the only place that reads wire structs).

`FeedParser` keeps the little state the venue's stream needs to be understood: the last oracle
price and predicted funding per market (the two arrive in different messages) and the map
from the indexer's order UUID to our client id (fills carry only the UUID).

Order book frames have a hot path: `parse_book` decodes envelope and levels in one msgspec
pass (anything it rejects, any other channel or a malformed book frame, is left to `parse`,
which says what is wrong), and `apply_book_frame`
hands the raw (price, size) strings to `OrderBook.apply_level_updates`, so no domain level
objects are built. `book_events` builds the domain events of such a frame only for whoever asks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

import msgspec

from bot.book import DEFAULT_CACHE, OrderBook
from bot.domain import (
    BlockHeight,
    BookDelta,
    BookLevel,
    BookSnapshot,
    Fill,
    Liquidity,
    MarketParams,
    MarketStatus,
    MarketStatusKind,
    OracleUpdate,
    OrderStatus,
    OrderUpdate,
    Side,
    Trade,
    Transfer,
)
from bot.errors import MalformedMessage
from bot.venues.dydx import wire

DomainEvent = (BookSnapshot | BookDelta | Trade | OracleUpdate | BlockHeight | OrderUpdate | Fill
               | MarketStatus | MarketParams | Transfer)
BookFrame = wire.OrderbookFrame
_BOOK_FRAME_TYPE = {
    wire.OrderbookData: "channel_data",
    wire.OrderbookBatch: "channel_batch_data",
    wire.OrderbookSubscribed: "subscribed",
}
ZERO = Decimal(0)
_EXPIRED = "ORDER_REMOVAL_REASON_EXPIRED"
_STATUS = {
    "BEST_EFFORT_OPENED": OrderStatus.ACKED,
    "OPEN": OrderStatus.ACKED,
    "UNTRIGGERED": OrderStatus.ACKED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELLED,
    "BEST_EFFORT_CANCELED": OrderStatus.CANCELLED,
}


@dataclass(frozen=True, slots=True)
class ParsedFrame:
    """One frame: its envelope facts and the domain events it carries."""

    type: str
    channel: str
    id: str
    message_id: int
    events: list[DomainEvent]
    error: str = ""


# msgspec raises UnicodeDecodeError on invalid UTF-8 inside a string (the feed reads raw bytes)
# and RecursionError on deep nesting, besides its own errors.
UNDECODABLE = (msgspec.MsgspecError, UnicodeDecodeError, RecursionError)


def iso_to_ns(text: str) -> int:
    """Convert the indexer's ISO-8601 UTC time ('2024-07-24T19:12:35.705Z') to integer ns."""
    try:
        dt = datetime.fromisoformat(text)
        return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000
    except (ValueError, OverflowError, OSError):  # not ISO-8601, or outside the platform's range
        raise MalformedMessage(f"time is not ISO-8601: {text[:40]!r}") from None


def is_uint(text: str) -> bool:
    """True for plain ASCII digits ('²' and other Unicode digits are isdigit() but not int())."""
    return text.isascii() and text.isdigit()


def _dec(text: str, what: str) -> Decimal:
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError):
        raise MalformedMessage(f"{what} is not a decimal: {text!r}") from None
    if not value.is_finite():
        raise MalformedMessage(f"{what} is not finite: {text!r}")
    return value


_TRANSFER_SIGN = {"DEPOSIT": 1, "TRANSFER_IN": 1, "WITHDRAWAL": -1, "TRANSFER_OUT": -1}
QUOTE = "USDC"  # the collateral asset equity is counted in


def transfer_event(raw: object) -> Transfer | None:
    """A deposit, withdrawal or subaccount transfer as a domain event; None for another asset.

    `type` is relative to the subaccount asked about, so its sign is ours. WS transfers have no
    `id`: both paths key a transfer by transaction hash, type and size. The Dec-2025 mainnet REST
    sample spells `size`/`symbol` as `amount`/`asset`: both are read.
    """
    if not isinstance(raw, dict):
        raise MalformedMessage("transfer is not an object")
    kind, size = raw.get("type"), raw.get("size", raw.get("amount"))
    height, created = raw.get("createdAtHeight"), raw.get("createdAt")
    if not isinstance(kind, str) or kind not in _TRANSFER_SIGN:
        raise MalformedMessage(f"unknown transfer type {kind!r}")
    if not (isinstance(size, str) and isinstance(height, str) and is_uint(height)
            and isinstance(created, str)):
        raise MalformedMessage("transfer without size, createdAtHeight or createdAt")
    amount = _dec(size, "transfer size")
    if amount < 0:
        raise MalformedMessage(f"transfer size is negative: {size!r}")
    ts = iso_to_ns(created)
    if raw.get("symbol", raw.get("asset")) != QUOTE:
        return None
    tx = raw.get("transactionHash")
    where = tx if isinstance(tx, str) and tx else f"{height}:{created}"
    return Transfer(f"{where}:{kind}:{size}", amount * _TRANSFER_SIGN[kind], int(height), ts)


def _side(text: str) -> Side:
    if text == "BUY":
        return Side.BUY
    if text == "SELL":
        return Side.SELL
    raise MalformedMessage(f"unknown side {text!r}")


def _levels(raw: list[tuple[str, str]] | list[wire.PriceLevel]) -> tuple[BookLevel, ...]:
    # Validated by the shared level cache: price finite and > 0, size finite and >= 0.
    price, size = DEFAULT_CACHE.price, DEFAULT_CACHE.size
    if raw and isinstance(raw[0], wire.PriceLevel):
        return tuple([BookLevel(price(lv.price), size(lv.size)) for lv in raw])  # type: ignore[union-attr]
    return tuple([BookLevel(price(p), size(s)) for p, s in raw])  # type: ignore[misc]


def apply_book_frame(frame: BookFrame, book: OrderBook, ts_recv: int) -> bool:
    """Apply an order book frame to its book; return False when the book must be resynced.

    Batch entries are applied in list order and the book is checked once, after the frame
    (a level crossed only between two entries of one frame is no fault). Raises
    MalformedMessage on a bad level.
    """
    if type(frame) is wire.OrderbookData:
        return book.apply_level_updates((frame.contents,), ts_recv)
    if type(frame) is wire.OrderbookBatch:
        return book.apply_level_updates(frame.contents, ts_recv)
    snap = frame.contents
    return book.apply_snapshot_levels([(lv.price, lv.size) for lv in snap.bids],  # type: ignore[union-attr]
                                      [(lv.price, lv.size) for lv in snap.asks],  # type: ignore[union-attr]
                                      ts_recv)


def book_frame_type(frame: BookFrame) -> str:
    """Return the frame's `type` ('subscribed', 'channel_data' or 'channel_batch_data')."""
    return _BOOK_FRAME_TYPE[type(frame)]


def book_events(frame: BookFrame, ts_recv: int) -> list[DomainEvent]:
    """Return the domain events of an order book frame (one BookDelta per update entry)."""
    if type(frame) is wire.OrderbookData:
        c = frame.contents
        return [BookDelta(frame.id, _levels(c.bids), _levels(c.asks), ts_recv, ts_recv)]
    if type(frame) is wire.OrderbookBatch:
        return [BookDelta(frame.id, _levels(c.bids), _levels(c.asks), ts_recv, ts_recv)
                for c in frame.contents]
    s = frame.contents
    return [BookSnapshot(frame.id, _levels(s.bids), _levels(s.asks), ts_recv, ts_recv)]  # type: ignore[union-attr]


def _opt_dec(text: str | None, what: str) -> Decimal | None:
    return None if text is None else _dec(text, what)


def market_status_events(ticker: str, m: wire.PerpetualMarket, ts: int) -> list[DomainEvent]:
    """MarketStatus when the market object carries `status`; MarketParams when it carries any of
    the grid or margin fields (a `trading` update carries only what changed).

    A status this code does not know is left out (the previous one stands) rather than failing
    the frame, which also carries the other markets' prices.
    """
    out: list[DomainEvent] = []
    if m.status in MarketStatusKind.__members__:
        out.append(MarketStatus(ticker, MarketStatusKind(m.status), ts, ts))
    fields = (m.tickSize, m.stepSize, m.initialMarginFraction, m.maintenanceMarginFraction, m.marketType)
    if any(value is not None for value in fields):
        out.append(MarketParams(
            ticker, _opt_dec(m.tickSize, "tickSize"), _opt_dec(m.stepSize, "stepSize"),
            _opt_dec(m.initialMarginFraction, "initialMarginFraction"),
            _opt_dec(m.maintenanceMarginFraction, "maintenanceMarginFraction"), m.marketType, ts, ts))
    return out


@dataclass
class FeedParser:
    """Turn raw indexer frames into domain events."""

    market_state: dict[str, tuple[Decimal | None, Decimal]] = field(default_factory=dict)
    client_ids: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._handlers: dict[tuple[str, str], Callable[[wire.Frame, int], list[DomainEvent]]] = {
            ("v4_orderbook", "subscribed"): self._book_snapshot,
            ("v4_orderbook", "channel_data"): self._book_update,
            ("v4_orderbook", "channel_batch_data"): self._book_batch,
            ("v4_trades", "subscribed"): self._trades,
            ("v4_trades", "channel_data"): self._trades,
            ("v4_trades", "channel_batch_data"): self._trades_batch,
            ("v4_markets", "subscribed"): self._markets,
            ("v4_markets", "channel_data"): self._markets,
            ("v4_markets", "channel_batch_data"): self._markets_batch,
            ("v4_block_height", "subscribed"): self._block_height,
            ("v4_block_height", "channel_data"): self._block_height,
            ("v4_block_height", "channel_batch_data"): self._block_height_batch,
            ("v4_subaccounts", "subscribed"): self._subaccount,
            ("v4_subaccounts", "channel_data"): self._subaccount,
            ("v4_subaccounts", "channel_batch_data"): self._subaccount_batch,
        }

    def parse(self, raw: bytes | str, ts_recv: int) -> ParsedFrame:
        """Decode one frame; raise MalformedMessage with the reason when it does not parse."""
        book_frame = self.parse_book(raw)
        if book_frame is not None:
            return ParsedFrame(book_frame_type(book_frame), book_frame.channel, book_frame.id,
                               book_frame.message_id, book_events(book_frame, ts_recv))
        try:
            frame = wire.FRAME.decode(raw)
            handler = self._handlers.get((frame.channel, frame.type))
            events = handler(frame, ts_recv) if handler is not None else []
        except UNDECODABLE as exc:
            raise MalformedMessage(str(exc) or type(exc).__name__) from None
        return ParsedFrame(frame.type, frame.channel, frame.id, frame.message_id, events,
                           frame.message if frame.type == "error" else "")

    @staticmethod
    def parse_book(raw: bytes | str) -> BookFrame | None:
        """Decode an order book snapshot or update frame in one pass; None for anything else.

        None also for a book frame that does not fit the structs (malformed, or a shape we do
        not know): `parse` then decodes it generically and raises with the reason.
        """
        # No pre-check on the raw bytes: book frames are most of the stream, and any other frame
        # fails fast here, at `type` or `channel` (a Literal), before its contents are read.
        try:
            return wire.ORDERBOOK_FRAME.decode(raw)
        except UNDECODABLE:
            return None

    def has_handler(self, channel: str, frame_type: str) -> bool:
        return (channel, frame_type) in self._handlers

    # ---- order book ----------------------------------------------------------------------------

    def _book_snapshot(self, frame: wire.Frame, ts: int) -> list[DomainEvent]:
        snap = wire.ORDERBOOK_SNAPSHOT.decode(frame.contents)
        return [BookSnapshot(frame.id, _levels(snap.bids), _levels(snap.asks), ts, ts)]

    def _book_update(self, frame: wire.Frame, ts: int) -> list[DomainEvent]:
        update = wire.ORDERBOOK_UPDATE.decode(frame.contents)
        return [BookDelta(frame.id, _levels(update.bids), _levels(update.asks), ts, ts)]

    def _book_batch(self, frame: wire.Frame, ts: int) -> list[DomainEvent]:
        return [BookDelta(frame.id, _levels(u.bids), _levels(u.asks), ts, ts)
                for u in wire.ORDERBOOK_BATCH.decode(frame.contents)]

    # ---- trades --------------------------------------------------------------------------------

    def _trade_events(self, ticker: str, trades: wire.Trades, ts: int) -> list[DomainEvent]:
        return [
            Trade(ticker, _dec(t.price, "price"), _dec(t.size, "size"), _side(t.side),
                  iso_to_ns(t.createdAt), ts)
            for t in trades.trades
        ]

    def _trades(self, frame: wire.Frame, ts: int) -> list[DomainEvent]:
        return self._trade_events(frame.id, wire.TRADES.decode(frame.contents), ts)

    def _trades_batch(self, frame: wire.Frame, ts: int) -> list[DomainEvent]:
        out: list[DomainEvent] = []
        for trades in wire.TRADES_BATCH.decode(frame.contents):
            out.extend(self._trade_events(frame.id, trades, ts))
        return out

    # ---- markets -------------------------------------------------------------------------------

    def _market_events(self, markets: wire.Markets, ts: int) -> list[DomainEvent]:
        out: list[DomainEvent] = []
        for table in (markets.markets, markets.trading):
            for ticker, m in (table or {}).items():
                oracle, rate = self.market_state.get(ticker, (None, ZERO))
                if m.oraclePrice is not None:
                    oracle = _dec(m.oraclePrice, "oraclePrice")
                if m.nextFundingRate is not None:
                    rate = _dec(m.nextFundingRate, "nextFundingRate")
                self.market_state[ticker] = (oracle, rate)
                if oracle is not None and (m.oraclePrice is not None or m.nextFundingRate is not None):
                    out.append(OracleUpdate(ticker, oracle, rate, ts, ts))
                out.extend(market_status_events(ticker, m, ts))
        for ticker, p in (markets.oraclePrices or {}).items():
            oracle = _dec(p.oraclePrice, "oraclePrice")
            rate = self.market_state.get(ticker, (None, ZERO))[1]
            self.market_state[ticker] = (oracle, rate)
            ts_event = iso_to_ns(p.effectiveAt) if p.effectiveAt else ts
            out.append(OracleUpdate(ticker, oracle, rate, ts_event, ts))
        return out

    def _markets(self, frame: wire.Frame, ts: int) -> list[DomainEvent]:
        return self._market_events(wire.MARKETS.decode(frame.contents), ts)

    def _markets_batch(self, frame: wire.Frame, ts: int) -> list[DomainEvent]:
        out: list[DomainEvent] = []
        for markets in wire.MARKETS_BATCH.decode(frame.contents):
            out.extend(self._market_events(markets, ts))
        return out

    # ---- block height --------------------------------------------------------------------------

    def _height_event(self, h: wire.BlockHeight, ts: int) -> BlockHeight:
        # The snapshot says `height`, updates say `blockHeight`.
        text = h.blockHeight if h.blockHeight is not None else h.height
        if text is None or not is_uint(text):
            raise MalformedMessage(f"block height missing or not an integer: {text!r}")
        return BlockHeight(int(text), iso_to_ns(h.time) if h.time else ts, ts)

    def _block_height(self, frame: wire.Frame, ts: int) -> list[DomainEvent]:
        return [self._height_event(wire.BLOCK_HEIGHT.decode(frame.contents), ts)]

    def _block_height_batch(self, frame: wire.Frame, ts: int) -> list[DomainEvent]:
        return [self._height_event(h, ts) for h in wire.BLOCK_HEIGHT_BATCH.decode(frame.contents)]

    # ---- subaccount ----------------------------------------------------------------------------

    def _account_events(self, update: wire.SubaccountUpdate, ts: int) -> list[DomainEvent]:
        out: list[DomainEvent] = []
        for order in update.orders:
            if order.clientId:
                if not is_uint(order.clientId):
                    raise MalformedMessage(f"clientId is not an integer: {order.clientId!r}")
                self.client_ids[order.id] = int(order.clientId)
            out.append(self._order_update(order, ts))
        for fill in update.fills:
            out.append(Fill(
                fill_id=fill.id,
                client_id=self.client_ids.get(fill.orderId or "", 0),
                market=fill.ticker or fill.market,
                side=_side(fill.side),
                price=_dec(fill.price, "price"),
                size=_dec(fill.size, "size"),
                fee=_dec(fill.fee, "fee"),
                liquidity=Liquidity.MAKER if fill.liquidity == "MAKER" else Liquidity.TAKER,
                ts_event=iso_to_ns(fill.createdAt),
            ))
        if update.transfers is not None and (transfer := transfer_event(update.transfers)) is not None:
            out.append(transfer)
        return out

    def _order_update(self, order: wire.OrderWire, ts: int) -> OrderUpdate:
        status = _STATUS.get(order.status)
        if status is None:
            raise MalformedMessage(f"unknown order status {order.status!r}")
        filled = _dec(order.totalFilled, "totalFilled") if order.totalFilled else ZERO
        reason = order.removalReason or ""
        if status is OrderStatus.CANCELLED and reason == _EXPIRED:
            status = OrderStatus.EXPIRED
        elif status is OrderStatus.ACKED and filled > 0:
            status = OrderStatus.PARTIALLY_FILLED
        if order.status == "BEST_EFFORT_CANCELED":
            reason = reason or "best_effort_canceled"
        ts_event = iso_to_ns(order.updatedAt) if order.updatedAt else ts
        return OrderUpdate(self.client_ids.get(order.id, 0), order.ticker, status, filled, ts_event,
                           reason)

    def _subaccount(self, frame: wire.Frame, ts: int) -> list[DomainEvent]:
        return self._account_events(wire.SUBACCOUNT.decode(frame.contents), ts)

    def _subaccount_batch(self, frame: wire.Frame, ts: int) -> list[DomainEvent]:
        out: list[DomainEvent] = []
        for update in wire.SUBACCOUNT_BATCH.decode(frame.contents):
            out.extend(self._account_events(update, ts))
        return out
