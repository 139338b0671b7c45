"""The container's contract, tested without a Docker engine: the Dockerfile's user, entrypoint
and healthcheck, and the entrypoint run as that unprivileged user with only its state dir writable.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
from support.daemon import base_env
from support.sim import BIN
from support.wait import eventually

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instruction(name: str) -> str:
    matches = re.findall(rf"^{name}\s+(.+)$", DOCKERFILE, flags=re.MULTILINE)
    assert matches, f"no {name} in Dockerfile"
    return matches[-1].strip()


def test_dockerfile_declares_non_root_user_entrypoint_and_healthcheck() -> None:
    user = _instruction("USER")
    uid = int(user.split(":")[0])
    assert uid != 0
    assert json.loads(_instruction("ENTRYPOINT")) == ["perpbot"]
    assert json.loads(_instruction("CMD")) == ["run"]
    assert '["perpbot", "health"]' in _instruction("HEALTHCHECK")
    assert _instruction("STOPSIGNAL") == "SIGTERM"
    assert "PERPBOT_CONTROL_TOKEN" not in DOCKERFILE and "MNEMONIC" not in DOCKERFILE
    assert DOCKERFILE.count("FROM ") >= 2  # multi-stage


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to drop to the image's uid")
def test_entrypoint_as_unprivileged_user_answers_health_and_stops_on_sigterm() -> None:
    uid = int(_instruction("USER").split(":")[0])
    workdir = Path(tempfile.mkdtemp(prefix="perpbot-container-"))
    try:
        os.chmod(workdir, 0o755)
        state = workdir / "state"
        state.mkdir()
        os.chown(state, uid, uid)
        env = base_env(state, HOME=str(state))
        drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        proc = subprocess.Popen([*drop, str(BIN / "perpbot"), "run"], cwd=state, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            eventually(lambda: (state / "daemon.json").exists() or proc.poll() is not None, 20)
            assert proc.poll() is None
            health = subprocess.run([*drop, str(BIN / "perpbot"), "health"], cwd=state, env=env,
                                    capture_output=True, text=True, timeout=20)
            assert health.returncode == 0, health.stderr
            assert json.loads(health.stdout)["ok"] is True
            owners = {p.stat().st_uid for p in state.iterdir()}
            assert owners == {uid}  # everything it wrote belongs to the unprivileged user
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("setpriv") is None,
                    reason="needs root, unshare and setpriv to remount / read-only in a mount namespace")
def test_entrypoint_runs_with_read_only_root_filesystem() -> None:
    """`docker run --read-only -v state:/var/lib/perpbot`: only the state volume is writable."""
    uid = int(_instruction("USER").split(":")[0])
    workdir = Path(tempfile.mkdtemp(prefix="perpbot-rootfs-"))
    try:
        os.chmod(workdir, 0o755)
        state = workdir / "state"
        state.mkdir()
        os.chown(state, uid, uid)
        env = base_env(state, HOME=str(state))
        # A private mount namespace: the state dir becomes its own (writable) mount, then every
        # other path under / is remounted read-only, as a container's --read-only root would be.
        script = ('mount --make-rprivate / && mount --bind "$0" "$0" && mount -o remount,bind,ro / '
                  f'&& exec setpriv --reuid={uid} --regid={uid} --clear-groups "$1" run')
        proc = subprocess.Popen(["unshare", "-m", "sh", "-c", script, str(state), str(BIN / "perpbot")],
                                cwd=state, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            eventually(lambda: (state / "daemon.json").exists() or proc.poll() is not None, 20)
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            status = subprocess.run([str(BIN / "perpbot"), "status", "--json"], env=env,
                                    capture_output=True, text=True, timeout=20)
            assert status.returncode == 0, status.stderr
            assert json.loads(status.stdout)["risk_mode"] == "NORMAL"
            probe = subprocess.run(["unshare", "-m", "sh", "-c", 'mount --make-rprivate / && '
                                    'mount -o remount,bind,ro / && touch "$0"', str(workdir / "probe")],
                                   capture_output=True, text=True, timeout=10)
            assert probe.returncode != 0 and "Read-only" in probe.stderr  # the remount really bites
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
            output = proc.stdout.read().decode() if proc.stdout else ""
            assert "Read-only file system" not in output
            assert (state / "perpbot.sqlite").exists()  # the store lives on the state volume
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
