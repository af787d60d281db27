"""`python -m test_framework flaky` end to end: real runs of the `flaky` fixture suite write the
store, then the command reads it back as a table and as JSON; plus its missing-store and bad-input
paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import SUITES, run_suite

pytestmark = pytest.mark.e2e

FLAKY_SUITE = SUITES / "flaky"
FLAKY_TEST = "test_flaky.py::test_flaky_first_attempt"
STABLE_TESTS = ("test_flaky.py::test_stable_before", "test_flaky.py::test_stable_after")


def flaky_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "test_framework", "flaky", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "OPTIMIZED_TEST_CACHE_DIR"},
    )


@pytest.fixture(scope="module")
def two_flaky_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the suite twice into one store; each run gets a fresh counter, so each one flakes.
    Returns the cache dir."""
    tmp_path = tmp_path_factory.mktemp("flaky_runs")
    for run in ("first", "second"):
        state = tmp_path / f"state-{run}"
        state.mkdir()
        done, document = run_suite(
            "flaky", tmp_path, "--retries", "2", env={"FLAKY_STATE_DIR": str(state)}
        )
        assert done.returncode == 0, done.stdout + done.stderr
        outcomes = {t["nodeid"]: t["outcome"] for t in document["tests"]}
        assert outcomes[FLAKY_TEST] == "flaky", outcomes
    return tmp_path / "cache"


def test_table_shows_the_flaky_test_at_100_percent(two_flaky_runs: Path) -> None:
    done = flaky_command("--project-root", str(FLAKY_SUITE), "--cache-dir", str(two_flaky_runs))

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("1 flaky test in the last 2 runs examined")
    assert lines[1:] == [f"  100.0%  2/2 runs flaky  (2 failed attempts)  {FLAKY_TEST}"]
    for stable in STABLE_TESTS:
        assert stable not in done.stdout
    assert done.stderr == ""


def test_json_document_lists_only_the_flaky_test(two_flaky_runs: Path) -> None:
    done = flaky_command(
        "--project-root",
        str(FLAKY_SUITE),
        "--cache-dir",
        str(two_flaky_runs),
        "--format",
        "json",
    )

    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(done.stdout)
    assert document["runs_examined"] == 2
    [test] = document["tests"]
    assert {k: test[k] for k in ("nodeid", "runs", "flaky_runs", "failed_runs")} == {
        "nodeid": FLAKY_TEST,
        "runs": 2,
        "flaky_runs": 2,
        "failed_runs": 0,
    }
    assert test["failed_attempts"] == 2
    assert test["flake_rate"] == 1.0


def test_last_1_examines_one_run(two_flaky_runs: Path) -> None:
    done = flaky_command(
        "--project-root", str(FLAKY_SUITE), "--cache-dir", str(two_flaky_runs), "--last", "1"
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"  100.0%  1/1 runs flaky  (1 failed attempt)  {FLAKY_TEST}" in done.stdout


def test_min_rate_above_every_test_shows_none(tmp_path: Path) -> None:
    # Two runs where only the first flaked: 50%, below a 0.75 threshold.
    cache = tmp_path / "cache"
    state = tmp_path / "state"  # shared: the second run's first attempt already passes
    state.mkdir()
    expected = ("flaky", "passed")
    for outcome in expected:
        done, document = run_suite(
            "flaky", tmp_path, "--retries", "2", env={"FLAKY_STATE_DIR": str(state)}
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert {t["nodeid"]: t["outcome"] for t in document["tests"]}[FLAKY_TEST] == outcome

    shown = flaky_command("--project-root", str(FLAKY_SUITE), "--cache-dir", str(cache))
    hidden = flaky_command(
        "--project-root", str(FLAKY_SUITE), "--cache-dir", str(cache), "--min-rate", "0.75"
    )

    assert f"   50.0%  1/2 runs flaky  (1 failed attempt)  {FLAKY_TEST}" in shown.stdout
    assert hidden.returncode == 0, hidden.stdout + hidden.stderr
    assert FLAKY_TEST not in hidden.stdout
    assert hidden.stdout.startswith("no test flaky in 75.0% or more of the last 2 runs")


def test_missing_store_is_nothing_run_yet_and_creates_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "never-used"

    done = flaky_command("--project-root", str(FLAKY_SUITE), "--cache-dir", str(cache))

    assert done.returncode == 0, done.stderr
    store = cache / "results.sqlite"
    assert done.stdout == f"no results store at {store}: nothing has run yet\n"
    assert not cache.exists()


def test_corrupt_store_is_exit_3_and_left_where_it_is(tmp_path: Path) -> None:
    store = tmp_path / "cache" / "results.sqlite"
    store.parent.mkdir()
    store.write_bytes(b"this is not a database" * 100)

    done = flaky_command("--project-root", str(FLAKY_SUITE), "--cache-dir", str(store.parent))

    assert done.returncode == 3
    [line] = done.stderr.splitlines()
    assert line.startswith("python -m test_framework: error: cannot read the results store")
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in store.parent.iterdir()) == ["results.sqlite"]
    assert store.read_bytes() == b"this is not a database" * 100


@pytest.mark.parametrize(
    ("args", "named"),
    [(("--last", "0"), "--last"), (("--min-rate", "1.5"), "--min-rate"), (("--bogus",), "--bogus")],
)
def test_bad_options_are_exit_4_with_one_line(
    tmp_path: Path, args: tuple[str, ...], named: str
) -> None:
    done = flaky_command("--project-root", str(FLAKY_SUITE), "--cache-dir", str(tmp_path), *args)

    assert done.returncode == 4
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("python -m test_framework: error:")
    assert named in line
    assert "Traceback" not in done.stderr
