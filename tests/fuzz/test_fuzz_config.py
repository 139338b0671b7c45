"""Fuzz configuration loading from the environment: any PERPBOT_* value loads or is refused.

Property: `load()` returns Settings or raises ConfigError whose key names the variable's
setting (`PERPBOT_CONTROL__PORT` -> `control.port...`), or the cross-check the value tripped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fuzz.known import is_known
from fuzz.mutate import NASTY_NUMBERS, NASTY_STRINGS, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from bot.config import Settings, load
from bot.errors import ConfigError

# Variable -> values of roughly the right kind (the rest of the time: anything).
VARIABLES = {
    "PERPBOT_NETWORK": st.sampled_from(["sim", "testnet", "mainnet", "SIM", "moon"]),
    "PERPBOT_TRADING": st.sampled_from(["paper", "live", "Live"]),
    "PERPBOT_MARKETS": st.sampled_from(['["BTC-USD"]', '["btc"]', "[]", "BTC-USD", '["BTC-USD","BTC-USD"]',
                                        "{"]),
    "PERPBOT_SHUTDOWN_BUDGET_SECS": st.sampled_from(NASTY_NUMBERS),
    "PERPBOT_CONTROL__PORT": st.sampled_from([*NASTY_NUMBERS, "65536", "8787", "0x50"]),
    "PERPBOT_CONTROL__HOST": st.sampled_from(["127.0.0.1", "0.0.0.0", "::1", ""]),
    "PERPBOT_SIM__MODE": st.sampled_from(["protocol", "in_process", "x"]),
    "PERPBOT_SIM__SEED": st.sampled_from(NASTY_NUMBERS),
    "PERPBOT_RULES__MIN_FLAGS": st.sampled_from(NASTY_NUMBERS),
    "PERPBOT_PAPER__INITIAL_EQUITY_USD": st.sampled_from(NASTY_NUMBERS),
    "PERPBOT_STRATEGY__TARGETS": st.sampled_from(['{"BTC-USD": "0.1"}', '{"SOL-USD": "1"}',
                                                  '{"BTC-USD": "NaN"}', "{", '["x"]']),
    "PERPBOT_STRATEGY__MAX_LEVERAGE": st.sampled_from(NASTY_NUMBERS),
    "PERPBOT_WATCHDOG__ERROR_RATE_DEGRADED": st.sampled_from(NASTY_NUMBERS),
    "PERPBOT_NOTIFY__DAILY_SUMMARY_UTC": st.sampled_from(["00:00", "24:00", "off", "7", "²:00", ""]),
    "PERPBOT_NOTIFY__KINDS": st.sampled_from(['["fill"]', '["nope"]', "fill", "[]"]),
    "PERPBOT_NEWS__FEEDS": st.sampled_from(['[{"url": "http://x", "keywords": ["a"]}]', "[1]", "x"]),
    "PERPBOT_TELEMETRY__LOG_LEVEL": st.sampled_from(["info", "INFO", "trace"]),
}
CROSS_CHECKS = {"trading", "dydx_trading_mnemonic", "sim.mode", "control.host"}  # keys of _check_combinations

env_values = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=20) | \
    st.sampled_from([s for s in NASTY_STRINGS if "\x00" not in s and "\ud800" not in s])


def setting_of(variable: str) -> str:
    return variable.removeprefix("PERPBOT_").lower().replace("__", ".")


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: v for k, v in os.environ.items() if k.startswith("PERPBOT_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(values)
    try:
        yield
    finally:
        for key in values:
            os.environ.pop(key, None)
        os.environ.update(saved)


@st.composite
def env_sets(draw: st.DrawFn) -> dict[str, str]:
    chosen = draw(st.lists(st.sampled_from(sorted(VARIABLES)), min_size=1, max_size=3, unique=True))
    return {v: draw(VARIABLES[v] if draw(st.integers(0, 3)) else env_values) for v in chosen}


@fuzz_settings(100)
@given(values=env_sets())
def test_env_values_load_or_name_the_key(tmp_path: Path, values: dict[str, str]) -> None:
    with environment({**values, "PERPBOT_STATE_DIR": str(tmp_path)}):
        try:
            settings = load(None, env_file=None)
        except ConfigError as exc:
            named = {setting_of(v) for v in values}
            own = any(exc.key == n or exc.key.startswith(n + ".") for n in named)
            # A market dropped from `markets` shows as strategy.targets.<market> (a cross-check).
            targets = exc.key.startswith("strategy.targets.") and "markets" in named
            assert own or targets or exc.key in CROSS_CHECKS, (exc.key, values)
            return
        except Exception as exc:
            if not is_known(exc):
                raise
            return
    assert isinstance(settings, Settings)
