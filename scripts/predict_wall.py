#!/usr/bin/env python
"""Predict a run's wall time on W workers from durations, with the engine's own planner.

    python scripts/predict_wall.py --generate 50000 [--workers 1,2,8,32,128]
    python scripts/predict_wall.py --store .test_framework/results.sqlite --project DIR

The planner is pure (planning.py): it cuts the tests into the shards it would run on W slots,
longest first, and this script deals them, in the dispatcher's order, to whichever slot frees
first, each shard paying a start cost (a fork from a warm zygote here; a Dask task and its
scheduling on a cluster). It prints, per W: the predicted wall, the two lower bounds (all the
work over W slots; the longest single shard), the efficiency, and what limits it. What it does
not model: CPU contention inside one machine (tests that share cores slow each other), work
stealing (which only shortens tails), and the engine's own event handling (measured: ~2 s of
CPU for 50,000 results, spread over the run).

`--generate N` makes a reproducible suite: N tests in files of 100, durations log-normal
(median 5 ms, a long tail: a few tests of seconds), the shape of the released suites measured in
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import heapq
import random
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from test_framework.planning import FORK_MIN_SHARD_SECONDS, PlanInput, make_plan


@dataclass(frozen=True)
class Prediction:
    workers: int
    shards: int
    wall: float
    work_bound: float  # total work / workers
    longest_shard: float
    start_cost: float

    @property
    def efficiency(self) -> float:
        return self.work_bound / self.wall if self.wall else 1.0

    def limit(self) -> str:
        if self.longest_shard >= 0.9 * self.wall:
            return "the longest test (its shard alone)"
        if self.start_cost * self.shards / self.workers > 0.1 * self.wall:
            return "start cost per shard"
        if self.efficiency >= 0.95:
            return "total work / workers"
        return "packing (shards of unequal length)"


def generate(tests: int, seed: int = 11) -> dict[str, float]:
    rng = random.Random(seed)
    durations = {}
    for index in range(tests):
        nodeid = f"tests/test_{index // 100:05}.py::test_{index % 100}"
        durations[nodeid] = min(30.0, rng.lognormvariate(-5.3, 1.6))
    return durations


def from_store(path: Path, project: str) -> dict[str, float]:
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT nodeid, ewma_duration FROM test_stats WHERE project = ? ORDER BY nodeid",
            (project,),
        ).fetchall()
    return {str(nodeid): float(seconds) for nodeid, seconds in rows}


def predict(
    durations: Mapping[str, float],
    workers: int,
    start_cost: float,
    shards_per_slot: int = 3,
    startup: float = 1.0,
) -> Prediction:
    nodeids: Sequence[str] = list(durations)
    shards = make_plan(
        PlanInput(
            nodeids=nodeids,
            durations=durations,
            recent_failures=(),
            slots=workers,
            shards_per_slot=shards_per_slot,
            min_shard_seconds=FORK_MIN_SHARD_SECONDS,
        )
    )
    free = [0.0] * workers
    heapq.heapify(free)
    longest = 0.0
    for shard in shards:  # the dispatcher's order: longest first
        cost = sum(durations[n] for n in shard.nodeids) + start_cost
        longest = max(longest, cost)
        heapq.heappush(free, heapq.heappop(free) + cost)
    total = sum(durations.values())
    return Prediction(
        workers=workers,
        shards=len(shards),
        wall=startup + max(free),
        work_bound=startup + total / workers,
        longest_shard=startup + longest,
        start_cost=start_cost,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--generate", type=int, metavar="N", help="a generated suite of N tests")
    source.add_argument("--store", type=Path, help="a results store (results.sqlite)")
    parser.add_argument("--project", help="with --store: the project root the runs recorded")
    parser.add_argument("--workers", default="1,2,8,32,128")
    parser.add_argument(
        "--start-cost",
        type=float,
        default=0.01,
        help="seconds each shard pays to start (default 0.01: a fork from a warm zygote)",
    )
    parser.add_argument("--startup", type=float, default=1.0, help="before the first test (s)")
    ns = parser.parse_args()
    if ns.store is not None:
        if not ns.project:
            parser.error("--store needs --project (the root the store's runs recorded)")
        durations = from_store(ns.store, str(Path(ns.project).resolve()))
    else:
        durations = generate(ns.generate)
    if not durations:
        parser.error("no durations: an empty store, or another project's")
    total = sum(durations.values())
    print(
        f"{len(durations)} tests, {total:.1f} s of test time, longest test "
        f"{max(durations.values()):.2f} s; start cost {ns.start_cost:g} s per shard, "
        f"{ns.startup:g} s before the first test"
    )
    columns = ("workers", "shards", "predicted wall s", "work / workers s", "longest shard s")
    print("| " + " | ".join((*columns, "efficiency", "limited by")) + " |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for workers in (int(w) for w in ns.workers.split(",")):
        p = predict(durations, workers, ns.start_cost, startup=ns.startup)
        print(
            f"| {workers} | {p.shards} | {p.wall:.2f} | {p.work_bound:.2f} | "
            f"{p.longest_shard:.2f} | {p.efficiency:.0%} | {p.limit()} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
