"""The single writer: subscribes to the event stream, writes rows, commits in batches.

Events are queued without blocking the run; one task drains the queue and commits when a shard
ends (so a crash loses at most the shard in flight) or when a batch grows. A database error turns
the writer into a sink that only counts what it dropped: recording must never break a run.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..events import (
    CapacityChanged,
    Event,
    RunFinished,
    RunStarted,
    ShardCrashed,
    ShardFinished,
    TestFinished,
    TestRetrying,
)
from ..models import Outcome, TestResult

log = structlog.get_logger("test_framework.store")

EWMA_ALPHA = 0.3
BATCH_ROWS = 500
_NO_DURATION = {Outcome.CRASHED, Outcome.TIMEOUT, Outcome.NOT_RUN, Outcome.CACHED}
_FAILING = {Outcome.FAILED, Outcome.ERROR, Outcome.CRASHED, Outcome.TIMEOUT}


_INSERT_RESULT = (
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
_UPSERT_STATS_REAL = _UPSERT_STATS.format(
    durations=f" ewma_duration = {EWMA_ALPHA} * excluded.ewma_duration"
    f" + {1 - EWMA_ALPHA} * ewma_duration,"
    f" ewma_cpu = coalesce({EWMA_ALPHA} * excluded.ewma_cpu + {1 - EWMA_ALPHA} * ewma_cpu,"
    " excluded.ewma_cpu, ewma_cpu),"
    " max_rss = max(coalesce(max_rss, 0), coalesce(excluded.max_rss, 0)),"
)
# Crashed and timed-out tests count as failures but leave the duration estimates alone.
_UPSERT_STATS_COUNTS = _UPSERT_STATS.format(durations="")


@dataclass
class RunMetadata:
    run_id: str
    project: str
    profile: str
    categories: str
    argv: tuple[str, ...] = ()


@dataclass
class StoreWriter:
    db: aiosqlite.Connection
    meta: RunMetadata
    failed: str | None = None
    written: int = 0
    dropped: int = 0
    _send: MemoryObjectSendStream[Event] = field(init=False)
    _receive: MemoryObjectReceiveStream[Event] = field(init=False)
    _pending: int = 0
    _attempt_rows: list[tuple[Any, ...]] = field(default_factory=list)
    _stats_rows: dict[bool, list[tuple[Any, ...]]] = field(
        default_factory=lambda: {True: [], False: []}
    )

    def __post_init__(self) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[Event](math.inf)

    def handle(self, event: Event) -> None:
        """EventBus subscriber: never blocks, never raises."""
        try:
            self._send.send_nowait(event)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self.dropped += 1

    def close(self) -> None:
        """No more events: the writer task finishes what is queued, commits and returns."""
        self._send.close()

    async def run(self) -> None:
        async with self._receive:
            async for event in self._receive:
                await self._take(event)
                # Whatever else is queued goes now, without a trip through the event loop each.
                while True:
                    try:
                        event = self._receive.receive_nowait()
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                    await self._take(event)
            if self.failed is None:
                try:
                    await self._flush()
                    await self.db.commit()
                except (sqlite3.Error, ValueError) as exc:
                    self.failed = f"{type(exc).__name__}: {exc}"
                    log.warning("store_write_failed", error=self.failed)

    async def _take(self, event: Event) -> None:
        if self.failed is not None:
            self.dropped += 1
            return
        try:
            await self._write(event)
        except (sqlite3.Error, ValueError, OSError) as exc:
            self.failed = f"{type(exc).__name__}: {exc}"
            log.warning("store_write_failed", error=self.failed)
            self.dropped += 1

    async def _commit_if(self, force: bool) -> None:
        """Rows wait in memory and go in one executemany each: a thread hop per batch, not
        per test (50,000 tests are 50,000 rows)."""
        if force or self._pending >= BATCH_ROWS:
            await self._flush()
            await self.db.commit()
            self._pending = 0

    async def _flush(self) -> None:
        if self._attempt_rows:
            rows, self._attempt_rows = self._attempt_rows, []
            await self.db.executemany(_INSERT_RESULT, rows)
        for real, sql in ((True, _UPSERT_STATS_REAL), (False, _UPSERT_STATS_COUNTS)):
            if self._stats_rows[real]:
                rows, self._stats_rows[real] = self._stats_rows[real], []
                await self.db.executemany(sql, rows)

    async def _write(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            await self.db.execute(
                "INSERT OR REPLACE INTO runs"
                " (run_id, project, started_at, argv, profile, categories)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    self.meta.run_id,
                    self.meta.project,
                    time.time(),
                    json.dumps(list(self.meta.argv)),
                    self.meta.profile,
                    self.meta.categories,
                ),
            )
            await self._commit_if(True)
        elif isinstance(event, TestFinished):
            await self._write_result(event)
            await self._commit_if(False)
        elif isinstance(event, TestRetrying):
            await self._write_attempt(event.result)
            await self._commit_if(False)
        elif isinstance(event, CapacityChanged):
            await self.db.execute(
                "INSERT INTO capacity_samples VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.meta.run_id,
                    event.timestamp,
                    event.old,
                    event.new,
                    event.reason,
                    event.cpu_percent,
                    event.memory_available,
                    event.waiting,
                ),
            )
            self._pending += 1
        elif isinstance(event, ShardFinished):
            await self._write_deps(event)
            await self._commit_if(True)
        elif isinstance(event, ShardCrashed):
            await self._commit_if(True)
        elif isinstance(event, RunFinished):
            summary = event.summary
            await self.db.execute(
                "UPDATE runs SET finished_at = ?, exit_code = ?, duration = ?, counts = ?,"
                " interrupted = ? WHERE run_id = ?",
                (
                    time.time(),
                    summary.exit_code,
                    summary.duration,
                    json.dumps(dict(summary.counts)),
                    int(summary.interrupted),
                    self.meta.run_id,
                ),
            )
            await self._commit_if(True)

    async def _write_result(self, event: TestFinished) -> None:
        result = event.result
        await self._write_attempt(result)
        if result.outcome is not Outcome.NOT_RUN:
            await self._update_stats(result)

    async def _write_attempt(self, result: TestResult) -> None:
        longrepr = result.longrepr
        self._attempt_rows.append(
            (
                self.meta.run_id,
                result.nodeid,
                result.attempt,
                result.outcome.value,
                result.duration,
                result.shard_id,
                result.message,
                longrepr[:20000] if longrepr else None,
                result.cpu_time,
                result.max_rss,
            )
        )
        self._pending += 1
        self.written += 1

    async def _update_stats(self, result: TestResult) -> None:
        """Counts and last outcome for every ran test; the duration only when it is a real one
        (a crashed or timed-out test's time says nothing about its next run)."""
        outcome = result.outcome
        self._stats_rows[outcome not in _NO_DURATION].append(
            (
                self.meta.project,
                result.nodeid,
                result.duration,
                result.cpu_time,
                result.max_rss,
                int(outcome in _FAILING),
                int(outcome is Outcome.FLAKY),
                outcome.value,
                self.meta.run_id,
                time.time(),
            )
        )

    async def _write_deps(self, event: ShardFinished) -> None:
        rows = [
            (self.meta.project, test_file, dep) for test_file in event.files for dep in event.deps
        ]
        if rows:
            await self.db.executemany("INSERT OR IGNORE INTO deps VALUES (?, ?, ?)", rows)
