"""Regression tests: one input per crash the fuzzers found, each now the documented behaviour.

Each test asserts the documented outcome (MalformedMessage, a 4xx, ConfigError). A crash found
later and not fixed at once is pinned in known.py and gets a strict xfail here until it is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fuzz.known import is_known
from fuzz.test_fuzz_config import environment
from fuzz.test_fuzz_control_api import Served, served  # noqa: F401  (the fixture)

from bot.config import load
from bot.errors import ConfigError, MalformedMessage, VenueError
from bot.venues.binance import wire as binance_wire
from bot.venues.binance.rest import BinanceRest
from bot.venues.dydx.parse import FeedParser

DEEP = b"[" * 5000 + b"]" * 5000


def trade_frame(created_at: str) -> bytes:
    return (b'{"type":"channel_data","channel":"v4_trades","id":"BTC-USD","message_id":1,"contents":'
            b'{"trades":[{"id":"1","side":"BUY","size":"1","price":"1","createdAt":"%s"}]}}'
            % created_at.encode())


DYDX_FRAMES = {
    "invalid UTF-8 in a non-book frame": b'{"type":"connected","connection_id":"\xff"}',
    "invalid UTF-8 in a book frame": b'{"type":"channel_data","channel":"v4_orderbook","id":"\xff"}',
    "deep nesting in a non-book frame": b'{"type":"channel_data","channel":"v4_trades","contents":'
                                        + DEEP + b"}",
    "deep nesting in a book frame": b'{"channel":' + DEEP + b"}",
    "createdAt not ISO-8601": trade_frame("yesterday"),
    "createdAt in year 0": trade_frame("0001-01-01T00:00:00"),
    "blockHeight in superscript digits": ('{"type":"channel_data","channel":"v4_block_height","message_id":1,'
                                          '"contents":{"blockHeight":"\u00b2","time":""}}').encode(),
    "clientId in superscript digits": ('{"type":"channel_data","channel":"v4_subaccounts","id":"x",'
                                       '"message_id":1,"contents":{"orders":[{"id":"a","clientId":"\u00b9",'
                                       '"status":"OPEN","ticker":"BTC-USD"}]}}').encode(),
}


def expect_known(call: Callable[[], Any], documented: type[Exception] | tuple[type[Exception], ...]) -> None:
    try:
        call()
    except documented:
        return  # fixed: the test passes and the strict xfail reports XPASS
    except Exception as exc:
        assert is_known(exc), f"not the pinned crash: {exc!r}"
        raise
    pytest.fail("no error at all")


@pytest.mark.parametrize("name", sorted(DYDX_FRAMES))
def test_dydx_frame_is_malformed(name: str) -> None:
    expect_known(lambda: FeedParser().parse(DYDX_FRAMES[name], 1), MalformedMessage)


@pytest.mark.parametrize("body", [b'{"lastUpdateId":1,"bids":[["\xff1","1"]],"asks":[]}',
                                  b'{"x":' + DEEP + b"}"], ids=["invalid UTF-8", "deep nesting"])
def test_binance_rest_body_is_malformed(body: bytes) -> None:
    expect_known(lambda: BinanceRest._decode(None, httpx.Response(200, content=body),  # type: ignore[arg-type]
                                             binance_wire.DepthSnapshot, "GET", "/api/v3/depth"),
                 (MalformedMessage, VenueError))


@pytest.mark.parametrize(("route", "body"), [
    ("/v1/kill", b'{"reason":' + b"[" * 3000 + b"]" * 3000 + b"}"),
    ("/v1/news", b'{"item":"x","ttl_secs":NaN}'),
    ("/v1/news", b'{"item":"x","ttl_secs":Infinity}'),
    ("/v1/news", b'{"item":"x","ttl_secs":1e308}'),
    ("/v1/news", b'{"item":"x","ttl_secs":' + b"9" * 400 + b"}"),
    # Accepted with 200, then the engine's next evaluation raises decimal.Overflow in
    # strategy/sleeves.py directional_sleeve and the daemon exits 1 (seen on `perpbot run`).
    ("/v1/target", b'{"market":"BTC-USD","size":"1E+999999"}'),
    # Past the Decimal context's Emax: abs() in the range check raised decimal.Overflow (500).
    ("/v1/target", b'{"market":"BTC-USD","size":"1e999999999"}'),
], ids=["kill deep nesting", "news ttl NaN", "news ttl Infinity", "news ttl 1e308", "news ttl 400 digits",
        "target 1E+999999 accepted, then kills the daemon", "target 1e999999999 overflows the check"])
def test_control_api_answers_4xx(served: Served, route: str, body: bytes) -> None:  # noqa: F811
    before = len(served.crashes)
    status = served.request("POST", route, data=body, headers=served.auth)
    if status >= 500:
        assert len(served.crashes) > before and is_known(served.crashes[-1]), served.crashes[before:]
    assert 400 <= status < 500


@pytest.mark.parametrize("variable", ["PERPBOT_MARKETS", "PERPBOT_STRATEGY__TARGETS"])
def test_a_non_json_env_value_is_a_config_error(tmp_path: Path, variable: str) -> None:
    with environment({variable: "not json", "PERPBOT_STATE_DIR": str(tmp_path)}):
        expect_known(lambda: load(None, env_file=None), ConfigError)


def test_a_cross_field_check_names_the_field(tmp_path: Path) -> None:
    """A degraded threshold above the critical one named only the section (`watchdog`)."""
    with environment({"PERPBOT_WATCHDOG__ERROR_RATE_DEGRADED": " 1", "PERPBOT_STATE_DIR": str(tmp_path)}):
        with pytest.raises(ConfigError) as raised:
            load(None, env_file=None)
    assert raised.value.key == "watchdog.error_rate_degraded"
