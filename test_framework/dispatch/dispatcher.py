"""The dispatcher: acts. It starts shards through the executor as the limiter admits them,
follows what execution reports, carries out the ledger's decisions and publishes events.

It owns the queue, admission, work stealing, reruns (retries after their backoff, confirmations
in pytest's context, a crashed worker's unstarted tests, stolen tails), the circuit breaker's
commands, the session clock, interrupts, and the monitor that moves the limiter's capacity. It
decides nothing about results: every attempt goes to the ledger, whose decisions come back.

Structured concurrency: `run` holds one task group for the services (monitor, session clock,
signals) and one for the shards; a stop cancels the shards' scope and every worker is stopped by
its executor under a shielded scope."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import anyio
import structlog

from ..events import (
    AttemptFinished,
    CapacityChanged,
    CircuitOpened,
    ContextNeeded,
    Event,
    ExecutionEvent,
    IdsChanged,
    ProcessesLeaked,
    RunStopping,
    ShardCollected,
    ShardStarted,
    TestConfirming,
    TestFinished,
    TestRetrying,
    TestsReleased,
)
from ..execution.executor import ShardExecutor
from ..execution.runner import ShardOutcome, WorkerControl, WorkerSetup
from ..execution.verdicts import crashed_before_start, withheld
from ..exit_codes import ExitCode
from ..fingerprint import input_digest
from ..ledger import (
    CONFIRMED_OUTCOMES,
    Confirm,
    Decision,
    Final,
    Ledger,
    NeedsContext,
    OpenCircuit,
    Reproduce,
    Retry,
    Stop,
)
from ..models import (
    NodeId,
    Outcome,
    Shard,
    TestResult,
    engine_result,
    file_of,
)
from ..planning import DEFAULT_TEST_ESTIMATE, ids_by_file, split_contiguous
from ..request import RunSettings
from ..worker.selection import FileTests
from .capacity import FirstTests, SlotPolicy, capacity_policy
from .context import Rechecks, context_gap
from .culprits import NEEDS_BUDGET_SECONDS, needs_notes
from .ids import RunIds, ShardMaker
from .limiter import AdaptiveLimiter
from .monitor import run_monitor
from .queue import ShardCosts, ShardQueue, skip_commands, split_files
from .resources import CapacityPolicy, PsutilSampler, Sampler
from .stealing import WorkStealing

log = structlog.get_logger("test_framework")

# While nothing is queued, the dispatcher looks this often for tails worth stealing.
STEAL_POLL_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class _PendingRetry:
    nodeids: tuple[NodeId, ...]
    attempt: int
    delay: float
    parent: Shard


class Dispatcher:
    def __init__(
        self,
        settings: RunSettings,
        executor: ShardExecutor,
        ledger: Ledger,
        emit: Callable[[Event], None],
        *,
        costs: ShardCosts | None = None,
        sampler: Sampler | None = None,
        clock: Callable[[], float] = time.monotonic,
        unstable: Iterable[str] = (),
    ) -> None:
        self.settings = settings
        self.executor = executor
        self.ledger = ledger
        self.publish = emit
        self.limiter = AdaptiveLimiter(settings.initial_workers)
        self.costs = costs or ShardCosts()
        self.queue = ShardQueue(self.costs, settings.cores)
        self.stealing = WorkStealing(known=self.costs.history.durations)
        # How many workers the tests' learned CPU share can use (None: not known): the
        # monitor's ceiling.
        self.learned_ceiling: int | None = None
        self.slots = SlotPolicy(
            cores=settings.cores,
            initial=settings.initial_workers,
            maximum=settings.max_workers,
            fixed=settings.fixed_workers,
            monitoring=settings.resource_monitoring,
        )
        self.sampler = sampler
        self.clock = clock
        self.setup: WorkerSetup | None = None
        # A cold forked run measures its first tests to learn the CPU share the store lacks.
        self.first: FirstTests | None = None
        # Live workers and what they run, for commands, stealing and the session timeout.
        self.controls: dict[int, WorkerControl] = {}
        self.running: dict[int, Shard] = {}
        # Whether each started shard's worker collected the whole selection, as pytest does;
        # and each file's tests in collection order: a failure's context is judged by them.
        self.full_collection: dict[int, bool] = {}
        self.ids = RunIds(unstable)
        self.files = self.ids.files
        self.new_shard = ShardMaker(self.ids, self._expected)
        self.rechecks = Rechecks()
        self.alone: dict[int, NodeId] = {}  # shard id -> the test it reruns alone
        self.signalled = False  # the user interrupted the run (SIGINT, SIGTERM)
        self._busy = 0  # shards running, and retries waiting for their backoff
        self._wakeup = anyio.Event()
        self._stop_scope: anyio.CancelScope | None = None
        self._retry_buffer: dict[int | None, list[tuple[NodeId, float]]] = {}
        self._pending_retries: list[_PendingRetry] = []

    def load(self, shards: Sequence[Shard], nodeids: Sequence[NodeId] = ()) -> None:
        """The planned shards, and every test of the run in collection order."""
        for shard in shards:
            self.queue.push(shard)
        self.new_shard.last_id = max((s.shard_id for s in shards), default=0)
        self.ids.load(nodeids)

    def add(self, nodeids: Sequence[NodeId]) -> None:
        """Tests the run adds to its plan (the skip cache's trip-wire sample, and every cached
        test when it trips): a shard per file, naming them."""
        for nodeids_of_file in ids_by_file(nodeids).values():
            self._enqueue(self.new_shard(nodeids_of_file))

    def widen(self, busy: int | None, reason: str) -> None:
        """Widen to what the tests' CPU share says they can use; the monitor still narrows,
        and widens no further: what it samples while workers start (a zygote importing, children
        collecting) says nothing about the tests, and a slot too many slows the longest test
        (measured on more-itertools: 2 -> 4 slots at the first sample, its 19.6 s test took 24 s
        sharing two cores with three workers)."""
        if busy is not None:
            self.learned_ceiling = busy
        wider = self.slots.widened(self.limiter.capacity, busy)
        if wider is None:
            return
        event = CapacityChanged(self.limiter.capacity, wider, reason, 0.0, 0, 0)
        self.limiter.set_capacity(wider)
        self.publish(event)
        self._wakeup.set()

    def conclude(self, results: Iterable[TestResult]) -> None:
        """Results the engine decided itself (collection errors): final at once."""
        for result in results:
            self._act(self.ledger.conclude(result))

    def conclude_rest(self) -> None:
        self._act(self.ledger.close())  # after the run: what has no answer yet

    # ---- ShardListener: what execution reports while shards run --------------------------------
    def emit(self, event: ExecutionEvent) -> None:
        self.publish(event)
        if isinstance(event, ShardStarted):
            self.full_collection[event.shard_id] = event.full_collection
        elif isinstance(event, AttemptFinished):
            self._attempt(event.result)
        elif isinstance(event, TestsReleased):
            self._released(event.shard_id, event.nodeids)
        elif isinstance(event, ShardCollected) and event.shard_id in self.running:
            self._collected(self.running[event.shard_id], event.nodeids, event.renamed)
        elif isinstance(event, ProcessesLeaked):
            self.ledger.notes.extend(f"leaked process (killed): {p}" for p in event.processes)

    def _collected(
        self, shard: Shard, nodeids: tuple[NodeId, ...], renamed: tuple[str, ...]
    ) -> None:
        root = self.settings.project_root
        for file in self.ids.collected(shard, nodeids, renamed):
            self.publish(IdsChanged(file, input_digest(root, file)))
        named = {e.file for e in shard.selection if isinstance(e, FileTests)}
        # A test named by id and not found stays owed; a slice's ids are what it collected.
        self.ledger.collected([n for n in shard.nodeids if file_of(n) not in named], nodeids)

    def attached(self, shard_id: int, control: WorkerControl) -> None:
        self.controls[shard_id] = control
        self._send_skips([control])

    def detached(self, shard_id: int) -> None:
        """The worker is gone: no more commands, and a tail asked of it will not come."""
        self.controls.pop(shard_id, None)
        self.stealing.asked.pop(shard_id, None)

    def _attempt(self, result: TestResult) -> None:
        self.stealing.finished(result)
        if self.first is not None and result.cpu_time is not None:
            fraction = self.first.add(result.cpu_time, result.duration)
            if self.first.complete:
                first, self.first = self.first, None
                if fraction is not None:
                    reason = (
                        f"measured: the first {first.count} tests keep a core {fraction:.0%} busy"
                    )
                    self.widen(self.slots.busy_workers(fraction), reason)
        alone = result.shard_id is not None and self.alone.get(result.shard_id) == result.nodeid
        self._act(self.ledger.record(result, self._context_gap(result), alone=alone))

    def _context_gap(self, result: TestResult) -> str | None:
        """How a failing attempt's run differed from pytest's (None: it did not, or it passed)."""
        shard = self.running.get(result.shard_id) if result.shard_id is not None else None
        if shard is None or self.settings.one_worker_in_order:
            return None
        if result.outcome not in CONFIRMED_OUTCOMES:
            return None
        full = self.full_collection.get(shard.shard_id, False)
        return context_gap(shard, full, result.nodeid, self.files)

    def _released(self, shard_id: int, nodeids: tuple[NodeId, ...]) -> None:
        """A running worker gave back the tail of its tests: new shards for free slots, as many
        as were asked for."""
        pieces = self.stealing.released(shard_id)
        parent = self.running.get(shard_id)
        if not nodeids or parent is None:
            self._wakeup.set()
            return
        for piece in reversed(split_contiguous(nodeids, pieces)):
            shard = self._rerun(piece, parent.attempt, parent)
            log.debug(
                "tail_released", from_shard=shard_id, to_shard=shard.shard_id, tests=len(piece)
            )
            self._enqueue(shard, front=True)

    # ---- carrying out decisions ---------------------------------------------------------------
    def _act(self, decisions: Iterable[Decision]) -> None:
        for decision in decisions:
            if isinstance(decision, Final):
                self.publish(TestFinished(decision.result))
            elif isinstance(decision, Retry):
                result = decision.result
                self.publish(TestRetrying(result, decision.next_attempt, decision.delay))
                # Held until the shard ends, so one fresh process reruns all of its failures.
                self._retry_buffer.setdefault(result.shard_id, []).append(
                    (result.nodeid, decision.delay)
                )
            elif isinstance(decision, Confirm):
                result = decision.result
                self.publish(TestConfirming(result, decision.why))
                # Held until the shard ends: one worker confirms all of its failures.
                self.rechecks.confirm(result)
            elif isinstance(decision, Reproduce):
                self.rechecks.reproduce(decision.result)
            elif isinstance(decision, NeedsContext):
                file = file_of(decision.nodeid)
                digest = input_digest(self.settings.project_root, file)
                self.publish(ContextNeeded(decision.nodeid, file, decision.why, digest))
            elif isinstance(decision, Stop):
                self._stopped(decision)
            elif isinstance(decision, OpenCircuit):
                self._open_circuit(decision)

    def _open_circuit(self, decision: OpenCircuit) -> None:
        """Skip the rest of the affected files: queued tests here, running workers by command."""
        opened = decision.opened
        self.publish(
            CircuitOpened(
                opened.signature, opened.files, opened.failures, opened.probe, opened.reason
            )
        )
        for gone in self.queue.remove_files(self.ledger.skips()):
            self._skip(gone)
        self._send_skips(list(self.controls.values()))

    def _send_skips(self, controls: Sequence[WorkerControl]) -> None:
        commands = skip_commands(self.ledger.skips())
        for control in controls:
            for command in commands:
                control.send(command)

    def _skip(self, shard: Shard) -> None:
        """Queued tests an open circuit keeps from running: not run, with the reason."""
        skips = self.ledger.skips()
        for nodeid in shard.nodeids:
            self._act(self.ledger.conclude(withheld(nodeid, skips[file_of(nodeid)], shard)))

    def stop(self, reason: str, *, interrupted: bool = False) -> None:
        """Stop dispatching (the first reason wins) and stop the running shards."""
        self._stopped(self.ledger.stop(reason, interrupted=interrupted))

    def _stopped(self, decision: Stop | None) -> None:
        if decision is not None:
            self.publish(RunStopping(decision.reason))
        if self._stop_scope is not None:
            self._stop_scope.cancel()

    # ---- the queue -----------------------------------------------------------------------------
    def _expected(self, nodeid: NodeId) -> float:
        return self.costs.history.durations.get(nodeid, DEFAULT_TEST_ESTIMATE)

    def _rerun(self, nodeids: Sequence[NodeId], attempt: int, parent: Shard) -> Shard:
        """A new shard for some of `parent`'s tests (a retry, a crashed worker's unstarted
        tests, a stolen tail), with its constraints."""
        return self.new_shard(nodeids, parent=parent, attempt=attempt)

    def _enqueue(self, shard: Shard, *, front: bool = False) -> None:
        self.queue.push(shard, front=front)
        self._wakeup.set()

    def backlog(self) -> int:
        """Work that more slots could start now: queued shards, and running shards with a tail
        worth stealing (so the monitor widens for a cold run's few long shards too)."""
        queued = len(self.queue) + self.limiter.statistics().waiting
        return queued or self.stealing.backlog(self.running, self.controls)

    def _steal(self) -> None:
        if len(self.queue) or self.ledger.stopped:
            return
        stats = self.limiter.statistics()
        self.stealing.ask(stats.capacity - stats.in_use, self.running, self.controls)

    # ---- the run ---------------------------------------------------------------------------------
    async def run(self, setup: WorkerSetup, started: float) -> None:
        self.setup = setup
        profile = self.settings.profile
        async with anyio.create_task_group() as services:
            if profile.session_timeout > 0:
                services.start_soon(self._session_clock, profile.session_timeout, started)
            if self.settings.resource_monitoring:
                services.start_soon(
                    run_monitor,
                    self.limiter,
                    self.sampler or PsutilSampler(),
                    self.monitor_policy,
                    profile.monitor_interval,
                    self.publish,
                    time.time,
                    self.backlog,
                    self.queue.next_rss,
                )
            services.start_soon(self._watch_signals)
            with anyio.CancelScope() as self._stop_scope:
                if self.ledger.stopped:
                    self._stop_scope.cancel()
                await self._dispatch()
            services.cancel_scope.cancel()

    def monitor_policy(self) -> CapacityPolicy:
        """The monitor's bounds: the profile's, its ceiling lowered to the learned one."""
        policy = capacity_policy(self.settings)
        if self.learned_ceiling is None:
            return policy
        return replace(
            policy, maximum=max(policy.minimum, min(policy.maximum, self.learned_ceiling))
        )

    async def _dispatch(self) -> None:
        async with anyio.create_task_group() as shards:
            while True:
                while self._pending_retries:
                    shards.start_soon(self._delayed_retry, self._pending_retries.pop(0))
                if len(self.queue):
                    shard = self.queue.take(self.running.values())
                    taken = await self.limiter.acquire(shard.weight)
                    self._busy += 1
                    shards.start_soon(self._run_one, shard, taken)
                elif self._busy == 0:
                    return
                else:
                    self._steal()
                    with anyio.move_on_after(STEAL_POLL_SECONDS):
                        await self._wakeup.wait()
                    self._wakeup = anyio.Event()

    async def _delayed_retry(self, retry: _PendingRetry) -> None:
        try:
            await anyio.sleep(retry.delay)
            if not self.ledger.stopped:
                self._enqueue(self._rerun(retry.nodeids, retry.attempt, retry.parent), front=True)
        finally:
            self._busy -= 1
            self._wakeup.set()

    async def _run_one(self, shard: Shard, taken: int) -> None:
        assert self.setup is not None
        try:
            current, gone = split_files(shard, self.ledger.skips())
            if gone is not None:
                self._skip(gone)
            if current is None:
                return
            self.running[current.shard_id] = current
            try:
                outcome = await self.executor.run(current, self.setup, self)
            finally:
                self.running.pop(current.shard_id, None)
                self.stealing.shard_ended(current.shard_id)
            self._after_shard(current, outcome)
            self._flush_confirmations(current)
            self._flush_retries(current)
        finally:
            self.limiter.release(taken)
            self._busy -= 1
            self._wakeup.set()

    def _after_shard(self, shard: Shard, outcome: ShardOutcome) -> None:
        log.info(
            "shard_finished",
            shard_id=shard.shard_id,
            tests=len(outcome.results),
            returncode=outcome.returncode,
            seconds=round(outcome.duration, 3),
            crashed=outcome.crashed,
        )
        if not outcome.crashed:
            return
        if outcome.culprit is None and not outcome.results and outcome.unstarted:
            # Died before its first test (a crash at import or in a conftest): running it again
            # would only die again, so every test it held is reported crashed, with its output.
            for nodeid in outcome.unstarted:
                self._act(self.ledger.conclude(crashed_before_start(nodeid, shard, outcome)))
            return
        if outcome.unstarted and not self.ledger.stopped:
            self._enqueue(self._rerun(outcome.unstarted, shard.attempt, shard), front=True)

    def _flush_confirmations(self, shard: Shard) -> None:
        """What the shard's failures and context passes need next, before anything waiting."""
        if self.ledger.stopped:
            self.rechecks.forget(shard.shard_id)
            return
        alone, confirming = self.rechecks.shards(shard, self.files, self.new_shard)
        for again in alone:
            self.alone[again.shard_id] = again.nodeids[0]
        for again in (*alone, *confirming):
            log.debug("rechecking", from_shard=shard.shard_id, to_shard=again.shard_id)
            self._enqueue(again, front=True)

    def _flush_retries(self, shard: Shard) -> None:
        pending = self._retry_buffer.pop(shard.shard_id, [])
        if pending:
            self._busy += 1
            nodeids = tuple(nodeid for nodeid, _ in pending)
            delay = max(delay for _, delay in pending)
            self._pending_retries.append(_PendingRetry(nodeids, shard.attempt + 1, delay, shard))
            self._wakeup.set()

    async def name_needs(self, budget: float = NEEDS_BUDGET_SECONDS) -> None:
        """After the run, within `budget`: for each test that failed outside pytest's context and
        passed in it, the earlier tests of its file it needs (or the whole collection)."""
        if self.setup is None or self.ledger.stopped or not self.ledger.context_passes:
            return
        notes = needs_notes(
            list(self.ledger.context_passes),
            self.files,
            self.executor,
            self.setup,
            lambda tests: self.new_shard(tests, full_collection=True),
            budget,
            self.clock,
        )
        self.ledger.notes.extend(await notes)

    async def _session_clock(self, limit: float, started: float) -> None:
        """End the run at its session timeout: the running tests are reported as timed out,
        by name; the stop reports the rest as not run."""
        await anyio.sleep(max(0.0, limit - (self.clock() - started)))
        now_running = {
            shard_id: nodeid
            for shard_id, control in list(self.controls.items())
            if (nodeid := control.running()) is not None and nodeid not in self.ledger.final
        }
        message = f"timeout: the run reached its {limit:g}s session timeout while this test ran"
        for shard_id, nodeid in now_running.items():
            result = engine_result(nodeid, Outcome.TIMEOUT, "call", message, shard_id=shard_id)
            self._act(self.ledger.conclude(result))
        names = ", ".join(now_running.values()) or "none"
        self.ledger.notes.append(
            f"session timeout: the run stopped at its {limit:g}s limit; tests running then: {names}"
        )
        self.stop(f"session timeout ({limit:g}s) reached")

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if self.ledger.interrupted:
                    # Second interrupt: end at once, but take every worker group along.
                    self.executor.kill_all()
                    os._exit(int(ExitCode.INTERRUPTED))
                self.signalled = True
                self.stop(f"interrupted by {signal.Signals(signum).name}", interrupted=True)
