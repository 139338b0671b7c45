"""dYdX v4 indexer wire shapes for the simulator (pure): exchange records -> JSON-ready dicts.

Field names are the indexer's, verbatim (DYDX_V4.md §1-2; real samples in
shared/fixtures/dydx). Numbers are decimal strings without exponent ("0.0001", never "1E-4"),
heights are strings, timestamps ISO-8601 with milliseconds and "Z". The WebSocket frame helpers
encode a message body once and splice the per-connection `connection_id`/`message_id` in as
bytes, so fan-out costs one concatenation per subscriber, not one JSON encode.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec

from bot.domain import ZERO, BookLevel, Trade
from bot.sim.history import HistoryBar
from bot.sim.perp.records import (
    FillRecord,
    FundingRecord,
    HistoricalFunding,
    MarketInfo,
    OrderRecord,
    PositionRecord,
    SubaccountInfo,
    TimeInForce,
    TransferRecord,
)

Json = dict[str, Any]
Level = tuple[Decimal, Decimal]

# Content versions of the current socks server (indexer/packages/kafka/src/constants.ts).
VERSIONS = {
    "v4_orderbook": "1.0.0",
    "v4_subaccounts": "3.0.0",
    "v4_trades": "2.1.0",
    "v4_markets": "1.0.0",
    "v4_candles": "1.0.0",
    "v4_block_height": "1.0.0",
}
CANDLE_RESOLUTIONS_SECS = {
    "1MIN": 60, "5MINS": 300, "15MINS": 900, "30MINS": 1800,
    "1HOUR": 3600, "4HOURS": 14400, "1DAY": 86400,
}
ORDERBOOK_LEVELS_PER_SIDE = 100
USDC_ASSET_ID = "0"

# uuid5 namespace for the indexer-style ids we derive (subaccountId, transfer ids).
_NAMESPACE = uuid.UUID("0f9da948-a6fb-4c45-9edb-4685c3f2e1bd")
_TIF = {
    TimeInForce.UNSPECIFIED: "GTT",
    TimeInForce.POST_ONLY: "GTT",  # the indexer shows post-only as GTT + postOnly: true
    TimeInForce.IOC: "IOC",
    TimeInForce.FILL_OR_KILL: "FOK",
}

try:  # orjson when installed (fastest), else msgspec; both emit compact UTF-8 JSON
    import orjson

    _encode: Callable[[Any], bytes] = orjson.dumps
except ImportError:  # pragma: no cover - depends on the environment
    _encode = msgspec.json.Encoder().encode


def encode(obj: Any) -> bytes:
    """Encode one JSON-ready object (dicts, lists, str, int, float, bool, None) to bytes."""
    return _encode(obj)


# ---- scalars ---------------------------------------------------------------------------------


def dec(value: Decimal) -> str:
    """Format a Decimal as the indexer does: plain notation, no trailing zeros ("0.5", "60000")."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        return "0"
    return text


def iso_ms(ts_ns: int) -> str:
    """Format integer ns since the epoch as "2025-12-08T16:11:56.125Z"."""
    secs, rem_ns = divmod(ts_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rem_ns // 1_000_000:03d}Z"


def parse_iso_ns(text: str) -> int:
    """Parse an ISO-8601 timestamp ("...Z" or with an offset) to integer ns; ValueError if bad."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    delta = parsed - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def subaccount_id(owner: str, number: int) -> str:
    """The indexer's subaccount UUID (deterministic from address and number)."""
    return str(uuid.uuid5(_NAMESPACE, f"{owner}-{number}"))


def trade_id(height: int, tx_index: int, event_index: int) -> str:
    """24 hex chars: block height, transaction index, event index, each 4 bytes big-endian."""
    return f"{height & 0xFFFFFFFF:08x}{tx_index & 0xFFFFFFFF:08x}{event_index & 0xFFFFFFFF:08x}"


def _tx_hash(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest().upper()


# ---- markets ---------------------------------------------------------------------------------


def market_json(market: MarketInfo, *, price_change_24h: Decimal = ZERO, trades_24h: int = 0) -> Json:
    """One PerpetualMarket object of /v4/perpetualMarkets and the v4_markets snapshot."""
    return {
        "clobPairId": str(market.clob_pair_id),
        "ticker": market.ticker,
        "status": market.status,
        "oraclePrice": dec(market.oracle_price),
        "priceChange24H": dec(price_change_24h),
        "volume24H": dec(market.volume_24h),
        "trades24H": trades_24h,
        "nextFundingRate": dec(market.next_funding_rate),
        "initialMarginFraction": dec(market.initial_margin_fraction),
        "maintenanceMarginFraction": dec(market.maintenance_margin_fraction),
        "openInterest": dec(market.open_interest),
        "atomicResolution": market.atomic_resolution,
        "quantumConversionExponent": market.quantum_conversion_exponent,
        "tickSize": dec(market.tick_size),
        "stepSize": dec(market.step_size),
        "stepBaseQuantums": market.step_base_quantums,
        "subticksPerTick": market.subticks_per_tick,
        "marketType": "CROSS",
        "openInterestLowerCap": "0",
        "openInterestUpperCap": "0",
        "baseOpenInterest": dec(market.open_interest),
        "defaultFundingRate1H": "0",
    }


def markets_json(markets: Iterable[MarketInfo]) -> Json:
    """`{"markets": {TICKER: PerpetualMarket}}` (REST body and v4_markets snapshot)."""
    return {"markets": {m.ticker: market_json(m) for m in markets}}


def oracle_prices_contents(updates: Sequence[tuple[MarketInfo, Decimal, int, int]]) -> Json:
    """v4_markets update from (market, oracle price, height, ts_ns) tuples."""
    return {"oraclePrices": {
        m.ticker: {"oraclePrice": dec(price), "effectiveAt": iso_ms(ts_ns),
                   "effectiveAtHeight": str(height), "marketId": m.clob_pair_id}
        for m, price, height, ts_ns in updates
    }}


def trading_contents(updates: Sequence[tuple[MarketInfo, Decimal]]) -> Json:
    """v4_markets `trading` update: predicted next funding rate and open interest per market."""
    return {"trading": {
        m.ticker: {"id": str(m.clob_pair_id), "nextFundingRate": dec(rate),
                   "openInterest": dec(m.open_interest), "baseOpenInterest": dec(m.open_interest)}
        for m, rate in updates
    }}


# ---- order book ------------------------------------------------------------------------------


def _pair(level: Level | BookLevel) -> Level:
    if isinstance(level, BookLevel):
        return level.price, level.size
    return level


def orderbook_levels(levels: Iterable[Level | BookLevel]) -> list[Json]:
    """Snapshot levels as objects `{"price","size"}` (REST book and `subscribed` frame)."""
    out = []
    for level in levels:
        price, size = _pair(level)
        out.append({"price": dec(price), "size": dec(size)})
    return out


def orderbook_update_levels(levels: Iterable[Level | BookLevel]) -> list[list[str]]:
    """Update levels as `[price, size]` arrays; size "0" deletes the level."""
    out = []
    for level in levels:
        price, size = _pair(level)
        out.append([dec(price), dec(size)])
    return out


def uncross(bids: Sequence[Level], asks: Sequence[Level]) -> tuple[list[Level], list[Level]]:
    """Drop crossing top levels (the smaller one; both on a tie), as comlink's `uncrossBook` does."""
    b, a = list(bids), list(asks)
    i = j = 0
    while i < len(b) and j < len(a) and b[i][0] >= a[j][0]:
        if b[i][1] < a[j][1]:
            i += 1
        elif a[j][1] < b[i][1]:
            j += 1
        else:
            i += 1
            j += 1
    return b[i:], a[j:]


def orderbook_json(bids: Sequence[Level], asks: Sequence[Level],
                   limit: int = ORDERBOOK_LEVELS_PER_SIDE) -> Json:
    """REST order book / WS snapshot: uncrossed, best first, at most `limit` levels per side."""
    b, a = uncross(bids, asks)
    return {"bids": orderbook_levels(b[:limit]), "asks": orderbook_levels(a[:limit])}


def orderbook_update_contents(bids: Iterable[Level | BookLevel], asks: Iterable[Level | BookLevel]) -> Json:
    """v4_orderbook `channel_data` contents; an empty side is left out."""
    contents: Json = {}
    b = orderbook_update_levels(bids)
    if b:
        contents["bids"] = b
    a = orderbook_update_levels(asks)
    if a:
        contents["asks"] = a
    return contents


# ---- trades, candles, funding ----------------------------------------------------------------


def trade_json(tid: str, trade: Trade, height: int, *, ws: bool = False) -> Json:
    """One trade; `side` is the taker side. WS updates carry no `createdAtHeight`."""
    out: Json = {
        "id": tid.lower(),  # the venue's ids are lowercase hex
        "side": trade.aggressor.value,
        "size": dec(trade.size),
        "price": dec(trade.price),
        "type": "LIMIT",
        "createdAt": iso_ms(trade.ts_event),
    }
    if not ws:
        out["createdAtHeight"] = str(height)
    return out


def build_candles(ticker: str, resolution: str, trades: Iterable[tuple[str, Trade, int]], *,
                  starting_open_interest: Decimal, mid: Decimal | None,
                  limit: int = 1000) -> list[Json]:
    """Aggregate trades (any order) into candles of `resolution`, newest first, buckets with trades."""
    width_ns = CANDLE_RESOLUTIONS_SECS[resolution] * 1_000_000_000
    buckets: dict[int, list[Trade]] = {}
    for _tid, trade, _height in trades:
        buckets.setdefault(trade.ts_event // width_ns, []).append(trade)
    mid_text = dec(mid) if mid is not None else None
    out = []
    for bucket in sorted(buckets, reverse=True)[:limit]:
        rows = sorted(buckets[bucket], key=lambda t: t.ts_event)
        prices = [t.price for t in rows]
        out.append({
            "startedAt": iso_ms(bucket * width_ns),
            "ticker": ticker,
            "resolution": resolution,
            "low": dec(min(prices)),
            "high": dec(max(prices)),
            "open": dec(rows[0].price),
            "close": dec(rows[-1].price),
            "baseTokenVolume": dec(sum((t.size for t in rows), ZERO)),
            "usdVolume": dec(sum((t.size * t.price for t in rows), ZERO)),
            "trades": len(rows),
            "startingOpenInterest": dec(starting_open_interest),
            "orderbookMidPriceOpen": mid_text,
            "orderbookMidPriceClose": mid_text,
        })
    return out


def history_candle_json(ticker: str, bar: HistoryBar) -> Json:
    """One 1HOUR candle of a simulated market's past (bot.sim.history); no trades behind it."""
    return {
        "startedAt": iso_ms(bar.ts_ns), "ticker": ticker, "resolution": "1HOUR",
        "low": dec(bar.low), "high": dec(bar.high), "open": dec(bar.open), "close": dec(bar.close),
        "baseTokenVolume": "0", "usdVolume": "0", "trades": 0, "startingOpenInterest": "0",
        "orderbookMidPriceOpen": dec(bar.open), "orderbookMidPriceClose": dec(bar.close),
    }


def historical_funding_json(point: HistoricalFunding) -> Json:
    """One `/v4/historicalFunding` row; `rate` is a 1-hour rate."""
    return {
        "ticker": point.ticker,
        "rate": dec(point.rate),
        "price": dec(point.price),
        "effectiveAtHeight": str(point.height),
        "effectiveAt": iso_ms(point.ts_ns),
    }


def height_json(height: int, ts_ns: int, *, update: bool = False) -> Json:
    """`/v4/height` and the v4_block_height snapshot use `height`; channel updates `blockHeight`."""
    return {"blockHeight" if update else "height": str(height), "time": iso_ms(ts_ns)}


def time_json(ts_ns: int) -> Json:
    """`/v4/time`: ISO string plus epoch seconds (a JSON number with ms)."""
    return {"iso": iso_ms(ts_ns), "epoch": round(ts_ns / 1e9, 3)}


# ---- accounts --------------------------------------------------------------------------------


def order_json(order: OrderRecord, *, ws: bool = False) -> Json:
    """One Order (REST /v4/orders and v4_subaccounts); WS adds `removalReason` when set."""
    req = order.request
    oid = req.order_id
    out: Json = {
        "id": order.uid,
        "subaccountId": subaccount_id(oid.owner, oid.subaccount_number),
        "clientId": str(oid.client_id),
        "clobPairId": str(oid.clob_pair_id),
        "side": req.side.value,
        "size": dec(req.size),
        "totalFilled": dec(order.total_filled),
        "price": dec(req.price),
        "type": "LIMIT",
        "status": order.status.value,
        "timeInForce": _TIF[req.time_in_force],
        "reduceOnly": req.reduce_only,
        "orderFlags": str(oid.order_flags),
    }
    if req.good_til_block is not None:
        out["goodTilBlock"] = str(req.good_til_block)
    if req.good_til_block_time is not None:
        out["goodTilBlockTime"] = iso_ms(req.good_til_block_time * 1_000_000_000)
    out.update({
        "createdAtHeight": str(order.created_at_height),
        "clientMetadata": str(req.client_metadata),
        "updatedAt": iso_ms(order.updated_ns),
        "updatedAtHeight": str(order.updated_at_height),
        "postOnly": req.time_in_force is TimeInForce.POST_ONLY,
        "ticker": order.ticker,
        "subaccountNumber": oid.subaccount_number,
    })
    if ws and order.removal_reason:
        out["removalReason"] = order.removal_reason
    return out


def _event_id(fill: FillRecord) -> Json:
    """The WS fill `eventId`: a Node Buffer of 12 bytes (height, tx index, event index)."""
    digest = hashlib.sha256(fill.fill_id.encode()).digest()
    raw = (fill.height & 0xFFFFFFFF).to_bytes(4, "big") + digest[:8]
    return {"type": "Buffer", "data": list(raw)}


def fill_json(fill: FillRecord, ws: bool, clob_pair_id: int | None = None) -> Json:
    """One Fill: REST names the market `market`; WS names it `ticker` and adds chain details."""
    out: Json = {
        "id": fill.fill_id,
        "side": fill.side.value,
        "liquidity": fill.liquidity,
        "type": "LIMIT",
        "price": dec(fill.price),
        "size": dec(fill.size),
        "fee": dec(fill.fee),
        "affiliateRevShare": "0",
        "createdAt": iso_ms(fill.ts_ns),
        "createdAtHeight": str(fill.height),
        "orderId": fill.order_uid,
        "clientMetadata": str(fill.client_metadata),
        "subaccountNumber": fill.subaccount_number,
    }
    if ws:
        out["ticker"] = fill.ticker
        out["subaccountId"] = subaccount_id(fill.owner, fill.subaccount_number)
        out["clobPairId"] = str(clob_pair_id if clob_pair_id is not None else 0)
        out["quoteAmount"] = dec(fill.price * fill.size)
        out["eventId"] = _event_id(fill)
        out["transactionHash"] = _tx_hash(f"fill:{fill.height}:{fill.order_uid}")
    else:
        out["market"] = fill.ticker
        out["marketType"] = "PERPETUAL"
    return out


def position_json(pos: PositionRecord, *, oracle_price: Decimal | None, created_ns: int) -> Json:
    """One perpetual position (REST, subaccount `openPerpetualPositions`, WS updates)."""
    size = pos.size
    unrealized = (oracle_price - pos.entry_price) * size if oracle_price is not None and size else ZERO
    closed = pos.status != "OPEN"
    return {
        "market": pos.ticker,
        "status": pos.status,
        "side": "SHORT" if size < 0 else "LONG",
        "size": dec(size),
        "maxSize": dec(size),
        "entryPrice": dec(pos.entry_price),
        "exitPrice": None,
        "realizedPnl": dec(pos.realized_pnl),
        "unrealizedPnl": dec(unrealized),
        "createdAt": iso_ms(created_ns),
        "createdAtHeight": str(pos.height),
        "closedAt": iso_ms(created_ns) if closed else None,
        "sumOpen": dec(abs(size)),
        "sumClose": "0",
        "netFunding": dec(pos.net_funding),
        "subaccountNumber": pos.subaccount_number,
    }


def asset_position_json(number: int, usdc_balance: Decimal) -> Json:
    """The USDC asset position; a negative balance is a SHORT with a positive size."""
    return {
        "size": dec(abs(usdc_balance)),
        "symbol": "USDC",
        "side": "SHORT" if usdc_balance < 0 else "LONG",
        "assetId": USDC_ASSET_ID,
        "subaccountNumber": number,
    }


def subaccount_json(sub: SubaccountInfo, *, oracle_prices: dict[str, Decimal], latest_height: int,
                    ts_ns: int, usdc_asset: Decimal | None = None) -> Json:
    """One Subaccount (REST /v4/addresses..., v4_subaccounts snapshot).

    `usdc_asset` is the USDC asset position as the venue reports it (cash net of open positions'
    cost); it defaults to the record's balance.
    """
    positions = {
        p.ticker: position_json(p, oracle_price=oracle_prices.get(p.ticker), created_ns=ts_ns)
        for p in sub.positions if p.status == "OPEN" and p.size != 0
    }
    usdc = sub.usdc_balance if usdc_asset is None else usdc_asset
    assets = {}
    if usdc != 0:
        assets["USDC"] = asset_position_json(sub.subaccount_number, usdc)
    return {
        "address": sub.owner,
        "subaccountNumber": sub.subaccount_number,
        "equity": dec(sub.equity),
        "freeCollateral": dec(sub.free_collateral),
        "openPerpetualPositions": positions,
        "assetPositions": assets,
        "marginEnabled": True,
        "updatedAtHeight": str(sub.height),
        "latestProcessedBlockHeight": str(latest_height),
    }


def transfer_json(transfer: TransferRecord, *, ws: bool = False) -> Json:
    """One Transfer (REST list item; WS sends a single object without `id`).

    A withdrawal's recipient is the wallet (no subaccountNumber), as in the real samples; the
    counterparty of a subaccount transfer is not in the record, so both ends name the owner.
    """
    own: Json = {"address": transfer.owner, "subaccountNumber": transfer.subaccount_number}
    if transfer.kind == "WITHDRAWAL":
        sender, recipient = own, {"address": transfer.owner}
    else:
        sender, recipient = dict(own), own
    out: Json = {} if ws else {"id": transfer.transfer_id}
    out.update({
        "sender": sender,
        "recipient": recipient,
        "size": dec(transfer.amount),
        "createdAt": iso_ms(transfer.ts_ns),
        "createdAtHeight": str(transfer.height),
        "symbol": "USDC",
        "type": transfer.kind,
        "transactionHash": _tx_hash(f"transfer:{transfer.transfer_id}"),
    })
    return out


def funding_payment_json(payment: FundingRecord, perpetual_id: int) -> Json:
    """One `/v4/fundingPayments` row (payment > 0: received)."""
    return {
        "createdAt": iso_ms(payment.ts_ns),
        "createdAtHeight": str(payment.height),
        "perpetualId": str(perpetual_id),
        "ticker": payment.ticker,
        "oraclePrice": dec(payment.oracle_price),
        "size": dec(abs(payment.position_size)),
        "side": "SHORT" if payment.position_size < 0 else "LONG",
        "rate": dec(payment.rate),
        "payment": dec(payment.amount),
        "subaccountNumber": str(payment.subaccount_number),
        "fundingIndex": "0",
    }


# ---- REST errors -----------------------------------------------------------------------------


def error_body(msg: str, **fields: Any) -> Json:
    """comlink's error body: `{"errors": [{"msg": ..., optional param/location/value}]}`."""
    return {"errors": [{"msg": msg, **fields}]}


# ---- WebSocket frames ------------------------------------------------------------------------


def connected_frame(connection_id: str) -> bytes:
    return encode({"type": "connected", "connection_id": connection_id, "message_id": 0})


def control_frame(kind: str, connection_id: str, message_id: int, **fields: Any) -> bytes:
    """A `subscribed` / `unsubscribed` / `error` frame (encoded once, for one connection)."""
    return encode({"type": kind, "connection_id": connection_id, "message_id": message_id, **fields})


def channel_body(channel: str, sub_id: str | None, contents: Any) -> bytes:
    """Encode the connection-independent part of a data frame once: `{"channel",["id",]"version","contents"}`.

    v4_markets frames carry no `id` (real samples); every other channel echoes its id.
    """
    body: Json = {"channel": channel}
    if sub_id is not None:
        body["id"] = sub_id
    body["version"] = VERSIONS[channel]
    body["contents"] = contents
    return encode(body)


def frame_prefix(kind: str, connection_id: str) -> bytes:
    """The per-connection head of a data frame, completed by `splice_frame`."""
    return b'{"type":"' + kind.encode() + b'","connection_id":"' + connection_id.encode() + b'","message_id":'


def splice_frame(prefix: bytes, message_id: int, body: bytes) -> bytes:
    """Join a `frame_prefix`, the message id and an encoded `channel_body` into one JSON object."""
    return prefix + str(message_id).encode() + b"," + body[1:]
