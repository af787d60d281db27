"""The pre-commit hook (`.pre-commit-hooks.yaml`), run by pre-commit itself in a scratch git
repository: after a staged change, the affected tests run first within the time budget, the
rest are reported as not run, and the commit is not blocked for them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
TEST_FILE = """\
import time

import {module}


def test_one():
    time.sleep(0.3)
    assert {module}.VALUE == 1


def test_two():
    time.sleep(0.3)


def test_three():
    time.sleep(0.3)
"""


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout


def our_commit() -> str:
    """pre-commit installs hooks from a commit: this repository's, which must hold the hook."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: pre-commit installs hooks from a commit")
    tracked = git(REPO, "ls-files", ".pre-commit-hooks.yaml").strip()
    if not tracked:
        pytest.skip(".pre-commit-hooks.yaml is not committed yet")
    return git(REPO, "rev-parse", "HEAD").strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_hook_runs_the_affected_tests_within_its_budget(tmp_path: Path) -> None:
    pytest.importorskip("pre_commit")
    rev = our_commit()
    project = tmp_path / "project"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "alpha.py").write_text("VALUE = 1\n")
    (project / "beta.py").write_text("VALUE = 1\n")
    (project / "test_alpha.py").write_text(TEST_FILE.format(module="alpha"))
    (project / "test_beta.py").write_text(TEST_FILE.format(module="beta"))
    (project / ".pre-commit-config.yaml").write_text(
        f"repos:\n- repo: {REPO}\n  rev: {rev}\n  hooks:\n  - id: test-framework-affected\n"
        "    args: [--time-budget, 2s, --workers, '1', --cache-dir, .store]\n"
    )
    (project / ".gitignore").write_text(".store/\n")
    git(project, "init", "-q")
    git(project, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git(project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    env = {
        **os.environ,
        # `python` in the hook's entry is this interpreter, where the engine is installed.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
        "OPTIMIZED_TEST_RESIDENT": "false",
    }
    # A first run records what each test file depends on (and the tests' durations).
    first = subprocess.run(
        [sys.executable, "-m", "test_framework", "--skip-cache", "--cache-dir", ".store"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=env,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    (project / "beta.py").write_text("VALUE = 1  # edited\n")
    git(project, "add", "beta.py")
    hook = subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "--verbose"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env=env,
    )
    output = hook.stdout + hook.stderr
    assert hook.returncode == 0, output
    # One slot, 2 s less a second of start-up: the three affected tests (0.3 s each) fit,
    # test_alpha's do not, and are reported so.
    assert "--changed HEAD: 1 changed file affect 1 test file" in output
    assert "--time-budget 2s: 3 tests fit, 3 not run" in output
    assert "3 passed, 3 not run" in output
