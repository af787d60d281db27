"""What tests do to a runner: crash it, hang it, leak processes, flake, get interrupted.

Each case runs the engine through its command line on a fixture suite that provokes it, in both
isolation modes where the mechanism differs, and checks statuses, counts, exit codes, the store,
and that no process is left behind.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from ..processes import alive, dies
from .helpers import SUITES, engine_command, run_suite

pytestmark = pytest.mark.e2e


def read_until(
    process: subprocess.Popen[str], done: Callable[[list[str]], bool], seconds: float = 120
) -> list[str]:
    """The engine's output lines until `done` says so, it ends, or `seconds` pass."""
    deadline = time.monotonic() + seconds
    seen: list[str] = []
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        seen.append(line)
        if not line or done(seen):
            break
    return seen


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
    tests = {t["nodeid"]: t for t in document["tests"]}
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
        assert dies(pid)
    # ... and reported: live, and in the summary and the JSON report's notes.
    assert f"left a process running: pid {leaked[0]} `sleep 600`" in done.stdout
    assert "test_leak.py::test_leaks_child" in done.stdout
    assert any("sleep 600" in note for note in _document["notes"])


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
        engine_command(
            "hang",
            tmp_path / "cache",
            "--report",
            str(report),
            "--retries",
            "0",
            f"--isolation={isolation}",
            "-v",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    engine_process = psutil.Process(process.pid)
    # Wait until the hanging test is running (two tests before it have passed).
    seen = read_until(process, lambda lines: sum("PASSED" in s for s in lines) >= 2)
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
    assert not [p for p in descendants if alive(p.pid)]


@pytest.mark.parametrize("isolation", ["fork", "spawn"])
def test_a_failure_storm_opens_the_breaker_after_a_probe(isolation: str, tmp_path: Path) -> None:
    """Opted in, the breaker keeps the rest of the storm's file from running: those tests are
    `not_run` with the reason (never `skipped`, which pytest would not say), listed under their
    own heading with -v; every test that ran keeps its outcome; the note names the file."""
    done, document = run_suite(
        "breaker",
        tmp_path,
        "--retries",
        "0",
        "--breaker-threshold",
        "3",
        f"--isolation={isolation}",
        "-v",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    tests = {t["nodeid"]: t for t in document["tests"]}
    service = {n: t for n, t in tests.items() if n.startswith("test_service.py")}
    other = {n: t["outcome"] for n, t in tests.items() if n.startswith("test_other.py")}
    assert len(service) == 30
    # The assertion failure is no signature: every independent test ran and kept its outcome.
    assert list(other.values()).count("passed") == 5
    assert other["test_other.py::test_wrong_arithmetic"] == "failed"
    errors = [t for t in service.values() if t["outcome"] == "error"]
    unrun = [t for t in service.values() if t["outcome"] == "not_run"]
    assert len(errors) + len(unrun) == 30
    assert len(errors) >= 4  # three to reach the threshold, one probe to confirm
    assert unrun
    assert "skipped" not in {t["outcome"] for t in tests.values()}
    for test in errors:
        assert "ConnectionRefusedError" in test["longrepr"]
    for test in unrun:
        assert test["message"].startswith("not run: circuit breaker: ")
        assert "ConnectionRefusedError: [Errno 111] Connection refused" in test["message"]
    assert f"{len(unrun)} not run" in done.stdout.splitlines()[-1]
    assert f"== {len(unrun)} not run ==" in done.stdout
    (note,) = [n for n in document["notes"] if "circuit breaker opened" in n]
    assert f"it kept {len(unrun)} tests from running, in test_service.py ({len(unrun)})" in note
    assert "test_other.py" not in note


@pytest.mark.parametrize("profile", ["ultra_fast", "aggressive", "balanced", "conservative"])
def test_every_shipped_profile_reports_the_storm_as_pytest_does(
    profile: str, tmp_path: Path
) -> None:
    """The breaker is opt-in: no shipped profile changes an outcome plain pytest reports."""
    done, document = run_suite("breaker", tmp_path, "--retries", "0", "--optimization", profile)
    assert done.returncode == 1
    result = outcomes(document)
    assert list(result.values()).count("error") == 30
    assert list(result.values()).count("passed") == 5
    assert list(result.values()).count("failed") == 1
    assert "circuit breaker" not in done.stdout


def test_maxfail_stops_a_running_shard_and_reports_it_not_run(tmp_path: Path) -> None:
    suite = SUITES / "fail_fast"
    done, document = run_suite(
        "fail_fast",
        tmp_path,
        "--retries",
        "0",
        "--maxfail",
        "1",
        "--workers",
        "2",
        env=tagged(tmp_path),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    result = outcomes(document)
    assert result == {
        "test_fails.py::test_fails_at_once": "failed",
        "test_slow.py::test_sleeps": "not_run",
    }
    tests = {t["nodeid"]: t for t in document["tests"]}
    assert "maxfail=1" in tests["test_slow.py::test_sleeps"]["message"]
    # The 600 s test was stopped, not waited for: had it run, it would have passed (and the run
    # would have outlived run_suite's own timeout).
    assert not _processes_in(suite, tmp_path)


# Serial: when the engine runs this suite, a machine loaded by the other e2e runs can keep the
# inner run from reaching its hanging test before the session timeout.
@pytest.mark.serial
def test_the_session_timeout_ends_the_run_names_what_ran_and_writes_reports(
    tmp_path: Path,
) -> None:
    junit = tmp_path / "junit.xml"
    done, document = run_suite(
        "hang",
        tmp_path,
        "--retries",
        "0",
        "--timeout",
        "0",
        "--session-timeout",
        # Room for the hanging test to have started even on a loaded machine (the engine
        # running its own suite, many runs at once): before it starts it would be `not_run`.
        "10",
        "--junitxml",
        str(junit),
        env=tagged(tmp_path),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    result = outcomes(document)
    assert result["test_hang.py::test_sleeps_forever"] == "timeout"
    assert list(result.values()).count("passed") == 2
    assert list(result.values()).count("not_run") == 2
    tests = {t["nodeid"]: t for t in document["tests"]}
    assert "10s session timeout" in tests["test_hang.py::test_sleeps_forever"]["message"]
    assert (
        "session timeout: the run stopped at its 10s limit; tests running then: "
        "test_hang.py::test_sleeps_forever" in done.stdout
    )
    assert ET.parse(junit).getroot().find(".//testcase[@name='test_sleeps_forever']") is not None
    stored = sqlite3.connect(tmp_path / "cache" / "results.sqlite")
    try:
        assert stored.execute("SELECT exit_code FROM runs").fetchall() == [(1,)]
    finally:
        stored.close()
    assert not _processes_in(SUITES / "hang", tmp_path)


@pytest.mark.parametrize("isolation", ["fork", "spawn"])
def test_a_worker_over_the_memory_limit_is_killed_and_its_test_named(
    isolation: str, tmp_path: Path
) -> None:
    done, document = run_suite(
        "memory_hog",
        tmp_path,
        "--retries",
        "0",
        "--memory-limit",
        "200",
        f"--isolation={isolation}",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    result = outcomes(document)
    assert result["test_memory_hog.py::test_allocates_300mb"] == "crashed"
    assert list(result.values()).count("passed") == 2
    tests = {t["nodeid"]: t for t in document["tests"]}
    assert "above the 200 MB limit" in tests["test_memory_hog.py::test_allocates_300mb"]["message"]


def test_timeout_markers_override_the_command_line_timeout(tmp_path: Path) -> None:
    done, document = run_suite("timeout_marker", tmp_path, "--retries", "0", "--timeout", "1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert outcomes(document) == {
        "test_marked.py::test_marked_hang": "timeout",
        "test_marked.py::test_marked_patient": "passed",  # timeout(30) beats --timeout 1
        "test_marked.py::test_unmarked": "passed",
    }


def test_a_second_ctrl_c_ends_at_once_and_leaves_no_process(tmp_path: Path) -> None:
    process = subprocess.Popen(
        engine_command("hang", tmp_path / "cache", "--retries", "0", "-v"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    engine_process = psutil.Process(process.pid)
    assert process.stdout is not None
    passed = 0
    while passed < 2:
        line = process.stdout.readline()
        assert line, "the engine ended before the hanging test started"
        passed += "PASSED" in line
    time.sleep(0.5)
    descendants = engine_process.children(recursive=True)
    assert descendants
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert process.returncode == 2
    for child in descendants:
        assert dies(child.pid)


def test_two_runs_at_once_on_one_store_both_finish(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    command = engine_command("many_files", cache, "--retries", "0")
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output
        assert "100 passed" in output, output
        assert "locked" not in output, output
        assert "warning" not in output, output
    stored = sqlite3.connect(cache / "results.sqlite")
    try:
        assert stored.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        per_run = stored.execute("SELECT run_id, count(*) FROM results GROUP BY run_id").fetchall()
        finished = stored.execute("SELECT count(*) FROM runs WHERE exit_code = 0").fetchone()
    finally:
        stored.close()
    assert [count for _, count in per_run] == [100, 100]
    assert finished == (2,)


@pytest.mark.parametrize("isolation", ["fork", "spawn"])
def test_free_slots_steal_the_tail_of_a_running_shard(isolation: str, tmp_path: Path) -> None:
    log = tmp_path / "ran.log"
    done, document = run_suite(
        "steal",
        tmp_path,
        "--workers",
        "6",
        f"--isolation={isolation}",
        # A spawn costs about a second here: a tail is worth one only when it lasts seconds.
        env={"STEAL_LOG": str(log), "STEAL_SECONDS": "0.15" if isolation == "fork" else "0.8"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = outcomes(document)
    assert result == {f"test_one_long_file.py::test_waits[{n}]": "passed" for n in range(12)}
    ran = [line.split() for line in log.read_text(encoding="utf-8").splitlines()]
    # Every test ran exactly once, and the one file was spread over more processes than the
    # plan cut it into (two shards of six for a file of unknown cost).
    assert sorted(int(n) for _pid, n in ran) == list(range(12))
    assert len({pid for pid, _n in ran}) > 2


RUN_TAG = "E2E_RUN_TAG"  # marks the processes of one test's engine run


def tagged(tmp_path: Path) -> dict[str, str]:
    """An environment marker unique to this test: its run's workers and zygote inherit it."""
    return {RUN_TAG: str(tmp_path)}


def _processes_in(folder: Path, tmp_path: Path) -> list[psutil.Process]:
    """Live processes of this test's run working in `folder`: workers or zygotes the run should
    have ended. Other tests may run the same suite at the same time (the engine running its own
    suite in parallel), so a process counts only with this test's marker."""
    found = []
    for process in psutil.process_iter(["cwd", "status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE or process.info["cwd"] != str(folder):
            continue
        with contextlib.suppress(psutil.Error):
            if process.environ().get(RUN_TAG) == str(tmp_path):
                found.append(process)
    return found


@pytest.mark.parametrize("isolation", ["fork", "spawn"])
def test_sigint_while_a_failure_waits_for_its_retry_keeps_the_failure(
    isolation: str, tmp_path: Path
) -> None:
    """The failure is reported failed (console, JSON, JUnit), not `not_run`: its retry never
    ran, but it did fail."""
    report, junit = tmp_path / "report.json", tmp_path / "junit.xml"
    process = subprocess.Popen(
        engine_command(
            "retry_wait",
            tmp_path / "cache",
            "--optimization",
            "balanced",
            "--report",
            str(report),
            "--junitxml",
            str(junit),
            f"--isolation={isolation}",
            "-v",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = read_until(
        process, lambda lines: "RETRY test_retry_wait.py::test_fails_at_once" in lines[-1]
    )
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=60)
    output = "".join(seen) + rest
    assert process.returncode == 2, output
    assert "FAILED test_retry_wait.py::test_fails_at_once" in output
    document = json.loads(report.read_text(encoding="utf-8"))
    result = outcomes(document)
    assert result == {
        "test_retry_wait.py::test_fails_at_once": "failed",
        "test_retry_wait.py::test_keeps_the_run_busy": "not_run",
    }
    tests = {t["nodeid"]: t for t in document["tests"]}
    assert (
        "its retry did not run: interrupted by SIGINT"
        in tests["test_retry_wait.py::test_fails_at_once"]["message"]
    )
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    assert suite.get("failures") == "1"
