"""Shared test fixtures: the anyio backend pinned to asyncio (aiosqlite needs it) and paths;
no resident process unless a test asks for one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The engines these tests start (ultra_fast and aggressive keep a resident process by default)
# must end with their test: only the resident tests ask for one, and stop it.
os.environ.setdefault("OPTIMIZED_TEST_RESIDENT", "false")

REPO = Path(__file__).resolve().parent.parent
SUITES = REPO / "tests" / "fixtures" / "suites"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def suites() -> Path:
    return SUITES
