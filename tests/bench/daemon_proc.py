"""Start `perpbot run` as a child process for the benchmarks that measure the whole daemon."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PERPBOT = Path(sys.executable).parent / "perpbot"


def daemon_env(state_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPBOT_")}
    env.update({"PERPBOT_STATE_DIR": str(state_dir), "PERPBOT_CONTROL__PORT": "0",
                "PERPBOT_TELEMETRY__LOG_FORMAT": "json", "PERPBOT_TELEMETRY__LOG_LEVEL": "warning"})
    env.update(extra)
    return env


class DaemonProcess:
    def __init__(self, **env: str) -> None:
        self.state_dir = Path(tempfile.mkdtemp(prefix="perpbot-bench-"))
        self.env = daemon_env(self.state_dir, **env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> DaemonProcess:
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen([str(PERPBOT), "run"], env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        return self

    def wait_for(self, ready: Any, timeout: float = 60.0, poll: float = 0.01) -> float:
        """Seconds from start until `ready()` is true."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, "daemon exited"
            if ready():
                return time.perf_counter() - self.started_at
            time.sleep(poll)
        raise TimeoutError("daemon not ready")

    def endpoint(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.state_dir / "daemon.json").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def rss_bytes(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def status(daemon: DaemonProcess) -> dict[str, Any] | None:
    """The daemon's `status --json` document, or None while it is not answering yet."""
    import urllib.error
    import urllib.request

    endpoint = daemon.endpoint()
    token_file = daemon.state_dir / "control.token"
    if endpoint is None or not token_file.exists():
        return None
    req = urllib.request.Request(f"{endpoint['url']}/v1/status",
                                 headers={"Authorization": f"Bearer {token_file.read_text().strip()}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return None
