"""Reads the planner and discovery need, handed to them as plain data by the orchestrator."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the pytest plugin reads rows without aiosqlite
    import aiosqlite

from ..models import FAILING_OUTCOMES, Collection, FileRecord, Outcome, Terminal

# Under contention a CPU-bound test's wall time stretches and its measured CPU share drops; a
# share above this says "CPU-bound" and no more, so a contended run never learns to overcommit.
CPU_BOUND_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class History:
    durations: dict[str, float]
    recent_failures: frozenset[str]
    cpu: dict[str, float] = field(default_factory=dict)
    max_rss: dict[str, int] = field(default_factory=dict)  # bytes, the worker's peak while it ran

    @classmethod
    def empty(cls) -> History:
        return cls(durations={}, recent_failures=frozenset())

    def cpu_share(self, nodeids: Sequence[str]) -> float | None:
        """CPU seconds per wall second of these tests, over the ones known; None if none is."""
        known = [n for n in nodeids if n in self.cpu and n in self.durations]
        wall = sum(self.durations[n] for n in known)
        return sum(self.cpu[n] for n in known) / wall if known and wall > 0 else None

    def peak_rss(self, nodeids: Sequence[str]) -> int:
        """The largest peak RSS any of these tests' workers showed (0 when none is known)."""
        return max((self.max_rss.get(n, 0) for n in nodeids), default=0)

    def cpu_fraction(self, nodeids: Sequence[str]) -> float | None:
        """The share of wall time these tests kept a core busy, when most of them are known."""
        known = [n for n in nodeids if n in self.cpu and n in self.durations]
        if not nodeids or len(known) * 2 < len(nodeids):
            return None
        wall = sum(self.durations[n] for n in known)
        return bounded_fraction(sum(self.cpu[n] for n in known), wall)


def bounded_fraction(cpu_seconds: float, wall_seconds: float) -> float | None:
    """CPU seconds per wall second, with every share above CPU_BOUND_SHARE read as 1.0."""
    if wall_seconds <= 0:
        return None
    share = cpu_seconds / wall_seconds
    return 1.0 if share > CPU_BOUND_SHARE else share


async def load_history(db: aiosqlite.Connection, project: str) -> History:
    cursor = await db.execute(
        "SELECT nodeid, ewma_duration, last_outcome, ewma_cpu, max_rss FROM test_stats"
        " WHERE project = ?",
        (project,),
    )
    durations: dict[str, float] = {}
    cpu: dict[str, float] = {}
    rss: dict[str, int] = {}
    failures: set[str] = set()
    failing = {o.value for o in FAILING_OUTCOMES}
    for nodeid, duration, last, cpu_seconds, peak in await cursor.fetchall():
        durations[nodeid] = float(duration)
        if cpu_seconds is not None:
            cpu[nodeid] = float(cpu_seconds)
        if peak:
            rss[nodeid] = int(peak)
        if last in failing:
            failures.add(nodeid)
    return History(durations=durations, recent_failures=frozenset(failures), cpu=cpu, max_rss=rss)


async def load_collection(db: aiosqlite.Connection, fingerprint: str) -> Collection | None:
    """A clean collection saved under `fingerprint` (errors are never cached)."""
    cursor = await db.execute(
        "SELECT rootdir, nodeids, positionals, constraints FROM collections WHERE fingerprint = ?",
        (fingerprint,),
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    constraints = json.loads(row[3] or "{}")
    return Collection(
        rootdir=row[0],
        nodeids=tuple(json.loads(row[1])),
        positionals=tuple(json.loads(row[2])),
        serial=tuple(constraints.get("serial", ())),
        resources={n: tuple(r) for n, r in constraints.get("resources", {}).items()},
        read=dict(constraints.get("read", {})),
        modules=tuple(constraints.get("modules", ())),
        terminal=_terminal(constraints.get("terminal")),
    )


async def save_collection(
    db: aiosqlite.Connection, fingerprint: str, cached: Collection, keep: int = 20
) -> None:
    await db.execute(
        "INSERT OR REPLACE INTO collections"
        " (fingerprint, rootdir, nodeids, positionals, created_at, constraints)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            fingerprint,
            cached.rootdir,
            json.dumps(list(cached.nodeids)),
            json.dumps(list(cached.positionals)),
            time.time(),
            json.dumps(
                {
                    "serial": list(cached.serial),
                    "resources": dict(cached.resources),
                    "read": dict(cached.read),
                    "modules": list(cached.modules),
                    "terminal": dataclasses.asdict(cached.terminal),
                }
            ),
        ),
    )
    # Old fingerprints are never read again; keep the table small.
    await db.execute(
        "DELETE FROM collections WHERE fingerprint NOT IN "
        "(SELECT fingerprint FROM collections ORDER BY created_at DESC LIMIT ?)",
        (keep,),
    )
    await db.commit()


async def load_context_needs(db: aiosqlite.Connection, project: str) -> dict[str, tuple[str, str]]:
    """Test files that needed pytest's context: file -> (why, the file's digest then)."""
    cursor = await db.execute(
        "SELECT file, why, file_digest FROM context_needs WHERE project = ?", (project,)
    )
    return {str(file): (str(why), str(digest)) for file, why, digest in await cursor.fetchall()}


async def load_unstable_ids(db: aiosqlite.Connection, project: str) -> dict[str, str]:
    """Test files whose ids changed between collections: file -> the file's digest then."""
    cursor = await db.execute(
        "SELECT file, file_digest FROM unstable_ids WHERE project = ?", (project,)
    )
    return {str(file): str(digest) for file, digest in await cursor.fetchall()}


SELECT_FILE_RECORDS = (
    "SELECT test_file, environment, dependencies, outcomes, recorded_at FROM file_records"
    " WHERE project = ?"
)
SELECT_FILE_INDEX = (
    "SELECT path, mtime_ns, size, inode, digest, indexed_at_ns FROM file_index WHERE project = ?"
)


async def load_file_records(db: aiosqlite.Connection, project: str) -> dict[str, FileRecord]:
    """The skip cache's record of each test file (docs/skip-cache.md)."""
    cursor = await db.execute(SELECT_FILE_RECORDS, (project,))
    return file_records_from(await cursor.fetchall())


def file_records_from(rows: Iterable[Sequence[Any]]) -> dict[str, FileRecord]:
    """`SELECT_FILE_RECORDS`' rows as records (shared with the pytest plugin's sqlite3)."""
    records = {}
    for test_file, environment, dependencies, outcomes, recorded_at in rows:
        records[str(test_file)] = FileRecord(
            str(test_file),
            str(environment),
            {str(k): str(v) for k, v in json.loads(dependencies).items()},
            {str(k): Outcome(v) for k, v in json.loads(outcomes).items()},
            float(recorded_at),
        )
    return records


async def load_file_index(
    db: aiosqlite.Connection, project: str
) -> tuple[int, dict[str, tuple[int, int, int, str]]]:
    """The file index as last saved: when it was taken, and path -> (mtime_ns, size, inode,
    digest)."""
    cursor = await db.execute(SELECT_FILE_INDEX, (project,))
    return file_index_from(await cursor.fetchall())


def file_index_from(
    rows: Iterable[Sequence[Any]],
) -> tuple[int, dict[str, tuple[int, int, int, str]]]:
    """`SELECT_FILE_INDEX`' rows as (when taken, path -> (mtime_ns, size, inode, digest))."""
    entries: dict[str, tuple[int, int, int, str]] = {}
    taken = 0
    for path, mtime_ns, size, inode, digest, indexed_at_ns in rows:
        entries[str(path)] = (int(mtime_ns), int(size), int(inode), str(digest))
        taken = int(indexed_at_ns)
    return taken, entries


async def forget_file_records(
    db: aiosqlite.Connection, project: str, path: str | None = None
) -> int:
    """Drop the skip cache's records: of the test files that are `path`, lie under it, or
    depend on it (every record when None; the file index too). How many records went."""
    records = await load_file_records(db, project)
    if path is None:
        gone = list(records)
        await db.execute("DELETE FROM file_index WHERE project = ?", (project,))
    else:
        folder = path.rstrip("/") + "/"
        gone = [
            test_file
            for test_file, record in records.items()
            if test_file == path
            or test_file.startswith(folder)
            or any(dep == path or dep.startswith(folder) for dep in record.dependencies)
        ]
    await db.executemany(
        "DELETE FROM file_records WHERE project = ? AND test_file = ?",
        [(project, test_file) for test_file in gone],
    )
    await db.commit()
    return len(gone)


async def recent_runs(db: aiosqlite.Connection, limit: int = 20) -> list[dict[str, object]]:
    cursor = await db.execute(
        "SELECT run_id, started_at, duration, exit_code, counts, profile, categories "
        "FROM runs ORDER BY started_at DESC LIMIT ?",
        (limit,),
    )
    rows = await cursor.fetchall()
    return [
        {
            "run_id": r[0],
            "started_at": r[1],
            "duration": r[2],
            "exit_code": r[3],
            "counts": json.loads(r[4]) if r[4] else {},
            "profile": r[5],
            "categories": r[6],
        }
        for r in rows
    ]


def _terminal(saved: dict[str, Any] | None) -> Terminal:
    """A cached collection's terminal settings (JSON made its tuples lists; keys a newer
    version added take their defaults)."""
    if saved is None:
        return Terminal()
    known = {f.name for f in dataclasses.fields(Terminal)}
    values = {k: v for k, v in saved.items() if k in known}
    values["summary_plugins"] = tuple(values.get("summary_plugins") or ())
    return Terminal(**values)
