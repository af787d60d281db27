"""The skip cache for one run (docs/skip-cache.md): before planning, which test files report
their recorded outcomes instead of running; after the run, what to record for next time.

It reads the store and wires the run to the cache's state (cache_state.py, shared with the
pytest plugin): while the run goes, what the workers say each test file imported and read
(`ShardFinished`) and whether one died; after it, --verify-cache's comparison, the trip-wire's
verdict and the records to keep. `--changed` selects through the same records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import aiosqlite

from .cache_state import CacheState
from .changes import changed_files
from .events import CacheRecorded, Event, ShardCrashed, ShardFinished
from .execution.runner import WorkerSetup
from .fingerprint.environment import environment_fingerprint
from .ledger import Ledger
from .models import Collection, NodeId, Outcome, TestResult, engine_result, file_of
from .planning import ids_by_file
from .request import RunSettings
from .skip_cache import CacheDecision, affected
from .store.queries import load_file_index, load_file_records


class Dispatching(Protocol):
    """What settling the cache needs of the run's dispatcher."""

    def conclude(self, results: Iterable[TestResult]) -> None: ...
    def add(self, nodeids: Sequence[NodeId]) -> None: ...
    async def run(self, setup: WorkerSetup, started: float) -> None: ...


@dataclass
class ResultCache:
    settings: RunSettings
    state: CacheState
    verifying: dict[NodeId, Outcome] = field(default_factory=dict)  # --verify-cache
    nothing_affected: bool = False  # --changed found no test the changes can affect

    @classmethod
    async def open(
        cls, settings: RunSettings, db: aiosqlite.Connection, environ: Mapping[str, str]
    ) -> ResultCache:
        project = str(settings.project_root)
        state = CacheState.load(
            settings.project_root,
            environment_fingerprint(settings.pytest_args, environ, settings.profile.name),
            await load_file_records(db, project),
            await load_file_index(db, project),
            ttl_seconds=settings.profile.cache_ttl_hours * 3600,
            sample_share=settings.profile.cache_sample,
        )
        return cls(settings, state)

    @property
    def decision(self) -> CacheDecision:
        return self.state.decision

    @property
    def sampled(self) -> tuple[NodeId, ...]:
        return self.state.sampled

    def decide(self, collection: Collection, always_run: Iterable[str]) -> CacheDecision:
        return self.state.decide(ids_by_file(collection.nodeids), always_run)

    def planned(
        self,
        collection: Collection,
        random_source: Callable[[], float],
        durations: Mapping[NodeId, float],
    ) -> tuple[Collection, dict[str, list[NodeId]]]:
        """What runs of a collection the decision caches some of: the files not cached, the
        failed tests of cached ones, and the trip-wire's sample (drawn now); and the files of
        which only some tests run, with every id of each (the planner names their tests)."""
        decision = self.decision
        sampled = set(self.state.sample(random_source, durations))
        runs_anyway = decision.rerun() | sampled
        kept = tuple(
            n for n in collection.nodeids if file_of(n) not in decision.cached or n in runs_anyway
        )
        by_file = ids_by_file(collection.nodeids)
        partial = {f: by_file[f] for f in {file_of(n) for n in runs_anyway}}
        return replace(collection, nodeids=kept), partial

    def tripped(self, final: Mapping[NodeId, TestResult]) -> str | None:
        return self.state.tripped({nodeid: result.outcome for nodeid, result in final.items()})

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
        return [
            engine_result(nodeid, Outcome.CACHED, "call", why)
            for nodeid, why in self.state.reported().items()
        ]

    def handle(self, event: Event) -> None:
        """A bus subscriber: what the workers say each test file imported and read."""
        if isinstance(event, ShardFinished):
            self.state.note_dependencies(event.imports, event.reads)
        elif isinstance(event, ShardCrashed):
            self.state.worker_died = True

    def recorded(self, collection: Collection, final: Mapping[NodeId, TestResult]) -> CacheRecorded:
        """The records this run leaves, and the file index."""
        outcomes = {nodeid: result.outcome for nodeid, result in final.items()}
        return self.state.recorded(ids_by_file(collection.nodeids), outcomes)

    def affected(
        self, collection: Collection, changed: Iterable[str]
    ) -> tuple[list[str], list[str]]:
        """`--changed`: the collected test files the changed files can affect, and the changed
        files no record places."""

        def known(test_file: str) -> set[str] | None:
            record = self.state.records.get(test_file)
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
        return self.state.explain(nodeid)
