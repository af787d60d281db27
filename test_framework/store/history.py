"""A project's past runs and tests, from the store: what `history`, `slowest` and `stats` show and
what `--performance-regression` compares a run with.

A test's duration in a run is its final attempt's; runs where it did not run (`cached`,
`not_run`) do not count. Medians, not means: one slow run on a busy machine must not move the
baseline much.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..models import Outcome

if TYPE_CHECKING:
    import aiosqlite

_NOT_RAN = (Outcome.NOT_RUN.value, Outcome.CACHED.value)


@dataclass(frozen=True, slots=True)
class PastRun:
    run_id: str
    started_at: float
    duration: float | None
    exit_code: int | None
    counts: dict[str, int]
    interrupted: bool
    profile: str


@dataclass(frozen=True, slots=True)
class SlowTest:
    nodeid: str
    typical: float  # the store's running estimate (EWMA) of its duration, seconds
    runs: int
    last_outcome: str


@dataclass(frozen=True, slots=True)
class TestRun:
    __test__ = False
    run_id: str
    started_at: float
    outcome: str
    duration: float
    attempts: int


@dataclass(frozen=True, slots=True)
class Baseline:
    """A test's past durations (final attempts that passed) over recent runs."""

    median: float
    runs: int


async def recent_runs(db: aiosqlite.Connection, project: str, last: int) -> list[PastRun]:
    cursor = await db.execute(
        "SELECT run_id, started_at, duration, exit_code, counts, interrupted, profile FROM runs"
        " WHERE project = ? ORDER BY started_at DESC, run_id DESC LIMIT ?",
        (project, last),
    )
    runs = []
    for (
        run_id,
        started_at,
        duration,
        exit_code,
        counts,
        interrupted,
        profile,
    ) in await cursor.fetchall():
        try:
            parsed = {str(k): int(v) for k, v in json.loads(counts or "{}").items()}
        except (ValueError, AttributeError):
            parsed = {}
        runs.append(
            PastRun(
                str(run_id),
                float(started_at),
                None if duration is None else float(duration),
                None if exit_code is None else int(exit_code),
                parsed,
                bool(interrupted),
                str(profile or ""),
            )
        )
    return runs


async def slowest_tests(db: aiosqlite.Connection, project: str, count: int) -> list[SlowTest]:
    cursor = await db.execute(
        "SELECT nodeid, ewma_duration, runs, last_outcome FROM test_stats WHERE project = ?"
        " ORDER BY ewma_duration DESC, nodeid LIMIT ?",
        (project, count),
    )
    return [
        SlowTest(str(nodeid), float(typical), int(runs), str(last or ""))
        for nodeid, typical, runs, last in await cursor.fetchall()
    ]


async def runs_of_test(
    db: aiosqlite.Connection, project: str, nodeid: str, last: int
) -> list[TestRun]:
    """The test's final attempt in each of the project's last `last` runs it had a row in."""
    cursor = await db.execute(
        """
        WITH recent AS (
            SELECT run_id, started_at FROM runs WHERE project = ?
            ORDER BY started_at DESC, run_id DESC LIMIT ?
        ),
        ranked AS (
            SELECT r.run_id, recent.started_at, r.outcome, r.duration, r.attempt,
                   ROW_NUMBER() OVER (PARTITION BY r.run_id ORDER BY r.attempt DESC) AS rank
            FROM results AS r JOIN recent ON recent.run_id = r.run_id
            WHERE r.nodeid = ?
        )
        SELECT run_id, started_at, outcome, duration, attempt FROM ranked WHERE rank = 1
        ORDER BY started_at DESC
        """,
        (project, last, nodeid),
    )
    return [
        TestRun(str(run_id), float(started), str(outcome), float(duration), int(attempt))
        for run_id, started, outcome, duration, attempt in await cursor.fetchall()
    ]


# Each test's passing final attempts over the project's last N runs (params: project, N, the
# outcomes that did not run, "passed"). Shared with the pytest plugin's sqlite3 connection.
BASELINE_SQL = f"""
WITH recent AS (
    SELECT run_id FROM runs WHERE project = ?
    ORDER BY started_at DESC, run_id DESC LIMIT ?
),
ranked AS (
    SELECT r.nodeid, r.outcome, r.duration,
           ROW_NUMBER() OVER (PARTITION BY r.run_id, r.nodeid ORDER BY r.attempt DESC) AS rank
    FROM results AS r JOIN recent ON recent.run_id = r.run_id
    WHERE r.outcome NOT IN ({", ".join("?" for _ in _NOT_RAN)})
)
SELECT nodeid, duration FROM ranked WHERE rank = 1 AND outcome = ?
"""


def baseline_params(project: str, last: int) -> tuple[object, ...]:
    return (project, last, *_NOT_RAN, Outcome.PASSED.value)


def fold_baselines(rows: Iterable[Sequence[Any]], nodeids: Iterable[str]) -> dict[str, Baseline]:
    """BASELINE_SQL's rows as each wanted test's median and count."""
    wanted = set(nodeids)
    durations: dict[str, list[float]] = {}
    for nodeid, duration in rows:
        if nodeid in wanted:
            durations.setdefault(str(nodeid), []).append(float(duration))
    return {
        nodeid: Baseline(statistics.median(values), len(values))
        for nodeid, values in durations.items()
    }


async def baselines(
    db: aiosqlite.Connection, project: str, nodeids: Sequence[str], last: int
) -> dict[str, Baseline]:
    """Each test's median duration over the passing final attempts of the last `last` runs."""
    cursor = await db.execute(BASELINE_SQL, baseline_params(project, last))
    return fold_baselines(await cursor.fetchall(), nodeids)
