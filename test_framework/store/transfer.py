"""Moving a project's durations and history between stores: CI jobs on other machines.

An export is one JSON document (gzip-compressed when its name ends in `.gz`) holding the
project's runs, their per-attempt results and the per-test statistics planning reads
(durations, CPU, peak RSS, failures). Nothing machine-bound travels: not the skip cache's file
records or index (paths, inodes, environments), not the cached collection (it is checked
against the tree that made it). Rows carry no project path: an import files them under the
importing project's root, since CI checks the same repository out in different folders.

Merging is a union: runs and results by their keys (a row already present stays), and for a
test's statistics the most recently updated wins, so shards that each ran part of a suite
together give every test its latest numbers.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

FORMAT = "test_framework-store-export"
VERSION = 1
RUN_COLUMNS = (
    "run_id",
    "started_at",
    "finished_at",
    "argv",
    "profile",
    "categories",
    "exit_code",
    "duration",
    "counts",
    "interrupted",
)
RESULT_COLUMNS = (
    "run_id",
    "nodeid",
    "attempt",
    "outcome",
    "duration",
    "shard_id",
    "message",
    "longrepr",
    "cpu_time",
    "max_rss",
)
STAT_COLUMNS = (
    "nodeid",
    "ewma_duration",
    "runs",
    "failures",
    "flakes",
    "last_outcome",
    "last_run_id",
    "updated_at",
    "ewma_cpu",
    "max_rss",
)


async def export_rows(db: aiosqlite.Connection, project: str, last_runs: int) -> dict[str, Any]:
    runs = await _rows(
        db,
        f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE project = ?"
        " ORDER BY started_at DESC, run_id DESC LIMIT ?",
        (project, last_runs),
    )
    run_ids = [r[0] for r in runs]
    results: list[list[Any]] = []
    for start in range(0, len(run_ids), 500):  # SQLite's bound on parameters
        chunk = run_ids[start : start + 500]
        results += await _rows(
            db,
            f"SELECT {', '.join(RESULT_COLUMNS)} FROM results"
            f" WHERE run_id IN ({', '.join('?' for _ in chunk)})",
            chunk,
        )
    stats = await _rows(
        db, f"SELECT {', '.join(STAT_COLUMNS)} FROM test_stats WHERE project = ?", (project,)
    )
    return document(runs, results, stats)


def document(
    runs: Sequence[Sequence[Any]], results: Sequence[Sequence[Any]], stats: Sequence[Sequence[Any]]
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "columns": {"runs": RUN_COLUMNS, "results": RESULT_COLUMNS, "test_stats": STAT_COLUMNS},
        "runs": [list(r) for r in runs],
        "results": [list(r) for r in results],
        "test_stats": [list(r) for r in stats],
    }


async def import_rows(db: aiosqlite.Connection, project: str, data: Mapping[str, Any]) -> int:
    """Merge an export into the store under `project`; returns the runs added."""
    before = db.total_changes
    await db.executemany(
        f"INSERT OR IGNORE INTO runs (project, {', '.join(RUN_COLUMNS)})"
        f" VALUES (?, {', '.join('?' for _ in RUN_COLUMNS)})",
        ([project, *row] for row in data["runs"]),
    )
    added = db.total_changes - before
    await db.executemany(
        f"INSERT OR IGNORE INTO results ({', '.join(RESULT_COLUMNS)})"
        f" VALUES ({', '.join('?' for _ in RESULT_COLUMNS)})",
        data["results"],
    )
    updates = ", ".join(f"{c} = excluded.{c}" for c in STAT_COLUMNS if c != "nodeid")
    await db.executemany(
        f"INSERT INTO test_stats (project, {', '.join(STAT_COLUMNS)})"
        f" VALUES (?, {', '.join('?' for _ in STAT_COLUMNS)})"
        f" ON CONFLICT (project, nodeid) DO UPDATE SET {updates}"
        " WHERE COALESCE(excluded.updated_at, 0) > COALESCE(test_stats.updated_at, 0)",
        ([project, *row] for row in data["test_stats"]),
    )
    await db.commit()
    return added


def merge_documents(documents: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    runs: dict[str, list[Any]] = {}
    results: dict[tuple[Any, ...], list[Any]] = {}
    stats: dict[str, list[Any]] = {}
    updated = STAT_COLUMNS.index("updated_at")
    for data in documents:
        for row in data["runs"]:
            runs.setdefault(row[0], row)
        for row in data["results"]:
            results.setdefault((row[0], row[1], row[2]), row)
        for row in data["test_stats"]:
            kept = stats.get(row[0])
            if kept is None or (row[updated] or 0) > (kept[updated] or 0):
                stats[row[0]] = row
    return document(list(runs.values()), list(results.values()), list(stats.values()))


def read_export(path: Path) -> dict[str, Any]:
    """An export file's document; ValueError naming what is wrong when it is not one."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValueError("not JSON") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f'not a store export (no "format": {FORMAT!r})')
    if data.get("version") != VERSION:
        raise ValueError(f"export version {data.get('version')!r}; this engine reads {VERSION}")
    columns = data.get("columns", {})
    expected = {"runs": RUN_COLUMNS, "results": RESULT_COLUMNS, "test_stats": STAT_COLUMNS}
    for table, names in expected.items():
        if tuple(columns.get(table, ())) != names or not isinstance(data.get(table), list):
            raise ValueError(f"its {table} are not in this engine's columns")
    return data


def write_export(path: Path, data: Mapping[str, Any]) -> None:
    text = json.dumps(data, separators=(",", ":")).encode("utf-8")
    path.write_bytes(gzip.compress(text, mtime=0) if path.name.endswith(".gz") else text)


async def _rows(db: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> list[list[Any]]:
    cursor = await db.execute(sql, tuple(params))
    return [list(row) for row in await cursor.fetchall()]
