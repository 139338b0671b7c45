"""Print every locked dependency with its installed version and licence; fail on copyleft at runtime.

Usage: python tools/licence_report.py [requirements/runtime.lock] [requirements/dev.lock]

The runtime set is what the container ships (requirements/runtime.lock); anything only in the dev
lock is a build or test tool. A runtime dependency under a strong copyleft licence (GPL, AGPL; LGPL
is fine for an unmodified library we import) fails the report, as does a lock entry that is not
installed at the locked version.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)")
STRONG_COPYLEFT = re.compile(r"\b(A?GPL|GNU (Affero )?General Public)", re.IGNORECASE)
WEAK_COPYLEFT = re.compile(r"\b(LGPL|Lesser General Public)", re.IGNORECASE)


def locked(path: Path) -> dict[str, str]:
    """name -> version for every `name==version` line of a pip-compile lock file."""
    pins = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[_norm(match.group(1))] = match.group(2)
    return pins


def licence_of(dist: metadata.Distribution) -> str:
    meta = dist.metadata
    expression = meta.get("License-Expression")
    if expression:
        return expression.strip()
    classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or []
                   if c.startswith("License :: ")]
    text = (meta.get("License") or "").strip()
    if text and text != "UNKNOWN" and len(text) <= 60 and "\n" not in text:
        return text
    if classifiers:
        return "; ".join(classifiers)
    return _licence_file_head(dist) or (text.splitlines()[0][:60] if text else "UNKNOWN")


def _licence_file_head(dist: metadata.Distribution) -> str:
    """The first non-blank line of a shipped licence file (packages with no licence metadata)."""
    for name in dist.metadata.get_all("License-File") or []:
        for candidate in (f"licenses/{name}", name):
            body = dist.read_text(candidate)
            if body:
                return next((line.strip() for line in body.splitlines() if line.strip()), "")[:60]
    return ""


def is_strong_copyleft(licence: str) -> bool:
    return bool(STRONG_COPYLEFT.search(licence)) and not WEAK_COPYLEFT.search(licence)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(argv: list[str]) -> int:
    runtime_path = Path(argv[0]) if argv else ROOT / "requirements" / "runtime.lock"
    dev_path = Path(argv[1]) if len(argv) > 1 else ROOT / "requirements" / "dev.lock"
    runtime = locked(runtime_path)
    everything = {**locked(dev_path), **runtime}
    problems = []
    print(f"{'package':<28} {'version':<18} {'scope':<8} licence")
    for name in sorted(everything):
        scope = "runtime" if name in runtime else "dev"
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            print(f"{name:<28} {everything[name]:<18} {scope:<8} (not installed)")
            problems.append(f"{name}=={everything[name]} is locked but not installed")
            continue
        licence = licence_of(dist)
        print(f"{name:<28} {dist.version:<18} {scope:<8} {licence}")
        if dist.version != everything[name]:
            problems.append(f"{name}: installed {dist.version}, locked {everything[name]}")
        if scope == "runtime" and is_strong_copyleft(licence):
            problems.append(f"{name}: runtime dependency under {licence}")
    print(f"{len(runtime)} runtime and {len(everything) - len(runtime)} dev-only packages")
    for problem in problems:
        print(f"licence report: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
