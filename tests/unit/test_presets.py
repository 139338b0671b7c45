"""The presets in examples/ load, say what the README says, and bad targets exit 2 naming the key."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from bot.config import load
from bot.errors import ConfigError
from bot.strategy.targets import TargetSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_default_config_has_no_directional_targets() -> None:
    s = load(None, env_file=None)
    assert s.strategy.targets == {} and s.strategy.carry.enabled


def test_carry_preset_is_carry_only() -> None:
    s = load(EXAMPLES / "carry.toml", env_file=None)
    assert s.strategy.targets == {} and s.strategy.carry.enabled and s.strategy.carry_budget == 1


def test_directional_preset_holds_half_equity_long_without_carry() -> None:
    s = load(EXAMPLES / "directional.toml", env_file=None)
    assert not s.strategy.carry.enabled and s.hedged_spot_markets() == []
    assert s.strategy.targets == {"BTC-USD": TargetSpec(Decimal("0.5"), "leverage"),
                                  "ETH-USD": TargetSpec(Decimal("0.5"), "leverage")}


@pytest.mark.parametrize("bad", ["abc", "5000$", "0.5xx", "1e999999999", "-$-5", "nan"])
def test_a_bad_target_in_the_file_names_its_key(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'[strategy.targets]\n"BTC-USD" = "{bad}"\n')
    with pytest.raises(ConfigError) as err:
        load(path, env_file=None)
    assert err.value.key == "strategy.targets.BTC-USD"


def test_cli_refuses_a_bad_target_with_exit_2(tmp_path: Path) -> None:
    code = "import sys; from bot.cli import main; main(sys.argv[1:])"
    bad_file = tmp_path / "bad.toml"
    bad_file.write_text('[strategy.targets]\n"ETH-USD" = "0.5 x"\n')
    for args in (["target", "BTC-USD", "5000$"], ["config", "check", "--config", str(bad_file)]):
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                             cwd=tmp_path, timeout=60, check=False)
        assert out.returncode == 2, out
    assert "strategy.targets.ETH-USD" in out.stderr + out.stdout
