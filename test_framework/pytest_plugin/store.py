"""The engine's store, opened with the standard library's sqlite3 inside pytest: the same file,
schema and migrations as the engine's aiosqlite connection (store/connection.py), the same
rows (store/rows.py), written in one transaction at the end of the session.

Several writers at once (two pytest runs, or a pytest run and the engine) are expected: WAL
lets readers go on while one writes, and the busy timeout makes a writer wait its turn rather
than fail with "database is locked". A damaged file is moved aside as the engine does.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from ..models import FileRecord
from ..regressions import BASELINE_RUNS
from ..store.files import is_damaged, mark_cache_folder, move_aside
from ..store.history import BASELINE_SQL, baseline_params, fold_baselines
from ..store.queries import (
    SELECT_FILE_INDEX,
    SELECT_FILE_RECORDS,
    file_index_from,
    file_records_from,
)
from ..store.rows import Write
from ..store.schema import MIGRATIONS, SCHEMA_VERSION

BUSY_TIMEOUT_SECONDS = 30.0
FORGET_FILE = "DELETE FROM file_records WHERE project = ? AND test_file = ?"


class StoreUnavailable(Exception):
    """The store cannot be used: the run goes on without the cache, and says why."""


def open_store(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mark_cache_folder(path.parent)
    except OSError as exc:
        raise StoreUnavailable(f"cannot create {path.parent}: {exc.strerror}") from None
    for last in (False, True):
        try:
            return _connect(path)
        except _Newer as exc:
            if last:
                raise StoreUnavailable(str(exc)) from None
            move_aside(path, "newer")
        except sqlite3.DatabaseError as exc:
            if last or not is_damaged(exc):
                raise StoreUnavailable(f"cannot open {path}: {exc}") from None
            move_aside(path, "corrupt")
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot open {path}: {exc}") from None
    raise AssertionError("unreachable")


class _Newer(Exception):
    pass


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    try:
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise _Newer(f"store schema version {version} is newer than this engine's")
        if version < SCHEMA_VERSION:
            _migrate(db)
    except BaseException:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection) -> None:
    # BEGIN IMMEDIATE: two processes migrating one new file take turns.
    db.execute("BEGIN IMMEDIATE")
    try:
        current = int(db.execute("PRAGMA user_version").fetchone()[0])
        for statements in MIGRATIONS[current:]:
            for statement in statements:
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def load_records(
    db: sqlite3.Connection, project: str
) -> tuple[dict[str, FileRecord], tuple[int, dict[str, tuple[int, int, int, str]]]]:
    """The skip cache's records and the file index as last saved."""
    records = file_records_from(db.execute(SELECT_FILE_RECORDS, (project,)).fetchall())
    index = file_index_from(db.execute(SELECT_FILE_INDEX, (project,)).fetchall())
    return records, index


def load_durations(db: sqlite3.Connection, project: str) -> dict[str, float]:
    """Each test's stored duration (its moving average), for the trip-wire's weights."""
    rows = db.execute(
        "SELECT nodeid, ewma_duration FROM test_stats WHERE project = ?", (project,)
    ).fetchall()
    return {str(nodeid): float(seconds) for nodeid, seconds in rows}


def load_baselines(
    db: sqlite3.Connection, project: str, nodeids: Iterable[str]
) -> dict[str, tuple[float, int]]:
    """Each test's median passing duration over the project's recent runs, and their count
    (--performance-regression), by the engine's own query."""
    rows = db.execute(BASELINE_SQL, baseline_params(project, BASELINE_RUNS)).fetchall()
    return {n: (b.median, b.runs) for n, b in fold_baselines(rows, nodeids).items()}


def write(db: sqlite3.Connection, writes: Iterable[Write]) -> None:
    """Every row of the session in one transaction (a writer waits for another's turn)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in writes:
            db.execute(sql, params)
        db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
