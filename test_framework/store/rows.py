"""What each event adds to the store, as SQL statements and parameters: pure, no connection.

The async writer (writer.py) executes them in batches; a synchronous recorder (a pytest plugin
for users of plain pytest) can execute the same rows with `sqlite3`, so both write one schema the
same way. A `RunRows` learns the run's identity from `RunStarted` and keeps nothing else.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..events import (
    CacheRecorded,
    CapacityChanged,
    ContextNeeded,
    Event,
    IdsChanged,
    RunFinished,
    RunStarted,
    ShardCrashed,
    ShardFinished,
    TestConfirming,
    TestFinished,
    TestRetrying,
)
from ..models import FAILING_OUTCOMES, Outcome, TestResult

EWMA_ALPHA = 0.3
LONGREPR_LIMIT = 20_000
# A crashed or timed-out test's time says nothing about its next run; a cached or unrun one has
# none.
_NO_DURATION = frozenset({Outcome.CRASHED, Outcome.TIMEOUT, Outcome.NOT_RUN, Outcome.CACHED})
# Not a run of the test: its statistics (runs, last outcome) are left as they were.
_NOT_A_RUN = frozenset({Outcome.NOT_RUN, Outcome.CACHED})

INSERT_RUN = (
    "INSERT OR REPLACE INTO runs (run_id, project, started_at, argv, profile, categories)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
FINISH_RUN = (
    "UPDATE runs SET finished_at = ?, exit_code = ?, duration = ?, counts = ?, interrupted = ?"
    " WHERE run_id = ?"
)
INSERT_RESULT = (
    "INSERT OR REPLACE INTO results (run_id, nodeid, attempt, outcome, duration,"
    " shard_id, message, longrepr, cpu_time, max_rss) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_STATS = (
    "INSERT INTO test_stats (project, nodeid, ewma_duration, ewma_cpu, max_rss, runs,"
    " failures, flakes, last_outcome, last_run_id, updated_at)"
    " VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)"
    " ON CONFLICT (project, nodeid) DO UPDATE SET{durations}"
    " runs = runs + 1, failures = failures + excluded.failures,"
    " flakes = flakes + excluded.flakes, last_outcome = excluded.last_outcome,"
    " last_run_id = excluded.last_run_id, updated_at = excluded.updated_at"
)
UPSERT_STATS = _UPSERT_STATS.format(
    durations=f" ewma_duration = {EWMA_ALPHA} * excluded.ewma_duration"
    f" + {1 - EWMA_ALPHA} * ewma_duration,"
    f" ewma_cpu = coalesce({EWMA_ALPHA} * excluded.ewma_cpu + {1 - EWMA_ALPHA} * ewma_cpu,"
    " excluded.ewma_cpu, ewma_cpu),"
    " max_rss = max(coalesce(max_rss, 0), coalesce(excluded.max_rss, 0)),"
)
# Counts and last outcome only, the duration estimates left alone.
UPSERT_STATS_COUNTS = _UPSERT_STATS.format(durations="")
INSERT_CAPACITY = "INSERT INTO capacity_samples VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_DEP = "INSERT OR IGNORE INTO deps VALUES (?, ?, ?)"
LEARN_CONTEXT = (
    "INSERT OR REPLACE INTO context_needs (project, file, why, nodeid, file_digest, learned_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
RECORD_FILE = (
    "INSERT OR REPLACE INTO file_records (project, test_file, environment, dependencies,"
    " outcomes, recorded_at) VALUES (?, ?, ?, ?, ?, ?)"
)
CLEAR_INDEX = "DELETE FROM file_index WHERE project = ?"
INDEX_FILE = "INSERT OR REPLACE INTO file_index VALUES (?, ?, ?, ?, ?, ?, ?)"
RECORD_UNSTABLE = (
    "INSERT OR REPLACE INTO unstable_ids (project, file, file_digest, seen_at) VALUES (?, ?, ?, ?)"
)

Write = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Rows:
    """The statements one event adds, and whether everything so far should be committed now
    (a shard ended: a crash loses at most the shard in flight)."""

    writes: tuple[Write, ...] = ()
    commit: bool = False


@dataclass
class RunRows:
    clock: Callable[[], float] = time.time
    run_id: str = ""
    project: str = ""
    _handlers: dict[type, Callable[[Any], Rows]] = field(init=False)

    def __post_init__(self) -> None:
        self._handlers = {
            RunStarted: self._run_started,
            TestFinished: self._test_finished,
            TestRetrying: lambda e: Rows((self._attempt(e.result),)),
            TestConfirming: lambda e: Rows((self._attempt(e.result),)),
            ContextNeeded: self._context_needed,
            CacheRecorded: self._cache_recorded,
            IdsChanged: lambda e: Rows(
                ((RECORD_UNSTABLE, (self.project, e.file, e.digest, e.at)),), commit=True
            ),
            CapacityChanged: self._capacity,
            ShardFinished: self._shard_finished,
            ShardCrashed: lambda e: Rows(commit=True),
            RunFinished: self._run_finished,
        }

    def rows(self, event: Event) -> Rows:
        handler = self._handlers.get(type(event))
        return handler(event) if handler is not None else Rows()

    def _run_started(self, event: RunStarted) -> Rows:
        context = event.context
        self.run_id, self.project = context.run_id, context.project_root
        row = (
            self.run_id,
            self.project,
            event.at,
            json.dumps(list(context.argv)),
            context.profile,
            ",".join(context.categories),
        )
        return Rows(((INSERT_RUN, row),), commit=True)

    def _test_finished(self, event: TestFinished) -> Rows:
        result = event.result
        if result.outcome is Outcome.CACHED:
            # Not a result of this run: its record holds the result, the run's counts say how
            # many were reported (a row each cost a run with nothing changed most of its time).
            return Rows()
        writes = [self._attempt(result)]
        if result.outcome not in _NOT_A_RUN:
            writes.append(self._stats(result))
        return Rows(tuple(writes))

    def _attempt(self, result: TestResult) -> Write:
        longrepr = result.longrepr
        return INSERT_RESULT, (
            self.run_id,
            result.nodeid,
            result.attempt,
            result.outcome.value,
            result.duration,
            result.shard_id,
            result.message,
            longrepr[:LONGREPR_LIMIT] if longrepr else None,
            result.cpu_time,
            result.max_rss,
        )

    def _stats(self, result: TestResult) -> Write:
        """Counts and last outcome for every test that ran; the duration only when it is a
        real one."""
        outcome = result.outcome
        sql = UPSERT_STATS if outcome not in _NO_DURATION else UPSERT_STATS_COUNTS
        return sql, (
            self.project,
            result.nodeid,
            result.duration,
            result.cpu_time,
            result.max_rss,
            int(outcome in FAILING_OUTCOMES),
            int(outcome is Outcome.FLAKY),
            outcome.value,
            self.run_id,
            self.clock(),
        )

    def _capacity(self, event: CapacityChanged) -> Rows:
        row = (
            self.run_id,
            event.at,
            event.old,
            event.new,
            event.reason,
            event.cpu_percent,
            event.memory_available,
            event.waiting,
        )
        return Rows(((INSERT_CAPACITY, row),))

    def _shard_finished(self, event: ShardFinished) -> Rows:
        deps = tuple(
            (INSERT_DEP, (self.project, test_file, dep))
            for test_file in event.files
            for dep in event.deps
        )
        return Rows(deps, commit=True)

    def _cache_recorded(self, event: CacheRecorded) -> Rows:
        writes: list[Write] = [
            (
                RECORD_FILE,
                (
                    self.project,
                    record.test_file,
                    record.environment,
                    json.dumps(dict(record.dependencies), sort_keys=True),
                    json.dumps({n: str(o) for n, o in record.outcomes.items()}),
                    record.recorded_at,
                ),
            )
            for record in event.records
        ]
        writes.append((CLEAR_INDEX, (self.project,)))
        writes.extend(
            (INDEX_FILE, (self.project, *entry, event.indexed_at_ns)) for entry in event.index
        )
        return Rows(tuple(writes), commit=True)

    def _context_needed(self, event: ContextNeeded) -> Rows:
        row = (self.project, event.file, event.why, event.nodeid, event.digest, event.at)
        return Rows(((LEARN_CONTEXT, row),), commit=True)

    def _run_finished(self, event: RunFinished) -> Rows:
        summary = event.summary
        row = (
            event.at,
            summary.exit_code,
            summary.duration,
            json.dumps(dict(summary.counts)),
            int(summary.interrupted),
            self.run_id,
        )
        return Rows(((FINISH_RUN, row),), commit=True)
