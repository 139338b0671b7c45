"""Fuzz the control API's write routes with hostile bodies, on the real app over a real socket.

The daemon is built in-process (App.create on the in-process simulator, real controller, engine
and SQLite store) and its control app is served by aiohttp's test server on a free port.
Property: every request gets a 4xx or a 2xx, never a 5xx, and the server keeps answering.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from fuzz.known import is_known
from fuzz.mutate import HUGE_INTS, NASTY_NUMBERS, NASTY_STRINGS, fuzz_settings, mutated_bytes
from hypothesis import given
from hypothesis import strategies as st

from bot.app import App
from bot.config import load

ROUTES = {  # route -> a valid body, the seed of the mutations
    "/v1/kill": {"reason": "fuzz", "flatten": False, "all": False},
    "/v1/pause": {},
    "/v1/resume": {},
    "/v1/news": {"item": "FOMC", "ttl_secs": 60},
    "/v1/target": {"market": "BTC-USD", "size": "0.01"},
    "/v1/peak/reset": {"confirm": True},
}
PAPER_REFUSES = {"/v1/peak/reset"}  # paper stores no peak: its valid body answers 400
SEEDS = list(ROUTES.values())


class Served:
    def __init__(self, loop: asyncio.AbstractEventLoop, client: TestClient, token: str) -> None:
        self.loop = loop
        self.client = client
        self.auth = {"Authorization": f"Bearer {token}"}
        self.crashes: list[Exception] = []  # unhandled handler exceptions (the 500s)

    def request(self, method: str, path: str, **kwargs: Any) -> int:
        async def go() -> int:
            async with self.client.request(method, path, **kwargs) as response:
                await response.read()
                return response.status

        return self.loop.run_until_complete(go())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    state = tmp_path_factory.mktemp("control_fuzz")
    settings = load(None, env_file=None, state_dir=str(state), markets=["BTC-USD", "ETH-USD"])
    loop = asyncio.new_event_loop()
    app = loop.run_until_complete(App.create(settings))
    web_app = app.control.make_app()
    served: Served

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as exc:
            served.crashes.append(exc)
            raise

    web_app.middlewares.insert(0, record)

    async def start() -> TestClient:
        client = TestClient(TestServer(web_app, host="127.0.0.1", port=0))
        await client.start_server()
        return client

    client = loop.run_until_complete(start())
    served = Served(loop, client, (state / "control.token").read_text().strip())
    yield served
    loop.run_until_complete(client.close())
    app.store.close()
    loop.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.sampled_from(HUGE_INTS) | st.floats()
    | st.text(max_size=30) | st.sampled_from(NASTY_STRINGS),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


numbers = (st.floats() | st.integers() | st.sampled_from(HUGE_INTS)
           | st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e308, 5e-324, -0.0]))
FIELD_VALUES = {  # each key's own type, at its edges
    "reason": st.text(max_size=300), "flatten": st.booleans(), "all": st.booleans(),
    "item": st.text(min_size=1, max_size=150), "ttl_secs": numbers,
    "market": st.sampled_from(["BTC-USD", "ETH-USD", "btc-usd", "SOL-USD", ""]) | st.text(max_size=10),
    "size": st.sampled_from(NASTY_NUMBERS) | st.decimals(allow_nan=True, allow_infinity=True).map(str),
    "confirm": st.sampled_from([True, False, 1, "true", None]),
}


@st.composite
def bodies(draw: st.DrawFn, route: str) -> bytes:
    kind = draw(st.sampled_from(["fields", "fields", "fields", "mutated", "deep", "raw"]))
    if kind == "fields":  # the route's keys, mostly of their own type (json.dumps writes NaN too)
        body = {k: draw(FIELD_VALUES[k] if draw(st.integers(0, 3)) else json_values)
                for k in ROUTES[route] if draw(st.integers(0, 7))}
        body.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2)))
        return json.dumps(body).encode()
    if kind == "mutated":
        return draw(mutated_bytes([ROUTES[route], *SEEDS]))
    if kind == "deep":  # nested deeper than the JSON decoder's recursion allows, within 16 KiB
        depth = draw(st.sampled_from([500, 1500, 8000]))
        return b'{"reason":' + b"[" * depth + b"]" * depth + b"}"
    return draw(st.binary(max_size=200))


def check_status(served: Served, status: int, what: str) -> None:
    if status >= 500:
        crash = served.crashes[-1] if served.crashes else None
        assert crash is not None and is_known(crash), f"{what} -> {status} ({crash!r})"


@fuzz_settings(120)
@given(route=st.sampled_from(sorted(ROUTES)), data=st.data(),
       content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]))
def test_write_routes_answer_4xx_not_5xx(served: Served, route: str, data: st.DataObject,
                                         content_type: str) -> None:
    body = data.draw(bodies(route))
    status = served.request("POST", route, data=body, headers={**served.auth, "Content-Type": content_type})
    check_status(served, status, f"POST {route} {body[:200]!r}")
    assert served.request("GET", "/healthz") == 200


@fuzz_settings(40)
@given(item=st.text(max_size=50) | st.sampled_from(NASTY_STRINGS))
def test_news_clear_with_any_item(served: Served, item: str) -> None:
    status = served.request("DELETE", "/v1/news", params={"item": item}, headers=served.auth)
    check_status(served, status, f"DELETE /v1/news item={item!r}")


@fuzz_settings(30)
@given(route=st.sampled_from(sorted(ROUTES)), token=st.text(max_size=40).filter(lambda t: t.isprintable()))
def test_a_wrong_token_is_refused_whatever_the_body(served: Served, route: str, token: str) -> None:
    status = served.request("POST", route, data=b"{}", headers={"Authorization": f"Bearer {token}x"})
    assert status == 401


def test_an_oversized_body_is_refused(served: Served) -> None:
    body = json.dumps({"reason": "x" * 20_000}).encode()
    assert served.request("POST", "/v1/kill", data=body, headers=served.auth) == 413


def test_the_seeds_are_accepted(served: Served) -> None:
    for route, body in ROUTES.items():
        expected = 400 if route in PAPER_REFUSES else 200
        assert served.request("POST", route, json=body, headers=served.auth) == expected, route
    assert served.request("POST", "/v1/resume", headers=served.auth) == 200
