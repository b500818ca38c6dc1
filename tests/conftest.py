"""Shared fixtures and hypothesis profiles for the test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

CHECKMATE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "checkmate-graphs"


@pytest.fixture(scope="session")
def checkmate_dir() -> Path:
    """The folder of real training graphs shipped beside the repository in ../shared."""
    if not CHECKMATE_DIR.is_dir():
        pytest.skip(f"reference graphs not found at {CHECKMATE_DIR}")
    return CHECKMATE_DIR
