"""The results store's connection: one SQLite file, opened with aiosqlite, in WAL mode.

`open_store` migrates the schema forward; a file that is not a database, is corrupt, or comes from a
newer engine is moved aside with a warning and a fresh store takes its place, because history is a
convenience and must never cost a run. Every failure here becomes a StoreError the orchestrator
turns into a warning.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import structlog

from ..errors import StoreError
from .files import is_damaged, mark_cache_folder, move_aside
from .schema import MIGRATIONS, SCHEMA_VERSION

log = structlog.get_logger("test_framework.store")

BUSY_TIMEOUT_MS = 30_000


async def _connect(path: Path) -> aiosqlite.Connection:
    db = await aiosqlite.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute("PRAGMA foreign_keys = ON")
        cursor = await db.execute("PRAGMA user_version")
        row = await cursor.fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise _NewerSchema(version)
        if version < SCHEMA_VERSION:
            await _migrate(db, version)
    except BaseException:
        await db.close()
        raise
    return db


class _NewerSchema(Exception):
    def __init__(self, version: int) -> None:
        super().__init__(
            f"store schema version {version} is newer than this engine's {SCHEMA_VERSION}"
        )


async def _migrate(db: aiosqlite.Connection, version: int) -> None:
    # BEGIN IMMEDIATE serialises two engines migrating the same new file at once.
    await db.execute("BEGIN IMMEDIATE")
    try:
        cursor = await db.execute("PRAGMA user_version")
        row = await cursor.fetchone()
        current = int(row[0]) if row else 0
        for statements in MIGRATIONS[current:]:
            for statement in statements:
                await db.execute(statement)
        await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        await db.commit()
    except BaseException:
        await db.rollback()
        raise


async def connect_store(path: Path) -> aiosqlite.Connection:
    """Open (creating or migrating) the store at `path`, moving a bad file aside once."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mark_cache_folder(path.parent)
    except OSError as exc:
        raise StoreError(f"cannot create the store folder {path.parent}: {exc.strerror}") from None
    try:
        return await _connect(path)
    except _NewerSchema as exc:
        moved = move_aside(path, "newer")
        log.warning("store_moved_aside", path=str(path), moved_to=str(moved), reason=str(exc))
    except sqlite3.DatabaseError as exc:
        if not is_damaged(exc):  # busy or locked: another engine is using a healthy store
            raise StoreError(f"cannot open the store {path}: {exc}") from None
        moved = move_aside(path, "corrupt")
        log.warning("store_moved_aside", path=str(path), moved_to=str(moved), reason=str(exc))
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot open the store {path}: {exc}") from None
    try:
        return await _connect(path)
    except (OSError, sqlite3.Error, _NewerSchema) as exc:
        raise StoreError(f"cannot open the store {path}: {exc}") from None


@contextlib.asynccontextmanager
async def open_store(path: Path) -> AsyncIterator[aiosqlite.Connection]:
    db = await connect_store(path)
    try:
        yield db
    finally:
        with contextlib.suppress(Exception):
            await db.close()
