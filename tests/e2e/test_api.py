"""The Python API runs the same engine as the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_framework.api import run_tests_with_optimization
from test_framework.errors import ConfigError

SUITES = Path(__file__).resolve().parent.parent / "fixtures" / "suites"

pytestmark = pytest.mark.e2e


def test_run_tests_with_optimization_returns_the_counts(tmp_path: Path) -> None:
    results = run_tests_with_optimization(
        project_root=SUITES / "outcomes", retries=0, cache_dir=tmp_path, quiet=True
    )
    assert results["total_tests"] == 11
    assert results["passed"] == 1
    assert results["failed"] == 5  # 3 failed + 2 errors
    assert results["exit_code"] == 1


def test_bad_input_raises_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown category"):
        run_tests_with_optimization(project_root=SUITES / "basic", categories=["nope"])
