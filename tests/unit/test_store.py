"""The results store: schema and migrations, moving bad files aside, the single writer, the reads.

Every test uses a real SQLite file under `tmp_path` and real aiosqlite connections, always closed
(an unclosed aiosqlite connection is a ResourceWarning, which `filterwarnings = error` fails).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import aiosqlite
import anyio
import pytest
import structlog

from test_framework.errors import StoreError
from test_framework.events import (
    CapacityChanged,
    Event,
    RunContext,
    RunFinished,
    RunStarted,
    ShardCrashed,
    ShardFinished,
    TestFinished,
    TestRetrying,
)
from test_framework.models import Collection, Outcome, PhaseReport, Plan, RunSummary, TestResult
from test_framework.store.connection import connect_store, open_store
from test_framework.store.queries import (
    load_collection,
    load_history,
    save_collection,
)
from test_framework.store.schema import SCHEMA_VERSION
from test_framework.store.writer import StoreWriter

pytestmark = pytest.mark.anyio

PROJECT = "/projects/demo"


@pytest.fixture
def anyio_backend() -> str:
    # aiosqlite runs on asyncio only.
    return "asyncio"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    # A folder that does not exist yet: opening the store must create it.
    return tmp_path / "cache" / "results.sqlite"


# --- helpers ---------------------------------------------------------------------------------


def result(
    nodeid: str,
    outcome: Outcome = Outcome.PASSED,
    duration: float = 0.5,
    *,
    attempt: int = 1,
    longrepr: str = "",
    shard_id: int | None = 0,
) -> TestResult:
    reports = (
        (PhaseReport(nodeid, "call", "failed", "failed", duration, longrepr=longrepr),)
        if longrepr
        else ()
    )
    return TestResult(
        nodeid, outcome, duration, attempt=attempt, reports=reports, shard_id=shard_id
    )


def run_started(run_id: str, project: str = PROJECT) -> RunStarted:
    plan = Plan(shards=(), known_durations=0)
    context = RunContext(run_id, project, "fast", ("unit",), argv=("-x", "tests"))
    return RunStarted(context, plan, capacity=2)


def run_finished(run_id: str, results: tuple[TestResult, ...], exit_code: int = 0) -> RunFinished:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
    summary = RunSummary(
        run_id=run_id, results=results, counts=counts, duration=1.25, exit_code=exit_code
    )
    return RunFinished(summary=summary)


def writer_for(db: aiosqlite.Connection) -> StoreWriter:
    """A writer: the run it writes for comes with the RunStarted event."""
    return StoreWriter(db=db)


async def record(writer: StoreWriter, events: Iterable[Event]) -> None:
    """Feed events the way the EventBus does, then let the writer drain them and return."""
    for event in events:
        writer.handle(event)
    writer.close()
    await writer.run()


async def record_run(
    path: Path, run_id: str, results: Iterable[TestResult], project: str = PROJECT
) -> StoreWriter:
    results = tuple(results)
    async with open_store(path) as db:
        writer = writer_for(db)
        events: list[Event] = [run_started(run_id, project)]
        events += [TestFinished(r) for r in results]
        events.append(run_finished(run_id, results))
        await record(writer, events)
    return writer


async def pragma(db: aiosqlite.Connection, name: str) -> object:
    cursor = await db.execute(f"PRAGMA {name}")
    row = await cursor.fetchone()
    assert row is not None
    return row[0]


def rows(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Read with the plain sqlite3 module: an independent reader that sees only committed rows."""
    con = sqlite3.connect(path)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


# --- opening, migrating, moving aside ---------------------------------------------------------


async def test_new_store_has_current_schema_version_and_wal_mode(db_path: Path) -> None:
    async with open_store(db_path) as db:
        assert await pragma(db, "user_version") == SCHEMA_VERSION
        assert await pragma(db, "journal_mode") == "wal"
    # WAL is a property of the file, not of the connection: a new reader sees it too.
    assert rows(db_path, "PRAGMA journal_mode") == [("wal",)]
    tables = {r[0] for r in rows(db_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "results", "test_stats", "collections", "capacity_samples", "deps"} <= tables


async def test_opening_twice_is_idempotent_and_keeps_data(db_path: Path) -> None:
    async with open_store(db_path) as db:
        await db.execute(
            "INSERT INTO runs (run_id, project, started_at) VALUES ('r1', ?, 1.0)", (PROJECT,)
        )
        await db.commit()
    # A second open must not re-run migrations (CREATE TABLE would fail) nor lose rows.
    async with open_store(db_path) as db:
        assert await pragma(db, "user_version") == SCHEMA_VERSION
        cursor = await db.execute("SELECT run_id FROM runs")
        assert list(await cursor.fetchall()) == [("r1",)]
    assert not list(db_path.parent.glob("*.corrupt-*"))
    assert not list(db_path.parent.glob("*.newer-*"))


async def test_file_that_is_not_a_database_is_moved_aside(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    garbage = b"this is not an SQLite file\x00\xff" * 200
    await anyio.Path(db_path).write_bytes(garbage)
    with structlog.testing.capture_logs() as logs:
        async with open_store(db_path) as db:
            assert await pragma(db, "user_version") == SCHEMA_VERSION
            # The replacement is a working store, not just an open handle.
            await db.execute(
                "INSERT INTO runs (run_id, project, started_at) VALUES ('r1', ?, 1.0)", (PROJECT,)
            )
            await db.commit()
    moved = list(db_path.parent.glob("results.sqlite.corrupt-*"))
    assert len(moved) == 1
    # The bad file is kept byte for byte, for whoever wants to look at it.
    assert moved[0].read_bytes() == garbage
    assert any(e["event"] == "store_moved_aside" for e in logs)


async def test_store_from_newer_engine_is_moved_aside(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    con = sqlite3.connect(db_path)
    try:
        con.execute("CREATE TABLE future (x INTEGER)")
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        con.commit()
    finally:
        con.close()
    with structlog.testing.capture_logs():
        async with open_store(db_path) as db:
            assert await pragma(db, "user_version") == SCHEMA_VERSION
    moved = list(db_path.parent.glob("results.sqlite.newer-*"))
    assert len(moved) == 1
    # The newer engine's data is untouched in the moved file; the new store does not have it.
    assert rows(moved[0], "PRAGMA user_version") == [(SCHEMA_VERSION + 1,)]
    assert rows(moved[0], "SELECT name FROM sqlite_master WHERE name = 'future'") == [("future",)]
    assert rows(db_path, "SELECT name FROM sqlite_master WHERE name = 'future'") == []


async def test_locked_store_is_not_mistaken_for_a_corrupt_one(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two engines sharing a cache dir hit this for real (seen when two open a new file at once:
    # both want the exclusive lock that switching to WAL needs). Holding the lock from a plain
    # sqlite3 connection makes it deterministic; a short busy timeout (a tunable, not the
    # behaviour under test) keeps the test fast.
    async with open_store(db_path):
        pass
    monkeypatch.setattr("test_framework.store.connection.BUSY_TIMEOUT_MS", 100)
    holder = sqlite3.connect(db_path)
    try:
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute(
            "INSERT INTO runs (run_id, project, started_at) VALUES ('kept', ?, 1.0)", (PROJECT,)
        )
        holder.commit()
        with structlog.testing.capture_logs():
            try:
                db = await connect_store(db_path)
            except StoreError:
                opened = False
            else:
                await db.close()
                opened = True
    finally:
        holder.close()
    assert not list(db_path.parent.glob("*.corrupt-*"))
    assert rows(db_path, "SELECT run_id FROM runs") == [("kept",)]
    # The caller turns a StoreError into a warning and runs without history.
    assert not opened


# --- the writer -------------------------------------------------------------------------------


async def test_writer_records_every_kind_of_event(db_path: Path) -> None:
    run_id = "run-1"
    flaky_first = result(
        "tests/test_a.py::test_flaky",
        Outcome.FAILED,
        0.2,
        longrepr="E   assert 1 == 2",
    )
    finals = (
        result("tests/test_a.py::test_ok", Outcome.PASSED, 0.5),
        result("tests/test_a.py::test_bad", Outcome.FAILED, 1.5, longrepr="E   boom"),
        result("tests/test_a.py::test_flaky", Outcome.FLAKY, 0.25, attempt=2),
        result("tests/test_b.py::test_skip", Outcome.SKIPPED, 0.0, shard_id=1),
    )
    events: list[Event] = [
        run_started(run_id),
        CapacityChanged(
            old=2,
            new=3,
            reason="cpu idle",
            cpu_percent=12.5,
            memory_available=1 << 30,
            waiting=4,
            at=100.0,
        ),
        TestFinished(finals[0]),
        TestFinished(finals[1]),
        TestRetrying(result=flaky_first, next_attempt=2, delay=0.1),
        TestFinished(finals[2]),
        ShardFinished(
            shard_id=0,
            returncode=1,
            duration=2.0,
            files=("tests/test_a.py",),
            deps=("src/pkg/core.py", "src/pkg/util.py"),
        ),
        TestFinished(finals[3]),
        ShardCrashed(shard_id=1, returncode=-9, running=None, reason="killed"),
        run_finished(run_id, finals, exit_code=1),
    ]
    async with open_store(db_path) as db:
        writer = writer_for(db)
        await record(writer, events)
    assert writer.failed is None
    assert writer.dropped == 0
    # Five result rows: four finals plus the failed first attempt of the flaky test.
    assert writer.written == 5

    (run,) = rows(
        db_path,
        "SELECT run_id, project, argv, profile, categories, exit_code, duration, counts,"
        " interrupted, finished_at FROM runs",
    )
    assert run[:7] == (run_id, PROJECT, '["-x", "tests"]', "fast", "unit", 1, 1.25)
    assert json.loads(str(run[7])) == {"passed": 1, "failed": 1, "flaky": 1, "skipped": 1}
    assert run[8] == 0
    assert run[9] is not None

    results = rows(
        db_path,
        "SELECT nodeid, attempt, outcome, duration, shard_id, longrepr FROM results"
        " WHERE run_id = ? ORDER BY nodeid, attempt",
        (run_id,),
    )
    assert results == [
        ("tests/test_a.py::test_bad", 1, "failed", 1.5, 0, "E   boom"),
        ("tests/test_a.py::test_flaky", 1, "failed", 0.2, 0, "E   assert 1 == 2"),
        ("tests/test_a.py::test_flaky", 2, "flaky", 0.25, 0, None),
        ("tests/test_a.py::test_ok", 1, "passed", 0.5, 0, None),
        ("tests/test_b.py::test_skip", 1, "skipped", 0.0, 1, None),
    ]

    stats = rows(
        db_path,
        "SELECT nodeid, ewma_duration, runs, failures, flakes, last_outcome, last_run_id"
        " FROM test_stats WHERE project = ? ORDER BY nodeid",
        (PROJECT,),
    )
    # A retried attempt is a result row but not a run of its own in the statistics.
    assert stats == [
        ("tests/test_a.py::test_bad", 1.5, 1, 1, 0, "failed", run_id),
        ("tests/test_a.py::test_flaky", 0.25, 1, 0, 1, "flaky", run_id),
        ("tests/test_a.py::test_ok", 0.5, 1, 0, 0, "passed", run_id),
        ("tests/test_b.py::test_skip", 0.0, 1, 0, 0, "skipped", run_id),
    ]

    assert rows(db_path, "SELECT * FROM capacity_samples") == [
        (run_id, 100.0, 2, 3, "cpu idle", 12.5, 1 << 30, 4)
    ]
    assert rows(db_path, "SELECT project, test_file, dep_file FROM deps ORDER BY dep_file") == [
        (PROJECT, "tests/test_a.py", "src/pkg/core.py"),
        (PROJECT, "tests/test_a.py", "src/pkg/util.py"),
    ]


async def test_ewma_duration_blends_new_and_old_across_runs(db_path: Path) -> None:
    nodeid = "tests/test_a.py::test_slow"
    await record_run(db_path, "run-1", [result(nodeid, duration=1.0)])
    await record_run(db_path, "run-2", [result(nodeid, duration=2.0)])
    ((ewma, runs),) = rows(db_path, "SELECT ewma_duration, runs FROM test_stats")
    assert ewma == pytest.approx(0.3 * 2.0 + 0.7 * 1.0)
    assert runs == 2
    await record_run(db_path, "run-3", [result(nodeid, duration=4.0)])
    ((ewma, runs),) = rows(db_path, "SELECT ewma_duration, runs FROM test_stats")
    assert ewma == pytest.approx(0.3 * 4.0 + 0.7 * (0.3 * 2.0 + 0.7 * 1.0))
    assert runs == 3


@pytest.mark.parametrize("outcome", [Outcome.CRASHED, Outcome.TIMEOUT])
async def test_crash_or_timeout_counts_as_a_failure_but_keeps_the_duration_estimate(
    db_path: Path, outcome: Outcome
) -> None:
    # A timeout's "duration" is the limit, a crash's is arbitrary: neither says how long the
    # test takes, so they must not move the planner's estimate; but they are failures.
    nodeid = "tests/test_a.py::test_x"
    await record_run(db_path, "run-1", [result(nodeid, duration=1.0)])
    await record_run(db_path, "run-2", [result(nodeid, outcome, duration=60.0)])
    assert rows(db_path, "SELECT ewma_duration, runs, failures, last_outcome FROM test_stats") == [
        (1.0, 2, 1, outcome.value)
    ]
    assert rows(db_path, "SELECT outcome FROM results WHERE run_id = 'run-2'") == [(outcome.value,)]


async def test_not_run_leaves_stats_alone(db_path: Path) -> None:
    nodeid = "tests/test_a.py::test_x"
    await record_run(db_path, "run-1", [result(nodeid, duration=1.0)])
    await record_run(db_path, "run-2", [result(nodeid, Outcome.NOT_RUN, duration=0.0)])
    assert rows(db_path, "SELECT ewma_duration, runs, last_outcome FROM test_stats") == [
        (1.0, 1, "passed")
    ]
    assert rows(db_path, "SELECT outcome FROM results WHERE run_id = 'run-2'") == [("not_run",)]


async def test_first_result_of_a_crash_seeds_the_estimate_with_its_time(db_path: Path) -> None:
    await record_run(db_path, "run-1", [result("t.py::t", Outcome.CRASHED, 9.0)])
    assert rows(db_path, "SELECT ewma_duration, failures FROM test_stats") == [(9.0, 1)]


async def test_writer_on_closed_db_records_failure_and_does_not_raise(db_path: Path) -> None:
    db = await connect_store(db_path)
    await db.close()
    writer = writer_for(db)
    events: list[Event] = [
        run_started("run-1"),
        TestFinished(result("t.py::t")),
        run_finished("run-1", ()),
    ]
    with structlog.testing.capture_logs() as logs:
        await record(writer, events)  # must not raise: recording never breaks a run
    assert writer.failed is not None
    assert writer.dropped == len(events)
    assert writer.written == 0
    assert any(e["event"] == "store_write_failed" for e in logs)


async def test_writer_on_closed_db_with_no_events_does_not_raise(db_path: Path) -> None:
    db = await connect_store(db_path)
    await db.close()
    writer = writer_for(db)
    with structlog.testing.capture_logs():
        await record(writer, [])
    assert writer.failed is not None


async def test_events_after_close_are_counted_as_dropped(db_path: Path) -> None:
    async with open_store(db_path) as db:
        writer = writer_for(db)
        writer.close()
        writer.handle(run_started("run-1"))  # never raises: the bus must not see an error
        await writer.run()
    assert writer.dropped == 1
    assert writer.failed is None
    assert rows(db_path, "SELECT * FROM runs") == []


# --- reads ------------------------------------------------------------------------------------


async def test_load_history_returns_durations_and_last_failures(db_path: Path) -> None:
    await record_run(
        db_path,
        "run-1",
        [
            result("t.py::ok", Outcome.PASSED, 1.0),
            result("t.py::bad", Outcome.FAILED, 2.0),
            result("t.py::err", Outcome.ERROR, 3.0),
            result("t.py::fixed", Outcome.FAILED, 4.0),
        ],
    )
    # A test that failed before but passes now is no longer a recent failure.
    await record_run(db_path, "run-2", [result("t.py::fixed", Outcome.PASSED, 4.0)])
    # Another project's history in the same file must not leak in.
    await record_run(db_path, "run-3", [result("t.py::other", Outcome.FAILED)], project="/else")

    async with open_store(db_path) as db:
        history = await load_history(db, PROJECT)
    assert history.durations == {
        "t.py::ok": 1.0,
        "t.py::bad": 2.0,
        "t.py::err": 3.0,
        "t.py::fixed": pytest.approx(4.0),
    }
    assert history.recent_failures == frozenset({"t.py::bad", "t.py::err"})


async def test_load_history_of_unknown_project_is_empty(db_path: Path) -> None:
    async with open_store(db_path) as db:
        history = await load_history(db, PROJECT)
    assert history.durations == {}
    assert history.recent_failures == frozenset()


@pytest.mark.parametrize("outcome", [Outcome.CRASHED, Outcome.TIMEOUT])
async def test_test_that_last_crashed_or_timed_out_is_a_recent_failure(
    db_path: Path, outcome: Outcome
) -> None:
    await record_run(db_path, "run-1", [result("t.py::hang", Outcome.PASSED, 1.0)])
    await record_run(db_path, "run-2", [result("t.py::hang", outcome, 60.0)])
    async with open_store(db_path) as db:
        history = await load_history(db, PROJECT)
    assert "t.py::hang" in history.recent_failures


async def test_collection_round_trip(db_path: Path) -> None:
    cached = Collection(
        rootdir="/projects/demo",
        nodeids=("tests/test_a.py::test_x", "tests/test_a.py::test_y[a-b]"),
        positionals=("tests/test_a.py",),
    )
    async with open_store(db_path) as db:
        await save_collection(db, "fp-1", cached)
        assert await load_collection(db, "fp-1") == cached
        assert await load_collection(db, "fp-unknown") is None
    # Saved means committed: a fresh connection sees it.
    async with open_store(db_path) as db:
        assert await load_collection(db, "fp-1") == cached


async def test_save_collection_keeps_only_the_newest_entries(db_path: Path) -> None:
    async with open_store(db_path) as db:
        for i in range(5):
            cached = Collection(rootdir="/r", nodeids=(f"t.py::t{i}",), positionals=())
            await save_collection(db, f"fp-{i}", cached, keep=3)
        assert [await load_collection(db, f"fp-{i}") is not None for i in range(5)] == [
            False,
            False,
            True,
            True,
            True,
        ]
    assert rows(db_path, "SELECT count(*) FROM collections") == [(3,)]


# --- concurrency ------------------------------------------------------------------------------


async def test_two_writers_on_one_file_both_succeed(db_path: Path) -> None:
    # Two engines sharing a cache dir: WAL plus the busy timeout must serialise them, not fail.
    per_run = 60

    def events(run_id: str) -> list[Event]:
        finals = tuple(
            result(f"tests/test_{run_id}.py::test_{i}", duration=0.01 * i) for i in range(per_run)
        )
        out: list[Event] = [run_started(run_id)]
        for i, r in enumerate(finals):
            out.append(TestFinished(r))
            if i % 10 == 9:  # commit points in the middle of the stream
                out.append(
                    ShardFinished(
                        shard_id=i // 10,
                        returncode=0,
                        duration=0.1,
                        files=(f"tests/test_{run_id}.py",),
                        deps=(f"src/{run_id}.py",),
                    )
                )
        out.append(run_finished(run_id, finals))
        return out

    db_a = await connect_store(db_path)
    db_b = await connect_store(db_path)
    try:
        writer_a = writer_for(db_a)
        writer_b = writer_for(db_b)
        for event_a, event_b in zip(events("a"), events("b"), strict=True):
            writer_a.handle(event_a)
            writer_b.handle(event_b)
        writer_a.close()
        writer_b.close()
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer_a.run)
            tg.start_soon(writer_b.run)
    finally:
        await db_a.close()
        await db_b.close()

    assert (writer_a.failed, writer_b.failed) == (None, None)
    assert (writer_a.written, writer_b.written) == (per_run, per_run)
    assert rows(db_path, "SELECT run_id, count(*) FROM results GROUP BY run_id ORDER BY 1") == [
        ("a", per_run),
        ("b", per_run),
    ]
    assert rows(db_path, "SELECT count(*) FROM test_stats") == [(2 * per_run,)]
    assert rows(db_path, "SELECT run_id FROM runs WHERE finished_at IS NOT NULL ORDER BY 1") == [
        ("a",),
        ("b",),
    ]
    assert rows(db_path, "SELECT test_file, dep_file FROM deps ORDER BY 1") == [
        ("tests/test_a.py", "src/a.py"),
        ("tests/test_b.py", "src/b.py"),
    ]
