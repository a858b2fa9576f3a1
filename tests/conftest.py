"""Shared fixtures: the read-only data set beside the checkout, skipped cleanly when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("MASKWATCH_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or $MASKWATCH_SHARED_DATA); tests needing it skip when it is missing."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA} (set MASKWATCH_SHARED_DATA)")
    return SHARED_DATA
