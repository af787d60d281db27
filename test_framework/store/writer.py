"""The single writer: subscribes to the event stream, executes the rows each event adds
(rows.py), commits in batches.

Events are queued without blocking the run; one task drains the queue and commits when a shard
ends (so a crash loses at most the shard in flight) or when a batch grows. A database error turns
the writer into a sink that only counts what it dropped: recording must never break a run.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..events import Event
from .rows import INSERT_RESULT, RunRows

log = structlog.get_logger("test_framework.store")

BATCH_ROWS = 500
# How long the end of a run waits for the last rows to be written.
FINISH_SECONDS = 30.0


@dataclass
class StoreWriter:
    db: aiosqlite.Connection
    failed: str | None = None
    written: int = 0
    dropped: int = 0
    rows: RunRows = field(default_factory=RunRows)
    _send: MemoryObjectSendStream[Event] = field(init=False)
    _receive: MemoryObjectReceiveStream[Event] = field(init=False)
    _pending: int = 0
    # Rows wait here, grouped by statement in first-seen order, and go in one executemany each:
    # a thread hop per batch, not per test (50,000 tests are 50,000 rows).
    _batch: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    _finished: anyio.Event = field(default_factory=anyio.Event)

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

    async def finish(self, limit: float = FINISH_SECONDS) -> None:
        """Close and wait until everything queued is written, even while the run is being
        cancelled (an interrupt, an engine error); a store slower than `limit` is left."""
        self.close()
        with anyio.CancelScope(shield=True), anyio.move_on_after(limit):
            await self._finished.wait()

    async def run(self) -> None:
        try:
            await self._drain()
        finally:
            self._finished.set()

    async def _drain(self) -> None:
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
                    await self._commit()
                except (sqlite3.Error, ValueError) as exc:
                    self._fail(exc)

    async def _take(self, event: Event) -> None:
        if self.failed is not None:
            self.dropped += 1
            return
        rows = self.rows.rows(event)
        for sql, params in rows.writes:
            self._batch.setdefault(sql, []).append(params)
        self._pending += len(rows.writes)
        self.written += sum(1 for sql, _ in rows.writes if sql == INSERT_RESULT)  # attempts
        try:
            if rows.commit or self._pending >= BATCH_ROWS:
                await self._commit()
        except (sqlite3.Error, ValueError, OSError) as exc:
            self._fail(exc)
            self.dropped += 1

    async def _commit(self) -> None:
        batch, self._batch = self._batch, {}
        for sql, params in batch.items():
            await self.db.executemany(sql, params)
        await self.db.commit()
        self._pending = 0

    def _fail(self, exc: BaseException) -> None:
        self.failed = f"{type(exc).__name__}: {exc}"
        log.warning("store_write_failed", error=self.failed)
