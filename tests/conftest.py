"""Shared fixtures: the reference data directory, users and factories built with the real services."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The reference data named by EVALSITE_DATA_DIR; the suite needs it and says so when it is missing."""
    raw = os.environ.get("EVALSITE_DATA_DIR", "")
    if not raw:
        pytest.fail("EVALSITE_DATA_DIR is not set: point it at the reference data (CI uses ../shared/data).")
    path = Path(raw).resolve()
    if not (path / "cqa").is_dir():
        pytest.fail(f"EVALSITE_DATA_DIR={raw} does not hold the reference data (no cqa/ folder).")
    return path
