"""The skip cache for one run (docs/skip-cache.md): before planning, which test files report
their recorded outcomes instead of running; after the run, what to record for next time.

It reads the store and the project's files and hands plain data to the pure decision
(`skip_cache.decide`). While the run goes, it gathers what the workers say each test file
imported and read (`ShardFinished`). A file is recorded only when every one of its tests got an
outcome in this run and no worker of the run died: a record with a missing part would be a
false skip waiting to happen.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

import aiosqlite

from .changes import changed_files
from .events import CacheRecorded, Event, ShardCrashed, ShardFinished
from .execution.runner import WorkerSetup
from .fingerprint import project_files
from .fingerprint.dependencies import file_dependencies
from .fingerprint.environment import environment_fingerprint
from .fingerprint.imports import ImportGraph
from .fingerprint.index import MISSING, Entry, FileIndex
from .ledger import Ledger
from .models import (
    Collection,
    FileRecord,
    NodeId,
    Outcome,
    TestResult,
    engine_result,
    file_of,
)
from .planning import ids_by_file
from .request import RunSettings
from .skip_cache import CacheDecision, affected, decide, unplaced_changes
from .store.queries import load_file_index, load_file_records

# What a record may say of a test: only outcomes a later run could report again, or ones that
# make it run (a failure); never "not run" or "cached" (nothing was learned then).
_RECORDABLE_MISSING = frozenset({Outcome.NOT_RUN, Outcome.CACHED})


class Dispatching(Protocol):
    """What settling the cache needs of the run's dispatcher."""

    def conclude(self, results: Iterable[TestResult]) -> None: ...
    def add(self, nodeids: Sequence[NodeId]) -> None: ...
    async def run(self, setup: WorkerSetup, started: float) -> None: ...


@dataclass
class ResultCache:
    settings: RunSettings
    environment: str
    records: dict[str, FileRecord]
    index: FileIndex
    previous: dict[str, str]  # path -> digest when the index was last saved
    graph: ImportGraph
    imports: dict[str, set[str]] = field(default_factory=dict)
    reads: dict[str, set[str]] = field(default_factory=dict)
    worker_died: bool = False
    decision: CacheDecision = field(default_factory=CacheDecision)
    sampled: tuple[NodeId, ...] = ()  # the trip-wire: cached tests run anyway
    verifying: dict[NodeId, Outcome] = field(default_factory=dict)  # --verify-cache
    nothing_affected: bool = False  # --changed found no test the changes can affect

    @classmethod
    async def open(
        cls, settings: RunSettings, db: aiosqlite.Connection, environ: Mapping[str, str]
    ) -> ResultCache:
        project = str(settings.project_root)
        records = await load_file_records(db, project)
        taken, saved = await load_file_index(db, project)
        entries = {path: Entry(*values) for path, values in saved.items()}
        root = settings.project_root
        return cls(
            settings=settings,
            environment=environment_fingerprint(
                settings.pytest_args, environ, settings.profile.name
            ),
            records=records,
            index=FileIndex(root, entries, indexed_at_ns=taken),
            previous={path: entry.digest for path, entry in entries.items()},
            graph=ImportGraph(root),
        )

    def decide(self, collection: Collection, always_run: Iterable[str]) -> CacheDecision:
        root = self.settings.project_root
        placed = {path for record in self.records.values() for path in record.dependencies}
        sources = {path.relative_to(root).as_posix() for path in project_files(root)}
        # Also what the last index held: a file is removed only when it is gone, not when no
        # record names it any more.
        watched = sources | placed | set(self.previous)
        current = {path: self.index.digest(path) for path in sorted(watched)}
        current = {path: digest for path, digest in current.items() if digest != MISSING}
        self.decision = decide(
            ids_by_file(collection.nodeids),
            self.records,
            environment=self.environment,
            digest=self.index.digest,
            unplaced=unplaced_changes(self.previous, current, placed) if self.previous else (),
            now=time.time(),
            ttl_seconds=self.settings.profile.cache_ttl_hours * 3600,
            always_run=always_run,
        )
        if not self.previous:  # the first run with the cache: nothing recorded to trust
            self.decision.runs.update(dict.fromkeys(self.decision.cached, "never recorded"))
            self.decision.cached.clear()
        return self.decision

    def sample(self, random_source: Callable[[], float]) -> tuple[NodeId, ...]:
        """The trip-wire: a share (`cache_sample`, at least one unless 0) of the tests the
        cache would report, picked at random, to run anyway."""
        share = self.settings.profile.cache_sample
        cached = list(self.decision.cached_outcomes())
        if not cached or share <= 0:
            return ()
        count = max(1, math.ceil(share * len(cached)))
        keys = {nodeid: random_source() for nodeid in cached}
        self.sampled = tuple(sorted(cached, key=keys.__getitem__)[:count])
        return self.sampled

    def tripped(self, final: Mapping[NodeId, TestResult]) -> str | None:
        """Why the cache is not to be trusted in this run: a sampled test that did not give its
        recorded outcome (None: every one did)."""
        recorded = self.decision.cached_outcomes()
        for nodeid in self.sampled:
            result = final.get(nodeid)
            if result is not None and result.outcome is not recorded[nodeid][0]:
                return f"{nodeid} {result.outcome} where its record said {recorded[nodeid][0]}"
        return None

    def verify(self) -> int:
        """--verify-cache: what the cache would report is run instead, to be compared."""
        self.verifying = {n: o for n, (o, _) in self.decision.cached_outcomes().items()}
        self.decision.cached.clear()
        return len(self.verifying)

    def false_skips(self, final: Mapping[NodeId, TestResult]) -> list[str]:
        """Tests the cache would have reported whose run gave another outcome."""
        return [
            f"{nodeid} {final[nodeid].outcome} where the cache would have said {recorded}"
            for nodeid, recorded in self.verifying.items()
            if nodeid in final and final[nodeid].outcome is not recorded
        ]

    def distrust(self) -> tuple[NodeId, ...]:
        """The trip-wire tripped: every cached test runs (and its file is recorded afresh)."""
        sampled = set(self.sampled)
        rest = tuple(n for n in self.decision.cached_outcomes() if n not in sampled)
        self.decision.cached.clear()
        return rest

    def cached_results(self) -> list[TestResult]:
        results = []
        sampled = set(self.sampled)
        for nodeid, (outcome, when) in self.decision.cached_outcomes().items():
            if nodeid in sampled:
                continue
            at = datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M")
            results.append(
                engine_result(nodeid, Outcome.CACHED, "call", f"cached: {outcome} at {at}")
            )
        return results

    def handle(self, event: Event) -> None:
        """A bus subscriber: what the workers say each test file imported and read."""
        if isinstance(event, ShardFinished):
            for test_file, names in event.imports.items():
                self.imports.setdefault(test_file, set()).update(names)
            for test_file, paths in event.reads.items():
                self.reads.setdefault(test_file, set()).update(paths)
        elif isinstance(event, ShardCrashed):
            self.worker_died = True

    def recorded(self, collection: Collection, final: Mapping[NodeId, TestResult]) -> CacheRecorded:
        """The records this run leaves, and the file index."""
        records = []
        now = time.time()
        if not self.worker_died:
            for test_file, nodeids in ids_by_file(collection.nodeids).items():
                if test_file in self.decision.cached:
                    continue
                outcomes = {n: final[n].outcome for n in nodeids if n in final}
                if len(outcomes) != len(nodeids) or _RECORDABLE_MISSING & set(outcomes.values()):
                    continue
                paths = file_dependencies(
                    self.settings.project_root,
                    test_file,
                    self.graph,
                    self.imports.get(test_file, ()),
                    self.reads.get(test_file, ()),
                )
                dependencies = {path: self.index.digest(path) for path in sorted(paths)}
                records.append(FileRecord(test_file, self.environment, dependencies, outcomes, now))
        taken, entries = self.index.snapshot()
        index = tuple(
            (path, e.mtime_ns, e.size, e.inode, e.digest) for path, e in sorted(entries.items())
        )
        return CacheRecorded(tuple(records), index, taken)

    def affected(
        self, collection: Collection, changed: Iterable[str]
    ) -> tuple[list[str], list[str]]:
        """`--changed`: the collected test files the changed files can affect, and the changed
        files no record places."""

        def known(test_file: str) -> set[str] | None:
            record = self.records.get(test_file)
            return None if record is None else set(record.dependencies)

        return affected(ids_by_file(collection.nodeids), known, changed)

    async def changed_only(self, collection: Collection, notes: list[str]) -> Collection:
        """`--changed REF`: only the test files the changes since REF can affect; the others
        are deselected, as `-k` would. A changed file no record places runs everything."""
        ref = self.settings.changed or "HEAD"
        changed = await changed_files(self.settings.project_root, ref)
        selected, unplaced = self.affected(collection, changed)
        if unplaced and not self.settings.changed_lenient:
            shown = ", ".join(unplaced[:3]) + (" ..." if len(unplaced) > 3 else "")
            notes.append(
                f"--changed {ref}: every test runs: no test is known to depend on {shown} "
                "(--changed-lenient runs only the affected tests)"
            )
            return collection
        chosen = set(selected)
        kept = tuple(n for n in collection.nodeids if file_of(n) in chosen)
        notes.append(
            f"--changed {ref}: {len(changed)} changed file{'s' if len(changed) != 1 else ''} "
            f"affect {len(chosen)} test file{'s' if len(chosen) != 1 else ''}"
        )
        self.nothing_affected = not kept
        if not kept:
            notes.append(f"--changed {ref}: no test is affected: nothing to run")
        terminal = collection.terminal
        deselected = terminal.deselected + len(collection.nodeids) - len(kept)
        return replace(collection, nodeids=kept, terminal=replace(terminal, deselected=deselected))

    async def settle(
        self, ledger: Ledger, dispatcher: Dispatching, setup: WorkerSetup, started: float
    ) -> None:
        """After the run: --verify-cache's comparison, or the trip-wire's verdict (the cached
        tests are reported from their records, or, when a sampled test did not give its
        recorded outcome, they all run now)."""
        if self.verifying:
            false = self.false_skips(ledger.final)
            ledger.notes.extend(f"false skip: {line}" for line in false)
            if not false:
                ledger.notes.append("verify cache: no false skip")
            return
        why = self.tripped(ledger.final)
        if why is None:
            dispatcher.conclude(self.cached_results())
            return
        if ledger.stopped:
            return  # the run stopped: the distrusted tests are not run, and say so
        ledger.notes.append(f"skip cache distrusted: {why}; every cached test ran")
        dispatcher.add(self.distrust())
        await dispatcher.run(setup, started)

    def notes(self) -> list[str]:
        """What the summary says of the decision."""
        decision = self.decision
        if decision.unplaced:
            return [f"skip cache: every test runs: {next(iter(decision.runs.values()))}"]
        tests = len(decision.cached_outcomes())
        if not tests:
            return []
        files = len(decision.cached)
        sampled = len(self.sampled)
        check = f"; {sampled} of them run anyway to check it" if sampled else ""
        return [
            f"skip cache: {tests} tests in {files} file{'s' if files != 1 else ''} unchanged "
            f"since their last run{check}"
        ]

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
            state = "unchanged" if now == digest else ("missing" if now == "missing" else "changed")
            lines.append(f"  {state:9} {path}")
        self.decide(Collection("", tuple(record.outcomes)), ())
        if test_file in self.decision.cached:
            lines.append("next run: reported from the cache (unless the trip-wire samples it)")
        else:
            lines.append(f"next run: runs: {self.decision.runs.get(test_file, 'unknown')}")
        return lines
