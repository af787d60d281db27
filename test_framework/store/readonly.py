"""Reading a results store for a report, never changing it.

The report commands (`flaky`, `history`, `slowest`, `stats`) resolve the store's path exactly as a
run does and open it read-only: unlike a run, they never create, migrate or move aside a store,
because a report must not change what it reports on. (SQLite may leave an empty `-wal` and a
`-shm` beside a WAL store it read; the next run reuses them.)
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from ..errors import StoreError
from .connection import BUSY_TIMEOUT_MS


@asynccontextmanager
async def read_only(store: Path) -> AsyncIterator[aiosqlite.Connection | None]:
    """The store opened read-only in one snapshot (a run may be writing), or None when no engine
    has written to it yet. An unreadable store is a StoreError (exit 3)."""
    # mode=ro: never create, migrate or write the file; as_uri() escapes '?' and '#' in the path.
    uri = f"{store.as_uri()}?mode=ro"
    try:
        async with aiosqlite.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000) as db:
            cursor = await db.execute("PRAGMA user_version")
            row = await cursor.fetchone()
            if not row or int(row[0]) == 0:  # an empty file: no engine has written to it
                yield None
                return
            await db.execute("BEGIN")
            yield db
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the results store {store}: {exc}") from None
