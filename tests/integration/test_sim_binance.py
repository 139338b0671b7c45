"""The Binance spot front-end on port 0, driven by real httpx, websockets and aiohttp clients."""

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp
import httpx
import pytest
from support.clock import ManualClock
from websockets.asyncio.client import ClientConnection, connect

from bot.clock import NS_PER_SEC
from bot.sim.faults import DepthGap, HttpError
from bot.sim.server.binance import BinanceServer, sim_binance_credentials
from bot.sim.spot.exchange import SpotExchange

D = Decimal
START_NS = 1_700_000_000 * NS_PER_SEC + 123_456_789
STEP_NS = 100_000_000
KEY, SECRET = sim_binance_credentials()
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def clock() -> ManualClock:
    """Virtual time shared by the exchange, the server and the test's signed requests."""
    return ManualClock(START_NS)


@pytest.fixture
async def server(clock: ManualClock) -> AsyncIterator[BinanceServer]:
    srv = BinanceServer(SpotExchange(seed=5, start_ns=START_NS), clock.now_ns)
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def client(server: BinanceServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.rest_url, timeout=httpx.Timeout(5.0)) as c:
        yield c


def step(server: BinanceServer, clock: ManualClock, n: int = 1) -> None:
    """What the simulator's runner does: advance the market and publish what happened."""
    for _ in range(n):
        clock.now += STEP_NS
        server.publish(server.spot.advance(clock.now))


# ---- the signing helper a Binance client needs (HMAC-SHA256 over query string + body) ------------


def signature(secret: str, total_params: str) -> str:
    return hmac.new(secret.encode(), total_params.encode(), hashlib.sha256).hexdigest()


async def signed(client: httpx.AsyncClient, clock: ManualClock, method: str, path: str,
                 params: dict[str, Any] | None = None, *, in_body: bool = False,
                 timestamp_ms: int | None = None, key: str = KEY, secret: str = SECRET,
                 tamper: bool = False) -> httpx.Response:
    """Send a SIGNED request: timestamp + recvWindow, then `signature` last (query or body)."""
    query = urlencode({**(params or {}), "recvWindow": 5000,
                       "timestamp": clock.now_ms() if timestamp_ms is None else timestamp_ms})
    sig = signature(secret, query)
    if tamper:
        query = query.replace("recvWindow=5000", "recvWindow=5001")
    payload = f"{query}&signature={sig}"
    headers = {"X-MBX-APIKEY": key}
    if in_body:
        return await client.request(method, path, content=payload, headers=headers | FORM)
    return await client.request(method, f"{path}?{payload}", headers=headers)


async def touch(client: httpx.AsyncClient) -> tuple[Decimal, Decimal]:
    ticker = (await client.get("/api/v3/ticker/bookTicker", params={"symbol": "BTCUSDT"})).json()
    return D(ticker["bidPrice"]), D(ticker["askPrice"])


async def recv_json(ws: ClientConnection, timeout_secs: float = 2.0) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout_secs))


# ---- public REST ------------------------------------------------------------------------------


async def test_public_endpoints_and_weight_headers(client: httpx.AsyncClient, clock: ManualClock):
    ping = await client.get("/api/v3/ping")
    assert ping.status_code == 200 and ping.json() == {}
    assert ping.headers["X-MBX-USED-WEIGHT-1M"] == "1"
    assert (await client.get("/api/v3/time")).json() == {"serverTime": clock.now_ms()}

    info = await client.get("/api/v3/exchangeInfo", params={"symbol": "BTCUSDT"})
    assert info.headers["X-MBX-USED-WEIGHT-1M"] == "22"  # 1 + 1 + 20
    (btc,) = info.json()["symbols"]
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert (btc["baseAsset"], btc["quoteAsset"], btc["status"]) == ("BTC", "USDT", "TRADING")
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
    assert filters["NOTIONAL"]["minNotional"] == "5.00000000"
    assert {"LIMIT", "LIMIT_MAKER", "MARKET"} == set(btc["orderTypes"])
    bad = await client.get("/api/v3/exchangeInfo", params={"symbol": "NOPE"})
    assert (bad.status_code, bad.json()) == (400, {"code": -1121, "msg": "Invalid symbol."})

    depth = await client.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 5})
    body = depth.json()
    assert len(body["bids"]) == len(body["asks"]) == 5 and isinstance(body["lastUpdateId"], int)
    assert D(body["bids"][0][0]) < D(body["asks"][0][0])
    bid, ask = await touch(client)
    assert (bid, ask) == (D(body["bids"][0][0]), D(body["asks"][0][0]))
    missing = await client.get("/api/v3/depth")
    assert missing.json()["code"] == -1102


# ---- signing ----------------------------------------------------------------------------------


async def test_binance_documented_signature_vectors_are_accepted():
    """The HMAC examples of Binance's REST docs (body, and mixed query + body) verify here."""
    api_key = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    doc_clock = ManualClock(1499827319559 * 1_000_000)
    srv = BinanceServer(SpotExchange(seed=1, start_ns=doc_clock.now), doc_clock.now_ns,
                        credentials={api_key: secret})
    await srv.start()
    try:
        async with httpx.AsyncClient(base_url=srv.rest_url, headers={"X-MBX-APIKEY": api_key}) as c:
            body = ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
                    "&recvWindow=5000&timestamp=1499827319559"
                    "&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71")
            r1 = await c.post("/api/v3/order", content=body, headers=FORM)
            r2 = await c.post(
                "/api/v3/order?symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
                content="quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
                        "&signature=0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77",
                headers=FORM)
            r3 = await c.post("/api/v3/order", content=body.replace("c8db", "c8dc"), headers=FORM)
    finally:
        await srv.stop()
    # signature accepted: the request fails later, on the symbol the simulator does not list
    assert r1.json() == r2.json() == {"code": -1121, "msg": "Invalid symbol."}
    assert (r3.status_code, r3.json()["code"]) == (400, -1022)


@pytest.mark.parametrize(("kwargs", "status", "code"), [
    ({"tamper": True}, 400, -1022),
    ({"secret": "not-the-secret"}, 400, -1022),
    ({"timestamp_ms": -10_000}, 400, -1021),  # 10 s old with recvWindow 5000
    ({"timestamp_ms": 2_000}, 400, -1021),  # 2 s in the future
    ({"key": "A" * 64}, 401, -2015),
    ({"key": "short"}, 401, -2014),
])
async def test_bad_requests_are_rejected_with_binance_codes(client: httpx.AsyncClient, clock: ManualClock,
                                                            kwargs: dict[str, Any], status: int, code: int):
    if "timestamp_ms" in kwargs:
        kwargs["timestamp_ms"] += clock.now_ms()
    r = await signed(client, clock, "GET", "/api/v3/account", **kwargs)
    assert (r.status_code, r.json()["code"]) == (status, code)
    assert "X-MBX-USED-WEIGHT-1M" in r.headers


async def test_stale_timestamp_message_and_missing_params(client: httpx.AsyncClient, clock: ManualClock):
    r = await signed(client, clock, "GET", "/api/v3/account", timestamp_ms=clock.now_ms() - 5001)
    assert r.json() == {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}
    r = await client.get("/api/v3/account", headers={"X-MBX-APIKEY": KEY})
    assert r.json()["code"] == -1102 and "'timestamp'" in r.json()["msg"]
    r = await client.get(f"/api/v3/account?timestamp={clock.now_ms()}", headers={"X-MBX-APIKEY": KEY})
    assert r.json()["code"] == -1102 and "'signature'" in r.json()["msg"]


# ---- trading round trip -----------------------------------------------------------------------


async def test_signed_order_place_query_cancel_round_trip(client: httpx.AsyncClient, clock: ManualClock):
    bid, _ = await touch(client)
    price = bid - 100
    placed = await signed(client, clock, "POST", "/api/v3/order", {
        "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
        "quantity": "0.01000", "price": str(price), "newClientOrderId": "hedge-1"}, in_body=True)
    assert placed.status_code == 200, placed.text
    order = placed.json()
    assert order["clientOrderId"] == "hedge-1" and order["status"] == "NEW" and order["fills"] == []
    assert (order["price"], order["origQty"], order["orderListId"]) == (f"{price:.8f}", "0.01000000", -1)
    assert placed.headers["X-MBX-ORDER-COUNT-10S"] == "1"

    by_id = await signed(client, clock, "GET", "/api/v3/order",
                         {"symbol": "BTCUSDT", "orderId": order["orderId"]})
    by_cid = await signed(client, clock, "GET", "/api/v3/order",
                          {"symbol": "BTCUSDT", "origClientOrderId": "hedge-1"})
    assert by_id.json() == by_cid.json()
    assert by_id.json()["isWorking"] is True and by_id.json()["status"] == "NEW"
    open_orders = (await signed(client, clock, "GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"})).json()
    assert [o["orderId"] for o in open_orders] == [order["orderId"]]
    account = (await signed(client, clock, "GET", "/api/v3/account")).json()
    usdt = next(b for b in account["balances"] if b["asset"] == "USDT")
    assert D(usdt["locked"]) == price * D("0.01")
    assert account["commissionRates"]["taker"] == "0.00100000"

    cancel = await signed(client, clock, "DELETE", "/api/v3/order",
                          {"symbol": "BTCUSDT", "origClientOrderId": "hedge-1", "newClientOrderId": "c-1"})
    assert cancel.json()["status"] == "CANCELED"
    assert (cancel.json()["origClientOrderId"], cancel.json()["clientOrderId"]) == ("hedge-1", "c-1")
    again = await signed(client, clock, "DELETE", "/api/v3/order",
                         {"symbol": "BTCUSDT", "orderId": order["orderId"]})
    assert (again.status_code, again.json()) == (400, {"code": -2011, "msg": "Unknown order sent."})
    final = await signed(client, clock, "GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": 10**9})
    assert final.json()["code"] == -2013
    none_open = await signed(client, clock, "DELETE", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
    assert none_open.json()["code"] == -2011


async def test_order_rejections_on_the_wire(client: httpx.AsyncClient, clock: ManualClock):
    _, ask = await touch(client)
    base = {"symbol": "BTCUSDT", "side": "BUY", "quantity": "0.001"}
    cases = [
        ({"type": "LIMIT_MAKER", "price": str(ask)}, -2010, "Order would immediately match and take."),
        ({"type": "LIMIT", "timeInForce": "GTC", "price": "100.000000001"}, -1111,
         "Precision is over the maximum defined for this asset."),
        ({"type": "LIMIT", "timeInForce": "GTC", "price": "50000.005"}, -1013,
         "Filter failure: PRICE_FILTER"),
        ({"type": "LIMIT", "timeInForce": "GTC", "price": "100"}, -1013, "Filter failure: NOTIONAL"),
        ({"type": "LIMIT", "timeInForce": "GTX", "price": "50000"}, -1115, "Invalid timeInForce."),
        ({"type": "STOP", "price": "50000"}, -1116, "Invalid orderType."),
        ({"type": "LIMIT", "timeInForce": "GTC", "price": "5e4"}, -1100, None),
        ({"type": "LIMIT", "timeInForce": "GTC", "price": "50000", "quantity": "100"}, -2010,
         "Account has insufficient balance for requested action."),
    ]
    for extra, code, msg in cases:
        r = await signed(client, clock, "POST", "/api/v3/order", base | extra)
        assert r.status_code == 400 and r.json()["code"] == code, (extra, r.text)
        if msg is not None:
            assert r.json()["msg"] == msg


async def test_market_order_full_response_has_fills_with_commission(client: httpx.AsyncClient,
                                                                    clock: ManualClock):
    r = await signed(client, clock, "POST", "/api/v3/order",
                     {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quoteOrderQty": "1000"})
    order = r.json()
    assert order["status"] == "FILLED" and order["type"] == "MARKET" and order["fills"]
    qty = sum(D(f["qty"]) for f in order["fills"])
    assert D(order["executedQty"]) == qty and D(order["cummulativeQuoteQty"]) <= 1000
    assert all(f["commissionAsset"] == "BTC" for f in order["fills"])
    assert sum(D(f["commission"]) for f in order["fills"]) == (qty * D("0.001")).quantize(D("1e-8"))
    ack = await signed(client, clock, "POST", "/api/v3/order",
                       {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.001",
                        "newOrderRespType": "ACK"})
    assert set(ack.json()) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}


# ---- market data streams ----------------------------------------------------------------------


def apply_diff(book: dict[str, dict[Decimal, Decimal]], event: dict[str, Any]) -> None:
    for side, key in (("bids", "b"), ("asks", "a")):
        for price, qty in event[key]:
            if D(qty) == 0:
                book[side].pop(D(price), None)  # removing an unknown level is normal
            else:
                book[side][D(price)] = D(qty)


async def test_depth_snapshot_plus_diff_stream_synchronise(server: BinanceServer, clock: ManualClock,
                                                           client: httpx.AsyncClient):
    """Binance's documented procedure: buffer diffs, snapshot, drop u <= lastUpdateId, chain U = u+1."""
    async with connect(f"{server.ws_url}/ws/btcusdt@depth@100ms") as ws:
        step(server, clock, 5)
        snap = (await client.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 1000})).json()
        step(server, clock, 5)
        await signed(client, clock, "POST", "/api/v3/order",
                     {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.2"})
        step(server, clock, 10)
        final_id = server.spot.depth("BTCUSDT")[0]
        events: list[dict[str, Any]] = []
        while not events or events[-1]["u"] < final_id:
            events.append(await recv_json(ws))

    assert all(e["e"] == "depthUpdate" and e["s"] == "BTCUSDT" for e in events)
    last_id = snap["lastUpdateId"]
    assert events[0]["U"] <= last_id  # we buffered from before the snapshot
    live = [e for e in events if e["u"] > last_id]  # step 4: drop u <= lastUpdateId
    assert len(live) < len(events)
    assert live[0]["U"] <= last_id + 1 <= live[0]["u"]  # step 5
    book = {"bids": {D(p): D(q) for p, q in snap["bids"]}, "asks": {D(p): D(q) for p, q in snap["asks"]}}
    prev_u = None
    for event in live:
        if prev_u is not None:
            assert event["U"] == prev_u + 1  # step 6: no gap
        apply_diff(book, event)
        prev_u = event["u"]

    fresh = (await client.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 5000})).json()
    assert fresh["lastUpdateId"] == prev_u
    assert sorted(book["bids"].items(), reverse=True) == [(D(p), D(q)) for p, q in fresh["bids"]]
    assert sorted(book["asks"].items()) == [(D(p), D(q)) for p, q in fresh["asks"]]


async def test_depth_gap_fault_breaks_the_update_id_chain(server: BinanceServer, clock: ManualClock):
    async with connect(f"{server.ws_url}/ws/btcusdt@depth") as ws:
        step(server, clock)
        first = await recv_json(ws)
        server.faults.depth_gap = DepthGap(1)
        step(server, clock, 2)
        second = await recv_json(ws)
    assert second["U"] > first["u"] + 1


async def test_combined_streams_and_live_subscribe(server: BinanceServer, clock: ManualClock):
    async with connect(f"{server.ws_url}/stream?streams=btcusdt@trade") as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 1}))
        assert await recv_json(ws) == {"result": None, "id": 1}
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
        assert await recv_json(ws) == {"result": ["btcusdt@bookTicker", "btcusdt@trade"], "id": 2}
        seen: dict[str, dict[str, Any]] = {}
        for _ in range(200):
            step(server, clock)
            while len(seen) < 2:
                try:
                    msg = await recv_json(ws, 0.05)
                except TimeoutError:
                    break
                seen[msg["stream"]] = msg["data"]
            if len(seen) == 2:
                break
    trade, ticker = seen["btcusdt@trade"], seen["btcusdt@bookTicker"]
    assert trade["e"] == "trade" and trade["s"] == "BTCUSDT" and isinstance(trade["t"], int)
    assert isinstance(trade["m"], bool) and D(trade["p"]) > 0 and D(trade["q"]) > 0
    assert set(ticker) == {"u", "s", "b", "B", "a", "A"} and D(ticker["b"]) < D(ticker["a"])


async def test_server_pings_and_drops_clients_that_do_not_pong(clock: ManualClock):
    srv = BinanceServer(SpotExchange(seed=2, start_ns=START_NS), clock.now_ns,
                        ping_interval_secs=0.05, pong_timeout_secs=0.3)
    await srv.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{srv.ws_url}/ws/btcusdt@trade", autoping=False) as ws:
                kinds = []
                while True:
                    msg = await asyncio.wait_for(ws.receive(), 3)
                    kinds.append(msg.type)
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        break
                assert kinds.count(aiohttp.WSMsgType.PING) >= 3
                assert ws.close_code == 1008
        async with connect(f"{srv.ws_url}/ws/btcusdt@trade") as ws:  # answers pings by itself
            await asyncio.sleep(0.6)
            await ws.ping()  # still open well past the pong timeout
    finally:
        await srv.stop()


# ---- user data stream -------------------------------------------------------------------------


async def test_user_data_stream_reports_executions_and_balances(server: BinanceServer, clock: ManualClock,
                                                                client: httpx.AsyncClient):
    headers = {"X-MBX-APIKEY": KEY}
    listen_key = (await client.post("/api/v3/userDataStream", headers=headers)).json()["listenKey"]
    assert (await client.post("/api/v3/userDataStream", headers=headers)).json() == {"listenKey": listen_key}
    keepalive = await client.put("/api/v3/userDataStream", params={"listenKey": listen_key}, headers=headers)
    assert keepalive.json() == {}
    unknown = await client.put("/api/v3/userDataStream", params={"listenKey": "x" * 60}, headers=headers)
    assert unknown.json()["code"] == -1125

    async with connect(f"{server.ws_url}/ws/{listen_key}") as ws:
        r = await signed(client, clock, "POST", "/api/v3/order",
                         {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01",
                          "newClientOrderId": "mkt-1"})
        order_id = r.json()["orderId"]
        new, trades, position = None, [], None
        while position is None:
            msg = await recv_json(ws)
            if msg["e"] == "executionReport":
                assert msg["i"] == order_id and msg["c"] == "mkt-1" and msg["s"] == "BTCUSDT"
                if msg["x"] == "NEW":
                    new = msg
                else:
                    trades.append(msg)
            elif msg["e"] == "outboundAccountPosition":
                position = msg
        assert new is not None and new["X"] == "NEW" and new["N"] is None and new["t"] == -1
        assert [t["x"] for t in trades] == ["TRADE"] * len(trades) and trades[-1]["X"] == "FILLED"
        assert sum(D(t["l"]) for t in trades) == D(trades[-1]["z"]) == D("0.01")
        assert all(t["N"] == "BTC" and t["m"] is False and t["t"] > 0 for t in trades)
        assert {b["a"] for b in position["B"]} == {"BTC", "USDT"}

        # a resting order filled later by the market's flow is reported as a maker trade
        bid, _ = await touch(client)
        resting = await signed(client, clock, "POST", "/api/v3/order", {
            "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
            "quantity": "0.001", "price": str(bid)})
        assert resting.json()["status"] == "NEW"
        maker = None
        for _ in range(3000):
            step(server, clock)
            while maker is None:
                try:
                    msg = await recv_json(ws, 0.01)
                except TimeoutError:
                    break
                if msg["e"] == "executionReport" and msg["x"] == "TRADE":
                    maker = msg
            if maker is not None:
                break
        assert maker is not None and maker["m"] is True and maker["L"] == f"{bid:.8f}"

        closed = await client.delete("/api/v3/userDataStream", params={"listenKey": listen_key},
                                     headers=headers)
        assert closed.json() == {}
        while (msg := await recv_json(ws))["e"] != "listenKeyExpired":
            pass
        assert msg["listenKey"] == listen_key


# ---- rate limits and faults -------------------------------------------------------------------


async def test_weight_budget_answers_429_with_retry_after_then_418_ban(clock: ManualClock):
    srv = BinanceServer(SpotExchange(seed=2, start_ns=START_NS), clock.now_ns, weight_limit_1m=45,
                        ban_after_429s=1, ban_secs=120)
    await srv.start()
    try:
        async with httpx.AsyncClient(base_url=srv.rest_url) as c:
            assert (await c.get("/api/v3/exchangeInfo")).status_code == 200
            ok = await c.get("/api/v3/exchangeInfo")
            assert ok.headers["X-MBX-USED-WEIGHT-1M"] == "40"
            limited = await c.get("/api/v3/exchangeInfo")
            assert limited.status_code == 429 and limited.json()["code"] == -1003
            seconds_left = 60 - (clock.now // NS_PER_SEC) % 60
            assert int(limited.headers["Retry-After"]) == seconds_left
            banned = await c.get("/api/v3/exchangeInfo")
            assert banned.status_code == 418 and banned.headers["Retry-After"] == "120"
            clock.now += 60 * NS_PER_SEC
            assert (await c.get("/api/v3/ping")).status_code == 418  # the ban outlives the window
            clock.now += 61 * NS_PER_SEC
            after = await c.get("/api/v3/ping")
            assert after.status_code == 200 and after.headers["X-MBX-USED-WEIGHT-1M"] == "1"
    finally:
        await srv.stop()


@pytest.mark.parametrize("status", [429, 418, 500, 503])
async def test_http_error_fault_switch(server: BinanceServer, client: httpx.AsyncClient, status: int):
    server.faults.http_error = HttpError(status, 2, 7)
    first, second, third = [await client.get("/api/v3/ping") for _ in range(3)]
    assert first.status_code == second.status_code == status
    assert first.headers["Retry-After"] == "7" and isinstance(first.json()["code"], int)
    assert third.status_code == 200
    assert server.request_count == 3


async def test_5xx_fault_can_execute_the_request_anyway(server: BinanceServer, client: httpx.AsyncClient,
                                                        clock: ManualClock):
    """'Execution status UNKNOWN': the order exists although the response was a 503."""
    bid, _ = await touch(client)
    server.faults.http_error = HttpError(503, 1, execute=True)
    r = await signed(client, clock, "POST", "/api/v3/order", {
        "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
        "price": str(bid - 50), "newClientOrderId": "unknown-state"})
    assert r.status_code == 503
    found = await signed(client, clock, "GET", "/api/v3/order",
                         {"symbol": "BTCUSDT", "origClientOrderId": "unknown-state"})
    assert found.json()["status"] == "NEW"


async def test_close_streams_drops_connections(server: BinanceServer):
    async with connect(f"{server.ws_url}/ws/btcusdt@trade") as ws:
        await server.close_streams(1001, "maintenance")
        await asyncio.wait_for(ws.wait_closed(), 2)
        assert ws.close_code == 1001
