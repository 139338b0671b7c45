"""Operator news flags survive restarts in a small JSON file in the state directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import structlog

log = structlog.get_logger("news")


def load_operator_items(path: Path, now_ns: int) -> dict[str, int]:
    """Return unexpired operator items (item -> expiry ns); a missing or bad file gives {}."""
    try:
        data = json.loads(path.read_text())
        items = {str(k): int(v) for k, v in data.get("operator", {}).items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        log.warning("news_state_unreadable", path=str(path), error=repr(exc))
        return {}
    return {k: v for k, v in items.items() if v > now_ns}


def save_operator_items(path: Path, items: dict[str, int]) -> None:
    """Write the operator items atomically (temp file + rename)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"operator": items}, sort_keys=True))
    os.replace(tmp, path)
