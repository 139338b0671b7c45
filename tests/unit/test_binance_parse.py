"""Binance wire payloads (as documented by Binance and rendered by the simulator) -> domain types."""

from decimal import Decimal

import msgspec
import pytest

from bot.domain import BookLevel, Liquidity, OrderStatus, Side
from bot.errors import MalformedMessage
from bot.venues.binance import wire
from bot.venues.binance.orders import client_id_of, client_order_id
from bot.venues.binance.parse import (
    base_positions,
    parse_account,
    parse_account_position,
    parse_depth_snapshot,
    parse_depth_update,
    parse_execution_report,
    parse_my_trade,
    parse_order_info,
    parse_spec,
    parse_trade,
    report_client_id,
)
from bot.venues.binance.rest import WeightMeter, sign

D = Decimal

EXCHANGE_INFO = b"""{"timezone":"UTC","serverTime":1565246363776,
"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":6000}],"exchangeFilters":[],"symbols":[{"symbol":"BTCUSDT",
"status":"TRADING","baseAsset":"BTC","baseAssetPrecision":8,"quoteAsset":"USDT","quotePrecision":8,
"orderTypes":["LIMIT","LIMIT_MAKER","MARKET"],"icebergAllowed":true,"someNewField":{"x":1},"filters":[
{"filterType":"PRICE_FILTER","minPrice":"0.01000000","maxPrice":"1000000.00000000","tickSize":"0.01000000"},
{"filterType":"LOT_SIZE","minQty":"0.00001000","maxQty":"9000.00000000","stepSize":"0.00001000"},
{"filterType":"ICEBERG_PARTS","limit":10},
{"filterType":"NOTIONAL","minNotional":"5.00000000","applyMinToMarket":true,"maxNotional":"9000000.00000000",
"applyMaxToMarket":false,"avgPriceMins":5}],"permissions":[]}]}"""

EXECUTION_TRADE = b"""{"e":"executionReport","E":1499405658658,"s":"BTCUSDT","c":"pb-42","S":"BUY",
"o":"LIMIT","f":"IOC","q":"0.01000000","p":"60010.00000000","P":"0.00000000","F":"0.00000000","g":-1,"C":"","x":"TRADE",
"X":"PARTIALLY_FILLED","r":"NONE","i":4293153,"l":"0.00400000","z":"0.00600000","L":"60001.50000000",
"n":"0.00000400","N":"BTC","T":1499405658657,"t":77,"I":8641984,"w":false,"m":false,"M":false,
"O":1499405658657,"Z":"360.00000000","Y":"240.00600000","Q":"0.00000000","W":1499405658657,
"V":"EXPIRE_MAKER"}"""


def test_exchange_info_filters_become_a_spot_spec() -> None:
    info = msgspec.json.decode(EXCHANGE_INFO, type=wire.ExchangeInfo)
    spec = parse_spec(info.symbols[0], "BTC-USDT")
    assert (spec.market, spec.symbol, spec.base_asset, spec.quote_asset) == (
        "BTC-USDT", "BTCUSDT", "BTC", "USDT")
    assert (spec.tick_size, spec.step_size, spec.min_qty, spec.min_notional) == (
        D("0.01"), D("0.00001"), D("0.00001"), D("5"))
    assert (spec.min_price, spec.max_price, spec.max_qty) == (D("0.01"), D("1000000"), D("9000"))
    market = spec.market_spec()
    assert (market.ticker, market.tick_size, market.step_size, market.min_order_size) == (
        "BTC-USDT", D("0.01"), D("0.00001"), D("0.00001"))
    assert str(spec.tick_size) == "0.01"  # normalised: no trailing zeros on the grid


def test_older_min_notional_filter_is_understood_and_missing_filters_refused() -> None:
    lot = wire.Filter("LOT_SIZE", minQty="0.001", stepSize="0.001")
    price = wire.Filter("PRICE_FILTER", tickSize="0.1")
    old = wire.SymbolInfo("ETHBTC", "TRADING", "ETH", "BTC", [price, lot, wire.Filter("MIN_NOTIONAL",
                                                                                       minNotional="0.0001")])
    assert parse_spec(old, "ETH-BTC").min_notional == D("0.0001")
    with pytest.raises(MalformedMessage):
        parse_spec(wire.SymbolInfo("X", "TRADING", "A", "B", [lot]), "A-B")


def test_depth_snapshot_and_diff() -> None:
    snap = msgspec.json.decode(b'{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],'
                               b'"asks":[["4.00000200","12.00000000"]]}', type=wire.DepthSnapshot)
    book = parse_depth_snapshot(snap, "BNB-BTC", 5, 6)
    assert book.bids == (BookLevel(D(4), D(431)),) and book.asks == (BookLevel(D("4.000002"), D(12)),)
    frame = wire.COMBINED.decode(b'{"stream":"bnbbtc@depth@100ms","data":{"e":"depthUpdate",'
                                 b'"E":1672515782136,"s":"BNBBTC","U":157,"u":160,"b":[["0.0024","10"]],"a":[["0.0026","0"]]}}')
    assert isinstance(frame.data, wire.DepthUpdate) and (frame.data.U, frame.data.u) == (157, 160)
    delta = parse_depth_update(frame.data, "BNB-BTC", 9)
    assert delta.bids == (BookLevel(D("0.0024"), D(10)),) and delta.asks == (BookLevel(D("0.0026"), D(0)),)
    assert (delta.ts_event, delta.ts_recv) == (1672515782136 * 1_000_000, 9)


def test_trade_aggressor_is_the_side_that_was_not_the_maker() -> None:
    frame = wire.COMBINED.decode(b'{"stream":"bnbbtc@trade","data":{"e":"trade","E":1672515782136,'
                                 b'"s":"BNBBTC","t":12345,"p":"0.001","q":"100","T":1672515782136,"m":true,"M":true}}')
    assert isinstance(frame.data, wire.TradeEvent)
    trade = parse_trade(frame.data, "BNB-BTC", 1)
    assert (trade.price, trade.size, trade.aggressor) == (D("0.001"), D(100), Side.SELL)
    buy = parse_trade(msgspec.structs.replace(frame.data, m=False), "BNB-BTC", 1)
    assert buy.aggressor is Side.BUY


def spec():  # type: ignore[no-untyped-def]
    info = msgspec.json.decode(EXCHANGE_INFO, type=wire.ExchangeInfo)
    return parse_spec(info.symbols[0], "BTC-USDT")


def test_execution_report_trade_becomes_fill_and_update_with_our_client_id() -> None:
    event = wire.USER_EVENT.decode(EXECUTION_TRADE)
    assert isinstance(event, wire.ExecutionReport)
    update, fill = parse_execution_report(event, spec())
    assert update is not None and fill is not None
    assert (update.client_id, update.market, update.status, update.filled_size) == (
        42, "BTC-USDT", OrderStatus.PARTIALLY_FILLED, D("0.006"))
    assert (fill.fill_id, fill.client_id, fill.side, fill.price, fill.gross_size) == (
        "BTCUSDT-77", 42, Side.BUY, D("60001.5"), D("0.004"))
    assert fill.fee == D("0.000004") * D("60001.5")  # base-asset commission in quote terms
    assert (fill.size, fill.withheld) == (D("0.003996"), D("0.000004"))  # the account got the net
    assert fill.liquidity is Liquidity.TAKER and fill.ts_event == 1499405658657 * 1_000_000


def test_commission_in_quote_is_kept_and_in_bnb_is_zero() -> None:
    event = wire.USER_EVENT.decode(EXECUTION_TRADE)
    sell = msgspec.structs.replace(event, S="SELL", N="USDT", n="0.24", m=True)
    _, fill = parse_execution_report(sell, spec())
    assert fill is not None and fill.fee == D("0.24") and fill.liquidity is Liquidity.MAKER
    _, bnb = parse_execution_report(msgspec.structs.replace(event, N="BNB"), spec())
    assert bnb is not None and bnb.fee == 0


# A taker buy of 0.5 ETH without the BNB discount, as the user stream reports it: 0.1% commission
# in ETH, so the account is credited 0.4995 ETH (outboundAccountPosition shows it).
ETH_BUY = b"""{"e":"executionReport","E":1733587200123,"s":"ETHUSDT","c":"pb-7","S":"BUY","o":"LIMIT",
"f":"IOC","q":"0.50000000","p":"3605.00000000","P":"0.00000000","F":"0.00000000","g":-1,"C":"","x":"TRADE",
"X":"FILLED","r":"NONE","i":1944,"l":"0.50000000","z":"0.50000000","L":"3601.27000000","n":"0.00050000",
"N":"ETH","T":1733587200121,"t":9912,"I":4101,"w":false,"m":false,"M":true,"O":1733587200120,
"Z":"1800.63500000","Y":"1800.63500000","Q":"0.00000000","W":1733587200120,"V":"EXPIRE_MAKER"}"""
ETH_TRADES = (b'[{"symbol":"ETHUSDT","id":9912,"orderId":1944,"orderListId":-1,"price":"3601.27000000",'
              b'"qty":"0.50000000","quoteQty":"1800.63500000","commission":"0.00050000","commissionAsset":"ETH",'
              b'"time":1733587200121,"isBuyer":true,"isMaker":false,"isBestMatch":true},'
              b'{"symbol":"ETHUSDT","id":9950,"orderId":1960,"orderListId":-1,"price":"3610.00000000",'
              b'"qty":"0.49950000","quoteQty":"1803.19500000","commission":"1.80319500","commissionAsset":"USDT",'
              b'"time":1733587260000,"isBuyer":false,"isMaker":false,"isBestMatch":true}]')


def eth_spec():  # type: ignore[no-untyped-def]
    lot = wire.Filter("LOT_SIZE", minQty="0.00010000", maxQty="9000.00000000", stepSize="0.00010000")
    price = wire.Filter("PRICE_FILTER", minPrice="0.01", maxPrice="1000000", tickSize="0.01000000")
    return parse_spec(wire.SymbolInfo("ETHUSDT", "TRADING", "ETH", "USDT", [price, lot]), "ETH-USDT")


def test_a_buys_base_commission_is_withheld_from_the_size_booked_either_path() -> None:
    event = wire.USER_EVENT.decode(ETH_BUY)
    assert isinstance(event, wire.ExecutionReport)
    update, streamed = parse_execution_report(event, eth_spec())
    rows = msgspec.json.decode(ETH_TRADES, type=list[wire.MyTrade])
    buy, sell = (parse_my_trade(r, eth_spec(), 7) for r in rows)
    assert update is not None and streamed == buy  # one trade, one fill, stream or REST
    assert (buy.size, buy.withheld, buy.gross_size, buy.price) == (
        D("0.4995"), D("0.0005"), D("0.5"), D("3601.27"))
    assert buy.gross_size == update.filled_size  # the order's filled quantity stays the venue's `z`
    assert buy.fee == D("1.800635")  # the commission at the fill price
    assert buy.price * buy.gross_size == buy.price * buy.size + buy.fee == D("1800.635")  # exact cash
    # The sell's commission is in the quote asset: nothing withheld, all of it leaves the account.
    assert (sell.side, sell.size, sell.withheld, sell.fee) == (Side.SELL, D("0.4995"), 0, D("1.803195"))
    assert buy.size - sell.size == 0  # selling what was booked sells what the account holds


def test_a_base_commission_that_is_not_less_than_the_trade_is_malformed() -> None:
    event = wire.USER_EVENT.decode(ETH_BUY)
    assert isinstance(event, wire.ExecutionReport)
    for commission in ("0.5", "0.6", "-0.0005"):
        with pytest.raises(MalformedMessage):
            parse_execution_report(msgspec.structs.replace(event, n=commission), eth_spec())
    _, free = parse_execution_report(msgspec.structs.replace(event, n="0", N=None), eth_spec())
    assert free is not None and (free.size, free.withheld, free.fee) == (D("0.5"), 0, 0)


def test_cancel_reports_carry_our_id_in_the_original_client_id() -> None:
    event = wire.USER_EVENT.decode(EXECUTION_TRADE)
    cancel = msgspec.structs.replace(event, x="CANCELED", X="CANCELED", c="web_8f3a", C="pb-42")
    assert report_client_id(cancel) == 42
    update, fill = parse_execution_report(cancel, spec())
    assert update is not None and update.status is OrderStatus.CANCELLED and fill is None
    foreign = msgspec.structs.replace(event, c="manual-order")
    assert parse_execution_report(foreign, spec()) == (None, None)
    expired = msgspec.structs.replace(event, x="EXPIRED", X="EXPIRED")
    assert parse_execution_report(expired, spec())[0].status is OrderStatus.EXPIRED  # type: ignore[union-attr]


def test_unknown_status_is_malformed() -> None:
    event = msgspec.structs.replace(wire.USER_EVENT.decode(EXECUTION_TRADE), X="WEIRD")
    with pytest.raises(MalformedMessage):
        parse_execution_report(event, spec())


def test_balances_from_stream_and_account() -> None:
    event = wire.USER_EVENT.decode(b'{"e":"outboundAccountPosition","E":1564034571105,"u":1564034571073,'
                                   b'"B":[{"a":"BTC","f":"0.5","l":"0.25"},{"a":"USDT","f":"100","l":"0"}]}')
    assert isinstance(event, wire.OutboundAccountPosition)
    balances = parse_account_position(event)
    assert balances["BTC"].total == D("0.75") and balances["USDT"].free == D(100)
    assert base_positions(balances, {"BTC-USDT": spec()}) == {"BTC-USDT": D("0.75")}
    assert base_positions({}, {"BTC-USDT": spec()}) == {"BTC-USDT": D(0)}
    account = msgspec.json.decode(b'{"balances":[{"asset":"BTC","free":"1","locked":"0"}],"canTrade":true}',
                                  type=wire.Account)
    assert parse_account(account)["BTC"].free == D(1)


def test_order_query_row_becomes_an_update() -> None:
    row = wire.OrderInfo("BTCUSDT", 1, "pb-9", "50000", "0.01", "0.004", "PARTIALLY_FILLED", "GTC", "LIMIT",
                         "BUY", updateTime=1700000000000)
    update = parse_order_info(row, spec())
    assert update is not None and (update.client_id, update.status, update.filled_size) == (
        9, OrderStatus.PARTIALLY_FILLED, D("0.004"))
    assert parse_order_info(msgspec.structs.replace(row, clientOrderId="x"), spec()) is None


def test_a_cancels_answer_names_our_order_in_the_original_client_id() -> None:
    # DELETE /api/v3/order: clientOrderId is the cancel request's own id (Binance's documented example).
    row = msgspec.json.decode(b'{"symbol":"BTCUSDT","origClientOrderId":"pb-9","orderId":28,"orderListId":-1,'
                              b'"clientOrderId":"cancelMyOrder1","transactTime":1684804350068,"price":"50000",'
                              b'"origQty":"0.01","executedQty":"0.004","cummulativeQuoteQty":"200",'
                              b'"status":"CANCELED","timeInForce":"GTC","type":"LIMIT","side":"BUY"}',
                              type=wire.OrderInfo)
    update = parse_order_info(row, spec())
    assert update is not None and (update.client_id, update.status, update.filled_size) == (
        9, OrderStatus.CANCELLED, D("0.004"))


MY_TRADE = (b'[{"symbol":"BTCUSDT","id":28457,"orderId":100234,"orderListId":-1,"price":"4.00000100",'
            b'"qty":"12.00000000","quoteQty":"48.000012","commission":"10.10000000","commissionAsset":"BNB",'
            b'"time":1499865549590,"isBuyer":true,"isMaker":false,"isBestMatch":true}]')


def test_my_trades_rows_become_fills_with_the_streams_ids() -> None:
    (row,) = msgspec.json.decode(MY_TRADE, type=list[wire.MyTrade])
    fill = parse_my_trade(row, spec(), 9)
    assert (fill.fill_id, fill.client_id, fill.market, fill.side, fill.price, fill.size) == (
        "BTCUSDT-28457", 9, "BTC-USDT", Side.BUY, D("4.000001"), D(12))
    assert fill.fee == 0 and fill.liquidity is Liquidity.TAKER and fill.ts_event == 1499865549590 * 1_000_000
    stream = wire.USER_EVENT.decode(EXECUTION_TRADE)
    _, streamed = parse_execution_report(msgspec.structs.replace(stream, t=28457), spec())
    assert streamed is not None and streamed.fill_id == fill.fill_id  # one trade, one id, either path
    sell = parse_my_trade(msgspec.structs.replace(row, isBuyer=False, isMaker=True, commission="0.048",
                                                  commissionAsset="USDT"), spec(), 9)
    assert sell.side is Side.SELL and sell.fee == D("0.048") and sell.liquidity is Liquidity.MAKER
    with pytest.raises(MalformedMessage):
        parse_my_trade(msgspec.structs.replace(row, qty="NaN"), spec(), 9)


def test_unknown_user_events_and_listen_key_expiry_decode() -> None:
    expired = wire.USER_EVENT.decode(b'{"e":"listenKeyExpired","E":1576653824250,"listenKey":"abc"}')
    assert isinstance(expired, wire.ListenKeyExpired)
    with pytest.raises(msgspec.ValidationError):
        wire.USER_EVENT.decode(b'{"e":"externalLockUpdate","E":1,"a":"BTC","d":"1","T":1}')
    assert wire.EVENT_TYPE.decode(b'{"e":"externalLockUpdate","E":1}').e == "externalLockUpdate"
    update = wire.USER_EVENT.decode(b'{"e":"balanceUpdate","E":1,"a":"BTC","d":"1","T":1}')
    assert isinstance(update, wire.BalanceUpdate)  # a transfer: bot.venues.binance.transfers


@pytest.mark.parametrize("client_id", [0, 1, 42, 2**63 - 1])
def test_client_id_round_trip(client_id: int) -> None:
    text = client_order_id(client_id)
    assert text == f"pb-{client_id}" and len(text) <= 36 and client_id_of(text) == client_id


@pytest.mark.parametrize("text", ["", None, "pb-", "pb-x1", "web_123", "pb-1-2", "PB-1", "x-pb-1"])
def test_foreign_client_ids_are_not_ours(text: str | None) -> None:
    assert client_id_of(text) is None


def test_signature_matches_binance_documented_examples() -> None:
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    body = ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
            "&recvWindow=5000&timestamp=1499827319559")
    assert sign(secret, "", body) == "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    assert sign(secret, body) == sign(secret, "", body)
    assert sign(secret, "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
                "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559") == (
        "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77")


def test_weight_meter_budget_and_windows() -> None:
    meter = WeightMeter()
    minute = 60_000
    assert meter.reserve(20, 5 * minute + 1_000, 45) == 0
    assert meter.reserve(20, 5 * minute + 2_000, 45) == 0
    assert meter.reserve(20, 5 * minute + 3_000, 45) == 57  # seconds to the next window
    meter.observe(10, 5 * minute + 3_500)  # the venue's count is the truth
    assert meter.reserve(20, 5 * minute + 4_000, 45) == 0 and meter.used == 30
    assert meter.reserve(40, 6 * minute, 45) == 0 and meter.used == 40  # a new window starts at 0
