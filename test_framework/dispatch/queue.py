"""The shards waiting for a slot, and which one goes next.

Longest first, as planned; but while busy shards fill every core a waiting one (sleeps, sockets)
goes ahead, so it overlaps them instead of contending for a core (planning.pick_next). Serial and
resource shards keep their place. What the tests cost last time (CPU share, peak RSS) comes from
the store's history, computed once per shard.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from ..models import Shard, file_of
from ..planning import MIX_WINDOW, explicit_selection, pick_next
from ..store.queries import History
from ..worker.protocol import Skip


@dataclass
class ShardCosts:
    """What a shard's tests cost last time, per shard id, computed once."""

    history: History = field(default_factory=History.empty)
    _shares: dict[int, float | None] = field(default_factory=dict)
    _peaks: dict[int, int] = field(default_factory=dict)

    def share(self, shard: Shard) -> float | None:
        if shard.shard_id not in self._shares:
            self._shares[shard.shard_id] = self.history.cpu_share(shard.nodeids)
        return self._shares[shard.shard_id]

    def peak(self, shard: Shard) -> int:
        if shard.shard_id not in self._peaks:
            self._peaks[shard.shard_id] = self.history.peak_rss(shard.nodeids)
        return self._peaks[shard.shard_id]


class ShardQueue:
    def __init__(self, costs: ShardCosts, cores: int) -> None:
        self.costs = costs
        self.cores = cores
        self._shards: deque[Shard] = deque()

    def __len__(self) -> int:
        return len(self._shards)

    def __iter__(self) -> Iterator[Shard]:
        return iter(list(self._shards))

    def push(self, shard: Shard, *, front: bool = False) -> None:
        (self._shards.appendleft if front else self._shards.append)(shard)

    def take(self, running: Iterable[Shard]) -> Shard:
        """The next shard to start: mostly the head; a waiting one while the `running` shards
        keep every core busy. The mixing window ends at the first serial or resource shard (at
        the head, it is empty and the head goes)."""
        window = []
        for shard in list(self._shards)[:MIX_WINDOW]:
            if shard.weight != 1 or not shard.splittable:
                break
            window.append(shard)
        busy = sum(self.costs.share(s) or 0.0 for s in running)
        index = pick_next([self.costs.share(s) for s in window], busy, self.cores)
        shard = self._shards[index]
        del self._shards[index]
        return shard

    def next_rss(self) -> int:
        """The peak RSS the next queued shards' tests showed last time (0 when unknown)."""
        return max((self.costs.peak(s) for s in list(self._shards)[:MIX_WINDOW]), default=0)

    def remove_files(self, skips: Mapping[str, str]) -> list[Shard]:
        """Take the tests of `skips`' files out of every queued shard; return what was taken, as
        one shard per queued shard it came from (a shard left empty is dropped)."""
        taken: list[Shard] = []
        kept: deque[Shard] = deque()
        for shard in self._shards:
            rest, gone = split_files(shard, skips)
            if gone is not None:
                taken.append(gone)
            if rest is not None:
                kept.append(rest)
        self._shards = kept
        return taken


def split_files(shard: Shard, files: Mapping[str, str]) -> tuple[Shard | None, Shard | None]:
    """`shard` as (its tests outside `files`, its tests inside them); None for an empty side.
    A shard with nothing inside comes back unchanged."""
    inside = tuple(n for n in shard.nodeids if file_of(n) in files)
    if not inside:
        return shard, None
    outside = tuple(n for n in shard.nodeids if file_of(n) not in files)
    gone = replace(shard, nodeids=inside, selection=explicit_selection(inside))
    if not outside:
        return None, gone
    return replace(shard, nodeids=outside, selection=explicit_selection(outside)), gone


def skip_commands(skips: Mapping[str, str]) -> list[Skip]:
    """The breaker's open files as commands for a running worker, one per reason."""
    by_reason: dict[str, list[str]] = {}
    for file, reason in skips.items():
        by_reason.setdefault(reason, []).append(file)
    return [Skip(tuple(files), reason) for reason, files in by_reason.items()]
