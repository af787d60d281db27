"""The orchestrator: wires the stages of one run together, inside one anyio task group. It
wires; it does not decide.

  settings -> store -> collector (cache | the executor's warm process | discovery) ->
  history -> plan -> [store writer | dispatcher (monitor, session clock, signals, shards)] ->
  ledger's summary -> RunFinished.

The executor comes from a factory handed in (the local one by default), so a resident process or
a cluster runs the same wiring. Results flow out only as events; the store writer and the
reporters subscribe to them.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import aiosqlite
import anyio
import structlog
from anyio.abc import TaskGroup

if sys.version_info < (3, 11):  # pragma: no cover - the backport anyio depends on
    from exceptiongroup import BaseExceptionGroup

from .breaker import FailureBreaker
from .budget import excuse_budget, over_budget_results
from .collection_stop import collection_stop
from .collector import Collector
from .dispatch.capacity import FirstTests
from .dispatch.dispatcher import Dispatcher
from .dispatch.queue import ShardCosts
from .dispatch.resources import Sampler
from .errors import NoTestsCollected, TestFrameworkError
from .events import (
    Event,
    EventBus,
    Phase,
    RunContext,
    RunFinished,
    RunStarted,
    WarningRecorded,
)
from .execution.executor import ExecutorFactory, ExecutorStart, ShardExecutor, local_executor
from .execution.importable import worker_env
from .execution.runner import STOP_GRACE, WorkerSetup
from .execution.summary import SummaryRequest, plugin_summary
from .exit_codes import ExitCode
from .ledger import Ledger, RetryPolicy
from .models import Collection, NodeId, RunSummary, file_of
from .narrowing import only, shard_and_budget
from .regressions import judge_durations
from .request import RunSettings
from .result_cache import ResultCache
from .run_plan import plan_run
from .store.writer import StoreWriter
from .store_reads import StoreReads
from .worker.protocol import ENV_RECORD_DEPS

log = structlog.get_logger("test_framework")


class Orchestrator:
    def __init__(
        self,
        settings: RunSettings,
        bus: EventBus,
        *,
        executors: ExecutorFactory = local_executor,
        sampler: Sampler | None = None,
        clock: Callable[[], float] = time.monotonic,
        random_source: Callable[[], float] = random.random,
        process_started: float | None = None,
        scratch: Path | None = None,
    ) -> None:
        self.settings = settings
        self.scratch = scratch  # the run's scratch folder when made before it (the caller's)
        self.bus = bus
        self.executors = executors
        self.sampler = sampler
        self.clock = clock
        self.random_source = random_source
        self.run_id = uuid.uuid4().hex[:12]
        self.cache: ResultCache | None = None  # the skip cache, when the profile turns it on
        self.shard_selection: tuple[int, str] | None = None  # a CI shard's whole selection
        profile = settings.profile
        self.ledger = Ledger(
            retry=RetryPolicy(
                retries=profile.retries,
                base_delay=profile.retry_base_delay,
                factor=profile.retry_factor,
                max_delay=profile.retry_max_delay,
                random=random_source,
            ),
            maxfail=settings.maxfail,
            breaker=FailureBreaker(profile.breaker_threshold),
            flaky_fails=settings.flaky_result == "fail",
        )
        self.records = StoreReads(settings)  # what earlier runs left in the store
        self.store_warnings = self.records.warnings
        # When the run's phases happened (events.Phase), for the split in the reports.
        self.phases: dict[str, float] = {Phase.ENGINE: time.time()}
        if process_started is not None:
            self.phases[Phase.PROCESS] = process_started

    async def run(self) -> RunSummary:
        try:
            with (
                structlog.contextvars.bound_contextvars(run_id=self.run_id),
                _scratch_folder(self.scratch) as scratch,
            ):
                return await self._run(scratch)
        except BaseExceptionGroup as group:
            # Task groups wrap; callers (the CLI's exit-code mapping, API users) want the one
            # error that ended the run.
            raise _sole_error(group) from None

    async def _run(self, scratch: Path) -> RunSummary:
        started = self.clock()
        settings = self.settings
        env = worker_env(os.environ, str(settings.project_root), scratch)
        with self._timing_store():
            db = await self.records.open()
            if db is not None and (settings.profile.skip_cache or settings.changed is not None):
                self.cache = await ResultCache.open(settings, db, os.environ)
        try:
            async with anyio.create_task_group() as outer:
                collector = Collector(settings, env, db, self.store_warnings)
                # The store first (milliseconds): a cached collection lets the warm process
                # fork before collecting, so the workers collect their own files in parallel.
                cached = await collector.cached_warm()
                start = ExecutorStart(
                    cwd=str(settings.project_root),
                    env=env,
                    scratch=scratch,
                    warm_argv=collector.warm_argv(),
                    early=cached is not None,
                    grace=STOP_GRACE,
                    preload=cached.modules if cached is not None else (),
                    protocol_env=self._protocol_env(),
                )
                async with self.executors(start) as executor:
                    # A resident zygote collected everything, even where a cached collection
                    # would have made a fresh one fork before collecting.
                    start = replace(start, early=start.early and executor.early)
                    collection = cached or await collector.collect(executor)
                    self.phases.update(executor.phases())
                    self.phases[Phase.COLLECTED] = time.time()
                    args, explicit = collector.worker_args(collection)
                    setup = self._worker_setup(collection, args, env, scratch)
                    summary = await self._execute(
                        db, outer, executor, collection, setup, explicit, start, started
                    )
        finally:
            if db is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await db.close()
        return summary

    async def _execute(
        self,
        db: aiosqlite.Connection | None,
        outer: TaskGroup,
        executor: ShardExecutor,
        collection: Collection,
        setup: WorkerSetup,
        explicit_ids: bool,
        start: ExecutorStart,
        started: float,
    ) -> RunSummary:
        settings = self.settings
        stop = collection_stop(collection, settings.pytest_args)
        if stop is not None:  # pytest runs no test; it reports the errors it saw
            collection = replace(collection, errors=stop.reported)
        maxfail = collection.terminal.maxfail  # pytest's, from its options or `addopts`
        if maxfail and (not self.ledger.maxfail or maxfail < self.ledger.maxfail):
            self.ledger.maxfail = maxfail
        collected_any = bool(collection.nodeids or collection.errors)
        affected: set[NodeId] | None = None
        if settings.changed is not None and self.cache is not None and collection.nodeids:
            changed = await self.cache.changed_only(collection, self.ledger.notes)
            if settings.time_budget is None:
                collection = changed
            else:  # the budget runs the affected tests first, then fills up with others
                affected = set(changed.nodeids)
        if settings.selected and collection.nodeids:
            collection = only(collection, settings.selected)
        with self._timing_store():
            history = await self.records.history(db)
            context_files = await self.records.context_files(db)
            unstable = await self.records.unstable_files(db)
            past = (
                await self.records.baselines(db, collection.nodeids)
                if (settings.performance_regression)
                else {}
            )
        narrowed = shard_and_budget(
            collection, settings, history.durations, history.recent_failures, affected
        )
        collection, over_budget = narrowed.collection, list(narrowed.over_budget)
        self.shard_selection = narrowed.shard_selection
        self.ledger.notes.extend(narrowed.notes)
        planned = collection
        partial_files: dict[str, list[NodeId]] = dict(narrowed.partial_files)
        reusing = settings.profile.skip_cache and settings.reuse_results
        reusing = reusing and not (settings.only or settings.serial)
        if self.cache is not None and stop is None and reusing:
            decision = self.cache.decide(collection, context_files)
            if settings.verify_cache:
                count = self.cache.verify()
                self.ledger.notes.append(
                    f"verify cache: {count} test{'s' if count != 1 else ''} the cache would "
                    "have reported run, to be compared"
                )
            elif decision.cached:
                planned, cache_partial = self.cache.planned(
                    collection, self.random_source, history.durations
                )
                partial_files = {**cache_partial, **partial_files}
                self.ledger.seen_in_context(decision.failed_in_context())
            self.ledger.notes.extend(self.cache.notes())
        dispatcher = Dispatcher(
            settings,
            executor,
            self.ledger,
            self.bus.emit,
            costs=ShardCosts(history),
            sampler=self.sampler,
            clock=self.clock,
            unstable=unstable,
        )
        forked = start.warm_argv is not None
        if not forked or not executor.steals:
            dispatcher.stealing.spawning()
        fraction = history.cpu_fraction(collection.nodeids)
        busy = dispatcher.slots.busy_workers(fraction) if forked else None
        shards, plan = plan_run(
            settings,
            planned,
            history.durations,
            history.recent_failures,
            explicit_ids,
            stops_in_order=bool(self.ledger.maxfail) and settings.fixed_workers == 1,
            forked=forked,
            busy=busy,
            early=start.early,
            context_files=context_files,
            unstable=unstable,
            partial_files=partial_files,
        )
        if not collected_any:
            raise self._nothing_collected()
        sampled = len(self.cache.sampled) if self.cache is not None else 0
        cached = len(collection.nodeids) - len(planned.nodeids)
        plan = replace(plan, cached=cached, sampled=sampled)
        widened = dispatcher.slots.widened(dispatcher.limiter.capacity, busy)
        started_event = RunStarted(
            self._context(), plan, widened or dispatcher.limiter.capacity, dict(self.phases)
        )
        if settings.list_only:
            self.bus.emit(started_event)
            return RunSummary(self.run_id, (), {}, self.clock() - started, 0)
        writer = StoreWriter(db) if db is not None else None
        if writer is not None:
            self.bus.subscribe(writer.handle)
            outer.start_soon(writer.run)
        try:
            owed = shards[0].nodeids if settings.only else collection.nodeids
            if stop is not None:
                owed, shards = (), []
            self.ledger.plan([*owed, *over_budget, *(e.nodeid for e in collection.errors)])
            dispatcher.load(shards, collection.nodeids)
            if forked and fraction is None:
                dispatcher.first = FirstTests.for_cores(settings.cores)
            self.bus.emit(started_event)
            for warned in collection.warnings:
                self.bus.emit(
                    WarningRecorded(
                        None, warned.nodeid, warned.when, warned.message, warned.location
                    )
                )
            if fraction is not None:
                dispatcher.widen(busy, f"learned: these tests keep a core {fraction:.0%} busy")
            if stop is not None:  # before the errors count for maxfail: pytest's reason wins
                dispatcher.stop(stop.reason, interrupted=stop.interrupted)
            dispatcher.conclude(collection.error_results())
            dispatcher.conclude(over_budget_results(over_budget, settings.time_budget))
            if self.cache is not None:
                self.bus.subscribe(self.cache.handle)
            await dispatcher.run(setup, started)
            if self.cache is not None:
                await self.cache.settle(self.ledger, dispatcher, setup, started)
            dispatcher.conclude_rest()
            await dispatcher.name_needs()
            if self.cache is not None:
                self.bus.emit(self.cache.recorded(collection, self.ledger.final))
            warnings = [*self.store_warnings, *self.bus.failures]
            if writer is not None and writer.failed:
                warnings.append(f"results store: {writer.failed}")
            summary = self.ledger.summary(self.run_id, self.clock() - started, warnings)
            if over_budget:
                summary = excuse_budget(summary, set(over_budget), self.ledger.flaky_fails)
            if settings.performance_regression:
                summary = judge_durations(
                    summary, past, settings.perf_threshold, settings.fail_on_regression
                )
            nothing_affected = self.cache is not None and self.cache.nothing_affected
            if nothing_affected and summary.exit_code == ExitCode.NO_TESTS_COLLECTED:
                summary = replace(summary, exit_code=int(ExitCode.OK))  # nothing to check
            if self.cache is not None and self.cache.false_skips(self.ledger.final):
                summary = replace(summary, exit_code=max(summary.exit_code, 1))
            terminal = collection.terminal
            if (terminal.coverage or terminal.summary_plugins) and not dispatcher.signalled:
                summary = await self._with_plugin_summaries(summary, start)
            self.phases.update(executor.phases())  # an early warm process says Hello late
            self.bus.emit(RunFinished(summary=summary, phases=dict(self.phases)))
        finally:
            # Whatever ended the run, every result recorded so far reaches the store.
            if writer is not None:
                await writer.finish()
        return summary

    async def _with_plugin_summaries(self, summary: RunSummary, start: ExecutorStart) -> RunSummary:
        """Plugins' terminal summaries for the run (pytest-cov's table combined from every
        worker), from its reports replayed in one pytest process, as under xdist's master;
        `--cov-fail-under` not reached fails the run."""
        settings = self.settings
        ledger = self.ledger
        request = SummaryRequest(
            order=[r.nodeid for r in summary.results],
            stop=ledger.stop_reason,
            interrupted=ledger.interrupted,
        )
        report = await plugin_summary(
            request,
            settings.pytest_args,
            cwd=settings.project_root,
            env=start.env,
            scratch=start.scratch,
        )
        if report.problem is not None:
            return replace(summary, errors=(*summary.errors, report.problem))
        failing = report.failed and summary.exit_code == ExitCode.OK
        return replace(
            summary,
            plugin_report=report.text,
            exit_code=int(ExitCode.TESTS_FAILED) if failing else summary.exit_code,
        )

    def _protocol_env(self) -> dict[str, str]:
        """What every worker of the run is told: record dependencies for the skip cache."""
        return {ENV_RECORD_DEPS: "1"} if self.cache is not None else {}

    def _nothing_collected(self) -> NoTestsCollected:
        settings = self.settings
        extra = (
            f" with pytest args {' '.join(settings.pytest_args)}" if settings.pytest_args else ""
        )
        categories = ", ".join(c.name for c in settings.categories)
        return NoTestsCollected(
            f"no tests collected: categories {categories}{extra} select no test under "
            f"{settings.project_root}"
        )

    def _context(self) -> RunContext:
        settings = self.settings
        return RunContext(
            run_id=self.run_id,
            project_root=str(settings.project_root),
            profile=settings.profile.name,
            categories=tuple(c.name for c in settings.categories),
            argv=settings.argv,
            pytest_args=settings.pytest_args,
            isolation=settings.isolation,
            shard=(settings.shard.index, settings.shard.total) if settings.shard else None,
            shard_selection=self.shard_selection,
        )

    def _worker_setup(
        self, collection: Collection, args: tuple[str, ...], env: dict[str, str], scratch: Path
    ) -> WorkerSetup:
        profile = self.settings.profile
        return WorkerSetup(
            rootdir=collection.rootdir,
            cwd=str(self.settings.project_root),
            pytest_args=args,
            env=env,
            scratch_dir=scratch,
            timeout=profile.timeout,
            memory_limit=profile.memory_limit_mb * 1024 * 1024,
            protocol_env=self._protocol_env(),
            all_files=(
                *dict.fromkeys(file_of(n) for n in collection.nodeids),
                *(e.nodeid for e in collection.errors if e.nodeid not in collection.nodeids),
            ),
        )

    @contextlib.contextmanager
    def _timing_store(self) -> Iterator[None]:
        """Adds the block's time to the store's share of the run's start."""
        began = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - began
            self.phases[Phase.STORE_SECONDS] = self.phases.get(Phase.STORE_SECONDS, 0.0) + spent


def _sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first engine error or interrupt in a task group's exception tree, else the first
    error of any kind (an engine bug, which the entry points report as an internal error)."""
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
    return leaves[0] if leaves else group


async def run_events(
    settings: RunSettings,
    subscribers: Sequence[Callable[[Event], None]],
    *,
    executors: ExecutorFactory = local_executor,
    process_started: float | None = None,
    scratch: Path | None = None,
) -> RunSummary:
    """One run, its events to `subscribers`. `process_started`: when the process that asked
    for it started (wall clock), the origin of the run's time split; `scratch`: a scratch
    folder made for it already (left to the caller to remove)."""
    bus = EventBus()
    for subscriber in subscribers:
        bus.subscribe(subscriber)
    orchestrator = Orchestrator(
        settings, bus, executors=executors, process_started=process_started, scratch=scratch
    )
    return await orchestrator.run()


@contextlib.contextmanager
def _scratch_folder(given: Path | None) -> Iterator[Path]:
    """The run's scratch folder: the one given, else a temporary one removed afterwards."""
    if given is not None:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="test_framework-") as made:
        yield Path(made)
