"""Shared test fixtures: the anyio backend pinned to asyncio (aiosqlite needs it) and paths."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SUITES = REPO / "tests" / "fixtures" / "suites"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def suites() -> Path:
    return SUITES
