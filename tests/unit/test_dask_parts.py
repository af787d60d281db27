"""The Dask executor's parts without a cluster: events delivered in order and once (a
re-executed task's and the dead one's), a clear error without `distributed`, the environment a
shard sees on a worker, and a shard narrowed to what an earlier execution did not finish."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest

from test_framework.errors import UsageError
from test_framework.events import AttemptFinished, ExecutionEvent, ShardStarted
from test_framework.execution.dask_executor import dask_executors
from test_framework.execution.dask_stream import Delivery
from test_framework.execution.executor import ExecutorStart
from test_framework.execution.runner import WorkerControl
from test_framework.models import Outcome, TestResult


class Recorder:
    def __init__(self) -> None:
        self.events: list[ExecutionEvent] = []

    def emit(self, event: ExecutionEvent) -> None:
        self.events.append(event)

    def attached(self, shard_id: int, control: WorkerControl) -> None:
        raise AssertionError("a remote worker has no control channel")

    def detached(self, shard_id: int) -> None:
        raise AssertionError("a remote worker has no control channel")


def finished(nodeid: str) -> AttemptFinished:
    return AttemptFinished(TestResult(nodeid, Outcome.PASSED, 0.1, shard_id=1))


def message(execution: str, number: int, event: ExecutionEvent) -> tuple[float, list[object]]:
    return (0.0, [execution, number, pickle.dumps(event)])


def test_events_arrive_in_their_order_once_whatever_order_the_scheduler_keeps() -> None:
    recorder = Recorder()
    delivery = Delivery(recorder)
    started = ShardStarted(1, 100, ("t.py::a", "t.py::b"))
    delivery.receive(message("x", 3, finished("t.py::b")))
    delivery.receive(message("x", 2, finished("t.py::a")))
    assert recorder.events == []  # the first is missing yet
    delivery.receive(message("x", 1, started))
    delivery.receive(message("x", 2, finished("t.py::a")))  # again
    assert [type(e).__name__ for e in recorder.events] == [
        "ShardStarted",
        "AttemptFinished",
        "AttemptFinished",
    ]
    delivery.expect("x", 3)
    assert delivery.complete.is_set()


def test_a_late_result_of_the_dead_execution_still_counts_once() -> None:
    """The rerun skipped a test because the scheduler had the dead execution's result: that
    result reaches the client after the rerun's first event, and must still count."""
    recorder = Recorder()
    delivery = Delivery(recorder)
    delivery.receive(message("first", 1, finished("t.py::a")))
    delivery.receive(message("second", 1, ShardStarted(1, 200, ("t.py::b",))))
    delivery.receive(message("first", 2, finished("t.py::b")))
    delivery.receive(message("second", 2, finished("t.py::c")))
    delivery.expect("second", 2)
    results = [e.result.nodeid for e in recorder.events if isinstance(e, AttemptFinished)]
    assert results == ["t.py::a", "t.py::b", "t.py::c"]
    assert delivery.complete.is_set()


def test_a_shard_on_a_worker_sees_the_clients_variables_but_the_workers_paths() -> None:
    from test_framework.execution.dask_worker import worker_environment

    client = {"PATH": "/client/venv/bin", "HOME": "/home/me", "API_URL": "http://x", "CI": "1"}
    here = {"PATH": "/node/venv/bin", "HOME": "/home/dask", "DASK_ONLY": "1"}
    assert worker_environment(client, here) == {
        "PATH": "/node/venv/bin",
        "HOME": "/home/dask",
        "API_URL": "http://x",
        "CI": "1",
    }


def test_a_rerun_shard_names_only_the_tests_not_finished_before() -> None:
    from test_framework.execution.dask_worker import without
    from test_framework.models import Shard
    from test_framework.worker.selection import FileSlice, FileTests

    ids = ("a.py::t1", "a.py::t2", "b.py::t3", "b.py::t4")
    shard = Shard(5, ids, 1.0, (FileSlice("a.py", 0, 1), FileSlice("b.py", 1, 2)), attempt=2)
    rest = without(shard, {"a.py::t1", "b.py::t3"})
    assert rest.nodeids == ("a.py::t2", "b.py::t4")
    assert (rest.shard_id, rest.attempt) == (5, 2)
    assert [(e.file, e.nodeids) for e in rest.selection if isinstance(e, FileTests)] == [
        ("a.py", ("a.py::t2",)),
        ("b.py", ("b.py::t4",)),
    ]


def test_a_task_run_again_replaces_the_old_stream_and_reports_each_test_once() -> None:
    recorder = Recorder()
    delivery = Delivery(recorder)
    delivery.receive(message("first", 1, ShardStarted(1, 100, ("t.py::a", "t.py::b"))))
    delivery.receive(message("first", 2, finished("t.py::a")))
    # The worker died; Dask ran the task again elsewhere: the whole shard again.
    delivery.receive(message("second", 1, ShardStarted(1, 200, ("t.py::a", "t.py::b"))))
    delivery.receive(message("first", 3, finished("t.py::b")))  # late, from the dead one
    delivery.receive(message("second", 2, finished("t.py::a")))
    delivery.receive(message("second", 3, finished("t.py::b")))
    delivery.expect("second", 3)
    results = [e.result.nodeid for e in recorder.events if isinstance(e, AttemptFinished)]
    assert results == ["t.py::a", "t.py::b"]
    assert [e.pid for e in recorder.events if isinstance(e, ShardStarted)] == [100, 200]
    assert delivery.complete.is_set()


@pytest.mark.anyio
async def test_without_distributed_the_dask_executor_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    factory = dask_executors(None, "run")
    with pytest.raises(UsageError, match=r'pip install "test_framework\[dask\]"'):
        async with factory(ExecutorStart(cwd=str(tmp_path), env={}, scratch=tmp_path)):
            pass


@pytest.mark.parametrize("args", [["--executor", "dask"], ["--executor=dask", "--resident"]])
def test_a_dask_run_never_goes_to_the_resident_process(args: list[str]) -> None:
    """The thin client would hand the run to a warm pool on this machine: the shards must go to
    the cluster instead, so the run stays in this process (None: not served)."""
    from test_framework.daemon.client import resident_exit_code

    assert resident_exit_code([*args, "--optimization", "ultra_fast"], "prog") is None
