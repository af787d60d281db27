"""The dispatcher acts on the ledger's decisions, against a scripted executor (the executor
seam is ours): retries go to a fresh shard, a worker that dies before its first test takes its
shard's tests with it, a crash's unstarted tests run again, a cold run widens from its first
tests, a released tail becomes new shards, maxfail stops the run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from test_framework.dispatch.capacity import FirstTests
from test_framework.dispatch.dispatcher import Dispatcher
from test_framework.events import (
    AttemptFinished,
    CapacityChanged,
    Event,
    RunStopping,
    ShardCollected,
    ShardCrashed,
    ShardFinished,
    ShardStarted,
    TestConfirming,
    TestFinished,
    TestRetrying,
    TestsReleased,
)
from test_framework.execution.runner import (
    ShardListener,
    ShardOutcome,
    WorkerControl,
    WorkerSetup,
)
from test_framework.ledger import Ledger, RetryPolicy
from test_framework.models import Collection, NodeId, Outcome, Shard, TestResult
from test_framework.planning import explicit_selection
from test_framework.request import RunRequest, resolve
from test_framework.worker.protocol import Release
from test_framework.worker.selection import FileHead, FileSlice, FileTests

pytestmark = pytest.mark.anyio

# What a scripted test does on each attempt: "pass", "fail", or "crash" (the worker dies in it).
Script = dict[NodeId, list[str]]


@dataclass
class ScriptedExecutor:
    """Runs each shard's tests by script, reporting through the listener like a real worker."""

    script: Script
    cpu_share: float = 1.0
    shards: list[Shard] = field(default_factory=list)
    die_before_start: set[int] = field(default_factory=set)  # shard ids
    # Shard 1 waits for the dispatcher to ask for its tail (work stealing) before it runs.
    releasing: bool = False
    # Whether workers collect the whole selection (a collecting zygote's children) or only
    # their own files (an early zygote's, spawned workers); a full-collection shard always does.
    full: bool = True
    # What a worker collects now instead of a planned id (ids that embed the time): old -> new.
    renamed: dict[NodeId, NodeId] = field(default_factory=dict)

    steals = True

    async def collected(self) -> Collection | None:
        return None

    def phases(self) -> Mapping[str, float]:
        return {}

    async def run(self, shard: Shard, setup: WorkerSetup, listener: ShardListener) -> ShardOutcome:
        self.shards.append(shard)
        outcome = ShardOutcome(shard.shard_id, collected=shard.nodeids)
        full = self.full or shard.full_collection
        listener.emit(
            ShardStarted(shard.shard_id, 1000 + shard.shard_id, shard.nodeids, shard.attempt, full)
        )
        nodeids = tuple(self._collect(shard))
        listener.emit(ShardCollected(shard.shard_id, nodeids))
        if self.releasing and shard.shard_id == 1:
            nodeids = await self._release_when_asked(shard, listener)
        if shard.shard_id in self.die_before_start:
            outcome.returncode, outcome.unstarted = -9, shard.nodeids
            listener.emit(ShardCrashed(shard.shard_id, -9, None, "worker ended early"))
            return outcome
        for index, nodeid in enumerate(nodeids):
            await anyio.lowlevel.checkpoint()
            plan = self.script.get(nodeid, ["pass"])
            step = plan[min(shard.attempt, len(plan)) - 1]
            if step == "crash":
                outcome.returncode = -11
                outcome.unstarted = nodeids[index + 1 :]
                outcome.culprit = TestResult(
                    nodeid, Outcome.CRASHED, 0.0, shard.attempt, shard_id=shard.shard_id
                )
                listener.emit(ShardCrashed(shard.shard_id, -11, nodeid, "crashed"))
                listener.emit(AttemptFinished(outcome.culprit))
                return outcome
            kind = Outcome.PASSED if step == "pass" else Outcome.FAILED
            result = TestResult(
                nodeid,
                kind,
                0.2,
                shard.attempt,
                shard_id=shard.shard_id,
                cpu_time=0.2 * self.cpu_share,
            )
            outcome.results.append(result)
            listener.emit(AttemptFinished(result))
        outcome.completed, outcome.returncode = True, 0
        listener.emit(ShardFinished(shard.shard_id, 0, 0.1))
        return outcome

    early = False

    def kill_all(self) -> None:
        pass

    def _collect(self, shard: Shard) -> list[NodeId]:
        """A slice runs whatever ids its file has now; a test named by id is found or not."""
        found = []
        for nodeid in shard.nodeids:
            new = self.renamed.get(nodeid, nodeid)
            named = any(isinstance(e, FileTests) for e in shard.selection)
            if new == nodeid or not named:
                found.append(new)
        return found

    async def _release_when_asked(
        self, shard: Shard, listener: ShardListener
    ) -> tuple[NodeId, ...]:
        """Like a worker between its first tests: waits, answering `Release {pieces}` by giving
        back pieces/(pieces+1) of the tests after the first two, from the end."""
        asked: list[int] = []
        got = anyio.Event()

        def send(command: object) -> None:
            if isinstance(command, Release):
                asked.append(command.pieces)
                got.set()

        waiting = len(shard.nodeids) - 1
        listener.attached(shard.shard_id, WorkerControl(send, lambda: None, lambda: waiting))
        with anyio.move_on_after(5):
            await got.wait()
        if not asked:
            listener.detached(shard.shard_id)
            return shard.nodeids
        pieces = asked[0]
        count = min(waiting - 1, waiting * pieces // (pieces + 1))
        kept, tail = shard.nodeids[: len(shard.nodeids) - count], shard.nodeids[-count:]
        listener.emit(TestsReleased(shard.shard_id, tail))
        listener.detached(shard.shard_id)  # as a real worker: after its answer, when it ends
        return kept


def make(
    tmp_path: Path,
    executor: ScriptedExecutor,
    events: list[Event],
    *,
    retries: int = 0,
    maxfail: int = 0,
    workers: int | None = 2,
) -> Dispatcher:
    request = RunRequest(project_root=tmp_path, workers=workers, optimization="ultra_fast")
    settings = resolve(request, environ={}, cores=2)
    ledger = Ledger(retry=RetryPolicy(retries=retries, base_delay=0.0), maxfail=maxfail)
    return Dispatcher(settings, executor, ledger, events.append)


def shard(shard_id: int, *nodeids: str) -> Shard:
    return Shard(shard_id, nodeids, 0.1 * len(nodeids), explicit_selection(nodeids))


def setup(tmp_path: Path) -> WorkerSetup:
    return WorkerSetup(str(tmp_path), str(tmp_path), (), {}, tmp_path)


async def run(dispatcher: Dispatcher, tmp_path: Path, *shards: Shard) -> dict[NodeId, Outcome]:
    nodeids = [n for s in shards for n in s.nodeids]
    dispatcher.ledger.plan(nodeids)
    dispatcher.load(shards, nodeids)
    with anyio.fail_after(10):
        await dispatcher.run(setup(tmp_path), started=0.0)
    dispatcher.conclude_rest()
    return {n: r.outcome for n, r in dispatcher.ledger.final.items()}


async def test_every_shard_runs_and_every_result_is_final(tmp_path: Path) -> None:
    events: list[Event] = []
    executor = ScriptedExecutor({"a.py::2": ["fail"]})
    outcomes = await run(
        make(tmp_path, executor, events),
        tmp_path,
        shard(1, "a.py::1", "a.py::2"),
        shard(2, "b.py::1"),
    )
    assert outcomes == {
        "a.py::1": Outcome.PASSED,
        "a.py::2": Outcome.FAILED,
        "b.py::1": Outcome.PASSED,
    }
    finished = [e.result.nodeid for e in events if isinstance(e, TestFinished)]
    assert sorted(finished) == sorted(outcomes)


async def test_failures_of_a_shard_rerun_together_in_a_fresh_shard(tmp_path: Path) -> None:
    events: list[Event] = []
    executor = ScriptedExecutor({"a.py::1": ["fail", "pass"], "a.py::3": ["fail", "fail"]})
    dispatcher = make(tmp_path, executor, events, retries=1)
    outcomes = await run(dispatcher, tmp_path, shard(1, "a.py::1", "a.py::2", "a.py::3"))
    assert outcomes == {
        "a.py::1": Outcome.FLAKY,
        "a.py::2": Outcome.PASSED,
        "a.py::3": Outcome.FAILED,
    }
    retry = executor.shards[1]
    assert (retry.nodeids, retry.attempt) == (("a.py::1", "a.py::3"), 2)
    assert retry.shard_id != 1
    retried = [e.result.nodeid for e in events if isinstance(e, TestRetrying)]
    assert retried == ["a.py::1", "a.py::3"]


async def test_a_crash_reruns_the_tests_it_never_reached(tmp_path: Path) -> None:
    executor = ScriptedExecutor({"a.py::2": ["crash"]})
    outcomes = await run(
        make(tmp_path, executor, []), tmp_path, shard(1, "a.py::1", "a.py::2", "a.py::3", "a.py::4")
    )
    assert outcomes["a.py::2"] is Outcome.CRASHED
    assert outcomes["a.py::3"] is outcomes["a.py::4"] is Outcome.PASSED
    assert executor.shards[1].nodeids == ("a.py::3", "a.py::4")


async def test_a_worker_dead_before_its_first_test_takes_its_tests_with_it(tmp_path: Path) -> None:
    executor = ScriptedExecutor({}, die_before_start={1})
    dispatcher = make(tmp_path, executor, [], retries=2)
    outcomes = await run(dispatcher, tmp_path, shard(1, "a.py::1", "a.py::2"))
    assert outcomes == {"a.py::1": Outcome.CRASHED, "a.py::2": Outcome.CRASHED}
    assert len(executor.shards) == 1  # running it again would only die again
    messages = {r.message for r in dispatcher.ledger.final.values()}
    assert messages == {"crashed: the worker died (signal 9) before this test started"}


async def test_maxfail_stops_dispatching_and_the_rest_is_not_run(tmp_path: Path) -> None:
    events: list[Event] = []
    executor = ScriptedExecutor({"a.py::1": ["fail"]})
    dispatcher = make(tmp_path, executor, events, maxfail=1, workers=1)
    outcomes = await run(dispatcher, tmp_path, shard(1, "a.py::1"), shard(2, "b.py::1"))
    assert outcomes == {"a.py::1": Outcome.FAILED, "b.py::1": Outcome.NOT_RUN}
    assert [e.reason for e in events if isinstance(e, RunStopping)] == [
        "stopping after 1 failures (maxfail=1)"
    ]
    assert [s.shard_id for s in executor.shards] == [1]


async def test_a_cold_run_of_waiting_tests_widens_once_its_first_tests_are_measured(
    tmp_path: Path,
) -> None:
    events: list[Event] = []
    executor = ScriptedExecutor({}, cpu_share=0.02)
    dispatcher = make(tmp_path, executor, events, workers=None)
    dispatcher.first = FirstTests(needed=4)
    start = dispatcher.limiter.capacity
    await run(dispatcher, tmp_path, shard(1, *(f"w.py::{i}" for i in range(6))))
    maximum = dispatcher.settings.max_workers
    (changed,) = [e for e in events if isinstance(e, CapacityChanged)]
    assert (changed.old, changed.new) == (start, maximum)
    assert changed.reason == "measured: the first 4 tests keep a core 2% busy"


async def test_a_cold_run_of_busy_tests_stays_at_the_core_count(tmp_path: Path) -> None:
    events: list[Event] = []
    dispatcher = make(tmp_path, ScriptedExecutor({}, cpu_share=0.95), events, workers=None)
    dispatcher.first = FirstTests(needed=4)
    start = dispatcher.limiter.capacity
    await run(dispatcher, tmp_path, shard(1, *(f"b.py::{i}" for i in range(6))))
    assert dispatcher.limiter.capacity == start
    assert not [e for e in events if isinstance(e, CapacityChanged)]


async def test_free_slots_take_a_running_shards_tail_in_as_many_pieces(tmp_path: Path) -> None:
    """Nothing queued, three slots free: the running shard is asked for three pieces of its
    waiting tests, and what it gives back runs as three new shards."""
    executor = ScriptedExecutor({}, releasing=True)
    dispatcher = make(tmp_path, executor, [], workers=4)
    tests = tuple(f"w.py::{i}" for i in range(9))
    outcomes = await run(dispatcher, tmp_path, shard(1, *tests))
    assert outcomes == dict.fromkeys(tests, Outcome.PASSED)
    assert executor.shards[0].shard_id == 1
    assert sorted(s.nodeids for s in executor.shards[1:]) == [
        ("w.py::3", "w.py::4"),
        ("w.py::5", "w.py::6"),
        ("w.py::7", "w.py::8"),
    ]


async def test_a_failure_in_a_narrowed_collection_is_confirmed_in_pytests_context(
    tmp_path: Path,
) -> None:
    """It fails where its worker collected only its own files, passes where the whole
    selection was collected first, and fails again alone as it first ran: reported passed, with
    why the first run differed."""
    events: list[Event] = []
    executor = ScriptedExecutor(
        {"a.py::2": ["fail", "pass", "fail"], "a.py::3": ["fail", "fail"]}, full=False
    )
    dispatcher = make(tmp_path, executor, events, retries=0)
    outcomes = await run(dispatcher, tmp_path, shard(1, "a.py::1", "a.py::2", "a.py::3"))
    assert outcomes == {
        "a.py::1": Outcome.PASSED,
        "a.py::2": Outcome.PASSED,
        "a.py::3": Outcome.FAILED,
    }
    confirmation = executor.shards[1]
    assert confirmation.full_collection
    # From the first test up to a.py::3, named as the run knows them (a worker that collects
    # other ids for them, as they embed the time, reports them under these).
    assert confirmation.selection == (FileHead("a.py", 3, ("a.py::1", "a.py::2", "a.py::3")),)
    assert confirmation.attempt == 2
    assert [e.result.nodeid for e in events if isinstance(e, TestConfirming)] == [
        "a.py::2",
        "a.py::3",
    ]
    passed = dispatcher.ledger.final["a.py::2"]
    assert passed.message.startswith("failed when run in a narrowed collection")
    notes = dispatcher.ledger.summary("r", 0.1).notes
    assert any(n.startswith("a.py::2 failed when run in a narrowed collection") for n in notes)


async def test_a_failure_in_a_later_slice_of_a_cut_file_is_confirmed(tmp_path: Path) -> None:
    executor = ScriptedExecutor({"a.py::3": ["fail", "fail"]})
    dispatcher = make(tmp_path, executor, [])
    first = Shard(1, ("a.py::1", "a.py::2"), 0.2, (FileSlice("a.py", 0, 2),))
    second = Shard(2, ("a.py::3", "a.py::4"), 0.2, (FileSlice("a.py", 1, 2),))
    outcomes = await run(dispatcher, tmp_path, first, second)
    assert outcomes["a.py::3"] is Outcome.FAILED
    assert dispatcher.ledger.final["a.py::3"].attempt == 2  # the confirmation's failure
    (confirmation,) = [s for s in executor.shards if s.full_collection]
    assert confirmation.selection == (FileHead("a.py", 3, ("a.py::1", "a.py::2", "a.py::3")),)


async def test_a_failure_in_pytests_context_is_not_confirmed_again(tmp_path: Path) -> None:
    executor = ScriptedExecutor({"a.py::2": ["fail"]})
    outcomes = await run(make(tmp_path, executor, []), tmp_path, shard(1, "a.py::1", "a.py::2"))
    assert outcomes["a.py::2"] is Outcome.FAILED
    assert len(executor.shards) == 1


async def test_a_failure_that_does_not_come_back_alone_is_flaky_not_a_context_pass(
    tmp_path: Path,
) -> None:
    executor = ScriptedExecutor({"a.py::1": ["fail", "pass", "pass"]}, full=False)
    dispatcher = make(tmp_path, executor, [])
    outcomes = await run(dispatcher, tmp_path, shard(1, "a.py::1", "a.py::2"))
    assert outcomes["a.py::1"] is Outcome.FLAKY
    alone = executor.shards[2]
    assert (alone.nodeids, alone.attempt, alone.full_collection) == (("a.py::1",), 3, False)
    assert dispatcher.ledger.context_passes == {}


async def test_an_id_that_changed_is_never_owed_by_a_slice_and_never_dropped_by_name(
    tmp_path: Path,
) -> None:
    """Ids that embed the time: a slice runs the new id and the old one is no test of the run;
    a test named by an old id is not found, and is reported not run rather than forgotten."""
    renamed = {"t.py::at-1": "t.py::at-2", "n.py::at-1": "n.py::at-2"}
    executor = ScriptedExecutor({}, renamed=renamed)
    by_slice = Shard(1, ("t.py::at-1", "t.py::plain"), 0.2, (FileSlice("t.py", 0, 1),))
    by_name = shard(2, "n.py::at-1")
    outcomes = await run(make(tmp_path, executor, []), tmp_path, by_slice, by_name)
    assert outcomes == {
        "t.py::at-2": Outcome.PASSED,
        "t.py::plain": Outcome.PASSED,
        "n.py::at-1": Outcome.NOT_RUN,
    }


def test_a_learned_cpu_share_is_the_monitors_ceiling(tmp_path: Path) -> None:
    """What the monitor samples while workers start says nothing about the tests: once their
    CPU share is known, it may narrow, and widen back, but never past what that share can use."""
    dispatcher = make(tmp_path, ScriptedExecutor({}), [], workers=None)
    assert dispatcher.monitor_policy().maximum == dispatcher.settings.max_workers
    dispatcher.widen(2, "learned: these tests keep a core 95% busy")
    assert dispatcher.monitor_policy().maximum == 2
    assert dispatcher.monitor_policy().minimum == dispatcher.settings.profile.min_workers
