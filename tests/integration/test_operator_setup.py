"""The operator's setup as shipped: `.env.example` copied as is, the state directory, local secrets."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
from pydantic import BaseModel
from support.daemon import base_env
from support.sim import BIN

from bot.app import App
from bot.config import Settings, load
from bot.errors import ConfigError
from bot.telemetry import Metrics

REPO = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = REPO / ".env.example"


def example_env() -> dict[str, str]:
    """The variables `.env.example` sets when copied as is (its uncommented lines)."""
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
             if line.startswith("PERPBOT_") and "=" in line)
    return {key: value for key, value in pairs}


def setting_names(model: type[BaseModel], prefix: str = "PERPBOT_") -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names += setting_names(kind, f"{prefix}{name.upper()}__")
        else:
            names.append(f"{prefix}{name.upper()}")
    return names


def test_every_setting_is_in_env_example() -> None:
    listed = set(re.findall(r"^#? ?(PERPBOT_[A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.M))
    missing = [name for name in setting_names(Settings) if name not in listed]
    assert missing == [], f"add these to .env.example: {missing}"


def test_empty_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in example_env().items():
        monkeypatch.setenv(key, value)
    assert example_env() and all(value == "" for value in example_env().values())
    settings = load(None, env_file=None)
    assert settings.secret_values() == []
    assert settings.control_token is None and settings.notify_webhook_url is None
    monkeypatch.setenv("PERPBOT_CONTROL__HOST", "0.0.0.0")
    with pytest.raises(ConfigError, match=r"control\.host"):  # an empty token is no token
        load(None, env_file=None)


def test_the_cli_reaches_the_daemon_with_env_example_exported(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory(**example_env()).start()
    assert daemon.status()["risk_mode"] == "NORMAL"  # 401 when the CLI sent an empty token
    assert daemon.stop() == 0


def test_an_unwritable_state_dir_is_one_line_and_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    result = subprocess.run([str(BIN / "perpbot"), "run"], env=base_env(blocker / "state"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "state_dir" in lines[0] and str(blocker) in lines[0], lines


def test_state_dir_token_and_store_are_private(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory().start()
    assert daemon.stop() == 0
    state = daemon.state_dir

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(state) == 0o700
    assert mode(state / "control.token") == 0o600
    for name in ("perpbot.sqlite", "perpbot.sqlite-wal", "perpbot.sqlite-shm"):
        if (state / name).exists():
            assert mode(state / name) == 0o600, name


def test_a_token_file_others_can_read_is_refused(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory()
    daemon.state_dir.mkdir(parents=True)
    token = daemon.state_dir / "control.token"
    token.write_text("a-token-others-could-read\n")
    os.chmod(token, 0o644)
    result = daemon.cli("run", timeout=60)
    assert result.returncode == 2
    assert str(token) in result.stderr and "chmod 600" in result.stderr


async def test_metrics_need_the_token_off_loopback(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from bot.control.api import ControlServer

    app = await App.create(load(None, env_file=None, state_dir=str(tmp_path)))
    try:
        for host, open_metrics in (("127.0.0.1", True), ("0.0.0.0", False)):
            server = ControlServer(app.controller, Metrics(), "tok", host, 0)
            async with TestClient(TestServer(server.make_app())) as client:
                assert (await client.get("/metrics")).status == (200 if open_metrics else 401)
                authed = await client.get("/metrics", headers={"Authorization": "Bearer tok"})
                assert authed.status == 200
                assert (await client.get("/healthz")).status == 200
    finally:
        app.store.close()
        for close in app.closers:
            await close()


def test_compose_does_not_require_a_dot_env_and_the_build_context_is_clean() -> None:
    compose = (REPO / "docker-compose.yml").read_text()
    assert re.search(r"env_file:[^\n]*\n\s*- path: \.env[^\n]*\n\s*required: false", compose), compose
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in (".venv", ".git", ".env", "state"):
        assert entry in ignored, entry
