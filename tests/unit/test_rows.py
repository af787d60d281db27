"""What each event adds to the store, as statements: pure, so a synchronous recorder can write
the same rows with sqlite3. Executed here against a real schema with the standard library."""

from __future__ import annotations

import sqlite3

from test_framework.events import (
    RunContext,
    RunStarted,
    ShardCrashed,
    ShardFinished,
    TestFinished,
    TestStarted,
)
from test_framework.models import Outcome, Plan, TestResult
from test_framework.store.rows import (
    INSERT_DEP,
    INSERT_RESULT,
    INSERT_RUN,
    UPSERT_STATS,
    UPSERT_STATS_COUNTS,
    RunRows,
)
from test_framework.store.schema import MIGRATIONS

STARTED = RunStarted(RunContext("run-1", "/p", "fast", ("unit",)), Plan((), 0), 2, at=10.0)


def test_the_run_row_comes_from_run_started_and_is_committed_at_once() -> None:
    rows = RunRows()
    written = rows.rows(STARTED)
    assert written.commit
    assert written.writes == ((INSERT_RUN, ("run-1", "/p", 10.0, "[]", "fast", "unit")),)


def test_a_final_result_is_an_attempt_row_and_a_stats_row_of_the_run() -> None:
    rows = RunRows(clock=lambda: 5.0)
    rows.rows(STARTED)
    result = TestResult("a.py::t", Outcome.FAILED, 0.5, shard_id=3, cpu_time=0.1, max_rss=7)
    written = rows.rows(TestFinished(result))
    (attempt_sql, attempt), (stats_sql, stats) = written.writes
    assert (attempt_sql, stats_sql) == (INSERT_RESULT, UPSERT_STATS)
    assert attempt[:6] == ("run-1", "a.py::t", 1, "failed", 0.5, 3)
    assert stats == ("/p", "a.py::t", 0.5, 0.1, 7, 1, 0, "failed", "run-1", 5.0)
    assert not written.commit


def test_crashed_tests_leave_durations_alone_and_unrun_tests_leave_no_stats() -> None:
    rows = RunRows()
    rows.rows(STARTED)
    crashed = rows.rows(TestFinished(TestResult("a.py::t", Outcome.CRASHED, 9.0)))
    assert [sql for sql, _ in crashed.writes] == [INSERT_RESULT, UPSERT_STATS_COUNTS]
    unrun = rows.rows(TestFinished(TestResult("a.py::u", Outcome.NOT_RUN, 0.0)))
    assert [sql for sql, _ in unrun.writes] == [INSERT_RESULT]


def test_a_shard_end_commits_and_records_what_its_files_imported() -> None:
    rows = RunRows()
    rows.rows(STARTED)
    finished = rows.rows(ShardFinished(1, 0, 0.5, ("t_a.py",), ("conftest.py", "pkg/m.py")))
    assert finished.commit
    assert finished.writes == (
        (INSERT_DEP, ("/p", "t_a.py", "conftest.py")),
        (INSERT_DEP, ("/p", "t_a.py", "pkg/m.py")),
    )
    assert rows.rows(ShardCrashed(2, -9, None, "gone")).commit
    assert rows.rows(TestStarted(1, "t_a.py::x")).writes == ()


def test_the_rows_execute_with_plain_sqlite3() -> None:
    db = sqlite3.connect(":memory:")
    for statements in MIGRATIONS:
        for statement in statements:
            db.execute(statement)
    rows = RunRows()
    for event in (STARTED, TestFinished(TestResult("a.py::t", Outcome.PASSED, 0.25))):
        for sql, params in rows.rows(event).writes:
            db.execute(sql, params)
    assert db.execute("SELECT run_id, nodeid, outcome FROM results").fetchall() == [
        ("run-1", "a.py::t", "passed")
    ]
    assert db.execute("SELECT ewma_duration, runs FROM test_stats").fetchall() == [(0.25, 1)]
