"""One shard's lifecycle against real pytest workers: results, slices, crashes, hangs."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from test_framework.execution.runner import ShardSpec, WorkerSetup, run_shard
from test_framework.execution.worker_plugin import _select
from test_framework.models import NodeId, Outcome, Shard, TestResult

pytestmark = pytest.mark.anyio


class Recorder:
    def __init__(self) -> None:
        self.started: list[NodeId] = []
        self.results: list[TestResult] = []
        self.pids: list[int] = []

    def shard_started(self, shard_id: int, pid: int, nodeids: tuple[NodeId, ...]) -> None:
        self.pids.append(pid)

    def test_started(self, shard_id: int, nodeid: NodeId) -> None:
        self.started.append(nodeid)

    def test_result(self, result: TestResult) -> None:
        self.results.append(result)


def setup_for(root: Path, scratch: Path, timeout: float = 0.0) -> WorkerSetup:
    return WorkerSetup(
        rootdir=str(root),
        cwd=str(root),
        pytest_args=(),
        env=dict(os.environ),
        scratch_dir=scratch,
        timeout=timeout,
        grace=1.0,
    )


def spec(selection: list[dict[str, object]], nodeids: tuple[str, ...] = ()) -> ShardSpec:
    return ShardSpec(
        shard=Shard(shard_id=1, nodeids=nodeids, expected_duration=0.0),
        selection=tuple(selection),
    )


async def test_a_whole_file_runs_and_every_result_arrives(suites: Path, tmp_path: Path) -> None:
    recorder = Recorder()
    outcome = await run_shard(
        spec([{"file": "test_math.py", "part": [0, 1]}]),
        setup_for(suites / "basic", tmp_path),
        recorder,
    )
    assert outcome.completed
    assert not outcome.crashed
    assert outcome.returncode == 0
    assert outcome.collected is not None
    assert len(outcome.collected) == 6
    assert [r.nodeid for r in recorder.results] == list(outcome.collected)
    assert recorder.started == list(outcome.collected)
    assert {r.outcome for r in recorder.results} == {Outcome.PASSED}
    assert "test_math.py" in outcome.deps
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
            spec([{"file": "test_math.py", "part": [k, 2]}]),
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
        spec([{"file": "test_math.py", "ids": wanted}]),
        setup_for(suites / "basic", tmp_path),
        recorder,
    )
    assert sorted(r.nodeid for r in recorder.results) == sorted(wanted)


async def test_a_crash_blames_the_running_test_and_returns_the_rest(
    suites: Path, tmp_path: Path
) -> None:
    recorder = Recorder()
    outcome = await run_shard(
        spec([{"file": "test_crash.py", "part": [0, 1]}]),
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
        spec([{"file": "test_hang.py", "part": [0, 1]}]),
        setup_for(suites / "hang", tmp_path, timeout=1.0),
        recorder,
    )
    assert outcome.culprit is not None
    assert outcome.culprit.outcome is Outcome.TIMEOUT
    assert "test_sleeps_forever" in outcome.culprit.nodeid
    assert "stacks of the hung worker" in outcome.culprit.longrepr
    assert "test_hang.py" in outcome.culprit.longrepr  # the frame of the sleeping test
    assert not any(psutil.pid_exists(pid) for pid in recorder.pids)


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
            for i in _select(items, [{"file": "f.py", "part": [k, parts]}])  # type: ignore[arg-type]
        )
    assert sorted(chosen) == sorted(i.nodeid for i in items)
