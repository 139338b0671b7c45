from decimal import Decimal
from pathlib import Path

import pytest

from bot.config import load
from bot.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "perpbot.toml"
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("PERPBOT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_are_offline_paper_on_sim() -> None:
    settings = load(None)
    assert settings.network == "sim"
    assert settings.trading == "paper"
    assert settings.control.host == "127.0.0.1"
    assert settings.rules.min_flags == 2


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[control]\nport = "abc"\n', "control.port"),
        ("[control]\nport = 70000\n", "control.port"),
        ('netwrk = "sim"\n', "netwrk"),
        ("[rules]\nmin_flgs = 2\n", "rules.min_flgs"),
        ("[rules]\nmin_flags = 5\n", "rules.min_flags"),
        ('network = "moon"\n', "network"),
        ('markets = ["btc"]\n', "markets"),
        ('[strategy]\nmax_leverage = "-1"\n', "strategy.max_leverage"),
        ('[strategy.targets]\n"SOL-USD" = "1"\n', "strategy.targets.SOL-USD"),
        ('dydx_mnemonic = "abandon abandon"\n', "dydx_mnemonic"),
        ('control_token = "t0ps3cret"\n', "control_token"),
        ("network = \n", "config"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text))
    assert info.value.key == key


def test_secret_in_file_is_rejected_without_echoing_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, 'binance_api_secret = "very-secret-value"\n'))
    assert "very-secret-value" not in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "nope.toml")
    assert info.value.key == "config"


def test_env_overrides_file_and_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("PERPBOT_CONTROL__PORT=9001\nPERPBOT_SIM__SEED=7\n")
    path = write(tmp_path, "[control]\nport = 9000\n[sim]\nseed = 1\n[paper]\ninitial_equity_usd = '500.5'\n")
    monkeypatch.setenv("PERPBOT_SIM__SEED", "99")
    settings = load(path, env_file=tmp_path / ".env")
    assert settings.control.port == 9001  # .env beats the file
    assert settings.sim.seed == 99  # the environment beats .env
    assert settings.paper.initial_equity_usd == Decimal("500.5")


def test_secrets_from_env_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERPBOT_DYDX_MNEMONIC", "word " * 24)
    monkeypatch.setenv("PERPBOT_CONTROL_TOKEN", "tok-123456789")
    settings = load(None)
    dumped = repr(settings) + str(settings.redacted())
    assert "word word" not in dumped
    assert "tok-123456789" not in dumped
    assert settings.secret_values() == ["tok-123456789", ("word " * 24)]


def test_mainnet_live_needs_confirmation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERPBOT_DYDX_MNEMONIC", "word " * 24)
    with pytest.raises(ConfigError) as info:
        load(None, network="mainnet", trading="live")
    assert info.value.key == "trading"
    monkeypatch.setenv("PERPBOT_LIVE_CONFIRM", "yes")
    assert load(None, network="mainnet", trading="live").trading == "live"


def test_non_loopback_control_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERPBOT_CONTROL__HOST", "0.0.0.0")
    with pytest.raises(ConfigError) as info:
        load(None)
    assert info.value.key == "control.host"
    monkeypatch.setenv("PERPBOT_CONTROL_TOKEN", "a-long-enough-token")
    assert load(None).control.host == "0.0.0.0"
