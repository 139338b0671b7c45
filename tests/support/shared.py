"""The shared fixtures and data beside the repository, and the skip when they are absent."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[3] / "shared"
# The shared fixtures and data sit beside the repository in CI; a clone elsewhere lacks them.
NO_SHARED = f"{SHARED} is absent: this test reads the shared fixtures and data beside the repository"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=NO_SHARED)


def require_shared() -> None:
    """Skip the calling test module when ../shared is absent (for modules that read it on import)."""
    if not SHARED.is_dir():
        pytest.skip(NO_SHARED, allow_module_level=True)
