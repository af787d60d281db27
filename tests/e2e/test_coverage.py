"""pytest-cov under the engine: one table for the whole run, combined from every worker's data
as under pytest-xdist, equal to plain pytest's, in every mode; `--cov-fail-under` fails the run
as in pytest; no worker's data file is left behind to join the next run's table."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import SUITES

pytestmark = pytest.mark.e2e

COVERAGE = ("--cov=pkg", "--cov-report=term-missing")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "coverage"
    shutil.copytree(SUITES / "coverage", root)
    return root


def run(root: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def table(output: str) -> list[str]:
    """pytest-cov's table: its heading's line through the TOTAL line."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if " tests coverage " in line)
    end = next(i for i, line in enumerate(lines) if line.startswith("TOTAL"))
    return lines[start : end + 1]


def data_files(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob(".coverage*"))


def test_the_table_is_pytests_combined_from_every_worker(project: Path, tmp_path: Path) -> None:
    plain = run(project, "pytest", "-p", "no:cacheprovider", *COVERAGE)
    assert plain.returncode == 0, plain.stdout
    expected = table(plain.stdout)
    # Lines only some files cover: a table from one worker's data would list them missing.
    assert expected[-3].endswith("88%   12, 29"), expected
    for isolation in ("fork", "spawn"):
        store = tmp_path / f"store-{isolation}"
        for attempt in ("cold", "warm"):
            done = run(
                project,
                "test_framework",
                "--cache-dir",
                str(store),
                f"--isolation={isolation}",
                "--workers",
                "2",
                *COVERAGE,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            assert table(done.stdout) == expected, f"{isolation} {attempt}:\n{done.stdout}"
            assert data_files(project) == [".coverage"], f"{isolation} {attempt}"


def test_fail_under_fails_the_run_as_in_pytest(project: Path, tmp_path: Path) -> None:
    options = (*COVERAGE, "--cov-fail-under=95")
    plain = run(project, "pytest", "-p", "no:cacheprovider", *options)
    done = run(project, "test_framework", "--cache-dir", str(tmp_path / "store"), *options)
    assert done.returncode == plain.returncode == 1, done.stdout + done.stderr
    message = "FAIL Required test coverage of 95% not reached. Total coverage: 87.50%"
    assert message in plain.stdout
    assert message in done.stdout
    assert "passed" in done.stdout.splitlines()[-1]


def test_a_run_stopped_early_prints_no_table_as_in_pytest(project: Path, tmp_path: Path) -> None:
    (project / "test_broken.py").write_text("def test_broken():\n    assert False\n")
    options = (*COVERAGE, "-x")
    plain = run(project, "pytest", "-p", "no:cacheprovider", *options)
    done = run(project, "test_framework", "--cache-dir", str(tmp_path / "store"), *options)
    assert done.returncode == plain.returncode == 1, done.stdout + done.stderr
    assert "tests coverage" not in plain.stdout
    assert "tests coverage" not in done.stdout


def test_pytest_failing_to_start_exits_as_pytest_does(project: Path, tmp_path: Path) -> None:
    """Under `filterwarnings = error`, coverage's warning about its own configuration escapes
    pytest's start: pytest exits 1 with a traceback; so does the engine, the traceback readable
    (indented as printed), not an internal error."""
    (project / ".coveragerc").write_text("[run]\ninclude = pkg/*\n")
    plain = run(project, "pytest", "-p", "no:cacheprovider", *COVERAGE)
    done = run(project, "test_framework", "--cache-dir", str(tmp_path / "store"), *COVERAGE)
    assert done.returncode == plain.returncode == 1, done.stdout + done.stderr
    assert "include-ignored" in done.stderr
    assert "\n  File " in done.stderr  # the traceback keeps its indentation
