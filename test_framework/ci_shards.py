"""`--shard K/N`: this machine's part of the selection when CI splits a suite across N jobs.

Every job computes the same split from the same inputs (the collected node ids and the store's
durations, which CI moves between jobs with `store export/import`), so the N parts are disjoint
and together the whole selection, without the jobs talking to each other.

The split keeps a test file's tests together (its module fixtures are set up once) unless the
file alone is more than half of one part's fair share, then its tests are split one by one.
The units are dealt longest first, each to the part with the least so far (ties: the lower
index). A unit is a single test or at most half a fair share, so no part exceeds the mean by
more than half of it unless one test alone does: every part's expected time is at most
max(1.5 x total/N, the longest test) when the durations are right.
A test with no stored duration counts as the median of the known ones (1 s when none are known).
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import UsageError

UNKNOWN_SECONDS = 1.0
# A file heavier than this share of one part's fair share is split into its tests.
SPLIT_FILE_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class ShardSpec:
    index: int  # 1-based, as people and CI matrices count
    total: int

    def __str__(self) -> str:
        return f"{self.index}/{self.total}"


def parse_shard(text: str) -> ShardSpec:
    index, slash, total = text.partition("/")
    try:
        spec = ShardSpec(int(index), int(total))
    except ValueError:
        spec = None
    if not slash or spec is None or not 1 <= spec.index <= spec.total:
        raise UsageError(
            f"--shard expects K/N with 1 <= K <= N (this job's part and the number of parts, "
            f"e.g. 2/4); got {text!r}"
        )
    return spec


def split(nodeids: Sequence[str], durations: Mapping[str, float], total: int) -> list[list[str]]:
    """All N parts, each in collection order."""
    known = [durations[n] for n in nodeids if n in durations]
    fallback = statistics.median(known) if known else UNKNOWN_SECONDS
    cost = {n: durations.get(n, fallback) for n in nodeids}
    fair = sum(cost.values()) / total if total else 0.0
    files: dict[str, list[str]] = {}
    for nodeid in nodeids:
        files.setdefault(nodeid.split("::", 1)[0], []).append(nodeid)
    units: list[tuple[float, str, list[str]]] = []
    for file, tests in files.items():
        weight = sum(cost[n] for n in tests)
        if weight > SPLIT_FILE_SHARE * fair and len(tests) > 1:
            units += [(cost[n], n, [n]) for n in tests]
        else:
            units.append((weight, file, tests))
    units.sort(key=lambda unit: (-unit[0], unit[1]))
    loads = [0.0] * total
    members: list[set[str]] = [set() for _ in range(total)]
    for weight, _, tests in units:
        lightest = min(range(total), key=lambda part: (loads[part], part))
        loads[lightest] += weight
        members[lightest].update(tests)
    return [[n for n in nodeids if n in part] for part in members]


def part_of(nodeids: Sequence[str], durations: Mapping[str, float], spec: ShardSpec) -> list[str]:
    return split(nodeids, durations, spec.total)[spec.index - 1]


def selection_digest(nodeids: Sequence[str]) -> tuple[int, str]:
    """The selection's size and a digest of its ids (order-free): what every shard of one
    split agrees on, and what the shards' tests together must hash to."""
    digest = hashlib.sha256("\n".join(sorted(nodeids)).encode("utf-8")).hexdigest()
    return len(nodeids), digest
