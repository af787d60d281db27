"""The dispatcher's choice of the next shard: longest first, mixed with waiting shards while busy
ones fill every core; constrained shards keep their place."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_framework.events import EventBus
from test_framework.execution.runner import ShardSpec
from test_framework.models import Shard
from test_framework.orchestrator import Orchestrator
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
