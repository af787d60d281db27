"""Plugins' terminal summaries cover the whole run, as under pytest-xdist's master: the run's
reports are replayed to them in one pytest process, the attempt the engine reported for each
test, and their sections are printed where pytest prints them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import SUITES, engine_command

pytestmark = pytest.mark.e2e


def section(output: str, title: str = "outcome tally") -> list[str]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if f" {title} " in line)
    return lines[start : start + 2]


def pytest_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=SUITES / "plugin_summary",
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def engine(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = engine_command("plugin_summary", tmp_path / "store", *args)
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)


def test_a_plugins_summary_counts_every_workers_tests(tmp_path: Path) -> None:
    plain = pytest_run()
    expected = section(plain.stdout)
    assert expected[1] == "calls passed: 6, failed: 1, skipped: 0"
    for isolation in ("fork", "spawn"):
        for attempt in ("cold", "warm"):
            done = engine(tmp_path, f"--isolation={isolation}", "--workers", "2")
            assert done.returncode == plain.returncode == 1, done.stdout + done.stderr
            assert section(done.stdout) == expected, f"{isolation} {attempt}:\n{done.stdout}"
            # Where pytest prints it: after the failures, before the short test summary.
            lines = done.stdout.splitlines()
            tally = lines.index(expected[1])
            short = next(i for i, line in enumerate(lines) if "short test summary info" in line)
            failures = next(i for i, line in enumerate(lines) if " FAILURES " in line)
            assert failures < tally < short


def test_a_retried_test_is_replayed_once_as_reported(tmp_path: Path) -> None:
    """The failing test runs three times; the plugin sees the attempt the run reported."""
    done = engine(tmp_path, "--retries", "2")
    assert done.returncode == 1, done.stdout + done.stderr
    assert section(done.stdout)[1] == "calls passed: 6, failed: 1, skipped: 0"


def test_a_run_stopped_by_maxfail_is_replayed_as_pytest_stopped(tmp_path: Path) -> None:
    plain = pytest_run("-x")
    done = engine(tmp_path, "-x", "--workers", "1", "--retries", "0")
    assert done.returncode == plain.returncode == 1, done.stdout + done.stderr
    assert section(done.stdout) == section(plain.stdout)
