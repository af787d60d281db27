"""The command line end to end: both entry points, bad input, exit codes, reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
SUITES = REPO / "tests" / "fixtures" / "suites"
SCRIPT = REPO / "scripts" / "test_backend_optimized.py"

pytestmark = pytest.mark.e2e


def engine(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, script: bool = False
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SCRIPT)] if script else [sys.executable, "-m", "test_framework"]
    return subprocess.run(
        [*command, *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def cache(tmp_path: Path) -> list[str]:
    return ["--cache-dir", str(tmp_path / "cache")]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--category", "units"], "unknown category 'units'; valid: "),
        (["--optimization", "turbo"], "unknown optimization profile 'turbo'; valid: "),
        (["--workers", "0"], "--workers: must be >= 1"),
        (["--workers", "two"], "expected a whole number"),
        (["--project-root", "/no/such/dir"], "does not exist"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--log-format", "xml"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_4(args: list[str], needle: str, tmp_path: Path) -> None:
    done = engine("--project-root", str(SUITES / "basic"), *cache(tmp_path), *args)
    assert done.returncode == 4, done.stderr
    assert needle in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert len(done.stderr.strip().splitlines()) == 1


def test_unknown_pytest_option_is_a_usage_error(tmp_path: Path) -> None:
    done = engine("--project-root", str(SUITES / "basic"), *cache(tmp_path), "--", "--bogus")
    assert done.returncode == 4
    assert "pytest rejected the arguments" in done.stderr
    assert "--bogus" in done.stderr


def test_bad_project_config_names_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.test_framework.profiles.balanced]\nworkers = 3\n", encoding="utf-8"
    )
    done = engine("--project-root", str(tmp_path))
    assert done.returncode == 4
    assert "pyproject.toml" in done.stderr
    assert "'workers'" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_environment_variable_is_a_usage_error(tmp_path: Path) -> None:
    done = engine(
        "--project-root",
        str(SUITES / "basic"),
        *cache(tmp_path),
        env={"OPTIMIZED_TEST_MAX_WORKERS": "lots"},
    )
    assert done.returncode == 4
    assert "OPTIMIZED_TEST_MAX_WORKERS" in done.stderr


def test_empty_suite_exits_5_and_says_so(tmp_path: Path) -> None:
    done = engine("--project-root", str(SUITES / "empty"), *cache(tmp_path))
    assert done.returncode == 5
    assert "no tests collected" in done.stderr


def test_script_and_module_take_the_same_options(tmp_path: Path) -> None:
    root = SUITES / "categories"
    args = ["run", "--project-root", str(root), *cache(tmp_path), "--category", "unit"]
    by_module = engine(*args)
    by_script = engine(*args[1:], script=True)
    for done in (by_module, by_script):
        assert done.returncode == 0, done.stdout + done.stderr
        assert "4 passed" in done.stdout


def test_marker_fallback_and_several_categories(tmp_path: Path) -> None:
    root = SUITES / "markers_only"
    done = engine("--project-root", str(root), *cache(tmp_path), "--category", "unit")
    assert "3 passed" in done.stdout, done.stdout + done.stderr
    both = engine(
        "--project-root",
        str(root),
        *cache(tmp_path),
        "--category",
        "unit",
        "--category",
        "integration",
    )
    assert "5 passed" in both.stdout, both.stdout + both.stderr


def test_paths_and_marker_categories_together(tmp_path: Path) -> None:
    root = SUITES / "categories"
    done = engine(
        "--project-root",
        str(root),
        *cache(tmp_path),
        "--category",
        "unit",
        "--category",
        "smoke",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 passed" in done.stdout  # 4 in tests/unit + 2 marked smoke


def test_list_shows_the_plan_and_runs_nothing(tmp_path: Path) -> None:
    done = engine("--project-root", str(SUITES / "many_files"), *cache(tmp_path), "--list")
    assert done.returncode == 0
    assert "100 tests in" in done.stdout
    assert "shard 1:" in done.stdout
    assert "passed" not in done.stdout


def test_reports_json_and_junit(tmp_path: Path) -> None:
    report, junit = tmp_path / "r.json", tmp_path / "j.xml"
    done = engine(
        "--project-root",
        str(SUITES / "outcomes"),
        *cache(tmp_path),
        "--retries",
        "0",
        "--report",
        str(report),
        "--junitxml",
        str(junit),
    )
    assert done.returncode == 1
    document = json.loads(report.read_text(encoding="utf-8"))
    assert document["exit_code"] == 1
    assert len(document["tests"]) == 11
    assert document["summary"]["failed"] == 3
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert suite.get("tests") == "11"
    assert suite.get("failures") == "3"
    assert suite.get("errors") == "2"
    assert "3 failed, 2 passed, 3 skipped, 1 xfailed, 1 xpassed, 3 errors in" in done.stdout


def test_failures_are_shown_like_pytest(tmp_path: Path) -> None:
    done = engine("--project-root", str(SUITES / "outcomes"), *cache(tmp_path), "--retries", "0")
    out = done.stdout
    assert "= FAILURES =" in out
    assert "_ test_outcomes.py::test_failed _" in out
    assert "this line goes to stdout before the failure" in out  # captured output
    assert "FAILED test_outcomes.py::test_failed - " in out


def test_maxfail_stops_early_and_reports_the_rest_not_run(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    done = engine(
        "--project-root",
        str(SUITES / "outcomes"),
        *cache(tmp_path),
        "--retries",
        "0",
        "--workers",
        "1",
        "--maxfail",
        "1",
        "--report",
        str(report),
    )
    assert done.returncode == 1
    tests = json.loads(report.read_text(encoding="utf-8"))["tests"]
    assert len(tests) == 11  # every test is accounted for
    outcomes = [t["outcome"] for t in tests]
    assert "not_run" in outcomes
    assert "stopping after 1 failures" in done.stdout


def test_second_run_uses_the_collection_cache_and_known_durations(tmp_path: Path) -> None:
    # Spawn mode reads the cached collection; fork mode's zygote collects anyway.
    args = ["--project-root", str(SUITES / "basic"), *cache(tmp_path), "-vv", "--isolation=spawn"]
    first = engine(*args)
    second = engine(*args)
    assert first.returncode == second.returncode == 0
    assert "collection_cache_hit" not in first.stderr
    assert "collection_cache_hit" in second.stderr
    assert "12 durations known" in second.stdout
