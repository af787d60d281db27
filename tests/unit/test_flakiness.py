"""Flake rates from the results store: the window of runs, the final-attempt rule, the order.

Every test builds a real store with `connect_store` (so the schema is the one runs write) under
`tmp_path` and inserts `runs` and `results` rows with plain SQL, one row per attempt as the writer
does, then reads them back through `flaky_tests`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiosqlite
import pytest

from test_framework.store.connection import connect_store
from test_framework.store.flakiness import FlakyTest, count_recent_runs, flaky_tests

pytestmark = pytest.mark.anyio

PROJECT = "/projects/demo"
OTHER = "/projects/other"


@pytest.fixture
def anyio_backend() -> str:
    # aiosqlite runs on asyncio only.
    return "asyncio"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    connection = await connect_store(tmp_path / "cache" / "results.sqlite")
    try:
        yield connection
    finally:
        await connection.close()


async def add_run(
    db: aiosqlite.Connection,
    run_id: str,
    started_at: float,
    attempts: dict[str, Sequence[str]],
    project: str = PROJECT,
) -> None:
    """One run; `attempts` maps a node id to its outcomes, attempt 1 first."""
    await db.execute(
        "INSERT INTO runs (run_id, project, started_at, finished_at, exit_code)"
        " VALUES (?, ?, ?, ?, 0)",
        (run_id, project, started_at, started_at + 1),
    )
    await db.executemany(
        "INSERT INTO results (run_id, nodeid, attempt, outcome, duration) VALUES (?, ?, ?, ?, 0.1)",
        [
            (run_id, nodeid, attempt, outcome)
            for nodeid, outcomes in attempts.items()
            for attempt, outcome in enumerate(outcomes, start=1)
        ],
    )
    await db.commit()


async def by_nodeid(db: aiosqlite.Connection, last: int = 50) -> dict[str, FlakyTest]:
    return {t.nodeid: t for t in await flaky_tests(db, PROJECT, last)}


async def test_an_empty_store_has_no_flaky_tests(db: aiosqlite.Connection) -> None:
    assert await flaky_tests(db, PROJECT, 50) == []
    assert await count_recent_runs(db, PROJECT, 50) == 0


async def test_rate_is_flaky_runs_over_runs_the_test_ran_in(db: aiosqlite.Connection) -> None:
    await add_run(db, "r1", 100.0, {"t::a": ["failed", "flaky"], "t::b": ["passed"]})
    await add_run(db, "r2", 200.0, {"t::a": ["passed"], "t::b": ["passed"]})
    await add_run(db, "r3", 300.0, {"t::a": ["error", "timeout", "flaky"]})

    result = await flaky_tests(db, PROJECT, 50)

    assert result == [
        FlakyTest(
            nodeid="t::a",
            runs=3,
            flaky_runs=2,
            failed_runs=0,
            failed_attempts=3,
            last_flaky_at=300.0,
        )
    ]
    assert result[0].flake_rate == pytest.approx(2 / 3)


async def test_a_test_that_never_flaked_is_left_out(db: aiosqlite.Connection) -> None:
    # Failing every attempt is broken, not flaky; passing first time is neither.
    await add_run(db, "r1", 1.0, {"t::broken": ["failed", "failed"], "t::fine": ["passed"]})

    assert await flaky_tests(db, PROJECT, 50) == []


async def test_final_outcome_is_the_highest_attempt_whatever_the_row_order(
    db: aiosqlite.Connection,
) -> None:
    await add_run(db, "r1", 1.0, {"t::a": ["failed", "flaky"]})
    # Rows inserted highest attempt first: the attempt number decides, not the insertion order.
    await db.execute(
        "INSERT INTO runs (run_id, project, started_at) VALUES ('r2', ?, 2.0)", (PROJECT,)
    )
    await db.executemany(
        "INSERT INTO results (run_id, nodeid, attempt, outcome, duration)"
        " VALUES ('r2', ?, ?, ?, 0)",
        [("t::a", 3, "failed"), ("t::a", 1, "flaky"), ("t::a", 2, "crashed")],
    )
    await db.commit()

    test = (await by_nodeid(db))["t::a"]

    # r2 ended in `failed` (attempt 3): it counts as a failed run, not a flaky one.
    assert (test.runs, test.flaky_runs, test.failed_runs) == (2, 1, 1)
    assert test.failed_attempts == 1 + 2  # r1's attempt 1; r2's attempts 2 and 3
    assert test.last_flaky_at == 1.0


async def test_failed_runs_count_runs_that_still_failed_after_retries(
    db: aiosqlite.Connection,
) -> None:
    await add_run(db, "r1", 1.0, {"t::a": ["failed", "flaky"]})
    await add_run(db, "r2", 2.0, {"t::a": ["failed", "failed", "failed"]})
    await add_run(db, "r3", 3.0, {"t::a": ["crashed"]})
    await add_run(db, "r4", 4.0, {"t::a": ["passed"]})

    test = (await by_nodeid(db))["t::a"]

    assert (test.runs, test.flaky_runs, test.failed_runs, test.failed_attempts) == (4, 1, 2, 5)
    assert test.flake_rate == 0.25


async def test_only_the_last_n_runs_by_start_time_are_examined(db: aiosqlite.Connection) -> None:
    # Inserted out of order: the window follows started_at, not insertion or run id.
    await add_run(db, "c", 300.0, {"t::a": ["passed"], "t::old": ["passed"]})
    await add_run(db, "a", 100.0, {"t::a": ["failed", "flaky"], "t::old": ["failed", "flaky"]})
    await add_run(db, "b", 200.0, {"t::a": ["failed", "flaky"]})

    last_two = await by_nodeid(db, last=2)
    everything = await by_nodeid(db, last=3)

    assert await count_recent_runs(db, PROJECT, 2) == 2
    assert await count_recent_runs(db, PROJECT, 50) == 3
    # The oldest run (100.0) is outside the last two: t::old flaked only there.
    assert set(last_two) == {"t::a"}
    assert (last_two["t::a"].flaky_runs, last_two["t::a"].runs) == (1, 2)
    assert (everything["t::a"].flaky_runs, everything["t::a"].runs) == (2, 3)
    assert (everything["t::old"].flaky_runs, everything["t::old"].runs) == (1, 2)
    assert everything["t::a"].last_flaky_at == 200.0


async def test_other_projects_runs_are_not_counted(db: aiosqlite.Connection) -> None:
    await add_run(db, "mine", 1.0, {"t::a": ["passed"]})
    # Newer than ours and flaky: must neither count nor push our run out of a last-1 window.
    await add_run(db, "theirs", 2.0, {"t::a": ["failed", "flaky"]}, project=OTHER)

    assert await flaky_tests(db, PROJECT, 1) == []
    assert await count_recent_runs(db, PROJECT, 1) == 1
    theirs = await flaky_tests(db, OTHER, 50)
    assert [(t.nodeid, t.runs, t.flaky_runs) for t in theirs] == [("t::a", 1, 1)]


async def test_attempts_that_never_ran_are_not_runs(db: aiosqlite.Connection) -> None:
    await add_run(db, "r1", 1.0, {"t::a": ["failed", "flaky"]})
    await add_run(db, "r2", 2.0, {"t::a": ["not_run"]})  # cut off by --maxfail

    test = (await by_nodeid(db))["t::a"]

    assert (test.runs, test.flaky_runs) == (1, 1)


async def test_sorted_by_rate_descending_then_nodeid(db: aiosqlite.Connection) -> None:
    flaky, ok = ["failed", "flaky"], ["passed"]
    await add_run(db, "r1", 1.0, {"t::half": flaky, "t::b_all": flaky, "t::a_all": flaky})
    await add_run(db, "r2", 2.0, {"t::half": ok, "t::b_all": flaky, "t::third": flaky})
    await add_run(db, "r3", 3.0, {"t::third": ok, "t::also_half": flaky})
    await add_run(db, "r4", 4.0, {"t::third": ok, "t::also_half": ok})

    result = await flaky_tests(db, PROJECT, 50)

    assert [(t.nodeid, t.flaky_runs, t.runs) for t in result] == [
        ("t::a_all", 1, 1),
        ("t::b_all", 2, 2),
        ("t::also_half", 1, 2),
        ("t::half", 1, 2),
        ("t::third", 1, 3),
    ]
    assert [t.flake_rate for t in result] == [1.0, 1.0, 0.5, 0.5, pytest.approx(1 / 3)]
