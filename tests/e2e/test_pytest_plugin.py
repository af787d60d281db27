"""`pytest --cache-tests`, the skip cache for plain pytest (test_framework/pytest_plugin): inert
without its option; with it, an unchanged test file's tests are reported skipped with the reason
`cached: ...`, an edit to what a file imports (also by a computed name) or reads runs it, a
failure is never cached, the trip-wire distrusts a cache that lies, and all of it works under
`pytest -n 2` with several sessions writing one store at once."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

PROJECT = {
    "pyproject.toml": (
        '[tool.pytest.ini_options]\ntestpaths = ["tests"]\nfilterwarnings = ["error"]\n'
    ),
    "pkg/__init__.py": "",
    "pkg/leaf.py": "VALUE = 1\n",
    "pkg/other.py": "def f():\n    return 2\n",
    "pkg/plugins.py": "NAME = 'p'\n",
    "pkg/data.txt": "42\n",
    "tests/test_leaf.py": (
        "from pkg.leaf import VALUE\n\n\ndef test_leaf():\n    assert VALUE == 1\n\n\n"
        "def test_leaf_again():\n    assert VALUE + 1 == 2\n"
    ),
    "tests/test_other.py": "from pkg.other import f\n\n\ndef test_other():\n    assert f() == 2\n",
    "tests/test_dynamic.py": (
        "import importlib\n\n\ndef test_dynamic():\n"
        "    assert importlib.import_module('pkg.' + 'plugins').NAME == 'p'\n"
    ),
    "tests/test_data.py": (
        "from pathlib import Path\n\n\ndef test_data():\n"
        "    assert Path('pkg/data.txt').read_text() == '42\\n'\n"
    ),
    # FLIP is no input the fingerprints see: with it, every test gives another outcome.
    "tests/conftest.py": (
        "import os\n\nimport pytest\n\n\n@pytest.fixture(autouse=True)\ndef flip():\n"
        "    if os.environ.get('FLIP') == '1':\n        pytest.skip('flipped')\n"
    ),
}

# A recorder of its own, loaded with -p: each test's reports (node id, phase, outcome, a skip's
# reason), as pytest's controller sees them (under xdist too).
RECORDER = """
import json, os


def pytest_runtest_logreport(report):
    reason = report.longrepr[2] if report.skipped and isinstance(report.longrepr, tuple) else ""
    with open(os.environ["RECORD_TO"], "a") as out:
        out.write(json.dumps([report.nodeid, report.when, report.outcome, reason]) + "\\n")
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for name, text in {**PROJECT, "../recorder/record_reports.py": RECORDER}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


# pytest-benchmark warns under xdist, which `filterwarnings = error` makes an error.
QUIET_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:benchmark")


def pytest_run(
    root: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Plain pytest with the plugin: its exit, and each test's outcome (`cached` for a test
    skipped as cached)."""
    record = root.parent / "record.jsonl"
    record.unlink(missing_ok=True)
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TEST_FRAMEWORK_", "PYTEST_XDIST", "PYTEST_ADDOPTS", "COV_CORE"))
    }
    environ.update(RECORD_TO=str(record), PYTHONPATH=str(root.parent / "recorder"))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "record_reports", *QUIET_PLUGINS, *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**environ, **(env or {})},
    )
    outcomes: dict[str, str] = {}
    lines = record.read_text().splitlines() if record.exists() else []
    for nodeid, when, outcome, reason in map(json.loads, lines):
        if when == "setup" and outcome == "skipped" and reason.startswith("Skipped: cached: "):
            outcomes[nodeid] = "cached"
        elif outcome != "passed" or when == "call":
            outcomes.setdefault(nodeid, outcome)
    return done, outcomes


def ran(outcomes: dict[str, str]) -> set[str]:
    return {n.split("::")[0].removeprefix("tests/") for n, o in outcomes.items() if o != "cached"}


def cached_run(root: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, str]:
    done, outcomes = pytest_run(root, "--cache-tests", "--cache-tests-sample", "0", *args, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return outcomes


def test_without_its_option_the_plugin_does_nothing(project: Path) -> None:
    done, outcomes = pytest_run(project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(outcomes.values()) == {"passed"}
    assert len(outcomes) == 5
    assert not (project / ".test_framework").exists()
    assert "--cache-tests" not in done.stdout


def test_unchanged_files_are_reported_cached_and_edits_run_what_they_reach(
    project: Path,
) -> None:
    first = cached_run(project)
    assert set(first.values()) == {"passed"}
    assert len(first) == 5

    done, second = pytest_run(project, "--cache-tests", "--cache-tests-sample", "0", "-rs")
    assert done.returncode == 0
    assert set(second) == set(first)
    assert set(second.values()) == {"cached"}
    assert re.search(r"SKIPPED \[2\] tests/test_leaf.py: cached: passed at ", done.stdout)
    assert "5 cached (unchanged since they last passed), 0 ran" in done.stdout
    assert "5 skipped" in done.stdout

    (project / "pkg/leaf.py").write_text("VALUE = 1  # edited\n")
    assert ran(cached_run(project)) == {"test_leaf.py"}
    (project / "pkg/plugins.py").write_text("NAME = 'p'  # edited\n")
    assert ran(cached_run(project)) == {"test_dynamic.py"}  # imported by a computed name
    (project / "pkg/data.txt").write_text("42\n\n")
    done, outcomes = pytest_run(project, "--cache-tests", "--cache-tests-sample", "0")
    assert ran(outcomes) == {"test_data.py"}
    assert outcomes["tests/test_data.py::test_data"] == ("failed")
    assert done.returncode == 1
    # A failure is never cached: the file runs until it passes.
    assert ran(pytest_run(project, "--cache-tests", "--cache-tests-sample", "0")[1]) == {
        "test_data.py"
    }
    (project / "pkg/data.txt").write_text("42\n")
    assert ran(cached_run(project)) == {"test_data.py"}
    assert ran(cached_run(project)) == set()
    # Other options that change what tests do are another environment: everything runs.
    assert ran(cached_run(project, "-p", "no:warnings")) == {
        "test_leaf.py",
        "test_other.py",
        "test_dynamic.py",
        "test_data.py",
    }


def test_a_failed_test_runs_alone_while_its_passing_neighbours_are_cached(project: Path) -> None:
    (project / "tests/test_mixed.py").write_text(
        "import os\n\n\ndef test_ok():\n    pass\n\n\n"
        "def test_fixed_outside():\n    assert os.environ.get('FIXED')\n"
    )
    options = ("--cache-tests", "--cache-tests-sample", "0")
    assert pytest_run(project, *options)[0].returncode == 1
    done, outcomes = pytest_run(project, *options)
    assert done.returncode == 1
    assert outcomes["tests/test_mixed.py::test_fixed_outside"] == "failed"
    assert outcomes["tests/test_mixed.py::test_ok"] == "cached"
    assert ran(outcomes) == {"test_mixed.py"}
    done, outcomes = pytest_run(project, *options, env={"FIXED": "1"})
    assert done.returncode == 0, done.stdout
    assert outcomes["tests/test_mixed.py::test_fixed_outside"] == "passed"


def test_results_and_durations_reach_the_engines_store(project: Path) -> None:
    cached_run(project)
    cached_run(project)
    with sqlite3.connect(project / ".test_framework" / "results.sqlite") as db:
        runs = db.execute("SELECT run_id, profile FROM runs ORDER BY started_at").fetchall()
        assert [profile for _, profile in runs] == ["pytest", "pytest"]
        first, last = (
            dict(db.execute("SELECT nodeid, outcome FROM results WHERE run_id = ?", (run,)))
            for run, _ in runs
        )
        counts = json.loads(
            db.execute("SELECT counts FROM runs WHERE run_id = ?", (runs[1][0],)).fetchone()[0]
        )
        stats = dict(db.execute("SELECT nodeid, runs FROM test_stats"))
        records = [row[0] for row in db.execute("SELECT test_file FROM file_records")]
    assert set(first.values()) == {"passed"}
    assert len(first) == 5
    # A cached report is no result of its run: counted in the run's row, no result row, no run
    # of the test in its statistics.
    assert last == {}
    assert counts == {"cached": 5}
    assert stats == dict.fromkeys(first, 1)
    assert sorted(records) == sorted({n.split("::")[0] for n in first})


def test_the_trip_wire_distrusts_a_cache_that_lies(project: Path) -> None:
    cached_run(project)
    done, outcomes = pytest_run(project, "--cache-tests", "--cache-tests-sample", "0.5")
    assert done.returncode == 0
    assert "cached" in outcomes.values()
    # Every record is now false. Tests before the first sampled one were reported from the
    # cache; the first sampled one skips where its record said passed; nothing after it is
    # reported from the cache; the session fails when something was reported from it.
    done, outcomes = pytest_run(
        project, "--cache-tests", "--cache-tests-sample", "0.5", env={"FLIP": "1"}
    )
    assert "the cache is distrusted: " in done.stdout
    assert " skipped where its record said " in (done.stdout)
    order = list(outcomes.values())
    assert len(order) == 5
    first_run = order.index("skipped")
    assert set(order[:first_run]) <= {"cached"}
    assert set(order[first_run:]) == {"skipped"}
    assert done.returncode == (1 if first_run else 0), done.stdout
    if first_run:
        assert f"{first_run} tests were reported from it before that" in done.stdout
    # The records of the cached files are dropped: everything runs.
    assert set(cached_run(project).values()) == {"passed"}


def test_under_xdist_workers_skip_and_report_what_they_imported(project: Path) -> None:
    first = cached_run(project, "-n", "2")
    assert set(first.values()) == {"passed"}
    assert len(first) == 5
    assert set(cached_run(project, "-n", "2").values()) == {"cached"}
    (project / "pkg/plugins.py").write_text("NAME = 'p'  # edited\n")
    # Only a worker saw the computed import: the controller recorded it from the worker.
    assert ran(cached_run(project, "-n", "2")) == {"test_dynamic.py"}
    assert set(cached_run(project).values()) == {"cached"}  # one store, with or without -n


def test_sessions_writing_one_store_at_once_do_not_fail(project: Path) -> None:
    cached_run(project)
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TEST_FRAMEWORK_", "PYTEST_XDIST", "PYTEST_ADDOPTS"))
    }
    command = [sys.executable, "-m", "pytest", *QUIET_PLUGINS, "--cache-tests"]
    sessions = [
        subprocess.Popen(
            [*command, *(["-n", "2"] if i % 2 else [])],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**environ, "FLIP": "0"},
        )
        for i in range(4)
    ]
    for session in sessions:
        output, _ = session.communicate(timeout=300)
        assert session.returncode == 0, output
        assert "locked" not in output
        assert "not used" not in output


def test_bad_settings_are_usage_errors(project: Path) -> None:
    done, _ = pytest_run(project, "--cache-tests", "--cache-tests-sample", "2")
    assert done.returncode == 4
    assert "--cache-tests-sample must be between 0 and 1, got 2.0" in done.stderr
    done, _ = pytest_run(project, "--cache-tests", env={"OPTIMIZED_TEST_CACHE_TTL_HOURS": "x"})
    assert done.returncode == 4
    assert "OPTIMIZED_TEST_CACHE_TTL_HOURS='x': expected hours > 0" in done.stderr
    (project / "blocker").write_text("")
    done, _ = pytest_run(project, "--cache-tests", "--cache-dir", "blocker")
    assert done.returncode == 4
    assert "exists and is not a folder" in done.stderr


def test_cache_dir_names_the_store(project: Path, tmp_path: Path) -> None:
    # `=`: pytest finds its rootdir before it knows a plugin's options, and would take a
    # separate existing folder for a path to test (as it does pytest-cov's `--cov src`).
    cached_run(project, f"--cache-dir={tmp_path / 'elsewhere'}")
    assert (tmp_path / "elsewhere" / "results.sqlite").is_file()
    assert not (project / ".test_framework").exists()
    outcomes = cached_run(project, f"--cache-dir={tmp_path / 'elsewhere'}")
    assert set(outcomes.values()) == {"cached"}


def test_the_engines_workers_refuse_it(project: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TEST_FRAMEWORK_")}
    done = subprocess.run(
        [sys.executable, "-m", "test_framework", "--cache-tests"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=environ,
    )
    assert done.returncode != 0
    assert "--cache-tests is for plain pytest" in done.stdout + done.stderr


def test_performance_regression_in_plain_pytest(tmp_path: Path) -> None:
    """`pytest --cache-tests --performance-regression`: three runs of a test waiting 0.15 s
    (its file edited each time, so the skip cache runs it), then one waiting 0.5 s is named
    and, with --fail-on-regression, fails the session."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")

    def run(run: int, seconds: float, *extra: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "test_wait.py").write_text(
            f"# run {run}\nimport time\n\n\ndef test_wait():\n    time.sleep({seconds})\n"
        )
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:randomly", "--cache-tests", *extra],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    for number in range(3):
        assert run(number, 0.15).returncode == 0
    slow = run(3, 0.5, "--performance-regression", "--fail-on-regression")
    assert slow.returncode == 1, slow.stdout + slow.stderr
    assert re.search(
        r"test_framework performance regression: test_wait.py::test_wait took 0\.5\ds, "
        r"\d\.\dx its median 0\.1\ds over 3 runs",
        slow.stdout,
    ), slow.stdout
    alone = subprocess.run(
        [sys.executable, "-m", "pytest", "--performance-regression"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert alone.returncode == 4
    assert "--performance-regression needs --cache-tests" in alone.stderr
