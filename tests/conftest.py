"""Shared test fixtures: the anyio backend pinned to asyncio (aiosqlite needs it) and paths;
no resident process unless a test asks for one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# The engines these tests start (ultra_fast and aggressive keep a resident process by default)
# must end with their test: only the resident tests ask for one, and stop it.
os.environ.setdefault("OPTIMIZED_TEST_RESIDENT", "false")
# Under `pytest -n`, this process is an xdist worker; the pytest runs its tests start are not
# (pytest-benchmark, for one, disables itself with a warning when it sees these).
for _name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
    os.environ.pop(_name, None)

# The thin client remembers where resident processes are (daemon/places.py) in the user's
# cache folder: the engines these tests start keep their memos in a folder of the test run.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="test_framework-xdg-cache-")

REPO = Path(__file__).resolve().parent.parent
SUITES = REPO / "tests" / "fixtures" / "suites"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def suites() -> Path:
    return SUITES


# On GitHub Actions the engines these tests start would annotate their (deliberate) failures
# and write to the job's summary: those are the engine's own tests' business only.
for _name in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY"):
    os.environ.pop(_name, None)
