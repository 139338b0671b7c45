"""Fuzz the Binance spot decoders and parsers with mutated payloads (Binance's documented shapes).

Property: a stream frame decodes or raises msgspec's DecodeError/ValidationError (the stream
loops catch MsgspecError), and what decodes parses into domain values or raises
MalformedMessage; a REST body decodes or raises the client's MalformedMessage/VenueError.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from fuzz.binance_body import decoded
from fuzz.mutate import fuzz_settings, mutated_bytes
from hypothesis import given
from hypothesis import strategies as st

from bot.domain import BookDelta, BookSnapshot, Fill, OrderUpdate, Trade
from bot.errors import MalformedMessage
from bot.venues.binance import wire
from bot.venues.binance.orders import SpotSpec
from bot.venues.binance.parse import (
    AssetBalance,
    parse_account,
    parse_account_position,
    parse_depth_snapshot,
    parse_depth_update,
    parse_execution_report,
    parse_order_info,
    parse_spec,
    parse_trade,
)

SPEC = SpotSpec(market="BTC-USDT", symbol="BTCUSDT", base_asset="BTC", quote_asset="USDT",
                tick_size=Decimal("0.01"), step_size=Decimal("0.00001"), min_qty=Decimal("0.00001"),
                min_notional=Decimal(5), min_price=Decimal("0.01"), max_price=Decimal(1_000_000),
                max_qty=Decimal(9000), max_notional=Decimal(9_000_000))

DEPTH = {"e": "depthUpdate", "E": 1672515782136, "s": "BTCUSDT", "U": 157, "u": 160,
         "b": [["60000.10", "1.5"], ["59999.00", "0"]], "a": [["60001.00", "0.25"]]}
TRADE = {"e": "trade", "E": 1672515782136, "s": "BTCUSDT", "t": 12345, "p": "60000.01", "q": "0.012",
         "T": 1672515782136, "m": True, "M": True}
STREAM_FRAMES = [{"stream": "btcusdt@depth@100ms", "data": DEPTH}, {"stream": "btcusdt@trade", "data": TRADE},
                 {"result": None, "id": 1}, {"code": 2, "msg": "Invalid request", "id": "x"}]
EXECUTION = {"e": "executionReport", "E": 1499405658658, "s": "BTCUSDT", "c": "pb-42", "S": "BUY",
             "o": "LIMIT", "f": "IOC", "q": "0.01000000", "p": "60010.00000000", "C": "", "x": "TRADE",
             "X": "PARTIALLY_FILLED", "r": "NONE", "i": 4293153, "l": "0.00400000", "z": "0.00600000",
             "L": "60001.50000000", "n": "0.00000400", "N": "BTC", "T": 1499405658657, "t": 77, "m": False}
USER_EVENTS = [
    EXECUTION,
    {**EXECUTION, "x": "CANCELED", "X": "CANCELED", "c": "web_x", "C": "pb-42", "l": "0", "L": "0", "n": "0",
     "N": None, "t": -1},
    {**EXECUTION, "N": "BNB", "m": True},
    {"e": "outboundAccountPosition", "E": 1564034571105, "u": 1564034571073,
     "B": [{"a": "BTC", "f": "10.5", "l": "0.1"}, {"a": "USDT", "f": "1000", "l": "0"}]},
    {"e": "listenKeyExpired", "E": 1576653824250, "listenKey": "abc"},
]
EXCHANGE_INFO = {"timezone": "UTC", "serverTime": 1565246363776, "rateLimits": [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}],
    "symbols": [{"symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT",
                 "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"], "filters": [
                     {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000.00",
                      "tickSize": "0.01"},
                     {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000", "stepSize": "0.00001"},
                     {"filterType": "NOTIONAL", "minNotional": "5", "maxNotional": "9000000"}]}]}
ORDER_INFO = {"symbol": "BTCUSDT", "orderId": 28, "clientOrderId": "pb-7", "price": "60000.00",
              "origQty": "0.01", "executedQty": "0.004", "cummulativeQuoteQty": "240",
              "status": "PARTIALLY_FILLED",
              "timeInForce": "GTC", "type": "LIMIT", "side": "BUY", "time": 1499827319559,
              "updateTime": 1499827319559}
ACCOUNT = {"canTrade": True, "updateTime": 123456789, "balances": [
    {"asset": "BTC", "free": "4723846.89208129", "locked": "0.00000000"},
    {"asset": "USDT", "free": "4763368.68006011", "locked": "0.5"}]}
DEPTH_SNAPSHOT = {"lastUpdateId": 1027024, "bids": [["4.00000000", "431.00000000"]],
                  "asks": [["4.00000200", "12.00000000"]]}

BAD_UTF8 = b'{"stream":"\xff","e":"\xc3"}'
TOO_DEEP = b'{"x":' + b"[" * 5000 + b"]" * 5000 + b"}"
DOMAIN = (BookSnapshot, BookDelta, Trade, OrderUpdate, Fill, AssetBalance, SpotSpec)


def check(values: Any) -> None:
    for value in values if isinstance(values, list | tuple) else [values]:
        if value is None:
            continue
        assert isinstance(value, DOMAIN), value
        for name in ("price", "size", "fee", "filled", "free", "locked", "tick_size", "step_size"):
            number = getattr(value, name, None)
            assert number is None or (isinstance(number, Decimal) and number.is_finite()), (name, value)


@fuzz_settings(200)
@given(raw=mutated_bytes(STREAM_FRAMES))
def test_market_stream_frames_decode_and_parse_or_refuse(raw: bytes) -> None:
    try:
        frame = wire.COMBINED.decode(raw)
    except msgspec.MsgspecError:
        try:
            wire.STREAM_REPLY.decode(raw)
        except msgspec.MsgspecError:
            pass
        return
    try:
        if isinstance(frame.data, wire.DepthUpdate):
            check(parse_depth_update(frame.data, "BTC-USDT", 1))
        else:
            check(parse_trade(frame.data, "BTC-USDT", 1))
    except MalformedMessage:
        pass


@fuzz_settings(200)
@given(raw=mutated_bytes(USER_EVENTS))
def test_user_events_decode_and_parse_or_refuse(raw: bytes) -> None:
    try:
        event = wire.USER_EVENT.decode(raw)
    except msgspec.MsgspecError:
        try:
            wire.EVENT_TYPE.decode(raw)
        except msgspec.MsgspecError:
            pass
        return
    try:
        if isinstance(event, wire.ExecutionReport):
            check(parse_execution_report(event, SPEC))
        elif isinstance(event, wire.OutboundAccountPosition):
            check(list(parse_account_position(event).values()))
    except MalformedMessage:
        pass


@pytest.mark.parametrize("decoder", [wire.COMBINED, wire.STREAM_REPLY, wire.USER_EVENT, wire.EVENT_TYPE])
@pytest.mark.parametrize("raw", [BAD_UTF8, TOO_DEEP],
                         ids=["invalid UTF-8", "deep nesting"])
def test_stream_decoders_fail_only_with_msgspec_errors(decoder: wire.StreamDecoder[Any], raw: bytes) -> None:
    try:
        decoder.decode(raw)  # STREAM_REPLY skips the unknown keys unread: it decodes
    except msgspec.DecodeError:
        pass  # the raw msgspec decoder raises UnicodeDecodeError / RecursionError here


def parse_rest(kind: type, decoded: Any) -> Any:
    if kind is wire.ExchangeInfo:
        return [parse_spec(s, "BTC-USDT") for s in decoded.symbols]
    if kind is wire.DepthSnapshot:
        return parse_depth_snapshot(decoded, "BTC-USDT", 1, 1)
    if kind is wire.OrderInfo:
        return parse_order_info(decoded, SPEC)
    return list(parse_account(decoded).values())


REST_CASES = [(wire.ExchangeInfo, EXCHANGE_INFO), (wire.DepthSnapshot, DEPTH_SNAPSHOT),
              (wire.OrderInfo, ORDER_INFO), (wire.Account, ACCOUNT)]


def test_rest_seeds_parse() -> None:
    for kind, seed in REST_CASES:
        check(parse_rest(kind, msgspec.json.decode(json.dumps(seed), type=kind)))


@fuzz_settings(150)
@given(case=st.sampled_from(REST_CASES), data=st.data())
def test_rest_bodies_decode_and_parse_or_refuse(case: tuple[type, Any], data: st.DataObject) -> None:
    kind, seed = case
    body = decoded(kind, data.draw(mutated_bytes([seed])), "/api/v3/x")
    if body is None:
        return
    try:
        check(parse_rest(kind, body))
    except MalformedMessage:
        pass
