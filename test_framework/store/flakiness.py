"""Flake rates over a project's recent runs, computed from the per-attempt `results` rows.

`test_stats.flakes` is a running total since the store was created, so it cannot say how flaky a
test is *now*; the rows in `results` can, over any window of runs. A test's final outcome in a run
is its row with the highest attempt; attempts that never ran (`not_run`, `cached`) are not counted,
so a test cut off by --maxfail neither ran nor flaked in that run.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from ..models import FAILING_OUTCOMES, Outcome

_FAILING = tuple(sorted(o.value for o in FAILING_OUTCOMES))
_NOT_RAN = (Outcome.NOT_RUN.value, Outcome.CACHED.value)


def _marks(values: tuple[str, ...]) -> str:
    return ", ".join("?" for _ in values)


_RECENT_RUNS = (
    "SELECT run_id, started_at FROM runs WHERE project = ?"
    " ORDER BY started_at DESC, run_id DESC LIMIT ?"
)

# One pass: rank each test's attempts within a run (1 = the final one), then fold per test.
# Rates compare as REAL division of the same two integers Python divides, so the order agrees
# with FlakyTest.flake_rate.
_FLAKY_TESTS = f"""
WITH recent AS ({_RECENT_RUNS}),
attempts AS (
    SELECT r.nodeid, r.run_id, recent.started_at, r.outcome,
           ROW_NUMBER() OVER (PARTITION BY r.run_id, r.nodeid ORDER BY r.attempt DESC) AS rank
    FROM results AS r JOIN recent ON recent.run_id = r.run_id
    WHERE r.outcome NOT IN ({_marks(_NOT_RAN)})
),
per_test AS (
    SELECT nodeid,
           SUM(rank = 1) AS runs,
           SUM(rank = 1 AND outcome = ?) AS flaky_runs,
           SUM(rank = 1 AND outcome IN ({_marks(_FAILING)})) AS failed_runs,
           SUM(outcome IN ({_marks(_FAILING)})) AS failed_attempts,
           MAX(CASE WHEN rank = 1 AND outcome = ? THEN started_at END) AS last_flaky_at
    FROM attempts GROUP BY nodeid
)
SELECT nodeid, runs, flaky_runs, failed_runs, failed_attempts, last_flaky_at
FROM per_test WHERE flaky_runs > 0
ORDER BY CAST(flaky_runs AS REAL) / runs DESC, nodeid
"""


@dataclass(frozen=True, slots=True)
class FlakyTest:
    """How one test behaved over the window: counts of runs, not of attempts, except where named."""

    nodeid: str
    runs: int  # runs of the window the test ran in
    flaky_runs: int  # ... where it failed first and then passed on a retry
    failed_runs: int  # ... where it still failed after every retry
    failed_attempts: int  # failing attempts in all those runs, retries included
    last_flaky_at: float  # started_at (epoch seconds) of the latest run where it was flaky

    @property
    def flake_rate(self) -> float:
        return self.flaky_runs / self.runs


async def count_recent_runs(db: aiosqlite.Connection, project: str, last_runs: int) -> int:
    """How many runs of `project` the window of the last `last_runs` holds (fewer when young)."""
    cursor = await db.execute(f"SELECT COUNT(*) FROM ({_RECENT_RUNS})", (project, last_runs))
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def flaky_tests(db: aiosqlite.Connection, project: str, last_runs: int) -> list[FlakyTest]:
    """Tests flaky at least once in the last `last_runs` runs of `project` (by started_at),
    highest flake rate first, then by node id."""
    flaky = Outcome.FLAKY.value
    params = (project, last_runs, *_NOT_RAN, flaky, *_FAILING, *_FAILING, flaky)
    cursor = await db.execute(_FLAKY_TESTS, params)
    return [
        FlakyTest(
            nodeid=str(nodeid),
            runs=int(runs),
            flaky_runs=int(flaky_runs),
            failed_runs=int(failed_runs),
            failed_attempts=int(failed_attempts),
            last_flaky_at=float(last_flaky_at),
        )
        for nodeid, runs, flaky_runs, failed_runs, failed_attempts, last_flaky_at in (
            await cursor.fetchall()
        )
    ]
