"""The skip cache (opt-in, `skip_cache = true`): a test file whose every dependency is as
recorded reports its recorded outcome as `cached`; an edit to what it imports (also by a
computed name) or reads runs it; a change no record can place runs everything; a failure is
never cached (it runs alone, the rest of its file cached); `--no-cache` runs everything and
still records."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

PROJECT = {
    "pyproject.toml": (
        '[tool.pytest.ini_options]\ntestpaths = ["tests"]\n\n'
        "[tool.test_framework.profiles.balanced]\nskip_cache = true\ncache_sample = 0.0\n"
    ),
    "pkg/__init__.py": "",
    "pkg/leaf.py": "VALUE = 1\n",
    "pkg/other.py": "def f():\n    return 2\n",
    "pkg/data.txt": "42\n",
    "tests/test_leaf.py": (
        "from pkg.leaf import VALUE\n\n\ndef test_leaf():\n    assert VALUE == 1\n"
    ),
    "tests/test_other.py": "from pkg.other import f\n\n\ndef test_other():\n    assert f() == 2\n",
    "tests/test_dynamic.py": (
        "import importlib\n\n\ndef test_dynamic():\n"
        "    assert importlib.import_module('pkg.' + 'leaf').VALUE == 1\n"
    ),
    "tests/test_data.py": (
        "from pathlib import Path\n\n\ndef test_data():\n"
        "    assert Path('pkg/data.txt').read_text() == '42\\n'\n"
    ),
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for name, text in PROJECT.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def run(
    root: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    report = root.parent / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "test_framework", "--report", str(report), *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    document = json.loads(report.read_text()) if report.exists() else {"tests": []}
    return done, {t["nodeid"]: t["outcome"] for t in document["tests"]}


def cache_project(tmp_path: Path, name: str, sample: float, files: dict[str, str]) -> Path:
    """A project of its own with the skip cache on and this trip-wire share."""
    root = tmp_path / name
    root.mkdir()
    (root / "pyproject.toml").write_text(
        f"[tool.test_framework.profiles.balanced]\nskip_cache = true\ncache_sample = {sample}\n"
    )
    for file, text in files.items():
        (root / file).write_text(text)
    return root


def ran(outcomes: dict[str, str]) -> set[str]:
    return {n.split("::")[0].removeprefix("tests/") for n, o in outcomes.items() if o != "cached"}


def test_unchanged_files_are_cached_and_edits_run_what_they_reach(project: Path) -> None:
    done, outcomes = run(project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(outcomes.values()) == {"passed"}

    junit = project.parent / "junit.xml"
    done, outcomes = run(project, "--junitxml", str(junit))
    assert done.returncode == 0, done.stdout
    assert set(outcomes.values()) == {"cached"}
    assert re.search(r"=+ 4 cached in ", done.stdout), done.stdout
    assert "collected 4 tests (4 cached)" in done.stdout
    assert junit.read_text().count('<skipped type="pytest.skip" message="cached: passed at') == 4

    (project / "pkg/leaf.py").write_text("VALUE = 1  # edited\n")
    done, outcomes = run(project)
    # test_dynamic imports pkg.leaf by a computed name only: recorded at run time.
    assert ran(outcomes) == {"test_leaf.py", "test_dynamic.py"}, done.stdout
    assert outcomes["tests/test_leaf.py::test_leaf"] == "passed"

    (project / "pkg/data.txt").write_text("42\n")  # the same content: nothing to run
    assert ran(run(project)[1]) == set()
    (project / "pkg/data.txt").write_text("43\n")
    done, outcomes = run(project)
    assert ran(outcomes) == {"test_data.py"}
    assert outcomes["tests/test_data.py::test_data"] == "failed"
    assert done.returncode == 1

    done, outcomes = run(project)  # a failure is never reported from the cache
    assert outcomes["tests/test_data.py::test_data"] == "failed", done.stdout


def test_a_change_no_record_places_runs_everything(project: Path) -> None:
    run(project)
    (project / "scripts").mkdir()
    (project / "scripts/tool.py").write_text("print('a script a test might run')\n")
    done, outcomes = run(project)
    assert set(outcomes.values()) == {"passed"}, done.stdout
    assert "changed files no test is known to depend on: scripts/tool.py" in done.stdout


def test_no_cache_runs_everything_and_still_records(project: Path) -> None:
    run(project)
    done, outcomes = run(project, "--no-cache")
    assert set(outcomes.values()) == {"passed"}, done.stdout
    assert set(run(project)[1].values()) == {"cached"}


def test_a_failed_test_runs_alone_while_the_rest_of_its_file_is_cached(tmp_path: Path) -> None:
    """As `--last-failed` would: the failed test runs each time (its state is outside any
    file, here an environment variable), its passing neighbours are reported from the record."""
    mixed = (
        "import os\n\n\ndef test_ok():\n    pass\n\n\n"
        "def test_fixed_outside():\n    assert os.environ.get('FIXED')\n\n\n"
        "def test_ok_too():\n    pass\n"
    )
    root = cache_project(tmp_path, "mixed", 0.0, {"test_mixed.py": mixed})
    done, outcomes = run(root)
    assert outcomes["test_mixed.py::test_fixed_outside"] == "failed", done.stdout
    done, outcomes = run(root)
    assert outcomes == {
        "test_mixed.py::test_ok": "cached",
        "test_mixed.py::test_fixed_outside": "failed",
        "test_mixed.py::test_ok_too": "cached",
    }, done.stdout
    assert done.returncode == 1
    why = subprocess.run(
        [sys.executable, "-m", "test_framework", "why", "test_mixed.py::test_fixed_outside"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "next run: runs: it was failed (the rest of its file is cached)" in why.stdout
    done, outcomes = run(root, env={"FIXED": "1"})
    assert outcomes["test_mixed.py::test_fixed_outside"] == "passed", done.stdout
    assert done.returncode == 0
    assert re.search(r"=+ 1 passed, 2 cached in ", done.stdout), done.stdout


def test_the_trip_wire_runs_every_cached_test_when_a_sample_disagrees(tmp_path: Path) -> None:
    """Both files read a variable no fingerprint sees. Changed, the cache would report stale
    passes; the sampled test (one of two) fails, so the other runs too, in the same run."""
    files = {
        f"test_{name}.py": (
            f"import os\n\n\ndef test_{name}():\n    assert os.environ.get('FLAVOR') != 'bad'\n"
        )
        for name in ("a", "b")
    }
    root = cache_project(tmp_path, "tripwire", 0.5, files)
    assert set(run(root)[1].values()) == {"passed"}
    done, outcomes = run(root)
    assert sorted(outcomes.values()) == ["cached", "passed"], done.stdout  # one sampled
    done, outcomes = run(root, env={"FLAVOR": "bad"})
    assert outcomes == {"test_a.py::test_a": "failed", "test_b.py::test_b": "failed"}, done.stdout
    assert done.returncode == 1
    assert "skip cache distrusted: test_" in done.stdout


def test_verify_cache_runs_everything_and_names_false_skips(tmp_path: Path) -> None:
    files = {
        "test_env.py": (
            "import os\n\n\ndef test_env():\n    assert os.environ.get('FLAVOR') != 'bad'\n"
        ),
        "test_plain.py": "def test_plain():\n    pass\n",
    }
    root = cache_project(tmp_path, "verify", 0.0, files)
    run(root)
    done, outcomes = run(root, "--verify-cache")
    assert set(outcomes.values()) == {"passed"}, done.stdout  # run, not reported from records
    assert done.returncode == 0
    assert "verify cache: no false skip" in done.stdout
    done, outcomes = run(root, "--verify-cache", env={"FLAVOR": "bad"})
    assert outcomes["test_env.py::test_env"] == "failed"
    assert done.returncode == 1
    assert "false skip: test_env.py::test_env failed where the cache would have said passed" in (
        done.stdout
    )
    assert "test_plain.py" not in done.stdout.split("false skip:", 1)[1]


def test_why_says_what_a_test_depends_on_and_whether_it_will_run(project: Path) -> None:
    run(project)
    command = [sys.executable, "-m", "test_framework", "why", "tests/test_leaf.py::test_leaf"]
    shown = subprocess.run(command, cwd=project, capture_output=True, text=True, check=False)
    assert shown.returncode == 0, shown.stderr
    assert "unchanged pkg/leaf.py" in shown.stdout
    assert "next run: reported from the cache" in shown.stdout
    (project / "pkg/leaf.py").write_text("VALUE = 1  # edited\n")
    shown = subprocess.run(command, cwd=project, capture_output=True, text=True, check=False)
    assert "changed   pkg/leaf.py" in shown.stdout
    assert "next run: runs: pkg/leaf.py changed" in shown.stdout


def test_cache_commands_show_and_drop_records(project: Path) -> None:
    run(project)

    def cache(*args: str) -> str:
        command = [sys.executable, "-m", "test_framework", "cache", *args]
        done = subprocess.run(command, cwd=project, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert cache("stats").startswith("4 test files recorded (4 tests)")
    # Both files that reach pkg/leaf.py (one by a computed name) lose their records:
    assert cache("invalidate", "pkg/leaf.py").startswith("2 test file records dropped")
    assert ran(run(project)[1]) == {"test_leaf.py", "test_dynamic.py"}
    assert cache("clear").startswith("4 test file records dropped")
    assert set(run(project)[1].values()) == {"passed"}


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def test_changed_runs_what_the_changes_since_a_revision_can_affect(project: Path) -> None:
    """Through the recorded dependencies (the skip cache itself off): a pre-commit hook's run."""
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("skip_cache = true", "skip_cache = false"))
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "start")
    done, outcomes = run(project, "--changed")  # nothing recorded yet: every test file runs
    assert set(outcomes.values()) == {"passed"}, done.stdout

    done, outcomes = run(project, "--changed")
    assert (done.returncode, outcomes) == (0, {}), done.stdout
    assert "no test is affected: nothing to run" in done.stdout
    assert "4 deselected" in done.stdout.splitlines()[-1]

    (project / "pkg/leaf.py").write_text("VALUE = 3 - 2\n")
    done, outcomes = run(project, "--changed")
    assert ran(outcomes) == {"test_leaf.py", "test_dynamic.py"}, done.stdout
    git(project, "commit", "-q", "-am", "leaf")
    assert run(project, "--changed", "HEAD~1")[1].keys() == outcomes.keys()

    (project / "NOTES.md").write_text("a file no test reads\n")
    done, outcomes = run(project, "--changed")
    assert len(outcomes) == 4, done.stdout  # unplaced: everything runs, and says why
    assert "no test is known to depend on NOTES.md" in done.stdout
    assert run(project, "--changed", "--changed-lenient")[1] == {}

    done, _ = run(project, "--changed", "no-such-revision")
    assert done.returncode == 4
    assert "--changed: git diff" in done.stderr


def test_the_soundness_check_finds_no_false_skip_on_the_fixture() -> None:
    """Each source and data file of the `skip_cache` fixture broken in turn: no test the
    cache reports is one whose outcome changed; a leaf module's change runs only its file."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "check_cache_soundness.py"
    suite = Path(__file__).resolve().parents[1] / "fixtures" / "suites" / "skip_cache"
    done = subprocess.run(
        [sys.executable, str(script), "--suite", str(suite)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "7 mutations, 0 false skips"
    assert "pkg/leaf.py: 1 tests change outcome under pytest; 1 of 6 test files ran" in done.stdout
    assert "pkg/plugins.py: 1 tests change outcome under pytest; 1 of 6 test files ran" in (
        done.stdout
    )
