"""`--list`: the plan a run would execute: shards, their tests and expected durations."""

from __future__ import annotations

from typing import TextIO

from ..events import Event, RunStarted


class PlanPrinter:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, event: Event) -> None:
        if not isinstance(event, RunStarted):
            return
        plan = event.plan
        write = self.stream.write
        write(
            f"{plan.test_count} tests in {len(plan.shards)} shards, expected "
            f"{plan.expected_total:.2f}s of test time, {event.capacity} workers to start "
            f"({plan.known_durations} durations known from earlier runs)\n"
        )
        for error in plan.collection_errors:
            write(f"collection {error.outcome.value}: {error.nodeid}\n")
        for file, why in plan.context_files.items():
            write(
                f"kept whole, in order, in a fully collected worker: {file} (a test of it "
                f"failed when run {why} and passed in pytest's order and context)\n"
            )
        for file in plan.unstable_files:
            write(
                f"ids change between collections: {file} (its tests are found by position "
                "where a worker collects other ids; reported under this run's ids)\n"
            )
        for shard in plan.shards:
            how = ", whole files in order after a full collection" if shard.full_collection else ""
            write(
                f"shard {shard.shard_id}: {len(shard.nodeids)} tests, "
                f"~{shard.expected_duration:.2f}s{how}\n"
            )
            for nodeid in shard.nodeids:
                write(f"  {nodeid}\n")
        self.stream.flush()
