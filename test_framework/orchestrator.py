"""The orchestrator: the only module that wires config, discovery, planning, execution, the store
and the reporters together, inside one anyio task group.

Shape of a run:
  settings -> collection (cached by fingerprint) -> plan (durations from the store) ->
  [writer task | monitor task | signal task | dispatcher -> one task per shard] -> RunFinished.
Results flow out only as events; the store writer and the reporters subscribe to them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiosqlite
import anyio
import structlog
from anyio.abc import TaskGroup

if sys.version_info < (3, 11):  # pragma: no cover - the backport anyio depends on
    from exceptiongroup import BaseExceptionGroup

from .breaker import BreakerOpened, FailureBreaker
from .discovery import (
    CollectedError,
    Collection,
    CollectionQuery,
    collect,
    collection_failure,
    combine_markers,
    queries_for,
    query_args,
    split_marker,
)
from .errors import NoTestsCollected, StoreError, TestFrameworkError
from .events import (
    CapacityChanged,
    CircuitOpened,
    Event,
    EventBus,
    ProcessesLeaked,
    RunFinished,
    RunStarted,
    RunStopping,
    ShardCrashed,
    ShardFinished,
    ShardStarted,
    TestFinished,
    TestRetrying,
    TestStarted,
)
from .execution.importable import worker_env
from .execution.process import Launcher, signal_group
from .execution.runner import (
    STOP_GRACE,
    WORKER_PLUGIN,
    ShardListener,
    ShardOutcome,
    ShardSpec,
    SpawnLauncher,
    WorkerLink,
    WorkerSetup,
    run_shard,
    with_output_tail,
)
from .execution.zygote import ForkOrSpawn, Zygote
from .exit_codes import ExitCode
from .fingerprint import collection_fingerprint
from .limiter import AdaptiveLimiter
from .models import (
    NodeId,
    Outcome,
    Plan,
    RunSummary,
    Shard,
    TestResult,
    engine_result,
    file_of,
)
from .monitor import run_monitor
from .outcomes import count_outcomes, exit_code_for
from .planning import (
    DEFAULT_TEST_ESTIMATE,
    MIX_WINDOW,
    PlanInput,
    PlannedShard,
    explicit_selection,
    make_plan,
    pick_next,
    piece_limit,
    split_contiguous,
    steal_pieces,
)
from .request import RunSettings
from .resources import CapacityPolicy, PsutilSampler, Sampler
from .store import connect_store
from .store.queries import (
    CachedCollection,
    History,
    bounded_fraction,
    load_collection,
    load_history,
    save_collection,
)
from .store.writer import RunMetadata, StoreWriter

log = structlog.get_logger("test_framework")

# Spawning a pytest worker costs about half a second here; a shard shorter than a few of those
# is cheaper merged into another.
SPAWN_MIN_SHARD_SECONDS = 1.5
# A fork costs milliseconds; below this a shard is mostly fixture set-up repeated.
FORK_MIN_SHARD_SECONDS = 0.2
# Work stealing: a running shard's waiting tests move to a free slot when they are expected to
# take at least this long (a new worker pays a fork and its fixtures again); the dispatcher
# looks for such tails this often while nothing is queued.
STEAL_MIN_SECONDS = 2 * FORK_MIN_SHARD_SECONDS
STEAL_POLL_SECONDS = 0.05
# A stolen tail is cut into pieces of at least this: slots only free up for stealing when the
# CPU has room, so there a shorter critical path is worth a few more forks.
STEAL_PIECE_SECONDS = FORK_MIN_SHARD_SECONDS / 2
# How many finished tests (at least one per core) a run without known CPU shares measures
# before it widens to what they show.
FIRST_TESTS_MEASURED = 2
_RETRYABLE = frozenset({Outcome.FAILED, Outcome.ERROR, Outcome.CRASHED})


@dataclass
class Selection:
    """What discovery found, merged over every collection query of the run."""

    rootdir: str
    nodeids: tuple[NodeId, ...]
    collection_errors: tuple[TestResult, ...]
    worker_args: tuple[str, ...]
    explicit_ids: bool
    serial: tuple[NodeId, ...] = ()
    resources: Mapping[NodeId, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class RunState:
    """Everything the run has learnt so far; mutated only by the orchestrator's own tasks."""

    planned: dict[NodeId, None] = field(default_factory=dict)
    final: dict[NodeId, TestResult] = field(default_factory=dict)
    failures: int = 0
    stop_reason: str | None = None
    interrupted: bool = False


@dataclass
class _FirstTests:
    """CPU and wall seconds of a run's first finished tests, until `needed` of them are in."""

    needed: int
    cpu: float = 0.0
    wall: float = 0.0
    count: int = 0


class Orchestrator(ShardListener):
    def __init__(
        self,
        settings: RunSettings,
        bus: EventBus,
        *,
        sampler: Sampler | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.sampler = sampler
        self.clock = clock
        self.run_id = uuid.uuid4().hex[:12]
        self.state = RunState()
        self.limiter = AdaptiveLimiter(settings.initial_workers)
        self._queue: deque[ShardSpec] = deque()
        self._wakeup = anyio.Event()
        self._busy = 0
        self._next_shard_id = 0
        self._stop_scope: anyio.CancelScope | None = None
        self._pending_retries: list[tuple[tuple[NodeId, ...], int, float, Shard]] = []
        self._retry_buffer: dict[int | None, list[tuple[NodeId, float]]] = {}
        self.store_warnings: list[str] = []
        self._env: dict[str, str] = dict(os.environ)
        self._launcher: Launcher | None = None
        self.breaker = FailureBreaker(settings.profile.breaker_threshold)
        self._notes: list[str] = []
        # Live workers, for the breaker's commands, the session timeout's report and a second
        # interrupt's kill: shard id -> link / pid.
        self._links: dict[int, WorkerLink] = {}
        self._worker_pids: dict[int, int] = {}
        self._zygote: Zygote | None = None
        # Work stealing: the spec of each running shard, the shards asked to release a tail.
        self._specs: dict[int, ShardSpec] = {}
        self._steals: dict[int, int] = {}  # shard id -> into how many pieces its tail goes
        self._seen: dict[int, tuple[float, int]] = {}  # shard id -> (seconds, tests) so far
        self._seen_all = (0.0, 0)  # every shard's, this run
        # What the tests cost last time (durations, and per shard id, computed once, CPU share
        # and peak RSS): stealing weighs tails, the dispatcher mixes waiting and busy shards,
        # the monitor bounds widening.
        self._history = History(durations={}, recent_failures=frozenset())
        self._shares: dict[int, float | None] = {}
        self._peaks: dict[int, int] = {}
        # A forked run whose store knows no CPU shares measures its first tests instead.
        self._first: _FirstTests | None = None
        self.log = log.bind(run_id=self.run_id)

    # ---- ShardListener: called by runners while shards run -------------------------------
    def shard_started(self, shard_id: int, pid: int, nodeids: tuple[NodeId, ...]) -> None:
        self._worker_pids[shard_id] = pid
        self.bus.emit(ShardStarted(shard_id=shard_id, pid=pid, nodeids=nodeids))

    def worker_ready(self, shard_id: int, link: WorkerLink) -> None:
        self._links[shard_id] = link
        skips = self.breaker.open_files()
        if skips:
            _send_skips(link, skips)

    def worker_gone(self, shard_id: int) -> None:
        self._links.pop(shard_id, None)
        self._worker_pids.pop(shard_id, None)
        self._steals.pop(shard_id, None)

    def tests_released(self, shard_id: int, nodeids: tuple[NodeId, ...]) -> None:
        """A running worker gave back the tail of its tests: new shards for free slots, as many
        as were asked for."""
        pieces = self._steals.pop(shard_id, 1)
        parent = self._specs.get(shard_id)
        if not nodeids or parent is None:
            self._wakeup.set()
            return
        for piece in reversed(split_contiguous(nodeids, pieces)):
            spec = self._rerun_spec(piece, parent.attempt, parent.shard)
            self.log.debug(
                "tail_released", from_shard=shard_id, to_shard=spec.shard.shard_id, tests=len(piece)
            )
            self._enqueue(spec, front=True)

    def _expected(self, nodeid: NodeId) -> float:
        return self._history.durations.get(nodeid, DEFAULT_TEST_ESTIMATE)

    def _stealable(self) -> list[tuple[float, int, int]]:
        """Running shards whose waiting tests are worth a worker of their own, most work first:
        (expected seconds waiting, tests waiting, shard id)."""
        found = []
        for shard_id, link in list(self._links.items()):
            spec = self._specs.get(shard_id)
            if spec is None or not spec.shard.splittable or shard_id in self._steals:
                continue
            waiting = link.waiting()
            if waiting < 2:
                continue
            shard = spec.shard
            seen_seconds, seen_tests = self._seen.get(shard_id, (0.0, 0))
            # This run's own tests say best what the rest of the shard costs: the shard's own,
            # else (none finished yet) the run's so far for tests the store does not know.
            if seen_tests:
                per_test = seen_seconds / seen_tests
            elif shard.nodeids[0] not in self._history.durations and self._seen_all[1]:
                per_test = self._seen_all[0] / self._seen_all[1]
            else:
                per_test = shard.expected_duration / max(1, len(shard.nodeids))
            seconds = waiting * per_test
            if seconds >= STEAL_MIN_SECONDS:
                found.append((seconds, waiting, shard_id))
        return sorted(found, reverse=True)

    def _steal(self) -> None:
        """With the queue empty and slots free, ask the busiest shards to release their tails."""
        if self._queue or self.state.stop_reason is not None:
            return
        stats = self.limiter.statistics()
        free = stats.capacity - stats.in_use - sum(self._steals.values())
        if free <= 0:
            return
        tails = self._stealable()
        wanted = steal_pieces(free, [(s, n) for s, n, _ in tails], STEAL_PIECE_SECONDS)
        for (_seconds, _tests, shard_id), pieces in zip(tails, wanted, strict=True):
            link = self._links.get(shard_id)
            if link is not None and pieces > 0:
                self._steals[shard_id] = pieces
                link.send({"event": "release", "pieces": pieces})

    def test_started(self, shard_id: int, nodeid: NodeId) -> None:
        self.bus.emit(TestStarted(shard_id=shard_id, nodeid=nodeid))

    def test_result(self, result: TestResult) -> None:
        """Every finished attempt: final, or queued for a retry after backoff."""
        if result.shard_id is not None:
            seconds, tests = self._seen.get(result.shard_id, (0.0, 0))
            self._seen[result.shard_id] = (seconds + result.duration, tests + 1)
            total, count = self._seen_all
            self._seen_all = (total + result.duration, count + 1)
        if self._first is not None and result.cpu_time is not None:
            self._measure_first(result.cpu_time, result.duration)
        profile = self.settings.profile
        retryable = result.outcome in _RETRYABLE and "::" in result.nodeid
        if retryable and result.attempt <= profile.retries and self.state.stop_reason is None:
            delay = min(
                profile.retry_max_delay,
                profile.retry_base_delay * profile.retry_factor ** (result.attempt - 1),
            ) * random.uniform(0.5, 1.0)
            self.bus.emit(TestRetrying(result=result, next_attempt=result.attempt + 1, delay=delay))
            # Held until the shard ends, so one fresh process reruns all of its failures.
            self._retry_buffer.setdefault(result.shard_id, []).append((result.nodeid, delay))
            return
        if result.attempt > 1 and result.outcome is Outcome.PASSED:
            result = TestResult(
                nodeid=result.nodeid,
                outcome=Outcome.FLAKY,
                duration=result.duration,
                attempt=result.attempt,
                reports=result.reports,
                message=f"passed on attempt {result.attempt}",
                shard_id=result.shard_id,
            )
        self._finish(result)

    # ---- bookkeeping ------------------------------------------------------------------------
    def _finish(self, result: TestResult) -> None:
        if result.nodeid in self.state.final:
            return
        self.state.final[result.nodeid] = result
        self.bus.emit(TestFinished(result=result))
        if result.outcome in (Outcome.FAILED, Outcome.ERROR, Outcome.CRASHED, Outcome.TIMEOUT):
            self.state.failures += 1
            maxfail = self.settings.maxfail
            if maxfail and self.state.failures >= maxfail:
                self.stop(f"stopping after {self.state.failures} failures (maxfail={maxfail})")
        opened = self.breaker.record(result)
        if opened is not None:
            self._open_circuit(opened)

    def _open_circuit(self, opened: BreakerOpened) -> None:
        """Skip the rest of the affected files: queued tests here, running workers by command."""
        self.bus.emit(
            CircuitOpened(
                signature=opened.signature,
                files=opened.files,
                failures=opened.failures,
                probe=opened.probe,
                reason=opened.reason,
            )
        )
        self._notes.append(
            f"circuit breaker opened for `{opened.signature}` after {len(opened.failures)} "
            f"failures (probe {opened.probe}); the rest of {', '.join(opened.files)} was skipped"
        )
        skips = self.breaker.open_files()
        queued = list(self._queue)
        self._queue.clear()
        for spec in queued:
            kept = self._without_skipped(spec)
            if kept is not None:
                self._queue.append(kept)
        for link in list(self._links.values()):
            _send_skips(link, skips)

    def _without_skipped(self, spec: ShardSpec) -> ShardSpec | None:
        """The spec minus the tests of files an open circuit skips (reported skipped here)."""
        skips = self.breaker.open_files()
        if not skips or not any(file_of(n) in skips for n in spec.shard.nodeids):
            return spec
        rest = [n for n in spec.shard.nodeids if file_of(n) not in skips]
        for nodeid in spec.shard.nodeids:
            if file_of(nodeid) in skips:
                self._finish(_skipped(nodeid, skips[file_of(nodeid)], spec))
        if not rest:
            return None
        shard = dataclasses.replace(spec.shard, nodeids=tuple(rest))
        return ShardSpec(shard=shard, selection=explicit_selection(rest), attempt=spec.attempt)

    def stop(self, reason: str, *, interrupted: bool = False) -> None:
        if self.state.stop_reason is None:
            self.state.stop_reason = reason
            self.state.interrupted = interrupted
            self.bus.emit(RunStopping(reason=reason))
        if self._stop_scope is not None:
            self._stop_scope.cancel()

    def _busy_workers(self, fraction: float | None) -> int | None:
        """How many workers tests known to keep a core busy a fraction f of their time can
        use: about cores / f, within the profile's bounds. None when the share is unknown."""
        if fraction is None:
            return None
        settings = self.settings
        wanted = round(settings.cores / max(fraction, 1.0 / settings.max_workers))
        return max(settings.initial_workers, min(settings.max_workers, wanted))

    def _learned_capacity(self, busy: int | None, reason: str) -> CapacityChanged | None:
        """Widen to what the tests' CPU share says they can use (forked runs only, where `busy`
        is known); the monitor still narrows it if the machine disagrees."""
        settings = self.settings
        if busy is None or settings.fixed_workers:
            return None
        if not settings.resource_monitoring:
            return None
        start = max(self.limiter.capacity, busy)
        if start == self.limiter.capacity:
            return None
        event = CapacityChanged(
            old=self.limiter.capacity,
            new=start,
            reason=reason,
            cpu_percent=0.0,
            memory_available=0,
            waiting=0,
            timestamp=time.time(),
        )
        self.limiter.set_capacity(start)
        return event

    def _measure_first(self, cpu_time: float, duration: float) -> None:
        """A cold run learns from its first tests what the store would have said: a suite of
        waiting tests gets its dozens of slots now, not after the monitor's many small steps."""
        first = self._first
        assert first is not None
        first.cpu += cpu_time
        first.wall += duration
        first.count += 1
        if first.count < first.needed:
            return
        self._first = None
        fraction = bounded_fraction(first.cpu, first.wall)
        if fraction is None:
            return
        reason = f"measured: the first {first.count} tests keep a core {fraction:.0%} busy"
        event = self._learned_capacity(self._busy_workers(fraction), reason)
        if event is not None:
            self.bus.emit(event)
            self._wakeup.set()

    def _share(self, spec: ShardSpec) -> float | None:
        shard_id = spec.shard.shard_id
        if shard_id not in self._shares:
            self._shares[shard_id] = self._history.cpu_share(spec.shard.nodeids)
        return self._shares[shard_id]

    def _peak(self, spec: ShardSpec) -> int:
        shard_id = spec.shard.shard_id
        if shard_id not in self._peaks:
            self._peaks[shard_id] = self._history.peak_rss(spec.shard.nodeids)
        return self._peaks[shard_id]

    def _take_next(self) -> ShardSpec:
        """The next shard to start: mostly the longest; a waiting one while busy ones fill
        every core (planning.pick_next). Serial and resource shards keep their place: the window
        ends at the first one (at the head, it is empty and the head goes)."""
        window = []
        for spec in list(self._queue)[:MIX_WINDOW]:
            if spec.shard.weight != 1 or not spec.shard.splittable:
                break
            window.append(spec)
        running = sum(self._share(s) or 0.0 for s in self._specs.values())
        index = pick_next([self._share(s) for s in window], running, self.settings.cores)
        spec = self._queue[index]
        del self._queue[index]
        return spec

    def _next_rss(self) -> int:
        """The peak RSS the next queued shards' tests showed last time (0 when unknown)."""
        return max((self._peak(s) for s in list(self._queue)[:MIX_WINDOW]), default=0)

    def _backlog(self) -> int:
        """Work that more slots could start now: queued shards, and running shards with a tail
        worth stealing (so the monitor widens for a cold run's few long shards too)."""
        queued = len(self._queue) + self.limiter.statistics().waiting
        if queued:
            return queued
        stealable = sum(piece_limit(s, n, STEAL_PIECE_SECONDS) for s, n, _ in self._stealable())
        return stealable + sum(self._steals.values())

    def _new_shard_id(self) -> int:
        self._next_shard_id += 1
        return self._next_shard_id

    def _enqueue(self, spec: ShardSpec, *, front: bool = False) -> None:
        (self._queue.appendleft if front else self._queue.append)(spec)
        self._wakeup.set()

    def _rerun_spec(self, nodeids: Sequence[NodeId], attempt: int, parent: Shard) -> ShardSpec:
        """A new shard for some of `parent`'s tests (a retry, a crashed worker's unstarted
        tests, a stolen tail): it keeps the parent's constraints, so a serial test still runs
        alone and a resource group's tests are never split across workers."""
        shard = Shard(
            shard_id=self._new_shard_id(),
            nodeids=tuple(nodeids),
            expected_duration=sum(self._expected(n) for n in nodeids),
            weight=parent.weight,
            splittable=parent.splittable,
        )
        return ShardSpec(shard=shard, selection=explicit_selection(nodeids), attempt=attempt)

    def _flush_retries(self, spec: ShardSpec) -> None:
        pending = self._retry_buffer.pop(spec.shard.shard_id, [])
        if pending:
            self._busy += 1
            nodeids = tuple(nodeid for nodeid, _ in pending)
            delay = max(delay for _, delay in pending)
            self._pending_retries.append((nodeids, spec.attempt + 1, delay, spec.shard))
            self._wakeup.set()

    # ---- the run ------------------------------------------------------------------------------
    async def run(self) -> RunSummary:
        try:
            return await self._run_in_scratch()
        except BaseExceptionGroup as group:
            # Task groups wrap; callers (the CLI's exit-code mapping, API users) want the one
            # error that ended the run.
            raise _sole_error(group) from None

    async def _run_in_scratch(self) -> RunSummary:
        with tempfile.TemporaryDirectory(prefix="test_framework-") as scratch:
            self._env = worker_env(os.environ, str(self.settings.project_root), Path(scratch))
            return await self._run(Path(scratch))

    async def _run(self, scratch: Path) -> RunSummary:
        started = self.clock()
        db: aiosqlite.Connection | None = None
        try:
            async with anyio.create_task_group() as outer:
                # The store first (milliseconds): a cached collection lets the zygote fork
                # before collecting, so the workers collect their own files in parallel.
                db = await self._open_store()
                fork_cache = self._fork_cache(db)
                cached = await self._cached(*fork_cache) if fork_cache else None
                zygote = await self._start_zygote(outer, scratch, early=cached is not None)
                try:
                    summary = await self._run_with(
                        db, scratch, outer, zygote, cached, fork_cache, started
                    )
                finally:
                    if zygote is not None:
                        zygote.close()
            # Only now: the writer task in `outer` has drained its queue.
        finally:
            if db is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await db.close()
        return summary

    async def _run_with(
        self,
        db: aiosqlite.Connection | None,
        scratch: Path,
        outer: TaskGroup,
        zygote: Zygote | None,
        cached: Collection | None,
        fork_cache: tuple[aiosqlite.Connection, str] | None,
        started: float,
    ) -> RunSummary:
        settings = self.settings
        if zygote is None:
            selection = await self._discover(db)
        elif cached is not None:
            selection = self._selection([cached])
        else:
            collected = await self._from_zygote(zygote)
            if fork_cache is not None:  # for the next run's early zygote
                await self._save(*fork_cache, collected)
            selection = self._selection([collected])
        history = await self._load_history(db)
        self._history = history
        forked = zygote is not None
        known = sum(1 for n in selection.nodeids if n in history.durations)
        fraction = history.cpu_fraction(selection.nodeids)
        busy = self._busy_workers(fraction) if forked else None
        planned = self._plan(
            selection, history, forked=forked, known=known, busy=busy, early=cached is not None
        )
        plan = Plan(
            shards=tuple(p.shard for p in planned),
            known_durations=known,
            collection_errors=selection.collection_errors,
        )
        if not selection.nodeids and not selection.collection_errors:
            extra = (
                f" with pytest args {' '.join(settings.pytest_args)}"
                if settings.pytest_args
                else ""
            )
            raise NoTestsCollected(
                f"no tests collected: categories {', '.join(c.name for c in settings.categories)}"
                f"{extra} select no test under {settings.project_root}"
            )
        learned = (
            self._learned_capacity(busy, f"learned: these tests keep a core {fraction:.0%} busy")
            if fraction is not None
            else None
        )
        if forked and fraction is None:
            self._first = _FirstTests(needed=max(FIRST_TESTS_MEASURED, settings.cores))
        started_event = RunStarted(
            self.run_id, plan, self.limiter.capacity, str(settings.project_root), settings.argv
        )
        if settings.list_only:
            self.bus.emit(started_event)
            return RunSummary(self.run_id, (), {}, self.clock() - started, 0)
        writer = StoreWriter(db, self._metadata()) if db is not None else None
        if writer is not None:
            self.bus.subscribe(writer.handle)
            outer.start_soon(writer.run)
        self.state.planned = dict.fromkeys(selection.nodeids)
        for error in selection.collection_errors:
            self.state.planned[error.nodeid] = None
        for p in planned:
            self._queue.append(ShardSpec(shard=p.shard, selection=p.selection))
        self._next_shard_id = len(planned)
        setup = self._worker_setup(selection, scratch)
        self._launcher = ForkOrSpawn(zygote, SpawnLauncher(setup))
        self.bus.emit(started_event)
        if learned is not None:
            self.bus.emit(learned)
        for error in selection.collection_errors:
            self._finish(error)
        await self._execute(setup, started)
        summary = self._summary(started)
        if writer is not None and writer.failed:
            summary = _with_warning(summary, f"results store: {writer.failed}")
        self.bus.emit(RunFinished(summary=summary))
        if writer is not None:
            writer.close()
        return summary

    def _fork_query(self) -> CollectionQuery | None:
        """The one collection query a zygote runs (None: spawn mode, or several queries)."""
        settings = self.settings
        if settings.isolation != "fork":
            return None
        queries = queries_for(settings.categories, settings.project_root)
        return queries[0] if len(queries) == 1 else None

    def _fork_cache(
        self, db: aiosqlite.Connection | None
    ) -> tuple[aiosqlite.Connection, str] | None:
        """Where a forked run's collection is cached, and under which fingerprint (computed
        once: it walks the project); None in spawn mode or without the collection cache."""
        query = self._fork_query()
        cache = self._collection_store(db)
        return None if query is None or cache is None else (cache, self._fingerprint(query))

    async def _start_zygote(
        self,
        outer: TaskGroup,
        scratch: Path,
        *,
        early: bool = False,
    ) -> Zygote | None:
        """In fork mode, the zygote is discovery too: it collects the selection once. An early
        zygote (the collection is cached) forks before collecting instead."""
        settings = self.settings
        if settings.isolation != "fork":
            return None
        query = self._fork_query()
        if query is None:
            self.log.info("fork_unavailable", reason="several collection queries; spawning")
            return None
        argv = [
            "-m",
            "pytest",
            "-p",
            WORKER_PLUGIN,
            "--continue-on-collection-errors",
            *query_args(query, settings.pytest_args),
        ]
        zygote = Zygote(
            argv,
            cwd=str(settings.project_root),
            env=self._env,
            scratch=scratch,
            grace=STOP_GRACE,
            early=early,
        )
        await outer.start(zygote.run)
        self._zygote = zygote
        return zygote

    async def _from_zygote(self, zygote: Zygote) -> Collection:
        await zygote.collected.wait()
        collection = zygote.collection
        if not zygote.alive and not collection.rootdir:
            raise collection_failure(zygote.returncode, zygote.output_tail)
        if not zygote.alive and not collection.nodeids and zygote.returncode not in (0, 1, 2, 5):
            raise collection_failure(zygote.returncode, zygote.output_tail)
        return Collection(
            collection.rootdir,
            collection.nodeids,
            tuple(CollectedError(*error) for error in collection.errors),
            collection.positionals,
            collection.serial,
            collection.resources,
        )

    def _worker_args(
        self, queries: Sequence[CollectionQuery], positionals: Sequence[str]
    ) -> tuple[tuple[str, ...], bool]:
        """The pytest args of a spawned worker (user args less their paths, markers merged),
        and whether shards must name their tests (several queries, or node ids given)."""
        query_paths = {p for q in queries for p in q.paths}
        user_positionals = [p for p in positionals if p not in query_paths]
        args, marker = split_marker(_without(self.settings.pytest_args, user_positionals))
        single = len(queries) == 1
        combined = combine_markers(queries[0].marker if single else None, marker)
        if combined:
            args = [*args, "-m", combined]
        explicit = not single or any("::" in p for p in user_positionals)
        return tuple(args), explicit

    async def _execute(self, setup: WorkerSetup, started: float) -> None:
        settings = self.settings
        async with anyio.create_task_group() as services:
            if settings.profile.session_timeout > 0:
                services.start_soon(self._session_clock, settings.profile.session_timeout, started)
            if settings.resource_monitoring:
                policy = CapacityPolicy(
                    minimum=settings.profile.min_workers,
                    maximum=settings.max_workers,
                    cpu_high=settings.profile.cpu_high,
                    cpu_low=settings.profile.cpu_low,
                    memory_reserve=settings.profile.memory_reserve_mb * 1024 * 1024,
                    saturation_floor=settings.initial_workers,
                )
                sampler = self.sampler or PsutilSampler()
                services.start_soon(
                    run_monitor,
                    self.limiter,
                    sampler,
                    policy,
                    settings.profile.monitor_interval,
                    self.bus.emit,
                    time.time,
                    self._backlog,
                    self._next_rss,
                )
            services.start_soon(self._watch_signals)
            with anyio.CancelScope() as self._stop_scope:
                if self.state.stop_reason is not None:
                    self._stop_scope.cancel()
                await self._dispatch(setup)
            services.cancel_scope.cancel()

    async def _dispatch(self, setup: WorkerSetup) -> None:
        async with anyio.create_task_group() as shards:
            while True:
                while self._pending_retries:
                    nodeids, attempt, delay, parent = self._pending_retries.pop(0)
                    shards.start_soon(self._delayed_retry, nodeids, attempt, delay, parent)
                if self._queue:
                    spec = self._take_next()
                    taken = await self.limiter.acquire(spec.shard.weight)
                    self._busy += 1
                    shards.start_soon(self._run_one, spec, setup, taken)
                elif self._busy == 0:
                    return
                else:
                    self._steal()
                    with anyio.move_on_after(STEAL_POLL_SECONDS):
                        await self._wakeup.wait()
                    self._wakeup = anyio.Event()

    async def _delayed_retry(
        self, nodeids: tuple[NodeId, ...], attempt: int, delay: float, parent: Shard
    ) -> None:
        try:
            await anyio.sleep(delay)
            if self.state.stop_reason is None:
                self._enqueue(self._rerun_spec(nodeids, attempt, parent), front=True)
        finally:
            self._busy -= 1
            self._wakeup.set()

    async def _run_one(self, spec: ShardSpec, setup: WorkerSetup, taken: int) -> None:
        try:
            current = self._without_skipped(spec)
            if current is None:
                return
            self._specs[current.shard.shard_id] = current
            try:
                outcome = await run_shard(current, setup, self, self._launcher)
            finally:
                self._specs.pop(current.shard.shard_id, None)
                self._seen.pop(current.shard.shard_id, None)
            self._after_shard(current, outcome)
            self._flush_retries(current)
        finally:
            self.limiter.release(taken)
            self._busy -= 1
            self._wakeup.set()

    def _after_shard(self, spec: ShardSpec, outcome: ShardOutcome) -> None:
        files = tuple(dict.fromkeys(entry["file"] for entry in spec.selection))
        self.log.info(
            "shard_finished",
            shard_id=spec.shard.shard_id,
            tests=len(outcome.results),
            returncode=outcome.returncode,
            seconds=round(outcome.duration, 3),
            crashed=outcome.crashed,
        )
        if outcome.leaked:
            self.bus.emit(ProcessesLeaked(shard_id=spec.shard.shard_id, processes=outcome.leaked))
            self._notes.extend(f"leaked process (killed): {process}" for process in outcome.leaked)
        if not outcome.crashed:
            self.bus.emit(
                ShardFinished(
                    shard_id=spec.shard.shard_id,
                    returncode=outcome.returncode or 0,
                    duration=outcome.duration,
                    files=files,
                    deps=outcome.deps,
                )
            )
            return
        self.bus.emit(
            ShardCrashed(
                shard_id=spec.shard.shard_id,
                returncode=outcome.returncode,
                running=outcome.culprit.nodeid if outcome.culprit else None,
                reason=outcome.culprit.message if outcome.culprit else "worker ended early",
                output_tail=outcome.output_tail,
            )
        )
        if outcome.culprit is not None:
            self.test_result(outcome.culprit)
        elif not outcome.results and outcome.unstarted:
            # Died before its first test (a crash at import or in a conftest): running it again
            # would only die again, so every test it held is reported crashed, with its output.
            for nodeid in outcome.unstarted:
                self._finish(self._crashed_before_start(nodeid, spec, outcome))
            return
        if outcome.unstarted and self.state.stop_reason is None:
            self._enqueue(self._rerun_spec(outcome.unstarted, spec.attempt, spec.shard), front=True)

    def _crashed_before_start(
        self, nodeid: NodeId, spec: ShardSpec, outcome: ShardOutcome
    ) -> TestResult:
        code = outcome.returncode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        message = f"crashed: the worker died ({how}) before this test started"
        return engine_result(
            nodeid,
            Outcome.CRASHED,
            "setup",
            message,
            with_output_tail(message, outcome.output_tail),
            attempt=spec.attempt,
            shard_id=spec.shard.shard_id,
        )

    async def _session_clock(self, limit: float, started: float) -> None:
        """End the run at its session timeout: the running tests are reported as timed out,
        by name; the stop reports the rest as not run."""
        await anyio.sleep(max(0.0, limit - (self.clock() - started)))
        now_running = {
            shard_id: nodeid
            for shard_id, link in list(self._links.items())
            if (nodeid := link.running()) is not None and nodeid not in self.state.final
        }
        message = f"timeout: the run reached its {limit:g}s session timeout while this test ran"
        for shard_id, nodeid in now_running.items():
            self._finish(engine_result(nodeid, Outcome.TIMEOUT, "call", message, shard_id=shard_id))
        names = ", ".join(now_running.values()) or "none"
        self._notes.append(
            f"session timeout: the run stopped at its {limit:g}s limit; tests running then: {names}"
        )
        self.stop(f"session timeout ({limit:g}s) reached")

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if self.state.interrupted:
                    # Second interrupt: end at once, but take every worker group along.
                    zygote_pid = self._zygote.pid if self._zygote else None
                    for pid in (*self._worker_pids.values(), zygote_pid):
                        if pid is not None:
                            signal_group(pid, signal.SIGKILL)
                    os._exit(int(ExitCode.INTERRUPTED))
                name = signal.Signals(signum).name
                self.stop(f"interrupted by {name}", interrupted=True)

    def _summary(self, started: float) -> RunSummary:
        stop_reason = self.state.stop_reason
        for nodeid in self.state.planned:
            if nodeid not in self.state.final:
                self._finish(
                    TestResult(
                        nodeid=nodeid,
                        outcome=Outcome.NOT_RUN,
                        duration=0.0,
                        message=f"not run: {stop_reason or 'never dispatched'}",
                    )
                )
        order = {nodeid: index for index, nodeid in enumerate(self.state.planned)}
        results = tuple(
            sorted(self.state.final.values(), key=lambda r: order.get(r.nodeid, len(order)))
        )
        code = exit_code_for(
            results,
            interrupted=self.state.interrupted,
            flaky_fails=self.settings.flaky_result == "fail",
        )
        return RunSummary(
            run_id=self.run_id,
            results=results,
            counts=count_outcomes(results),
            duration=self.clock() - started,
            exit_code=int(code),
            interrupted=self.state.interrupted,
            errors=tuple(self.store_warnings + self.bus.failures),
            notes=tuple(self._notes),
        )

    # ---- before the run: store, discovery, history, plan --------------------------------------
    async def _open_store(self) -> aiosqlite.Connection | None:
        try:
            return await connect_store(self.settings.store_path)
        except StoreError as exc:
            self.store_warnings.append(str(exc))
            self.log.warning("store_unavailable", error=str(exc))
            return None

    def _metadata(self) -> RunMetadata:
        return RunMetadata(
            run_id=self.run_id,
            project=str(self.settings.project_root),
            profile=self.settings.profile.name,
            categories=",".join(c.name for c in self.settings.categories),
            argv=self.settings.argv,
        )

    async def _load_history(self, db: aiosqlite.Connection | None) -> History:
        if db is not None:
            try:
                return await load_history(db, str(self.settings.project_root))
            except Exception as exc:
                self.store_warnings.append(f"results store: cannot read history: {exc}")
        return History(durations={}, recent_failures=frozenset())

    async def _discover(self, db: aiosqlite.Connection | None) -> Selection:
        settings = self.settings
        queries = queries_for(settings.categories, settings.project_root)
        return self._selection([await self._collect_one(db, query) for query in queries])

    def _selection(self, collections: Sequence[Collection]) -> Selection:
        """Several queries' collections merged into one selection."""
        queries = queries_for(self.settings.categories, self.settings.project_root)
        rootdir = collections[0].rootdir
        nodeids = tuple(dict.fromkeys(n for c in collections for n in c.nodeids))
        errors: dict[NodeId, TestResult] = {}
        for c in collections:
            for e in c.errors:
                errors.setdefault(e.nodeid, _collection_result(e.nodeid, e.longrepr, e.skipped))
        positionals = tuple(dict.fromkeys(p for c in collections for p in c.positionals))
        worker_args, explicit_ids = self._worker_args(queries, positionals)
        return Selection(
            rootdir=rootdir,
            nodeids=nodeids,
            collection_errors=tuple(errors.values()),
            worker_args=worker_args,
            explicit_ids=explicit_ids,
            serial=tuple(dict.fromkeys(n for c in collections for n in c.serial)),
            resources={n: r for c in collections for n, r in c.resources.items()},
        )

    def _fingerprint(self, query: CollectionQuery) -> str:
        settings = self.settings
        return collection_fingerprint(
            settings.project_root, (*query.key(), *settings.pytest_args), self._env
        )

    async def _cached(self, db: aiosqlite.Connection, fingerprint: str) -> Collection | None:
        try:
            hit = await load_collection(db, fingerprint)
        except Exception as exc:
            self.store_warnings.append(f"results store: cannot read collection cache: {exc}")
            return None
        if hit is None:
            return None
        self.log.debug("collection_cache_hit", tests=len(hit.nodeids))
        return Collection(hit.rootdir, hit.nodeids, (), hit.positionals, hit.serial, hit.resources)

    def _collection_store(self, db: aiosqlite.Connection | None) -> aiosqlite.Connection | None:
        """The store, when collections may be cached in it (not with --no-cache)."""
        return db if self.settings.profile.collection_cache else None

    async def _save(self, db: aiosqlite.Connection, fingerprint: str, found: Collection) -> None:
        """Only a clean collection is cached: errors must be reported by a real collection."""
        if not found.nodeids or found.errors:
            return
        cached = CachedCollection(
            found.rootdir, found.nodeids, found.positionals, found.serial, dict(found.resources)
        )
        try:
            await save_collection(db, fingerprint, cached)
        except Exception as exc:
            self.store_warnings.append(f"results store: cannot save collection: {exc}")

    async def _collect_one(
        self, db: aiosqlite.Connection | None, query: CollectionQuery
    ) -> Collection:
        settings = self.settings
        fingerprint = self._fingerprint(query)
        cache = self._collection_store(db)
        if cache is not None:
            hit = await self._cached(cache, fingerprint)
            if hit is not None:
                return hit
        collection = await collect(
            query, settings.pytest_args, project_root=settings.project_root, env=self._env
        )
        if cache is not None:
            await self._save(cache, fingerprint, collection)
        return collection

    def _plan(
        self,
        selection: Selection,
        history: History,
        *,
        forked: bool,
        known: int,
        busy: int | None,
        early: bool = False,
    ) -> list[PlannedShard]:
        settings = self.settings
        if settings.fixed_workers:
            slots = settings.fixed_workers
        elif not forked:
            slots = settings.initial_workers  # a spawn costs half a second: few shards
        elif known * 2 >= len(selection.nodeids):
            # Known costs: cut for as many workers as these tests can keep busy (cores / CPU
            # share), not for the ceiling: CPU-bound tests gain nothing from more shards.
            slots = busy if busy is not None else settings.max_workers
        else:
            # Unknown costs: a few shards per core. Thousands of millisecond tests cut for the
            # ceiling would pay a fork and a session per handful of tests; cut for only the
            # cores, a suite of waiting tests spends its first second in a few long chains that
            # stealing can only split between tests (measured: io cold 2.07 -> 1.96 s, 1,000
            # trivial tests 0.75 -> 0.87 x plain pytest).
            slots = min(settings.max_workers, 4 * settings.initial_workers)
        return make_plan(
            PlanInput(
                nodeids=selection.nodeids,
                durations=history.durations,
                recent_failures=history.recent_failures,
                slots=slots,
                shards_per_slot=settings.profile.shards_per_slot,
                min_shard_seconds=FORK_MIN_SHARD_SECONDS if forked else SPAWN_MIN_SHARD_SECONDS,
                explicit_ids=selection.explicit_ids,
                serial=selection.serial,
                resources=selection.resources,
                resource_limits=settings.resource_limits,
                collects_per_shard=early or not forked,
            )
        )

    def _worker_setup(self, selection: Selection, scratch: Path) -> WorkerSetup:
        return WorkerSetup(
            rootdir=selection.rootdir,
            cwd=str(self.settings.project_root),
            pytest_args=selection.worker_args,
            env=self._env,
            scratch_dir=scratch,
            timeout=self.settings.profile.timeout,
            memory_limit=self.settings.profile.memory_limit_mb * 1024 * 1024,
        )


def _sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first engine error or interrupt in a task group's exception tree, else the group."""
    leaves: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            leaves.append(error)

    walk(group)
    for kind in (KeyboardInterrupt, TestFrameworkError):
        for leaf in leaves:
            if isinstance(leaf, kind):
                return leaf
    return group


def _send_skips(link: WorkerLink, skips: Mapping[str, str]) -> None:
    by_reason: dict[str, list[str]] = {}
    for file, reason in skips.items():
        by_reason.setdefault(reason, []).append(file)
    for reason, files in by_reason.items():
        link.send({"event": "skip", "files": files, "reason": reason})


def _skipped(nodeid: NodeId, reason: str, spec: ShardSpec) -> TestResult:
    return engine_result(
        nodeid,
        Outcome.SKIPPED,
        "setup",
        reason,
        attempt=spec.attempt,
        shard_id=spec.shard.shard_id,
    )


def _with_warning(summary: RunSummary, warning: str) -> RunSummary:
    return dataclasses.replace(summary, errors=(*summary.errors, warning))


def _without(args: Sequence[str], positionals: Sequence[str]) -> list[str]:
    remaining = list(args)
    for positional in positionals:
        if positional in remaining:
            remaining.remove(positional)
    return remaining


def _collection_result(nodeid: NodeId, longrepr: str, skipped: bool) -> TestResult:
    if skipped:
        return engine_result(nodeid, Outcome.SKIPPED, "collect", "skipped at collection", longrepr)
    return engine_result(nodeid, Outcome.ERROR, "collect", "error during collection", longrepr)


async def run_events(
    settings: RunSettings, subscribers: Sequence[Callable[[Event], None]]
) -> RunSummary:
    bus = EventBus()
    for subscriber in subscribers:
        bus.subscribe(subscriber)
    return await Orchestrator(settings, bus).run()
