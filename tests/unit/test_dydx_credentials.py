"""Which dYdX key signs: the trading key from the environment, the owner's, or none; and the
owner key's refusal live on mainnet. Secrets stay out of repr, config dumps and log lines."""

from __future__ import annotations

import io

import pytest
import structlog

from bot.config import load
from bot.errors import ConfigError
from bot.sim.accounts import SIM_DYDX_MNEMONIC, SIM_DYDX_OTHER_MNEMONIC, address_of
from bot.telemetry import Redactor, configure_logging
from bot.venues.dydx.credentials import dydx_signer, node_gateway, refuse_owner_key_on_mainnet

OWNER = address_of(SIM_DYDX_MNEMONIC)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PERPBOT_DYDX_MNEMONIC", "PERPBOT_DYDX_TRADING_MNEMONIC", "PERPBOT_DYDX_ADDRESS",
                 "PERPBOT_DYDX_AUTHENTICATOR_ID", "PERPBOT_ALLOW_OWNER_KEY", "PERPBOT_LIVE_CONFIRM"):
        monkeypatch.delenv(name, raising=False)


def trading_env(monkeypatch: pytest.MonkeyPatch, **skip: bool) -> None:
    values = {"PERPBOT_DYDX_TRADING_MNEMONIC": SIM_DYDX_OTHER_MNEMONIC, "PERPBOT_DYDX_ADDRESS": OWNER,
              "PERPBOT_DYDX_AUTHENTICATOR_ID": "4"}
    for name, value in values.items():
        if not skip.get(name):
            monkeypatch.setenv(name, value)


def test_the_trading_key_signs_for_the_owner_address_with_its_authenticator(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    trading_env(monkeypatch)
    signer = dydx_signer(load(None, env_file=None))
    assert signer is not None and signer.key == "permissioned"
    assert signer.mnemonic == SIM_DYDX_OTHER_MNEMONIC
    assert (signer.owner_address, signer.authenticator_ids) == (OWNER, [4])
    assert SIM_DYDX_OTHER_MNEMONIC not in repr(signer)
    # Even with the owner mnemonic present the trading key signs (and the fallback is ignored).
    monkeypatch.setenv("PERPBOT_DYDX_MNEMONIC", SIM_DYDX_MNEMONIC)
    assert dydx_signer(load(None, env_file=None), SIM_DYDX_MNEMONIC).key == "permissioned"  # type: ignore[union-attr]


@pytest.mark.parametrize("missing, key", [("PERPBOT_DYDX_ADDRESS", "dydx_address"),
                                          ("PERPBOT_DYDX_AUTHENTICATOR_ID", "dydx_authenticator_id")])
def test_a_trading_key_without_its_account_or_authenticator_names_the_missing_key(  # type: ignore[no-untyped-def]
        monkeypatch, missing: str, key: str) -> None:
    trading_env(monkeypatch, **{missing: True})
    with pytest.raises(ConfigError) as info:
        dydx_signer(load(None, env_file=None))
    assert info.value.key == key


def test_an_authenticator_id_without_a_trading_key_names_it(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    trading_env(monkeypatch, PERPBOT_DYDX_TRADING_MNEMONIC=True)
    monkeypatch.setenv("PERPBOT_DYDX_MNEMONIC", SIM_DYDX_MNEMONIC)
    with pytest.raises(ConfigError) as info:
        dydx_signer(load(None, env_file=None))
    assert info.value.key == "dydx_trading_mnemonic"


def test_owner_key_or_the_simulators_or_none(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert dydx_signer(load(None, env_file=None)) is None
    assert dydx_signer(load(None, env_file=None), SIM_DYDX_MNEMONIC).key == "owner"  # type: ignore[union-attr]
    monkeypatch.setenv("PERPBOT_DYDX_MNEMONIC", SIM_DYDX_MNEMONIC)
    signer = dydx_signer(load(None, env_file=None))
    assert signer is not None
    assert (signer.key, signer.owner_address, signer.authenticator_ids) == ("owner", None, None)


def test_live_on_mainnet_refuses_the_owner_mnemonic_unless_allowed(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PERPBOT_LIVE_CONFIRM", "yes")
    monkeypatch.setenv("PERPBOT_DYDX_MNEMONIC", SIM_DYDX_MNEMONIC)
    with pytest.raises(ConfigError) as info:
        refuse_owner_key_on_mainnet(load(None, env_file=None, network="mainnet", trading="live"))
    assert info.value.key == "dydx_mnemonic" and "PERPBOT_ALLOW_OWNER_KEY=yes" in info.value.reason
    refuse_owner_key_on_mainnet(load(None, env_file=None, network="testnet", trading="live"))
    refuse_owner_key_on_mainnet(load(None, env_file=None, network="mainnet", trading="paper"))
    monkeypatch.setenv("PERPBOT_ALLOW_OWNER_KEY", "yes")
    refuse_owner_key_on_mainnet(load(None, env_file=None, network="mainnet", trading="live"))
    monkeypatch.delenv("PERPBOT_ALLOW_OWNER_KEY")
    monkeypatch.delenv("PERPBOT_DYDX_MNEMONIC")
    trading_env(monkeypatch)
    refuse_owner_key_on_mainnet(load(None, env_file=None, network="mainnet", trading="live"))


def test_the_trading_mnemonic_is_a_secret_everywhere(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    trading_env(monkeypatch)
    settings = load(None, env_file=None, trading="live", network="testnet")
    assert SIM_DYDX_OTHER_MNEMONIC in settings.secret_values()
    assert SIM_DYDX_OTHER_MNEMONIC not in repr(settings) + str(settings.redacted())
    stream = io.StringIO()
    configure_logging("debug", "json", Redactor(settings.secret_values()), stream=stream)
    with structlog.testing.capture_logs(processors=[Redactor(settings.secret_values())]) as logs:
        structlog.get_logger("t").warning("oops", detail=f"pasted {SIM_DYDX_OTHER_MNEMONIC}")
    assert SIM_DYDX_OTHER_MNEMONIC not in str(logs) and "pasted" in str(logs)
    structlog.get_logger("t").warning("oops", detail=f"pasted {SIM_DYDX_OTHER_MNEMONIC}")
    assert "pasted" in stream.getvalue() and SIM_DYDX_OTHER_MNEMONIC not in stream.getvalue()


@pytest.mark.parametrize("words", ["four words only here", "abandon " * 24, "zzzz " * 24])
def test_a_bad_trading_mnemonic_is_a_config_error_that_quotes_nothing(monkeypatch, words: str) -> None:  # type: ignore[no-untyped-def]
    trading_env(monkeypatch)
    monkeypatch.setenv("PERPBOT_DYDX_TRADING_MNEMONIC", words)
    settings = load(None, env_file=None)
    signer = dydx_signer(settings)
    assert signer is not None
    with pytest.raises(ConfigError) as info:
        node_gateway(settings, {"node_grpc": "localhost:1", "chain_id": "x"}, signer)
    assert str(info.value) == "dydx_trading_mnemonic: not a valid BIP39 mnemonic"
