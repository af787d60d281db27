"""The skip cache's state for one run, synchronous and shared: the engine's `ResultCache` and
the pytest plugin (`pytest --cache-tests`) decide, sample, check and record with the same code,
so a record one of them leaves means the same to the other.

It holds what the store said (the records, the file index as last saved), reads the project's
files through the index, hands plain data to the pure decision (`skip_cache.decide`), gathers
what each test file imported and read, and builds the records a complete run leaves. A file is
recorded only when every one of its tests got an outcome in the run and no worker died: a
record with a missing part would be a false skip waiting to happen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .events import CacheRecorded
from .fingerprint import project_files
from .fingerprint.dependencies import file_dependencies
from .fingerprint.imports import ImportGraph
from .fingerprint.index import MISSING, Entry, FileIndex
from .models import FileRecord, NodeId, Outcome
from .skip_cache import CacheDecision, decide, reported, sample, unplaced_changes

# What a record may say of a test: only outcomes a later run could report again, or ones that
# make it run (a failure); never "not run" or "cached" (nothing was learned then).
_UNRECORDABLE = frozenset({Outcome.NOT_RUN, Outcome.CACHED})

IndexRow = tuple[str, int, int, int, str]  # path, mtime_ns, size, inode, digest


@dataclass
class CacheState:
    root: Path
    environment: str
    records: dict[str, FileRecord]
    index: FileIndex
    previous: dict[str, str]  # path -> digest when the index was last saved
    graph: ImportGraph
    ttl_seconds: float
    sample_share: float
    imports: dict[str, set[str]] = field(default_factory=dict)
    reads: dict[str, set[str]] = field(default_factory=dict)
    worker_died: bool = False
    decision: CacheDecision = field(default_factory=CacheDecision)
    sampled: tuple[NodeId, ...] = ()  # the trip-wire: cached tests run anyway

    @classmethod
    def load(
        cls,
        root: Path,
        environment: str,
        records: dict[str, FileRecord],
        saved_index: tuple[int, Mapping[str, tuple[int, int, int, str]]],
        *,
        ttl_seconds: float,
        sample_share: float,
    ) -> CacheState:
        """From what the store holds: the records and the index (when taken, its entries)."""
        taken, saved = saved_index
        entries = {path: Entry(*values) for path, values in saved.items()}
        return cls(
            root=root,
            environment=environment,
            records=records,
            index=FileIndex(root, entries, indexed_at_ns=taken),
            previous={path: entry.digest for path, entry in entries.items()},
            graph=ImportGraph(root),
            ttl_seconds=ttl_seconds,
            sample_share=sample_share,
        )

    def decide(
        self, collected: Mapping[str, Sequence[NodeId]], always_run: Iterable[str] = ()
    ) -> CacheDecision:
        """Which of the collected test files (file -> its tests) report their records."""
        placed = {path for record in self.records.values() for path in record.dependencies}
        sources = {path.relative_to(self.root).as_posix() for path in project_files(self.root)}
        # Also what the last index held: a file is removed only when it is gone, not when no
        # record names it any more.
        watched = sources | placed | set(self.previous)
        current = {path: self.index.digest(path) for path in sorted(watched)}
        current = {path: digest for path, digest in current.items() if digest != MISSING}
        self.decision = decide(
            collected,
            self.records,
            environment=self.environment,
            digest=self.index.digest,
            unplaced=unplaced_changes(self.previous, current, placed) if self.previous else (),
            now=time.time(),
            ttl_seconds=self.ttl_seconds,
            always_run=always_run,
        )
        if not self.previous:  # the first run with the cache: nothing recorded to trust
            self.decision.runs.update(dict.fromkeys(self.decision.cached, "never recorded"))
            self.decision.cached.clear()
        return self.decision

    def sample(
        self,
        random_source: Callable[[], float],
        durations: Mapping[NodeId, float] | None = None,
    ) -> tuple[NodeId, ...]:
        """The trip-wire's sample (skip_cache.sample), kept for the verdict."""
        self.sampled = sample(self.decision, self.sample_share, random_source, durations)
        return self.sampled

    def tripped(self, outcomes: Mapping[NodeId, Outcome]) -> str | None:
        """Why the cache is not to be trusted in this run: a sampled test that did not give its
        recorded outcome (None: every one did, or has not run yet)."""
        recorded = self.decision.cached_outcomes()
        for nodeid in self.sampled:
            outcome = outcomes.get(nodeid)
            if outcome is not None and outcome is not recorded[nodeid][0]:
                return f"{nodeid} {outcome} where its record said {recorded[nodeid][0]}"
        return None

    def reported(self) -> dict[NodeId, str]:
        """The tests reported from their records (the sample left out): why, as a message."""
        return reported(self.decision, self.sampled)

    def note_dependencies(
        self, imports: Mapping[str, Iterable[str]], reads: Mapping[str, Iterable[str]]
    ) -> None:
        """What a worker says each test file imported and read."""
        for test_file, names in imports.items():
            self.imports.setdefault(test_file, set()).update(names)
        for test_file, paths in reads.items():
            self.reads.setdefault(test_file, set()).update(paths)

    def recorded(
        self, collected: Mapping[str, Sequence[NodeId]], outcomes: Mapping[NodeId, Outcome]
    ) -> CacheRecorded:
        """The records this run leaves (the files that ran, complete), and the file index."""
        records = []
        now = time.time()
        if not self.worker_died:
            for test_file, nodeids in collected.items():
                if test_file in self.decision.cached:  # its record stands (reruns too)
                    continue
                got = {n: outcomes[n] for n in nodeids if n in outcomes}
                if len(got) != len(nodeids) or _UNRECORDABLE & set(got.values()):
                    continue
                paths = file_dependencies(
                    self.root,
                    test_file,
                    self.graph,
                    self.imports.get(test_file, ()),
                    self.reads.get(test_file, ()),
                )
                dependencies = {path: self.index.digest(path) for path in sorted(paths)}
                records.append(FileRecord(test_file, self.environment, dependencies, got, now))
        taken, entries = self.index.snapshot()
        index: tuple[IndexRow, ...] = tuple(
            (path, e.mtime_ns, e.size, e.inode, e.digest) for path, e in sorted(entries.items())
        )
        return CacheRecorded(tuple(records), index, taken)

    def explain(self, nodeid: NodeId) -> list[str]:
        """`why NODEID`: what the test's file depends on, its record, what changed since, and
        whether the next run would report it from the cache."""
        test_file = nodeid.split("::", 1)[0]
        record = self.records.get(test_file)
        if record is None:
            return [f"{test_file}: never recorded by the skip cache: its tests run"]
        when = datetime.fromtimestamp(record.recorded_at).strftime("%Y-%m-%d %H:%M:%S")
        outcome = record.outcomes.get(nodeid)
        lines = [
            f"{nodeid}: {outcome if outcome is not None else 'not among the recorded tests'}"
            f" when {test_file} was recorded, at {when}",
            "environment: "
            + ("as recorded" if record.environment == self.environment else "changed"),
            f"depends on {len(record.dependencies)} files:",
        ]
        for path, digest in record.dependencies.items():
            now = self.index.digest(path)
            state = "unchanged" if now == digest else ("missing" if now == MISSING else "changed")
            lines.append(f"  {state:9} {path}")
        self.decide({test_file: tuple(record.outcomes)})
        if nodeid in self.decision.rerun():
            lines.append(f"next run: runs: it was {outcome} (the rest of its file is cached)")
        elif test_file in self.decision.cached:
            lines.append("next run: reported from the cache (unless the trip-wire samples it)")
        else:
            lines.append(f"next run: runs: {self.decision.runs.get(test_file, 'unknown')}")
        return lines
