"""The indexer REST client against a local HTTP server that replays real indexer bodies."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from aiohttp import web
from support.shared import SHARED, require_shared

from bot.errors import MalformedMessage, RateLimited, TransientVenueError, VenueError
from bot.venues.dydx.indexer_rest import IndexerRest

require_shared()
REST = SHARED / "fixtures" / "dydx" / "rest"
CCXT = json.loads((REST / "ccxt_testnet_2025_http_responses.json").read_text())
ROUTES = {
    "/v4/height": (REST / "mainnet_2025-12-08_block_height.json").read_bytes(),
    "/v4/perpetualMarkets": (REST / "mainnet_2025-12-08_perpetual_markets.json").read_bytes(),
    "/v4/fills": (REST / "mainnet_2025-12-08_fills.json").read_bytes(),
    "/v4/orders": (REST / "mainnet_2025-12-08_orders.json").read_bytes(),
    "/v4/perpetualPositions": (REST / "list_perpetual_positions.json").read_bytes(),
    "/v4/historicalFunding/BTC-USD": json.dumps(CCXT["/v4/historicalFunding/BTC-USD"]).encode(),
    "/v4/orderbooks/perpetualMarket/BTC-USD": json.dumps(
        CCXT["/v4/orderbooks/perpetualMarket/BTC-USD"]).encode(),
}


class Faults:
    def __init__(self) -> None:
        self.plan: list[tuple[int, dict[str, str]]] = []
        self.hits = 0


async def no_sleep(secs: float) -> None:
    no_sleep.waits.append(secs)  # type: ignore[attr-defined]


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Faults]]:
    faults = Faults()

    async def handle(request: web.Request) -> web.Response:
        faults.hits += 1
        if faults.plan:
            status, headers = faults.plan.pop(0)
            return web.Response(status=status, headers=headers, text='{"errors":[{"msg":"x"}]}')
        body = ROUTES.get(request.path)
        if body is None:
            return web.json_response({"errors": [{"msg": "not found"}]}, status=404)
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", faults
    await runner.cleanup()


async def test_real_bodies_decode(server) -> None:  # type: ignore[no-untyped-def]
    url, _ = server
    rest = IndexerRest(url)
    try:
        assert (await rest.height()).height == "66624132"
        markets = await rest.perpetual_markets()
        assert markets["BTC-USD"].atomicResolution == -10 and markets["BTC-USD"].oraclePrice == "89919.2"
        assert (await rest.fills("dydx1x", 0))[0].market == "BTC-USD"
        assert (await rest.orders("dydx1x", 0))[0].clientId == "1700756032"
        assert len(await rest.positions("dydx1x", 0)) >= 1
        funding = await rest.historical_funding("BTC-USD")
        assert Decimal(funding[0].rate).is_finite()
        book = await rest.orderbook("BTC-USD")
        assert book.bids and book.asks
    finally:
        await rest.aclose()


async def test_429_honours_retry_after_then_recovers(server) -> None:  # type: ignore[no-untyped-def]
    url, faults = server
    faults.plan = [(429, {"Retry-After": "2"}), (503, {})]
    no_sleep.waits = []  # type: ignore[attr-defined]
    rest = IndexerRest(url, sleep=no_sleep)
    try:
        assert (await rest.height()).height == "66624132"
    finally:
        await rest.aclose()
    assert faults.hits == 3
    assert no_sleep.waits[0] >= 2  # type: ignore[attr-defined]


async def test_persistent_5xx_gives_up_after_bounded_attempts(server) -> None:  # type: ignore[no-untyped-def]
    url, faults = server
    faults.plan = [(500, {})] * 10
    no_sleep.waits = []  # type: ignore[attr-defined]
    rest = IndexerRest(url, sleep=no_sleep, max_attempts=4)
    try:
        with pytest.raises(TransientVenueError):
            await rest.height()
    finally:
        await rest.aclose()
    assert faults.hits == 4


async def test_4xx_is_not_retried_and_rate_limit_type_is_kept(server) -> None:  # type: ignore[no-untyped-def]
    url, faults = server
    rest = IndexerRest(url, sleep=no_sleep, max_attempts=1)
    try:
        with pytest.raises(VenueError) as info:
            await rest.get("/v4/nope", dict)
        assert not isinstance(info.value, TransientVenueError)
        assert faults.hits == 1
        faults.plan = [(429, {"Retry-After": "7"})]
        with pytest.raises(RateLimited) as limited:
            await rest.height()
        assert limited.value.retry_after_secs == 7
    finally:
        await rest.aclose()


async def test_wrong_shape_is_malformed_not_retried(server) -> None:  # type: ignore[no-untyped-def]
    url, faults = server
    rest = IndexerRest(url, sleep=no_sleep)
    try:
        with pytest.raises(MalformedMessage):
            await rest.get("/v4/fills", list[int])
        assert faults.hits == 1
    finally:
        await rest.aclose()


async def test_connection_refused_is_transient() -> None:
    rest = IndexerRest("http://127.0.0.1:9", sleep=no_sleep, max_attempts=2)
    try:
        with pytest.raises(TransientVenueError):
            await rest.height()
    finally:
        await rest.aclose()
