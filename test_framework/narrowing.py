"""Which of the collected tests this run owes an answer for, before planning: pytest's
explicit selection, a CI shard's part (`--shard K/N`, ci_shards.py) and what fits in a time
budget (`--time-budget`, budget.py). Pure: the orchestrator reads the store and applies this.

Tests outside a named selection or another shard's part are `deselected`, as `-k` would say;
tests a budget leaves out are still owed, and reported `not_run` with the reason.
"""

from __future__ import annotations

from collections.abc import Collection as Container
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from .budget import within_budget
from .ci_shards import part_of, selection_digest
from .models import Collection, NodeId
from .planning import ids_by_file, kept
from .request import RunSettings


@dataclass(frozen=True, slots=True)
class Narrowed:
    collection: Collection
    over_budget: tuple[NodeId, ...] = ()
    shard_selection: tuple[int, str] | None = None  # the whole selection, for shard-verify
    notes: tuple[str, ...] = ()
    # Files of which only some tests run, with every id of each: the planner names their
    # tests (a slice of positions would run the whole file).
    partial_files: Mapping[str, list[NodeId]] = field(default_factory=dict)


def shard_and_budget(
    collection: Collection,
    settings: RunSettings,
    durations: Mapping[str, float],
    recent_failures: Container[str],
    affected: Container[str] | None,
) -> Narrowed:
    selection = None
    whole = collection
    if settings.shard is not None and collection.nodeids:
        part = set(part_of(collection.nodeids, durations, settings.shard))
        selection = selection_digest(collection.nodeids)
        collection = narrowed(collection, [n for n in collection.nodeids if n in part])
    if settings.time_budget is None or not collection.nodeids:
        return Narrowed(collection, (), selection, (), partial(whole, collection))
    fits, over = within_budget(
        collection.nodeids,
        settings.time_budget,
        settings.fixed_workers or settings.cores,
        durations,
        recent_failures,
        affected,
    )
    note = (
        f"--time-budget {settings.time_budget:g}s: {len(fits)} tests fit, {len(over)} not run "
        "(affected first, then recently failed, then fastest)"
    )
    collection = replace(collection, nodeids=tuple(fits))
    return Narrowed(collection, tuple(over), selection, (note,), partial(whole, collection))


def partial(whole: Collection, part: Collection) -> dict[str, list[NodeId]]:
    """The files `part` keeps only some tests of, each with all its ids in `whole`."""
    if len(part.nodeids) == len(whole.nodeids):
        return {}
    every = ids_by_file(whole.nodeids)
    kept = ids_by_file(part.nodeids)
    return {f: every[f] for f, ids in kept.items() if len(ids) != len(every[f])}


def only(collection: Collection, selected: Sequence[str]) -> Collection:
    """The collection narrowed to `selected`, the rest counted as deselected (as -k would)."""
    return narrowed(collection, kept(collection.nodeids, selected))


def narrowed(collection: Collection, nodeids: Sequence[NodeId]) -> Collection:
    """The collection narrowed to `nodeids` (a subsequence), the rest counted as deselected."""
    nodeids = tuple(nodeids)
    terminal = collection.terminal
    deselected = terminal.deselected + len(collection.nodeids) - len(nodeids)
    return replace(collection, nodeids=nodeids, terminal=replace(terminal, deselected=deselected))
