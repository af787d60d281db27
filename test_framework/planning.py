"""Planning: pack node ids into shards, longest first, so the last shard ends with the others.

Pure functions over plain data (the orchestrator hands in durations read from the store). A shard
keeps whole files where it can, because module-scoped fixtures and imports are paid per process; a
file that alone exceeds the target shard length is cut into contiguous slices that the worker
computes itself (`part k of n`), so every test lands in exactly one slice even if the file changed
since it was collected.
"""

from __future__ import annotations

import heapq
import math
import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from .models import NodeId, Shard, file_of
from .worker.selection import FileSlice, FileTests, Selection, SelectionEntry, slice_bounds

DEFAULT_TEST_ESTIMATE = 0.05
# Spawning a pytest worker costs about half a second here; a shard shorter than a few of those
# is cheaper merged into another.
SPAWN_MIN_SHARD_SECONDS = 1.5
# A fork costs milliseconds; below this a shard is mostly fixture set-up repeated.
FORK_MIN_SHARD_SECONDS = 0.2
# A serial shard asks for more slots than any limiter has: it is admitted only into an empty
# limiter, and nothing else is admitted while it runs.
SERIAL_WEIGHT = 1_000_000
# A test longer than this share of one slot's fair part of the work gets a shard of its own.
# In its file's slice, the tests after it could not go to a free worker until it ended (a
# worker gives its tail back only between tests), and the run would end with one worker
# alone: on more-itertools, one 19.6 s test of 37.6 s in all kept 6 s of others behind it.
OUTLIER_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class PlanInput:
    nodeids: Sequence[NodeId]
    durations: Mapping[NodeId, float]
    recent_failures: Collection[NodeId]
    slots: int
    shards_per_slot: int
    min_shard_seconds: float
    explicit_ids: bool = False
    serial: Collection[NodeId] = ()
    resources: Mapping[NodeId, Sequence[str]] = field(default_factory=dict)
    resource_limits: Mapping[str, int] = field(default_factory=dict)
    # Each shard collects its own files (an early zygote, or spawned workers): a file cut into
    # slices is then collected once per slice, so it is cut only when it alone would hold a
    # slot longer than the slots' fair share of all the work.
    collects_per_shard: bool = False
    # Files whose tests needed pytest's context in an earlier run (-> why): they run whole, in
    # order, in one worker that collects the whole selection first.
    context_files: Mapping[str, str] = field(default_factory=dict)
    # Files of which only some tests run (the skip cache reports the rest) -> every id of the
    # file in collection order: their tests are named, by position among these, never sliced.
    partial_files: Mapping[str, Sequence[NodeId]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Unit:
    order: int
    file: str
    nodeids: tuple[NodeId, ...]
    part: tuple[int, int]
    expected: float
    named: bool = False  # its tests are named (a run around a long test), not a count slice


def plan_slots(
    *,
    tests: int,
    known: int,
    forked: bool,
    busy: int | None,
    initial: int,
    maximum: int,
    fixed: int | None = None,
) -> int:
    """For how many worker slots to cut the plan."""
    if fixed:
        return fixed
    if not forked:
        return initial  # a spawn costs half a second: few shards
    if known * 2 >= tests:
        # Known costs: cut for as many workers as these tests can keep busy (cores / CPU
        # share), not for the ceiling: CPU-bound tests gain nothing from more shards.
        return busy if busy is not None else maximum
    # Unknown costs: a few shards per core. Thousands of millisecond tests cut for the ceiling
    # would pay a fork and a session per handful of tests; cut for only the cores, a suite of
    # waiting tests spends its first second in a few long chains that stealing can only split
    # between tests (measured: io cold 2.07 -> 1.96 s, 1,000 trivial tests 0.75 -> 0.87 x
    # plain pytest).
    return min(maximum, 4 * initial)


def estimate_durations(
    nodeids: Sequence[NodeId], known: Mapping[NodeId, float]
) -> dict[NodeId, float]:
    """Known EWMA durations; unknown tests get their file's median, else the suite's, else 50 ms."""
    by_file: dict[str, list[float]] = {}
    for nodeid in nodeids:
        if nodeid in known:
            by_file.setdefault(file_of(nodeid), []).append(known[nodeid])
    all_known = [known[n] for n in nodeids if n in known]
    suite_median = statistics.median(all_known) if all_known else DEFAULT_TEST_ESTIMATE
    file_median = {f: statistics.median(v) for f, v in by_file.items()}
    return {
        n: known[n] if n in known else file_median.get(file_of(n), suite_median) for n in nodeids
    }


def shard_count(total: float, units: int, plan: PlanInput) -> int:
    """Enough shards to keep every slot busy and the tail short, few enough to pay start-up
    rarely."""
    by_work = int(total / plan.min_shard_seconds) if plan.min_shard_seconds > 0 else units
    return max(1, min(units, plan.slots * plan.shards_per_slot, max(by_work, 1)))


def make_plan(plan: PlanInput) -> list[Shard]:
    """Serial tests first (one shard, alone), then each resource group's shards, then shards
    holding a test that failed last time, then the rest, longest first. A file holding a
    constrained test names its tests explicitly, so no slice of it can pick up a test that
    belongs to a constrained shard. Shard ids count from 1 in that order."""
    if not plan.nodeids:
        return []
    expected = estimate_durations(plan.nodeids, plan.durations)
    known = {**ids_by_file(plan.nodeids), **plan.partial_files}
    serial = [n for n in plan.nodeids if n in set(plan.serial)]
    constrained = set(serial) | {n for n in plan.nodeids if plan.resources.get(n)}
    special: list[Shard] = []
    if serial:
        special.append(_explicit_shard(serial, expected, SERIAL_WEIGHT, known))
    for group in _resource_groups(plan, set(serial)):
        special.extend(_explicit_shard(ids, expected, 1, known) for ids in group)
    in_context = [
        n for n in plan.nodeids if file_of(n) in plan.context_files and n not in constrained
    ]
    if in_context:
        special.append(_context_shard(in_context, expected, constrained, plan.explicit_ids, known))
    placed = constrained | set(in_context)
    rest = [n for n in plan.nodeids if n not in placed]
    touched = {file_of(n) for n in constrained} | set(plan.partial_files)
    packed = _pack(rest, expected, plan, touched, known) if rest else []
    failures = set(plan.recent_failures)
    packed.sort(key=lambda s: (not any(n in failures for n in s.nodeids), -s.expected_duration))
    return [replace(s, shard_id=index) for index, s in enumerate(special + packed, start=1)]


def in_order_shard(
    nodeids: Sequence[NodeId],
    only: Sequence[NodeId] = (),
    partial_files: Mapping[str, Sequence[NodeId]] | None = None,
) -> Shard:
    """Plain pytest's run as one shard: every file whole, in collection order, in one worker
    that collected everything (`only`: just those tests, in that order, for a probe; a file in
    `partial_files` runs only its tests among `nodeids`, named)."""
    if only:
        return Shard(
            1, tuple(only), 0.0, explicit_selection(only), splittable=False, full_collection=True
        )
    partial = partial_files or {}
    selection = tuple(
        named_tests(f, ids, partial[f]) if f in partial else FileSlice(f, 0, 1)
        for f, ids in ids_by_file(nodeids).items()
    )
    return Shard(1, tuple(nodeids), 0.0, selection, splittable=False, full_collection=True)


def _context_shard(
    nodeids: Sequence[NodeId],
    expected: Mapping[NodeId, float],
    constrained: Collection[NodeId],
    explicit_ids: bool,
    known: Mapping[str, Sequence[NodeId]],
) -> Shard:
    """The files that need pytest's context, whole and in order, in one fully collecting
    worker that no free slot may split."""
    files = ids_by_file(nodeids)
    touched = {file_of(n) for n in constrained}
    selection = tuple(
        named_tests(f, ids, known.get(f)) if explicit_ids or f in touched else FileSlice(f, 0, 1)
        for f, ids in files.items()
    )
    return Shard(
        shard_id=0,
        nodeids=tuple(nodeids),
        expected_duration=sum(expected[n] for n in nodeids),
        selection=selection,
        splittable=False,
        full_collection=True,
    )


def _explicit_shard(
    nodeids: Sequence[NodeId],
    expected: Mapping[NodeId, float],
    weight: int,
    known: Mapping[str, Sequence[NodeId]],
) -> Shard:
    return Shard(
        shard_id=0,
        nodeids=tuple(nodeids),
        expected_duration=sum(expected[n] for n in nodeids),
        selection=explicit_selection(nodeids, known),
        weight=weight,
        splittable=False,
    )


def _resource_groups(plan: PlanInput, serial: set[NodeId]) -> list[list[list[NodeId]]]:
    """Tests sharing a resource (transitively) form a group; a group is cut into as many shards
    as its tightest resource allows at once (1 unless the config says more)."""
    parent: dict[str, str] = {}

    def find(name: str) -> str:
        while parent.setdefault(name, name) != name:
            name = parent[name]
        return name

    holders = [(n, list(plan.resources[n])) for n in plan.nodeids if plan.resources.get(n)]
    for _, names in holders:
        for other in names[1:]:
            parent[find(other)] = find(names[0])
    groups: dict[str, list[NodeId]] = {}
    limits: dict[str, int] = {}
    for nodeid, names in holders:
        if nodeid in serial:
            continue
        root = find(names[0])
        groups.setdefault(root, []).append(nodeid)
        limit = min(max(1, plan.resource_limits.get(n, 1)) for n in names)
        limits[root] = min(limits.get(root, limit), limit)
    result = []
    for root, ids in groups.items():
        parts = min(limits[root], len(ids))
        result.append(
            [ids[k * len(ids) // parts : (k + 1) * len(ids) // parts] for k in range(parts)]
        )
    return result


def _pack(
    nodeids: Sequence[NodeId],
    expected: Mapping[NodeId, float],
    plan: PlanInput,
    explicit_files: set[str],
    known: Mapping[str, Sequence[NodeId]],
) -> list[Shard]:
    files = ids_by_file(nodeids)
    total = sum(expected[n] for n in nodeids)
    target_count = shard_count(total, len(nodeids), plan)
    target = total / target_count
    # The length above which a file is cut into slices.
    cut_above = max(target, total / max(1, plan.slots)) if plan.collects_per_shard else target
    outlier_above = OUTLIER_SHARE * total / plan.slots if plan.slots > 1 else math.inf
    units: list[_Unit] = []
    for order, (file, ids) in enumerate(files.items()):
        runs = around_outliers(ids, expected, outlier_above)
        if len(runs) > 1:
            units.extend(
                _Unit(order, file, run, (k, len(runs)), sum(expected[n] for n in run), named=True)
                for k, run in enumerate(runs)
            )
            continue
        file_total = sum(expected[n] for n in ids)
        share = file_total / cut_above if target > 0 else 1.0
        # Cut past a slot's share (ceil), or into shard-sized slices (round).
        wanted = math.ceil(share - 1e-9) if plan.collects_per_shard else round(share)
        parts = min(len(ids), max(1, wanted))
        for k, slice_ids in enumerate(split_contiguous(ids, parts)):
            units.append(
                _Unit(
                    order=order,
                    file=file,
                    nodeids=slice_ids,
                    part=(k, parts),
                    expected=sum(expected[n] for n in slice_ids),
                )
            )
    bins: list[list[_Unit]] = [[] for _ in range(min(target_count, len(units)))]
    heap = [(0.0, index) for index in range(len(bins))]
    for unit in sorted(units, key=lambda u: (-u.expected, u.order, u.part)):
        load, index = heapq.heappop(heap)
        bins[index].append(unit)
        heapq.heappush(heap, (load + unit.expected, index))
    shards: list[Shard] = []
    for members in (b for b in bins if b):
        members.sort(key=lambda u: (u.order, u.part))
        shards.append(
            Shard(
                shard_id=0,
                nodeids=tuple(n for u in members for n in u.nodeids),
                expected_duration=sum(u.expected for u in members),
                selection=tuple(
                    _selection(u, plan.explicit_ids or u.file in explicit_files or u.named, known)
                    for u in members
                ),
            )
        )
    return shards


def around_outliers(
    ids: Sequence[NodeId], expected: Mapping[NodeId, float], above: float
) -> list[tuple[NodeId, ...]]:
    """A file's tests in contiguous runs, each test expected to last `above` or longer alone
    in a run of its own (one run: no such test)."""
    runs: list[tuple[NodeId, ...]] = []
    current: list[NodeId] = []
    for nodeid in ids:
        if expected[nodeid] < above:
            current.append(nodeid)
            continue
        if current:
            runs.append(tuple(current))
            current = []
        runs.append((nodeid,))
    if current:
        runs.append(tuple(current))
    return runs


def _selection(
    unit: _Unit, explicit_ids: bool, known: Mapping[str, Sequence[NodeId]]
) -> SelectionEntry:
    if explicit_ids:
        return named_tests(unit.file, unit.nodeids, known.get(unit.file))
    return FileSlice(unit.file, *unit.part)


def explicit_selection(
    nodeids: Sequence[NodeId], known: Mapping[str, Sequence[NodeId]] | None = None
) -> Selection:
    """A selection naming each test (reruns, constrained tests, ids the user gave), with each
    one's position among `known` (each file's ids in the run's collection order)."""
    known = known or {}
    return tuple(named_tests(f, ids, known.get(f)) for f, ids in ids_by_file(nodeids).items())


def named_tests(file: str, nodeids: Sequence[NodeId], known: Sequence[NodeId] | None) -> FileTests:
    """Tests of `file` by name, and by position among `known` (the file's ids in collection
    order) where every one of them is there: a worker whose collection gave a test another id
    (ids that embed the time) finds it at its position."""
    if not known:
        return FileTests(file, tuple(nodeids))
    index = {nodeid: position for position, nodeid in enumerate(known)}
    if any(n not in index for n in nodeids):
        return FileTests(file, tuple(nodeids))
    return FileTests(file, tuple(nodeids), tuple(index[n] for n in nodeids), len(known))


def ids_by_file(nodeids: Sequence[NodeId]) -> dict[str, list[NodeId]]:
    """Each file's ids among `nodeids`, in collection order."""
    files: dict[str, list[NodeId]] = {}
    for nodeid in nodeids:
        files.setdefault(file_of(nodeid), []).append(nodeid)
    return files


# How far down the queue the dispatcher looks when it mixes waiting and busy shards: a few, so
# the longest-first order still holds.
MIX_WINDOW = 4
# A shard whose tests keep a core busy less than this share of their time mostly waits.
WAITING_SHARE = 0.5


def pick_next(shares: Sequence[float | None], running_share: float, cores: int) -> int:
    """Which of the next queued shards to start (an index into `shares`, their CPU seconds per
    wall second where known). The first, longest one, unless the running shards already keep
    every core busy and the first is busy too: then the one that waits most, if it mostly waits
    (below WAITING_SHARE), so its sleeps and sockets overlap the busy ones instead of contending
    with them for a core. Among busy shards the order stays longest first."""
    if not shares or running_share < cores:
        return 0
    head = shares[0]
    if head is not None and head < WAITING_SHARE:
        return 0
    known = [(share, index) for index, share in enumerate(shares) if share is not None]
    if not known:
        return 0
    share, index = min(known)
    return index if share < WAITING_SHARE else 0


def steal_pieces(
    free: int, tails: Sequence[tuple[float, int]], min_piece_seconds: float
) -> list[int]:
    """How many new workers each running shard's waiting tail should go to, given `free` slots
    and each tail's (expected seconds, tests). A tail split into p pieces keeps one part in its
    own worker and hands p to new ones, so every part must hold a test and be worth a fork
    (`min_piece_seconds`). Slots go round-robin, largest tail first: with few free slots this is
    the classic halving of the biggest tails, with many (a cold run of waiting tests just widened)
    every tail is cut at once instead of over rounds of halving."""
    limits = [piece_limit(seconds, tests, min_piece_seconds) for seconds, tests in tails]
    pieces = [0] * len(tails)
    while free > 0:
        grown = False
        for index, limit in enumerate(limits):
            if free > 0 and pieces[index] < limit:
                pieces[index] += 1
                free -= 1
                grown = True
        if not grown:
            break
    return pieces


def piece_limit(seconds: float, tests: int, min_piece_seconds: float) -> int:
    """The most new workers a tail of `tests` waiting tests, `seconds` long, can go to: every
    part (the one that stays included) a test and at least `min_piece_seconds`."""
    return max(0, min(tests - 1, int(seconds / min_piece_seconds) - 1))


def split_contiguous(nodeids: Sequence[NodeId], parts: int) -> list[tuple[NodeId, ...]]:
    """`nodeids` in `parts` contiguous runs of near-equal length (a module's tests stay
    together as far as they can, so module fixtures are set up as few times as possible). The
    k-th run is exactly the slice a worker computes for `FileSlice(file, k, parts)`."""
    parts = max(1, min(parts, len(nodeids)))
    bounds = [slice_bounds(k, parts, len(nodeids)) for k in range(parts)]
    return [tuple(nodeids[start:end]) for start, end in bounds]


def kept(nodeids: Sequence[NodeId], selected: Sequence[str]) -> tuple[NodeId, ...]:
    """The node ids that are, or lie under (a file, a class), one of `selected`, in order."""
    wanted = set(selected)
    return tuple(
        nodeid
        for nodeid in nodeids
        if nodeid in wanted
        or file_of(nodeid) in wanted
        or any(nodeid.startswith(f"{prefix}::") for prefix in wanted)
    )
