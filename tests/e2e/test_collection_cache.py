"""The collection cache is never stale: ids read from a data file follow the file; ids that embed
the time are never reported as tests that did not run; the header's count is the summary's.
Compared with plain pytest, cold and warm, in fork and spawn."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

from test_framework.oracle import run_pytest

from .helpers import SUITES, engine_command, run_suite

pytestmark = pytest.mark.e2e


def copy_suite(tmp_path: Path) -> Path:
    root = tmp_path / "dynamic_ids"
    shutil.copytree(SUITES / "dynamic_ids", root)
    return root


def run_engine(root: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The engine on a suite copied out of the fixtures (an absolute path wins over SUITES)."""
    command = engine_command(str(root), cache, "--retries", "0", *args)
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)


def closing_counts(output: str) -> dict[str, int]:
    last = [line for line in output.splitlines() if " in " in line and "=" in line][-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", last)}


def header_count(output: str) -> int:
    match = re.search(r"collected (\d+) tests", output)
    assert match is not None, output
    return int(match.group(1))


def without_stamps(nodeids: Iterable[str]) -> list[str]:
    return sorted(re.sub(r"at-\d+-", "at-T-", n) for n in nodeids)


@pytest.mark.parametrize("isolation", ["fork", "spawn"])
def test_ids_follow_their_data_file_and_the_clock_cold_and_warm(
    isolation: str, tmp_path: Path
) -> None:
    root = copy_suite(tmp_path)
    cache = tmp_path / "cache"
    for run in range(3):
        if run == 2:  # a new case in the data file: a new test, one gone
            (root / "cases.txt").write_text("alpha\nbeta\ndelta\nepsilon\n", encoding="utf-8")
        done = run_engine(root, cache, f"--isolation={isolation}", "--optimization", "ultra_fast")
        plain = run_pytest(sys.executable, root, [])
        assert done.returncode == plain.exit_code == 0, done.stdout + done.stderr
        counts = closing_counts(done.stdout)
        assert "not" not in counts, done.stdout  # no phantom `not run`
        assert counts["passed"] == len(plain.outcomes)
        assert header_count(done.stdout) == len(plain.outcomes)
    assert "test_from_data.py::test_case_is_a_word[epsilon]" in plain.outcomes
    assert "test_from_data.py::test_case_is_a_word[gamma]" not in plain.outcomes


def test_the_json_report_names_exactly_pytests_tests_on_a_warm_run(tmp_path: Path) -> None:
    root = copy_suite(tmp_path)
    cache = tmp_path / "cache"
    run_engine(root, cache)  # cold: the collection is cached
    (root / "cases.txt").write_text("alpha\nzeta\n", encoding="utf-8")
    report = tmp_path / "report.json"
    done = run_engine(root, cache, "--report", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    plain = run_pytest(sys.executable, root, [])
    document = json.loads(report.read_text(encoding="utf-8"))
    engine_ids = [t["nodeid"] for t in document["tests"]]
    assert without_stamps(engine_ids) == without_stamps(plain.outcomes)
    assert {t["outcome"] for t in document["tests"]} == {"passed"}


def test_a_suite_run_from_the_fixture_folder_matches_too(tmp_path: Path) -> None:
    """The shipped fixture, unmodified, twice on one store."""
    for _ in range(2):
        done, document = run_suite("dynamic_ids", tmp_path, "--retries", "0")
        assert done.returncode == 0, done.stdout + done.stderr
        assert len(document["tests"]) == 6


def stamped_outcomes(document: dict[str, object]) -> dict[str, str]:
    tests: list[dict[str, str]] = document["tests"]  # type: ignore[assignment]
    return {re.sub(r"-\d+-", "-T-", t["nodeid"]): t["outcome"] for t in tests}


@pytest.mark.parametrize("isolation", ["fork", "spawn"])
def test_ids_that_change_in_every_collection_get_pytests_answer_in_every_run(
    isolation: str, tmp_path: Path
) -> None:
    """Every worker collects other ids for `test_moving.py`: named tests (the serial ones), a
    failure's confirmation in pytest's context and the slices still answer each test once, with
    pytest's outcome, cold and warm; the store records the file and `--list` shows it."""
    root = tmp_path / "moving_ids"
    shutil.copytree(SUITES / "moving_ids", root)
    cache = tmp_path / "cache"
    plain = run_pytest(sys.executable, root, [])
    expected = {re.sub(r"-\d+-", "-T-", n): o for n, o in plain.outcomes.items()}
    assert sorted(expected.values()).count("failed") == 1
    assert len(expected) == 32
    for _ in range(3):  # cold, then warm from the cached collection
        report = tmp_path / "report.json"
        done = run_engine(
            root,
            cache,
            f"--isolation={isolation}",
            "--optimization",
            "ultra_fast",
            "--report",
            str(report),
        )
        assert done.returncode == plain.exit_code == 1, done.stdout + done.stderr
        assert "not confirmed" not in done.stdout, done.stdout
        assert stamped_outcomes(json.loads(report.read_text(encoding="utf-8"))) == expected
    listed = run_engine(root, cache, f"--isolation={isolation}", "--list")
    assert "ids change between collections: test_moving.py" in listed.stdout, listed.stdout


def test_a_test_retried_by_id_is_found_though_its_id_changed(tmp_path: Path) -> None:
    """`test_fails_once[...-1]` fails once and is retried by name in a worker whose collection
    stamped another id: the retry finds it by position and it is reported once, flaky."""
    root = tmp_path / "moving_ids"
    shutil.copytree(SUITES / "moving_ids", root)
    cache = tmp_path / "cache"
    run_engine(root, cache, "--optimization", "balanced")  # cold: the collection is cached
    report = tmp_path / "report.json"
    command = engine_command(
        str(root), cache, "--optimization", "balanced", "--report", str(report)
    )
    env = {**os.environ, "MOVING_IDS_FLAG": str(tmp_path / "failed-once")}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    outcomes = stamped_outcomes(json.loads(report.read_text(encoding="utf-8")))
    assert len(outcomes) == 32, done.stdout
    assert outcomes["test_moving.py::test_fails_once[once-T-1]"] == "flaky", done.stdout
    assert list(outcomes.values()).count("failed") == 1, done.stdout
    assert (tmp_path / "failed-once").exists()
