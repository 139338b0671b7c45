"""The lock files make the container build and CI installs reproducible: check they stay so."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
ENTRY = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})+)", re.MULTILINE)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock(name: str) -> dict[str, str]:
    text = (ROOT / "requirements" / name).read_text()
    pins = {_norm(m.group(1)): m.group(2) for m in ENTRY.finditer(text)}
    pinned_lines = [line for line in text.splitlines() if "==" in line and not line.startswith("#")]
    assert len(pins) == len(pinned_lines), "every pinned line carries its sha256 hashes"
    return pins


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_runtime_lock_pins_every_dependency_inside_its_range() -> None:
    runtime = _lock("runtime.lock")
    for spec in _project()["dependencies"]:
        req = Requirement(spec)
        assert _norm(req.name) in runtime, f"{req.name} missing from requirements/runtime.lock"
        assert req.specifier.contains(runtime[_norm(req.name)]), f"{req.name} lock outside {req.specifier}"


def test_dev_lock_is_the_runtime_lock_plus_dev_tools() -> None:
    runtime, dev = _lock("runtime.lock"), _lock("dev.lock")
    assert {k: dev.get(k) for k in runtime} == runtime  # CI tests exactly what the image ships
    for spec in _project()["optional-dependencies"]["dev"]:
        req = Requirement(spec)
        assert req.specifier.contains(dev[_norm(req.name)]), f"{req.name} lock outside {req.specifier}"


def test_container_and_ci_install_only_with_hashes() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements/runtime.lock" in dockerfile
    assert "--require-hashes -r requirements/build.lock" in dockerfile
    assert "--require-hashes -r requirements/dev.lock" in (ROOT / "Makefile").read_text()
    assert _lock("build.lock")["hatchling"]
