"""Fuzz the dYdX indexer parsers with mutated real frames and REST bodies.

Property: a frame either parses into domain events or raises MalformedMessage (the feed then
counts it and resyncs); the feed's `handle_frame` never raises at all; a REST body either
decodes into its struct or raises a VenueError (the client classifies every failure).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import msgspec
import pytest
from fuzz.known import is_known
from fuzz.mutate import DYDX_FIXTURES, batch_of, fuzz_settings, load_json_dir, mutated_bytes
from hypothesis import given
from hypothesis import strategies as st
from support.shared import require_shared

from bot.book import OrderBook
from bot.domain import (
    BlockHeight,
    BookDelta,
    BookSnapshot,
    Fill,
    MarketParams,
    MarketStatus,
    OracleUpdate,
    OrderUpdate,
    Trade,
    Transfer,
)
from bot.errors import MalformedMessage, VenueError
from bot.telemetry import Metrics
from bot.venues.dydx import indexer_rest
from bot.venues.dydx.indexer_ws import IndexerFeed, Subscription
from bot.venues.dydx.parse import FeedParser, ParsedFrame, apply_book_frame, book_events, transfer_event

require_shared()
WS = load_json_dir(DYDX_FIXTURES / "ws")
FRAMES = [*WS.values(), *(b for b in map(batch_of, WS.values()) if b is not None)]
BOOK_FRAMES = [f for f in FRAMES if f.get("channel") == "v4_orderbook"]
DOMAIN = (BookSnapshot, BookDelta, Trade, OracleUpdate, BlockHeight, OrderUpdate, Fill, MarketStatus,
          MarketParams, Transfer)
MARKETS = ("BTC-USD", "ETH-USD")


def tolerate(exc: Exception) -> None:
    """Re-raise unless it is a crash already reported (tests/fuzz/known.py)."""
    if not is_known(exc):
        raise exc


def check_events(events: list[Any]) -> None:
    for event in events:
        assert isinstance(event, DOMAIN), event
        for name in ("amount", "price", "size", "oracle_price", "funding_rate", "filled", "fee", "tick_size",
                     "step_size", "initial_margin_fraction", "maintenance_margin_fraction"):
            value = getattr(event, name, None)
            assert value is None or (isinstance(value, Decimal) and value.is_finite()), (name, event)


@fuzz_settings(150)
@given(raw=mutated_bytes(FRAMES))
def test_feed_parser_returns_events_or_malformed(raw: bytes) -> None:
    parser = FeedParser()
    try:
        parsed = parser.parse(raw, ts_recv=1)
    except MalformedMessage:
        return
    except Exception as exc:
        tolerate(exc)
        return
    assert isinstance(parsed, ParsedFrame)
    check_events(parsed.events)


@fuzz_settings(100)
@given(raw=mutated_bytes(BOOK_FRAMES))
def test_book_fast_path_applies_or_rejects(raw: bytes) -> None:
    book = OrderBook("ETH-USD")
    try:
        frame = FeedParser.parse_book(raw)
        if frame is None:
            return
        assert isinstance(apply_book_frame(frame, book, 1), bool)
        check_events(book_events(frame, 1))
    except MalformedMessage:
        return
    except Exception as exc:
        tolerate(exc)


def make_feed() -> IndexerFeed:
    subs = [Subscription("v4_orderbook", m) for m in MARKETS] + [
        Subscription(c, None) for c in ("v4_markets", "v4_block_height", "v4_subaccounts")]
    books = {m: OrderBook(m) for m in MARKETS}
    return IndexerFeed("ws://127.0.0.1:9/unused", subs, books, lambda event: None, Metrics())


@fuzz_settings(80)
@given(frames=st.lists(mutated_bytes(FRAMES), min_size=1, max_size=4))
def test_feed_handle_frame_never_raises(frames: list[bytes]) -> None:
    feed = make_feed()
    for raw in frames:
        try:
            resync = feed.handle_frame(raw, ts_recv=1)
        except Exception as exc:
            tolerate(exc)
            continue
        assert resync is None or (isinstance(resync, tuple) and len(resync) == 2)


# ---- REST ---------------------------------------------------------------------------------------

REST = load_json_dir(DYDX_FIXTURES / "rest")
CCXT = REST.pop("ccxt_testnet_2025_http_responses.json")
REST_BODIES: dict[str, tuple[type, list[Any]]] = {
    "/v4/height": (indexer_rest.Height, [REST["mainnet_2025-12-08_block_height.json"]]),
    "/v4/perpetualMarkets": (indexer_rest.MarketsResponse, [
        REST["mainnet_2025-12-08_perpetual_markets.json"], REST["list_perpetual_markets_v8.json"]]),
    "/v4/orders": (list[indexer_rest.wire.OrderWire], [
        REST["orders.json"], REST["mainnet_2025-12-08_orders.json"]]),
    "/v4/fills": (indexer_rest.FillsResponse, [REST["fills.json"], REST["mainnet_2025-12-08_fills.json"]]),
    "/v4/perpetualPositions": (indexer_rest.PositionsResponse, [REST["list_perpetual_positions.json"]]),
    "/v4/transfers": (indexer_rest.TransfersResponse, [REST["mainnet_2025-12-08_transfers.json"]]),
    "/v4/orderbooks": (indexer_rest.wire.OrderbookSnapshot, [
        v for k, v in CCXT.items() if k.startswith("/v4/orderbooks")]),
    "/v4/historicalFunding": (indexer_rest.HistoricalFundingResponse, [
        v for k, v in CCXT.items() if k.startswith("/v4/historicalFunding")]),
}


@pytest.mark.parametrize("path", sorted(REST_BODIES))
def test_rest_seeds_decode(path: str) -> None:
    """The seeds themselves are valid: the mutations start from bodies that decode."""
    kind, seeds = REST_BODIES[path]
    assert seeds
    for seed in seeds:
        indexer_rest._decoder(kind).decode(httpx.Response(200, json=seed).content)


REST_CASES = [(path, kind, seed) for path, (kind, seeds) in sorted(REST_BODIES.items()) for seed in seeds]


async def get_once(path: str, kind: type, body: bytes) -> Any:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    client = indexer_rest.IndexerRest("http://indexer.invalid", max_attempts=1, transport=transport)
    try:
        return await client.get(path, kind)
    finally:
        await client.aclose()


@fuzz_settings(100)
@given(case=st.sampled_from(REST_CASES), data=st.data())
def test_rest_client_decodes_or_raises_venue_error(case: tuple[str, type, Any], data: st.DataObject) -> None:
    path, kind, seed = case
    body = data.draw(mutated_bytes([seed]))
    try:
        decoded = asyncio.run(get_once(path, kind, body))
    except (VenueError, MalformedMessage):
        return
    assert isinstance(decoded, list | msgspec.Struct)


TRANSFER_KEYS = ("type", "size", "amount", "symbol", "asset", "createdAt", "createdAtHeight",
                 "transactionHash")
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5)


@fuzz_settings(300)
@given(row=st.dictionaries(st.sampled_from(TRANSFER_KEYS),
                           ANY_JSON | st.sampled_from(["DEPOSIT", "WITHDRAWAL", "USDC", "1e999999", "12",
                                                       "2024-08-16T08:43:22.999Z", "-1", "NaN"])))
def test_a_transfer_row_is_a_transfer_none_or_malformed(row: dict[str, Any]) -> None:
    try:
        transfer = transfer_event(row)
    except MalformedMessage:
        return
    assert transfer is None or (isinstance(transfer, Transfer) and transfer.amount.is_finite())
