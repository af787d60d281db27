"""The results store: one SQLite file, opened with aiosqlite, in WAL mode.

`open_store` migrates the schema forward; a file that is not a database, is corrupt, or comes from a
newer engine is moved aside with a warning and a fresh store takes its place, because history is a
convenience and must never cost a run. Every failure here becomes a StoreError the orchestrator
turns into a warning.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import structlog

from ..errors import StoreError
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


_DAMAGED = (
    {sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT} if hasattr(sqlite3, "SQLITE_NOTADB") else set()
)


def _is_damaged(exc: sqlite3.DatabaseError) -> bool:
    """Only a file that is not a database, or a corrupt one, is moved aside; never a busy one."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and _DAMAGED:
        return code in _DAMAGED
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


def _move_aside(path: Path, why: str) -> Path:
    target = path.with_name(f"{path.name}.{why}-{int(time.time())}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.replace(Path(f"{target}{suffix}"))
    return target


CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by test_framework.\n"
    "# For information about cache directory tags, see https://bford.info/cachedir/\n"
)


def mark_cache_folder(folder: Path) -> None:
    """As pytest marks its cache: a `.gitignore` of `*` (so `git add -A` never stages the store
    and a pre-commit hook never sees it change) and a `CACHEDIR.TAG` for backup tools. Only a
    folder that holds nothing but the engine's own files is marked (never a `--cache-dir` the
    user pointed at a folder of theirs), and a marker already there is left alone."""
    if any(not _ours(entry.name) for entry in folder.iterdir()):
        return
    for name, text in (
        (".gitignore", "# Created by test_framework automatically.\n*\n"),
        (
            "CACHEDIR.TAG",
            CACHEDIR_TAG,
        ),
    ):
        marker = folder / name
        if not marker.exists():
            marker.write_text(text, encoding="utf-8")


def clear_store_folder(folder: Path) -> None:
    """`--clear-cache`: delete the engine's own files there (never anything else: the folder
    may be one the user named with `--cache-dir`), and the folder if that empties it."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if _ours(entry.name) and entry.is_file():
            entry.unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()


def _ours(name: str) -> bool:
    return name.startswith(("results.sqlite", "internal-errors.log", "engine.log")) or name in (
        ".gitignore",
        "CACHEDIR.TAG",
    )


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
        moved = _move_aside(path, "newer")
        log.warning("store_moved_aside", path=str(path), moved_to=str(moved), reason=str(exc))
    except sqlite3.DatabaseError as exc:
        if not _is_damaged(exc):  # busy or locked: another engine is using a healthy store
            raise StoreError(f"cannot open the store {path}: {exc}") from None
        moved = _move_aside(path, "corrupt")
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
