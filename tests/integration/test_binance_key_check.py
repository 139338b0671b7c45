"""The live start's Binance key check against the simulator's /sapi/v1/account/apiRestrictions."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import structlog
from pydantic import SecretStr

from bot.errors import ConfigError
from bot.sim.faults import ScenarioState
from bot.sim.scenarios import SCENARIOS, parse_spec
from bot.sim.server.binance import BinanceServer, sim_binance_credentials
from bot.sim.spot.exchange import SpotExchange
from bot.venues.binance.key_check import check_key
from bot.venues.binance.rest import BinanceRest


def key_events(logs: list[dict[str, str]]) -> list[str]:
    return [e["event"] for e in logs if e["event"].startswith("binance_key")]


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    srv = BinanceServer(SpotExchange(seed=5, start_ns=time.time_ns()), time.time_ns)
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def rest(server: BinanceServer) -> AsyncIterator[BinanceRest]:
    key, secret = sim_binance_credentials()
    client = BinanceRest(server.rest_url, api_key=SecretStr(key), api_secret=SecretStr(secret),
                         max_attempts=1)
    yield client
    await client.aclose()


async def test_a_key_that_can_withdraw_refuses_the_start_unless_allowed(server: BinanceServer,
                                                                        rest: BinanceRest) -> None:
    server.api_restrictions.update(enableWithdrawals=True, ipRestrict=True)
    with pytest.raises(ConfigError) as info:
        await check_key(rest, network="mainnet", allow_withdraw=False)
    assert info.value.key == "binance_api_key" and "can withdraw" in info.value.reason
    with structlog.testing.capture_logs() as logs:
        assert await check_key(rest, network="mainnet", allow_withdraw=True) == {"withdrawals": True,
                                                                                 "ip_restricted": True}
    assert key_events(logs) == ["binance_key_can_withdraw"]


async def test_a_trade_only_key_starts_with_a_warning_when_not_ip_restricted(server: BinanceServer,
                                                                            rest: BinanceRest) -> None:
    with structlog.testing.capture_logs() as logs:  # the simulator's default: a new key's permissions
        assert await check_key(rest, network="mainnet", allow_withdraw=False) == {"withdrawals": False,
                                                                                  "ip_restricted": False}
    assert key_events(logs) == ["binance_key_not_ip_restricted"]
    server.api_restrictions["ipRestrict"] = True
    with structlog.testing.capture_logs() as logs:
        await check_key(rest, network="mainnet", allow_withdraw=False)
    assert key_events(logs) == []


async def test_unreadable_restrictions_refuse_mainnet_and_warn_elsewhere(server: BinanceServer) -> None:
    key, _ = sim_binance_credentials()  # a wrong secret: -1022, as a key without reading would fail
    wrong = BinanceRest(server.rest_url, api_key=SecretStr(key), api_secret=SecretStr("not the secret"),
                        max_attempts=1)
    try:
        with pytest.raises(ConfigError, match="cannot read the key's restrictions"):
            await check_key(wrong, network="mainnet", allow_withdraw=False)
        with structlog.testing.capture_logs() as logs:
            assert (await check_key(wrong, network="testnet", allow_withdraw=False))["withdrawals"] is None
        assert "binance_key_restrictions_unknown" in [e["event"] for e in logs]
    finally:
        await wrong.aclose()


def test_the_restrictions_scenario_sets_flags_and_refuses_non_booleans() -> None:
    spec = parse_spec({"name": "binance_key_restrictions", "enableWithdrawals": True, "ipRestrict": False})
    state = ScenarioState()
    SCENARIOS[spec.name].start(state, spec.params)
    assert state.binance_api_restrictions == {"enableWithdrawals": True, "ipRestrict": False}
    for bad in ({"enableWithdrawals": "false"}, {"canFly": True}):
        with pytest.raises(ConfigError):
            parse_spec({"name": "binance_key_restrictions", **bad})
