"""What tests do to a runner: crash it, hang it, leak processes, flake, get interrupted.

Each case runs the engine through its command line on a fixture suite that provokes it, in both
isolation modes where the mechanism differs, and checks statuses, counts, exit codes, the store,
and that no process is left behind.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest

from .helpers import SUITES, run_suite

pytestmark = pytest.mark.e2e


def outcomes(document: dict[str, object]) -> dict[str, str]:
    tests = document["tests"]
    assert isinstance(tests, list)
    return {t["nodeid"]: t["outcome"] for t in tests}


@pytest.mark.parametrize("isolation", ["fork", "spawn"])
def test_crashing_tests_are_reported_and_the_rest_still_run(isolation: str, tmp_path: Path) -> None:
    done, document = run_suite("crash", tmp_path, "--retries", "0", f"--isolation={isolation}")
    assert done.returncode == 1, done.stdout + done.stderr
    result = outcomes(document)
    assert result["test_crash.py::test_os_exit"] == "crashed"
    assert result["test_crash.py::test_segfault"] == "crashed"
    assert list(result.values()).count("passed") == 5
    tests = {t["nodeid"]: t for t in document["tests"]}  # type: ignore[union-attr]
    assert "exited with status 3" in tests["test_crash.py::test_os_exit"]["message"]
    assert "SIGSEGV" in tests["test_crash.py::test_segfault"]["message"]
    assert "Fatal Python error" in tests["test_crash.py::test_segfault"]["longrepr"]
    assert "2 crashed" in done.stdout


@pytest.mark.parametrize("isolation", ["fork", "spawn"])
def test_a_hung_test_times_out_and_the_rest_of_its_shard_runs(
    isolation: str, tmp_path: Path
) -> None:
    done, document = run_suite(
        "hang", tmp_path, "--retries", "0", "--timeout", "1", f"--isolation={isolation}"
    )
    assert done.returncode == 1
    result = outcomes(document)
    assert result["test_hang.py::test_sleeps_forever"] == "timeout"
    assert list(result.values()).count("passed") == 4
    assert "1 timeout" in done.stdout


def test_a_leaked_process_is_killed_with_its_worker(tmp_path: Path) -> None:
    pid_file = tmp_path / "leaked.pid"
    done, _document = run_suite(
        "leak", tmp_path, "--retries", "0", env={"LEAK_PID_FILE": str(pid_file)}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    leaked = [int(p) for p in pid_file.read_text(encoding="utf-8").split()]
    assert leaked
    for pid in leaked:
        assert not _alive(pid)


def test_a_flaky_test_passes_on_retry_and_is_reported_flaky(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    done, document = run_suite(
        "flaky",
        tmp_path,
        "--retries",
        "2",
        "--junitxml",
        str(junit),
        env={"FLAKY_STATE_DIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = outcomes(document)
    assert result["test_flaky.py::test_flaky_first_attempt"] == "flaky"
    assert "1 flaky" in done.stdout
    case = ET.parse(junit).getroot().find(".//testcase[@name='test_flaky_first_attempt']")
    assert case is not None
    assert case.find("flakyFailure") is not None
    stored = sqlite3.connect(tmp_path / "cache" / "results.sqlite")
    try:
        attempts = stored.execute(
            "SELECT attempt, outcome FROM results WHERE nodeid LIKE '%test_flaky_first_attempt'"
            " ORDER BY attempt"
        ).fetchall()
    finally:
        stored.close()
    assert attempts == [(1, "failed"), (2, "flaky")]


def test_flaky_result_fail_makes_a_flaky_run_exit_1(tmp_path: Path) -> None:
    done, document = run_suite(
        "flaky",
        tmp_path,
        "--retries",
        "1",
        "--flaky-result",
        "fail",
        env={"FLAKY_STATE_DIR": str(tmp_path)},
    )
    assert outcomes(document)["test_flaky.py::test_flaky_first_attempt"] == "flaky"
    assert done.returncode == 1


def test_without_retries_the_flaky_test_fails(tmp_path: Path) -> None:
    done, document = run_suite(
        "flaky", tmp_path, "--retries", "0", env={"FLAKY_STATE_DIR": str(tmp_path)}
    )
    assert done.returncode == 1
    assert outcomes(document)["test_flaky.py::test_flaky_first_attempt"] == "failed"


@pytest.mark.parametrize("isolation", ["fork", "spawn"])
def test_sigint_mid_run_keeps_every_result_and_leaves_nothing_behind(
    isolation: str, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "test_framework",
            "--project-root",
            str(SUITES / "hang"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--report",
            str(report),
            "--retries",
            "0",
            f"--isolation={isolation}",
            "-v",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    engine_process = psutil.Process(process.pid)
    # Wait until the hanging test is running (two tests before it have passed).
    deadline = time.monotonic() + 120
    seen: list[str] = []
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        seen.append(line)
        if line.count("PASSED") and sum("PASSED" in s for s in seen) >= 2:
            break
    time.sleep(0.5)
    descendants = engine_process.children(recursive=True)
    assert descendants
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=60)
    output = "".join(seen) + rest
    assert process.returncode == 2, output
    assert "(interrupted)" in output
    document = json.loads(report.read_text(encoding="utf-8"))
    assert document["interrupted"] is True
    result = outcomes(document)
    assert len(result) == 5
    assert list(result.values()).count("passed") == 2
    assert "not_run" in result.values()
    stored = sqlite3.connect(tmp_path / "cache" / "results.sqlite")
    try:
        assert stored.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = stored.execute("SELECT outcome, count(*) FROM results GROUP BY outcome").fetchall()
        run = stored.execute("SELECT exit_code, interrupted FROM runs").fetchall()
    finally:
        stored.close()
    assert dict(rows)["passed"] == 2
    assert run == [(2, 1)]
    time.sleep(0.5)
    assert not [p for p in descendants if _alive(p.pid)]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
