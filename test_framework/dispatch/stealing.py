"""Work stealing: free slots take over the waiting tail of running shards.

A cold run knows no costs, so its few long shards could not use the slots the monitor opens
later. While nothing is queued and slots are free, the busiest running shards are asked to
release part of their remaining tests (`Release {pieces}`); the worker answers with the tests it
gave back (`Released`), which the dispatcher cuts into `pieces` new shards. Serial and resource
shards are never split. A tail is weighed by this run's own tests where it has some: the
shard's, else the run's so far, else the plan's estimate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..execution.runner import WorkerControl
from ..models import Shard, TestResult
from ..planning import (
    FORK_MIN_SHARD_SECONDS,
    SPAWN_MIN_SHARD_SECONDS,
    piece_limit,
    steal_pieces,
)
from ..worker.protocol import Release

# A tail moves to a free slot when it is expected to take at least this long (a new worker pays
# a fork and its fixtures again).
STEAL_MIN_SECONDS = 2 * FORK_MIN_SHARD_SECONDS
# A stolen tail is cut into pieces of at least this: slots only free up for stealing when the
# CPU has room, so there a shorter critical path is worth a few more forks.
STEAL_PIECE_SECONDS = FORK_MIN_SHARD_SECONDS / 2
# Spawned workers pay an interpreter and pytest's start-up (about half a second here) per
# piece: a tail moves only when that is a small part of it (measured: a cold spawned run of
# 30 short tests cut its 1 s tail into 11 spawns and took 16 s instead of 2).
SPAWN_STEAL_MIN_SECONDS = 2 * SPAWN_MIN_SHARD_SECONDS
SPAWN_STEAL_PIECE_SECONDS = SPAWN_MIN_SHARD_SECONDS


@dataclass(frozen=True, slots=True)
class Tail:
    seconds: float  # expected, of the tests waiting
    tests: int
    shard_id: int


@dataclass
class WorkStealing:
    known: Mapping[str, float] = field(default_factory=dict)  # the store's durations
    # shard id -> (seconds, tests) finished so far; the run's, all shards together.
    seen: dict[int, tuple[float, int]] = field(default_factory=dict)
    seen_all: tuple[float, int] = (0.0, 0)
    asked: dict[int, int] = field(default_factory=dict)  # shard id -> pieces asked for
    # What a tail and a piece of it must be worth: a new worker's start-up, fork or spawn.
    min_seconds: float = STEAL_MIN_SECONDS
    piece_seconds: float = STEAL_PIECE_SECONDS

    def spawning(self) -> None:
        """New workers are spawned, not forked: steal only what is worth a spawn."""
        self.min_seconds = SPAWN_STEAL_MIN_SECONDS
        self.piece_seconds = SPAWN_STEAL_PIECE_SECONDS

    def finished(self, result: TestResult) -> None:
        if result.shard_id is None:
            return
        seconds, tests = self.seen.get(result.shard_id, (0.0, 0))
        self.seen[result.shard_id] = (seconds + result.duration, tests + 1)
        total, count = self.seen_all
        self.seen_all = (total + result.duration, count + 1)

    def shard_ended(self, shard_id: int) -> None:
        self.seen.pop(shard_id, None)
        self.asked.pop(shard_id, None)

    def released(self, shard_id: int) -> int:
        """The pieces asked of a shard that answered (1 if it released unasked)."""
        return self.asked.pop(shard_id, 1)

    def in_flight(self) -> int:
        return sum(self.asked.values())

    def tails(
        self, running: Mapping[int, Shard], controls: Mapping[int, WorkerControl]
    ) -> list[Tail]:
        """Running shards whose waiting tests are worth a worker of their own, most first."""
        found = []
        for shard_id, control in list(controls.items()):
            shard = running.get(shard_id)
            if shard is None or not shard.splittable or shard_id in self.asked:
                continue
            waiting = control.waiting()
            if waiting < 2:
                continue
            seconds = waiting * self._per_test(shard)
            if seconds >= self.min_seconds:
                found.append(Tail(seconds, waiting, shard_id))
        return sorted(found, key=lambda t: (t.seconds, t.tests, t.shard_id), reverse=True)

    def _per_test(self, shard: Shard) -> float:
        seen_seconds, seen_tests = self.seen.get(shard.shard_id, (0.0, 0))
        if seen_tests:
            return seen_seconds / seen_tests
        if shard.nodeids[0] not in self.known and self.seen_all[1]:
            return self.seen_all[0] / self.seen_all[1]
        return shard.expected_duration / max(1, len(shard.nodeids))

    def ask(
        self, free: int, running: Mapping[int, Shard], controls: Mapping[int, WorkerControl]
    ) -> None:
        """Deal `free` slots over the largest tails and ask their workers to release them."""
        free -= self.in_flight()
        if free <= 0:
            return
        tails = self.tails(running, controls)
        wanted = steal_pieces(free, [(t.seconds, t.tests) for t in tails], self.piece_seconds)
        for tail, pieces in zip(tails, wanted, strict=True):
            control = controls.get(tail.shard_id)
            if control is not None and pieces > 0:
                self.asked[tail.shard_id] = pieces
                control.send(Release(pieces))

    def backlog(self, running: Mapping[int, Shard], controls: Mapping[int, WorkerControl]) -> int:
        """New workers the running shards' tails could use (so the monitor widens for a cold
        run's few long shards too), with those already asked for."""
        tails = self.tails(running, controls)
        stealable = sum(piece_limit(t.seconds, t.tests, self.piece_seconds) for t in tails)
        return stealable + self.in_flight()
