"""The dispatcher's choice of the next shard: longest first, mixed with waiting shards while busy
ones fill every core; constrained shards keep their place."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_framework.events import CapacityChanged, Event, EventBus
from test_framework.execution.runner import ShardSpec
from test_framework.models import Outcome, Shard, TestResult
from test_framework.orchestrator import Orchestrator, _FirstTests
from test_framework.planning import SERIAL_WEIGHT, explicit_selection
from test_framework.request import RunRequest, resolve
from test_framework.store.queries import History

pytestmark = pytest.mark.anyio

# Two busy tests and two waiting ones, one second each, as the store remembers them.
HISTORY = History(
    durations={"busy.py::a": 1.0, "busy.py::b": 1.0, "wait.py::a": 1.0, "wait.py::b": 1.0},
    recent_failures=frozenset(),
    cpu={"busy.py::a": 1.0, "busy.py::b": 1.0, "wait.py::a": 0.02, "wait.py::b": 0.02},
    max_rss={"busy.py::a": 300_000_000, "wait.py::a": 40_000_000},
)


def spec(shard_id: int, *nodeids: str, weight: int = 1, splittable: bool = True) -> ShardSpec:
    shard = Shard(shard_id, tuple(nodeids), float(len(nodeids)), weight, splittable)
    return ShardSpec(shard=shard, selection=explicit_selection(nodeids))


def orchestrator(tmp_path: Path) -> Orchestrator:
    settings = resolve(RunRequest(project_root=tmp_path, workers=2), environ={}, cores=2)
    engine = Orchestrator(settings, EventBus())
    engine._history = HISTORY
    return engine


async def test_with_cores_to_spare_the_longest_goes_first(tmp_path: Path) -> None:
    engine = orchestrator(tmp_path)
    engine._queue.extend([spec(1, "busy.py::b"), spec(2, "wait.py::a")])
    assert engine._take_next().shard.shard_id == 1


async def test_while_busy_shards_fill_the_cores_a_waiting_one_goes_first(tmp_path: Path) -> None:
    engine = orchestrator(tmp_path)
    engine._specs = {10: spec(10, "busy.py::a"), 11: spec(11, "busy.py::b")}
    engine._queue.extend([spec(1, "busy.py::b"), spec(2, "wait.py::a"), spec(3, "wait.py::b")])
    assert engine._take_next().shard.shard_id == 2
    assert [s.shard.shard_id for s in engine._queue] == [1, 3]


async def test_a_serial_shard_at_the_head_keeps_its_place(tmp_path: Path) -> None:
    engine = orchestrator(tmp_path)
    engine._specs = {10: spec(10, "busy.py::a"), 11: spec(11, "busy.py::b")}
    serial = spec(1, "busy.py::b", weight=SERIAL_WEIGHT, splittable=False)
    engine._queue.extend([serial, spec(2, "wait.py::a")])
    assert engine._take_next() is serial


async def test_the_monitor_is_told_what_the_next_shards_peaked_at(tmp_path: Path) -> None:
    engine = orchestrator(tmp_path)
    assert engine._next_rss() == 0
    engine._queue.extend([spec(1, "wait.py::a"), spec(2, "busy.py::a", "busy.py::b")])
    assert engine._next_rss() == 300_000_000


async def test_a_rerun_keeps_the_constraints_of_the_shard_it_comes_from(tmp_path: Path) -> None:
    """A retry or a crashed worker's unstarted tests: a serial test still runs alone, and a
    resource group's tests are still never split over workers."""
    engine = orchestrator(tmp_path)
    serial = spec(7, "busy.py::a", "busy.py::b", weight=SERIAL_WEIGHT, splittable=False)
    rerun = engine._rerun_spec(["busy.py::b"], 2, serial.shard)
    assert (rerun.shard.weight, rerun.shard.splittable) == (SERIAL_WEIGHT, False)
    assert rerun.attempt == 2
    assert rerun.shard.nodeids == ("busy.py::b",)
    assert rerun.shard.shard_id != serial.shard.shard_id
    free = engine._rerun_spec(["wait.py::a"], 1, spec(2, "wait.py::a").shard)
    assert (free.shard.weight, free.shard.splittable) == (1, True)


def cold_orchestrator(tmp_path: Path, events: list[Event]) -> Orchestrator:
    """Adaptive capacity, two cores, a run whose store knew no CPU shares."""
    request = RunRequest(project_root=tmp_path, optimization="ultra_fast")
    settings = resolve(request, environ={}, cores=2)
    bus = EventBus()
    bus.subscribe(events.append)
    engine = Orchestrator(settings, bus)
    engine._first = _FirstTests(needed=4)
    return engine


def finished(index: int, cpu_time: float) -> TestResult:
    return TestResult(
        f"t.py::t{index}", Outcome.PASSED, duration=0.2, cpu_time=cpu_time, shard_id=1
    )


async def test_a_cold_run_of_waiting_tests_widens_once_its_first_tests_are_measured(
    tmp_path: Path,
) -> None:
    events: list[Event] = []
    engine = cold_orchestrator(tmp_path, events)
    start = engine.limiter.capacity
    for index in range(3):
        engine.test_result(finished(index, cpu_time=0.004))
    assert engine.limiter.capacity == start
    engine.test_result(finished(3, cpu_time=0.004))
    # 2% of a core each: two cores hold a hundred such tests, the profile's ceiling fewer.
    assert engine.limiter.capacity == engine.settings.max_workers > start
    (changed,) = [e for e in events if isinstance(e, CapacityChanged)]
    assert changed.new == engine.settings.max_workers
    assert changed.reason == "measured: the first 4 tests keep a core 2% busy"
    engine.test_result(finished(4, cpu_time=0.004))
    assert len([e for e in events if isinstance(e, CapacityChanged)]) == 1


async def test_a_cold_run_of_busy_tests_stays_at_the_core_count(tmp_path: Path) -> None:
    events: list[Event] = []
    engine = cold_orchestrator(tmp_path, events)
    start = engine.limiter.capacity
    for index in range(6):
        engine.test_result(finished(index, cpu_time=0.19))
    assert engine.limiter.capacity == start
    assert not [e for e in events if isinstance(e, CapacityChanged)]


async def test_a_released_tail_becomes_as_many_shards_as_were_asked_for(tmp_path: Path) -> None:
    engine = orchestrator(tmp_path)
    parent = spec(1, *(f"wait.py::t{i}" for i in range(8)))
    engine._specs[1] = parent
    engine._steals[1] = 3
    engine.tests_released(1, tuple(f"wait.py::t{i}" for i in range(2, 8)))
    shards = [s.shard.nodeids for s in engine._queue]
    assert sorted(shards) == [
        ("wait.py::t2", "wait.py::t3"),
        ("wait.py::t4", "wait.py::t5"),
        ("wait.py::t6", "wait.py::t7"),
    ]
    assert 1 not in engine._steals
