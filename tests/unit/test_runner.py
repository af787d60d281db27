"""One shard's lifecycle against real pytest workers: results, slices, crashes, hangs."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from test_framework.events import (
    AttemptFinished,
    ExecutionEvent,
    ShardStarted,
    TestsReleased,
    TestStarted,
)
from test_framework.execution.executor import LocalExecutor
from test_framework.execution.runner import ShardOutcome, WorkerControl, WorkerSetup
from test_framework.models import NodeId, Outcome, Shard, TestResult
from test_framework.worker.items import select_items
from test_framework.worker.protocol import Release, Skip
from test_framework.worker.selection import FileSlice, FileTests, SelectionEntry

from ..processes import dies

pytestmark = pytest.mark.anyio


class Recorder:
    """A shard listener that keeps what execution reported."""

    def __init__(self) -> None:
        self.started: list[NodeId] = []
        self.results: list[TestResult] = []
        self.pids: list[int] = []
        self.released: list[NodeId] = []
        self.events: list[ExecutionEvent] = []

    def emit(self, event: ExecutionEvent) -> None:
        self.events.append(event)
        if isinstance(event, ShardStarted):
            self.pids.append(event.pid)
        elif isinstance(event, TestStarted):
            self.started.append(event.nodeid)
        elif isinstance(event, AttemptFinished):
            self.results.append(event.result)
        elif isinstance(event, TestsReleased):
            self.released.extend(event.nodeids)

    def attached(self, shard_id: int, control: WorkerControl) -> None:
        pass

    def detached(self, shard_id: int) -> None:
        pass


async def run_shard(shard: Shard, setup: WorkerSetup, recorder: Recorder) -> ShardOutcome:
    """One shard through the local executor, spawned (no zygote)."""
    return await LocalExecutor().run(shard, setup, recorder)


def setup_for(
    root: Path, scratch: Path, timeout: float = 0.0, memory_limit: int = 0
) -> WorkerSetup:
    return WorkerSetup(
        rootdir=str(root),
        cwd=str(root),
        pytest_args=(),
        env=dict(os.environ),
        scratch_dir=scratch,
        timeout=timeout,
        grace=1.0,
        memory_limit=memory_limit,
    )


def spec(selection: list[SelectionEntry], nodeids: tuple[str, ...] = ()) -> Shard:
    return Shard(shard_id=1, nodeids=nodeids, expected_duration=0.0, selection=tuple(selection))


async def test_a_whole_file_runs_and_every_result_arrives(suites: Path, tmp_path: Path) -> None:
    recorder = Recorder()
    outcome = await run_shard(
        spec([FileSlice("test_math.py", 0, 1)]),
        setup_for(suites / "basic", tmp_path),
        recorder,
    )
    assert outcome.completed
    assert not outcome.crashed
    assert outcome.returncode == 0
    assert outcome.collected is not None
    assert len(outcome.collected) == 6
    assert [r.nodeid for r in recorder.results] == list(outcome.collected)
    # Which test runs is sampled from the progress board, so only some starts are seen.
    assert set(recorder.started) <= set(outcome.collected)
    assert {r.outcome for r in recorder.results} == {Outcome.PASSED}
    # What the tests depend on: the conftest, not the test modules collection imports anyway.
    assert "conftest.py" in outcome.deps
    assert "test_math.py" not in outcome.deps
    # What each test cost is measured in the worker and travels with its result.
    for result in recorder.results:
        assert result.cpu_time is not None
        assert result.cpu_time >= 0.0
        assert result.max_rss is not None
        assert result.max_rss > 1024 * 1024


async def test_two_slices_of_a_file_cover_it_exactly_once(suites: Path, tmp_path: Path) -> None:
    seen: list[NodeId] = []
    for k in range(2):
        recorder = Recorder()
        await run_shard(
            spec([FileSlice("test_math.py", k, 2)]),
            setup_for(suites / "basic", tmp_path),
            recorder,
        )
        seen.extend(r.nodeid for r in recorder.results)
    assert len(seen) == 6
    assert len(set(seen)) == 6


async def test_explicit_ids_select_just_those(suites: Path, tmp_path: Path) -> None:
    wanted = ["test_math.py::test_square[2-4]", "test_math.py::TestArithmetic::test_sub"]
    recorder = Recorder()
    await run_shard(
        spec([FileTests("test_math.py", tuple(wanted))]),
        setup_for(suites / "basic", tmp_path),
        recorder,
    )
    assert sorted(r.nodeid for r in recorder.results) == sorted(wanted)


async def test_a_crash_blames_the_running_test_and_returns_the_rest(
    suites: Path, tmp_path: Path
) -> None:
    recorder = Recorder()
    outcome = await run_shard(
        spec([FileSlice("test_crash.py", 0, 1)]),
        setup_for(suites / "crash", tmp_path),
        recorder,
    )
    assert outcome.crashed
    assert outcome.culprit is not None
    assert outcome.culprit.outcome is Outcome.CRASHED
    assert outcome.culprit.nodeid == "test_crash.py::test_os_exit"
    assert "exited with status 3" in outcome.culprit.message
    assert outcome.culprit.nodeid not in outcome.unstarted
    assert outcome.unstarted  # the tests after it, for a fresh worker
    finished = {r.nodeid for r in recorder.results}
    assert not finished & set(outcome.unstarted)


async def test_a_hung_test_times_out_with_its_stacks(suites: Path, tmp_path: Path) -> None:
    recorder = Recorder()
    outcome = await run_shard(
        spec([FileSlice("test_hang.py", 0, 1)]),
        setup_for(suites / "hang", tmp_path, timeout=1.0),
        recorder,
    )
    assert outcome.culprit is not None
    assert outcome.culprit.outcome is Outcome.TIMEOUT
    assert "test_sleeps_forever" in outcome.culprit.nodeid
    assert "stacks of the hung worker" in outcome.culprit.longrepr
    assert "test_hang.py" in outcome.culprit.longrepr  # the frame of the sleeping test
    assert not any(psutil.pid_exists(pid) for pid in recorder.pids)


async def test_a_timeout_marker_wins_over_the_run_timeout(suites: Path, tmp_path: Path) -> None:
    recorder = Recorder()
    outcome = await run_shard(
        spec([FileSlice("test_marked.py", 0, 1)]),
        # No run timeout at all: only the marker can stop test_marked_hang.
        setup_for(suites / "timeout_marker", tmp_path, timeout=0.0),
        recorder,
    )
    assert outcome.culprit is not None
    assert outcome.culprit.nodeid == "test_marked.py::test_marked_hang"
    assert outcome.culprit.outcome is Outcome.TIMEOUT
    assert "longer than 1s" in outcome.culprit.message


async def test_a_marker_longer_than_the_run_timeout_lets_the_test_finish(
    suites: Path, tmp_path: Path
) -> None:
    recorder = Recorder()
    await run_shard(
        spec(
            [FileTests("test_marked.py", ("test_marked.py::test_marked_patient",))],
            ("test_marked.py::test_marked_patient",),
        ),
        setup_for(suites / "timeout_marker", tmp_path, timeout=0.5),
        recorder,
    )
    assert [(r.nodeid, r.outcome) for r in recorder.results] == [
        ("test_marked.py::test_marked_patient", Outcome.PASSED)
    ]


async def test_a_worker_over_its_memory_limit_is_killed_and_the_test_named(
    suites: Path, tmp_path: Path
) -> None:
    recorder = Recorder()
    outcome = await run_shard(
        spec([FileSlice("test_memory_hog.py", 0, 1)]),
        setup_for(suites / "memory_hog", tmp_path, memory_limit=200 * 2**20),
        recorder,
    )
    assert outcome.culprit is not None
    assert outcome.culprit.nodeid == "test_memory_hog.py::test_allocates_300mb"
    assert outcome.culprit.outcome is Outcome.CRASHED
    assert "memory limit" in outcome.culprit.message
    assert "200 MB limit" in outcome.culprit.message
    assert outcome.unstarted == ("test_memory_hog.py::test_small_after",)
    assert not any(psutil.pid_exists(pid) for pid in recorder.pids)


async def test_leaked_processes_are_found_killed_and_attributed(
    suites: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "leaked.pid"
    monkeypatch.setenv("LEAK_PID_FILE", str(pid_file))
    recorder = Recorder()
    outcome = await run_shard(
        spec([FileSlice("test_leak.py", 0, 1)]),
        setup_for(suites / "leak", tmp_path),
        recorder,
    )
    assert outcome.completed
    (leaked_pid,) = [int(p) for p in pid_file.read_text(encoding="utf-8").split()]
    (description,) = outcome.leaked
    assert f"pid {leaked_pid} `sleep 600`" in description
    assert "test_leak.py::test_leaks_child" in description
    assert dies(leaked_pid)


class _SkipFile(Recorder):
    """Asks the worker, as soon as it starts, to skip every test of one file."""

    def attached(self, shard_id: int, control: WorkerControl) -> None:
        control.send(Skip(("test_math.py",), "breaker says no"))


async def test_a_skip_command_keeps_a_running_workers_tests_from_running(
    suites: Path, tmp_path: Path
) -> None:
    recorder = _SkipFile()
    outcome = await run_shard(
        spec([FileSlice("test_math.py", 0, 1), FileSlice("test_misc.py", 0, 1)]),
        setup_for(suites / "basic", tmp_path),
        recorder,
    )
    assert outcome.completed
    by_file: dict[str, set[Outcome]] = {}
    for result in recorder.results:
        by_file.setdefault(result.nodeid.split("::")[0], set()).add(result.outcome)
    assert by_file == {"test_math.py": {Outcome.NOT_RUN}, "test_misc.py": {Outcome.PASSED}}
    withheld = [r for r in recorder.results if r.outcome is Outcome.NOT_RUN]
    assert {r.message for r in withheld} == {"not run: breaker says no"}


class _ReleaseAtOnce(Recorder):
    """Asks the worker, as soon as it starts, to give back the tail of its tests."""

    def __init__(self, pieces: int | None) -> None:
        super().__init__()
        self.pieces = pieces

    def attached(self, shard_id: int, control: WorkerControl) -> None:
        control.send(Release() if self.pieces is None else Release(self.pieces))


# Read before the first of six tests: of the five after it, pieces/(pieces+1) go from the end,
# but the one right after it (its nextitem) always stays.
@pytest.mark.parametrize(("pieces", "released"), [(None, 2), (1, 2), (3, 3), (10, 4)])
async def test_a_worker_releases_its_share_of_its_waiting_tests(
    suites: Path, tmp_path: Path, pieces: int | None, released: int
) -> None:
    recorder = _ReleaseAtOnce(pieces)
    outcome = await run_shard(
        spec([FileSlice("test_math.py", 0, 1)]),
        setup_for(suites / "basic", tmp_path),
        recorder,
    )
    assert outcome.completed
    assert outcome.collected is not None
    assert len(outcome.collected) == 6
    ran = [r.nodeid for r in recorder.results]
    assert recorder.released == list(outcome.collected[-released:])
    assert ran == list(outcome.collected[:-released])
    assert [r.outcome for r in recorder.results] == [Outcome.PASSED] * len(ran)


class _Item:
    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid


@pytest.mark.parametrize("count", [0, 1, 5, 17])
@pytest.mark.parametrize("parts", [1, 2, 3, 7])
def test_slices_partition_any_file(count: int, parts: int) -> None:
    items = [_Item(f"f.py::t{i}") for i in range(count)]
    chosen: list[str] = []
    for k in range(parts):
        chosen.extend(
            i.nodeid
            for i in select_items(items, (FileSlice("f.py", k, parts),))  # type: ignore[arg-type]
        )
    assert sorted(chosen) == sorted(i.nodeid for i in items)
