"""`audit`: the engine's run against plain pytest's serial order, with culprits named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import SUITES

pytestmark = pytest.mark.e2e


def audit(suite: str, cache: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "test_framework",
            "audit",
            "--project-root",
            str(SUITES / suite),
            "--cache-dir",
            cache,
            "--optimization",
            "ultra_fast",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_audit_finds_the_polluter_a_parallel_run_cannot_see(tmp_path: Path) -> None:
    done = audit("polluter", str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    (differs,) = [line for line in lines if line.startswith("DIFFERS")]
    assert differs == (
        "DIFFERS test_b_victim.py::test_victim: the engine's run: passed; pytest's order: failed"
    )
    culprits = lines[lines.index(differs) + 1]
    assert "is failed after these earlier tests: test_a_pollutes.py::test_pollutes (" in culprits
    assert lines[-1] == "audit: 1 of 10 tests differ from pytest's serial order"


def test_audit_of_a_suite_without_order_effects_exits_0(tmp_path: Path) -> None:
    done = audit("needs_import", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == (
        "audit: 7 tests, every outcome the same as in pytest's serial order"
    )
