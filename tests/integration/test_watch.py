"""`perpbot watch` in a real pseudo-terminal against a running daemon; exit codes 0 and 3."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import socket
import struct
import termios
import time
from pathlib import Path
from typing import Any

from support.daemon import Daemon, base_env
from support.sim import BIN


def _read_for(fd: int, secs: float) -> bytes:
    out = b""
    deadline = time.monotonic() + secs
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], min(left, 0.2))
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    return out


def _wait(pid: int, timeout_secs: float) -> int | None:
    """The exit code once the child is gone (reaping it), or None while it still runs."""
    deadline = time.monotonic() + timeout_secs
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def _spawn_in_pty(daemon: Daemon, *args: str) -> tuple[int, int]:
    """Fork `perpbot watch` with a pty as its controlling terminal (so Ctrl-C is a real ^C)."""
    env = {**daemon.env, "TERM": "xterm-256color", "COLUMNS": "200", "LINES": "60"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once
        os.chdir(daemon.workdir)
        os.execve(str(BIN / "perpbot"), [str(BIN / "perpbot"), "watch", *args], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 200, 0, 0))
    return pid, fd


def test_watch_renders_live_in_a_pty_and_exits_0_on_ctrl_c(daemon_factory: Any) -> None:
    daemon = daemon_factory().start()
    pid, fd = _spawn_in_pty(daemon, "--interval", "0.5")
    code: int | None = None
    try:
        first = _read_for(fd, 5)
        assert daemon.cli("news", "set", "FOMC", "--ttl", "1h").returncode == 0
        rest = _read_for(fd, 5)
        running = _wait(pid, 0)
        assert running is None, f"watch exited early ({running}): {(first + rest)[-2000:]!r}"
        os.write(fd, b"\x03")  # Ctrl-C through the terminal's line discipline
        tail = _read_for(fd, 1)
        code = _wait(pid, 10)
    finally:
        if code is None and _wait(pid, 0) is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    text = (first + rest + tail).decode(errors="replace")
    assert code == 0, text[-2000:]
    assert "Traceback" not in text and "Error" not in text
    assert "BTC-USD" in text and "ETH-USD" in text and "NORMAL" in text
    for flag in ("funding", "liquidity", "volatility", "news"):
        assert flag in text
    assert "\x1b[" in text, "rendered for a terminal (colours, cursor movement)"
    assert rest.decode(errors="replace").count("perpbot watch") >= 4, "refreshes in place twice a second"
    assert "items FOMC" in rest.decode(errors="replace"), "the news flag appears while watching"
    assert daemon.stop() == 0


def test_watch_once_and_unreachable(daemon_factory: Any, tmp_path: Path) -> None:
    daemon = daemon_factory().start()
    once = daemon.cli("watch", "--once")
    assert once.returncode == 0, once.stderr
    assert "BTC-USD" in once.stdout and "funding ledger" in once.stdout
    assert daemon.stop() == 0

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = base_env(tmp_path / "nowhere", PERPBOT_CONTROL__PORT=str(port))
    gone = Daemon(tmp_path, env).cli("watch", "--interval", "0.2")
    assert gone.returncode == 3
    assert "unreachable" in gone.stderr


def test_watch_fits_80x24_with_whole_market_names(daemon_factory: Any) -> None:
    daemon = daemon_factory().start()
    daemon.env.update({"COLUMNS": "80", "LINES": "24"})
    once = daemon.cli("watch", "--once")
    assert daemon.stop() == 0
    assert once.returncode == 0, once.stderr
    lines = once.stdout.rstrip("\n").splitlines()
    assert len(lines) <= 24, once.stdout
    assert all(len(line) <= 80 for line in lines), once.stdout
    rows = [line for line in lines if line.startswith(("BTC-USD ", "ETH-USD ")) and "│" in line]
    assert len(rows) >= 2 and not any("…" in row for row in rows), once.stdout  # whole names, no ellipses
