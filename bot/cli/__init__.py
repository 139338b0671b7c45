"""The `perpbot` command line: the daemon, and a client of the control API.

Exit codes: 0 ok, 1 runtime failure, 2 bad input or config (one line naming the key),
3 daemon unreachable. One module per group of commands; importing them registers them on `cli`.
"""

from __future__ import annotations

import os

from bot.cli import control, research, venue  # noqa: F401  (registers the commands)
from bot.cli.base import EXIT_BAD_INPUT, EXIT_RUNTIME, EXIT_UNREACHABLE, cli, parse_duration

__all__ = ["EXIT_BAD_INPUT", "EXIT_RUNTIME", "EXIT_UNREACHABLE", "cli", "main", "parse_duration"]


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cli.main(args=argv, prog_name="perpbot")
