"""A run's plan from its collection and what the store knows: the shards and the `Plan` the
console and reports announce. Pure; the orchestrator reads the store and hands this its parts.

One worker told to stop at a failure (`--workers 1` with a maxfail) runs in pytest's order, so
it stops where pytest would; otherwise the planner packs the tests longest first over the slots
the run expects (planning.py), pricing a cut file by whether each shard collects its own files.
"""

from __future__ import annotations

from collections.abc import Collection as Container
from collections.abc import Mapping, Sequence

from .models import Collection, NodeId, Plan, Shard, file_of
from .planning import (
    FORK_MIN_SHARD_SECONDS,
    SPAWN_MIN_SHARD_SECONDS,
    PlanInput,
    in_order_shard,
    make_plan,
    plan_slots,
)
from .request import RunSettings


def plan_run(
    settings: RunSettings,
    collection: Collection,
    durations: Mapping[NodeId, float],
    recent_failures: Container[NodeId],
    explicit_ids: bool,
    *,
    stops_in_order: bool,
    forked: bool,
    busy: int | None,
    early: bool,
    context_files: Mapping[str, str],
    unstable: set[str],
    partial_files: Mapping[str, Sequence[NodeId]],
) -> tuple[list[Shard], Plan]:
    known = sum(1 for n in collection.nodeids if n in durations)
    if settings.one_worker_in_order or stops_in_order:
        shard = in_order_shard(collection.nodeids, settings.only, partial_files)
        plan = Plan((shard,), known, collection.error_results(), terminal=collection.terminal)
        return [shard], plan
    slots = plan_slots(
        tests=len(collection.nodeids),
        known=known,
        forked=forked,
        busy=busy,
        initial=settings.initial_workers,
        maximum=settings.max_workers,
        fixed=settings.fixed_workers,
    )
    shards = make_plan(
        PlanInput(
            nodeids=collection.nodeids,
            durations=durations,
            recent_failures=recent_failures,
            slots=slots,
            shards_per_slot=settings.profile.shards_per_slot,
            min_shard_seconds=FORK_MIN_SHARD_SECONDS if forked else SPAWN_MIN_SHARD_SECONDS,
            explicit_ids=explicit_ids,
            serial=collection.serial,
            resources=collection.resources,
            resource_limits=settings.resource_limits,
            # Each shard collects its own files: an early warm process, or spawned workers.
            collects_per_shard=early or not forked,
            context_files=context_files,
            partial_files=partial_files,
        )
    )
    files = {file_of(n) for n in collection.nodeids}
    learnt = {f: why for f, why in context_files.items() if f in files}
    moving = tuple(sorted(f for f in unstable if f in files))
    plan = Plan(
        tuple(shards), known, collection.error_results(), learnt, moving, collection.terminal
    )
    return shards, plan
