"""`perpbot run` as a real subprocess with its own state directory, and its isolated environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from support.sim import BIN
from support.wait import eventually

START_TIMEOUT_SECS = 60


def base_env(state_dir: Path, **extra: str) -> dict[str, str]:
    """An environment with no PERPBOT_* leaking in from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPBOT_")}
    env.update({
        "PERPBOT_STATE_DIR": str(state_dir),
        "PERPBOT_CONTROL__PORT": "0",
        "PERPBOT_TELEMETRY__STATUS_INTERVAL_SECS": "1",
        "PERPBOT_TELEMETRY__LOG_FORMAT": "json",
        "PERPBOT_EXECUTION__TWAP_DURATION_SECS": "3",
        # The daemon tests watch orders move: a fixed thesis in both markets (unscaled by vol),
        # no carry (tests of the hedge turn it on). The shipped default trades the carry only.
        "PERPBOT_STRATEGY__TARGETS": '{"BTC-USD": "0.05", "ETH-USD": "-0.5"}',
        "PERPBOT_STRATEGY__TARGET_VOL_ANNUAL": "5",
        "PERPBOT_STRATEGY__ADVERSE_FUNDING_RATE_ANNUAL": "100",  # never cut the thesis for funding
        "PERPBOT_STRATEGY__CARRY__ENABLED": "false",
    })
    env.update(extra)
    return env


class Daemon:
    """`perpbot run` as a subprocess with its own state directory."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.state_dir = Path(env["PERPBOT_STATE_DIR"])
        self.log_path = workdir / f"daemon-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        endpoint = self.state_dir / "daemon.json"
        endpoint.unlink(missing_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(BIN / "perpbot"), "run"], cwd=self.workdir, env=self.env,
            stdout=log, stderr=subprocess.STDOUT,
        )
        # A bound, not a budget: a cold start on a loaded 2-core machine can take well over 20 s.
        eventually(lambda: endpoint.exists() or self.proc.poll() is not None,  # type: ignore[union-attr]
                   START_TIMEOUT_SECS)
        assert self.proc.poll() is None, self.log()
        return self

    def cli(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "perpbot"), *args], cwd=self.workdir, env=self.env,
            capture_output=True, text=True, timeout=timeout,
        )

    def status(self) -> dict[str, Any]:
        result = self.cli("status", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events
