"""The run's test ids per file, as the workers collect them now, and the shards the run makes
as it goes (reruns, confirmations, stolen tails), which name their tests by those ids.

Some ids change between two collections of an unchanged file (they embed the time, a counter,
an address). A worker that collects a planned slice of such a file reports other ids than the
plan's: they replace the planned ones here at the same positions, and the file is marked
unstable (recorded, and shown by `--list`). Every selection that names tests (a retry, a
rerun, a stolen tail) also gives their positions, where a worker that collects yet other ids
finds them, and a confirmation's head names the ids its items are reported under (see
`worker.items.select_items`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from ..models import NodeId, Shard
from ..planning import explicit_selection, ids_by_file
from ..worker.selection import FileHead, FileSlice, Selection, slice_bounds


class RunIds:
    def __init__(self, unstable: Iterable[str] = ()) -> None:
        self.files: dict[str, list[NodeId]] = {}
        self.unstable: set[str] = set(unstable)

    def load(self, nodeids: Iterable[NodeId]) -> None:
        """Every test of the run in collection order."""
        for file, ids in ids_by_file(list(nodeids)).items():
            self.files.setdefault(file, []).extend(ids)

    def collected(
        self, shard: Shard, nodeids: Sequence[NodeId], renamed: Iterable[str] = ()
    ) -> list[str]:
        """A worker collected its share of `shard`: where a file's slice holds as many tests as
        planned under other ids, those ids take the planned ones' places. Returns the files
        newly seen to change their ids (here, or `renamed`: the worker found named tests of
        theirs by position)."""
        by_file = ids_by_file(nodeids)
        changed = []
        for file, places in self._positions(shard).items():
            known = self.files[file]
            now = by_file.get(file, [])
            planned = [known[p] for p in places]
            if len(now) != len(planned) or now == planned:
                continue
            if set(now) & (set(known) - set(planned)):
                continue  # not a renaming: the file's tests moved
            for position, nodeid in zip(places, now, strict=True):
                known[position] = nodeid
            changed.append(file)
        fresh = [f for f in dict.fromkeys([*changed, *renamed]) if f not in self.unstable]
        self.unstable.update(fresh)
        return fresh

    def _positions(self, shard: Shard) -> dict[str, list[int]]:
        """Where in each file the shard's position-based entries (slices, heads) fall."""
        places: dict[str, set[int]] = {}
        for entry in shard.selection:
            known = self.files.get(entry.file)
            if known is None or not isinstance(entry, FileSlice | FileHead):
                continue
            if isinstance(entry, FileSlice):
                start, end = slice_bounds(entry.part, entry.parts, len(known))
            else:
                start, end = 0, min(entry.count, len(known))
            places.setdefault(entry.file, set()).update(range(start, end))
        return {file: sorted(p) for file, p in places.items()}

    def selection(self, nodeids: Sequence[NodeId]) -> Selection:
        """A selection naming `nodeids`, with their positions in their files."""
        return explicit_selection(nodeids, self.files)


class ShardMaker:
    """New shards with the run's next ids; named tests carry their positions in their files."""

    def __init__(self, ids: RunIds, expected: Callable[[NodeId], float]) -> None:
        self.ids = ids
        self.expected = expected
        self.last_id = 0

    def __call__(
        self,
        nodeids: Sequence[NodeId],
        selection: Selection | None = None,
        *,
        parent: Shard | None = None,
        attempt: int = 1,
        full_collection: bool = False,
    ) -> Shard:
        """A shard for `nodeids`, keeping `parent`'s constraints (a serial test still runs
        alone, a resource group's tests are never split); a full-collection one (a
        confirmation, a probe) is never split by stealing."""
        self.last_id += 1
        return Shard(
            shard_id=self.last_id,
            nodeids=tuple(nodeids),
            expected_duration=sum(self.expected(n) for n in nodeids),
            selection=selection or self.ids.selection(nodeids),
            weight=parent.weight if parent else 1,
            splittable=(parent.splittable if parent else True) and not full_collection,
            attempt=attempt,
            full_collection=full_collection,
        )
