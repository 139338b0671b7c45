"""`python -m bot` forwards its arguments to the `perpbot` command line."""

import subprocess
import sys


def _module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True, timeout=60)


def test_arguments_reach_the_command_they_name() -> None:
    proc = _module("backtest", "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("Usage: perpbot backtest")


def test_an_unknown_command_exits_2_instead_of_starting_the_daemon() -> None:
    proc = _module("no-such-command")
    assert proc.returncode == 2
    assert "No such command" in proc.stderr
