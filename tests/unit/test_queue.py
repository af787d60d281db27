"""The dispatcher's queue: longest first, mixed with waiting shards while busy ones fill the
cores; constrained shards keep their place; the breaker takes files out of queued shards."""

from __future__ import annotations

from test_framework.dispatch.queue import ShardCosts, ShardQueue, split_files
from test_framework.models import Shard
from test_framework.planning import SERIAL_WEIGHT, explicit_selection
from test_framework.store.queries import History

# Two busy tests and two waiting ones, one second each, as the store remembers them.
HISTORY = History(
    durations={"busy.py::a": 1.0, "busy.py::b": 1.0, "wait.py::a": 1.0, "wait.py::b": 1.0},
    recent_failures=frozenset(),
    cpu={"busy.py::a": 1.0, "busy.py::b": 1.0, "wait.py::a": 0.02, "wait.py::b": 0.02},
    max_rss={"busy.py::a": 300_000_000, "wait.py::a": 40_000_000},
)


def shard(shard_id: int, *nodeids: str, weight: int = 1, splittable: bool = True) -> Shard:
    return Shard(
        shard_id,
        tuple(nodeids),
        float(len(nodeids)),
        explicit_selection(nodeids),
        weight,
        splittable,
    )


def queue_of(*shards: Shard) -> ShardQueue:
    queue = ShardQueue(ShardCosts(HISTORY), cores=2)
    for s in shards:
        queue.push(s)
    return queue


BUSY_RUNNING = [shard(10, "busy.py::a"), shard(11, "busy.py::b")]


def test_with_cores_to_spare_the_longest_goes_first() -> None:
    queue = queue_of(shard(1, "busy.py::b"), shard(2, "wait.py::a"))
    assert queue.take(running=[]).shard_id == 1


def test_while_busy_shards_fill_the_cores_a_waiting_one_goes_first() -> None:
    queue = queue_of(shard(1, "busy.py::b"), shard(2, "wait.py::a"), shard(3, "wait.py::b"))
    assert queue.take(BUSY_RUNNING).shard_id == 2
    assert [s.shard_id for s in queue] == [1, 3]


def test_a_serial_shard_at_the_head_keeps_its_place() -> None:
    serial = shard(1, "busy.py::b", weight=SERIAL_WEIGHT, splittable=False)
    queue = queue_of(serial, shard(2, "wait.py::a"))
    assert queue.take(BUSY_RUNNING) is serial


def test_the_monitor_is_told_what_the_next_shards_peaked_at() -> None:
    assert queue_of().next_rss() == 0
    queue = queue_of(shard(1, "wait.py::a"), shard(2, "busy.py::a", "busy.py::b"))
    assert queue.next_rss() == 300_000_000


def test_pushing_to_the_front_overtakes_the_plan() -> None:
    queue = queue_of(shard(1, "busy.py::a"))
    queue.push(shard(2, "busy.py::b"), front=True)
    assert [s.shard_id for s in queue] == [2, 1]


def test_open_files_leave_every_queued_shard_and_are_handed_back() -> None:
    queue = queue_of(shard(1, "wait.py::a", "busy.py::a"), shard(2, "wait.py::b"))
    gone = queue.remove_files({"wait.py": "breaker"})
    assert [g.nodeids for g in gone] == [("wait.py::a",), ("wait.py::b",)]
    assert [s.nodeids for s in queue] == [("busy.py::a",)]


def test_split_files_leaves_an_untouched_shard_alone() -> None:
    untouched = shard(1, "busy.py::a")
    assert split_files(untouched, {"wait.py": "x"}) == (untouched, None)
