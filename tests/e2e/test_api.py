"""The Python API runs the same engine as the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

from test_framework.api import run, run_tests_with_optimization
from test_framework.errors import ConfigError, UsageError

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


def test_every_test_is_counted_in_one_key(tmp_path: Path) -> None:
    results = run_tests_with_optimization(
        project_root=SUITES / "outcomes", retries=0, cache_dir=tmp_path, quiet=True
    )
    keys = ("passed", "failed", "skipped", "xpassed", "not_run", "cached")
    assert sum(results[k] for k in keys) == results["total_tests"] == 11
    assert results["xpassed"] == 1
    assert results["outcomes"] == {
        "passed": 1,
        "failed": 3,
        "error": 2,
        "skipped": 3,
        "xfailed": 1,
        "xpassed": 1,
    }
    assert results["counts"]["xpassed"] == 1


def test_the_engine_log_never_reaches_stdout_and_one_category_is_one_name(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # A host that never configured structlog (another test in this process may have: the
    # API then keeps the host's configuration, by design).
    structlog.reset_defaults()
    results = run_tests_with_optimization(
        project_root=SUITES / "categories",
        categories="unit",
        retries=0,
        cache_dir=tmp_path,
        quiet=True,
    )
    assert results["total_tests"] == 4  # the unit category, not four one-letter names
    out, _err = capfd.readouterr()
    assert out == ""
    assert "shard_finished" in (tmp_path / "engine.log").read_text(encoding="utf-8")


@pytest.mark.anyio
async def test_inside_a_running_event_loop_the_message_names_the_async_form(
    tmp_path: Path,
) -> None:
    with pytest.raises(UsageError, match=r"await test_framework\.api\.run"):
        run_tests_with_optimization(project_root=SUITES / "basic", cache_dir=tmp_path)
    summary = await run(project_root=SUITES / "basic", cache_dir=tmp_path, quiet=True)
    assert summary.exit_code == 0
    assert len(summary.results) == 12
