"""Whether a test ran in pytest's context: the context a failure must be seen in before it is
reported.

pytest collects the whole selection before the first test (so every module any test file
imports is loaded) and runs a file's tests in order in one process. A worker differs when it
collected only its own files (an early zygote's child, a spawned worker), when the test's file
was cut and the test's slice is not the first, or when the test ran apart from the tests before
it in its file (a retry, a rerun of a crashed worker's tests, a stolen tail). Ordering across
files is not judged here: `audit` checks that direction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from ..models import NodeId, Shard, TestResult, file_of
from ..worker.selection import FileHead, FileSlice, FileTests, Selection, SelectionEntry

NARROWED = "in a narrowed collection (its worker collected only its own files)"
APART = "apart from the tests before it in its file (a retry, a rerun or a stolen tail)"


def context_gap(
    shard: Shard, full_collection: bool, nodeid: NodeId, files: Mapping[str, Sequence[NodeId]]
) -> str | None:
    """How `nodeid`'s run in `shard` differed from pytest's; None when it did not."""
    if not full_collection:
        return NARROWED
    file = file_of(nodeid)
    entry = next((e for e in shard.selection if e.file == file), None)
    if entry is None or isinstance(entry, FileHead):
        return None
    if isinstance(entry, FileSlice):
        if entry.part == 0:
            return None
        return (
            f"in a cut file (slice {entry.part + 1} of {entry.parts}, without the tests before it)"
        )
    ids = tuple(files.get(file, ()))
    return None if ids[: len(entry.nodeids)] == entry.nodeids else APART


def file_heads(
    nodeids: Sequence[NodeId], files: Mapping[str, Sequence[NodeId]]
) -> dict[str, int | None]:
    """For each file of `nodeids`, how many of its first tests reach the last of them (None
    when a test is not in the file's known ids: its ids changed since the collection)."""
    heads: dict[str, int | None] = {}
    for nodeid in nodeids:
        file = file_of(nodeid)
        ids = list(files.get(file, ()))
        count = ids.index(nodeid) + 1 if nodeid in ids else None
        known = heads.get(file, 0)
        heads[file] = None if count is None or known is None else max(known, count)
    return heads


def confirmation_selection(
    nodeids: Sequence[NodeId],
    files: Mapping[str, Sequence[NodeId]],
) -> tuple[Selection, tuple[NodeId, ...]]:
    """What confirms `nodeids` in pytest's context: each file from its first test up to the last
    of them, files in collection order, naming the ids the head is reported under (a worker
    that collects other ids, as they embed the time, renames its items); a test whose id the
    run does not know can only run by name. Also the tests that selection runs."""
    heads = file_heads(nodeids, files)
    order = {file: index for index, file in enumerate(files)}
    selection: list[SelectionEntry] = []
    tests: list[NodeId] = []
    for file in sorted(heads, key=lambda f: order.get(f, len(order))):
        count = heads[file]
        if count is None:
            alone = tuple(n for n in nodeids if file_of(n) == file)
            selection.append(FileTests(file, alone))
            tests.extend(alone)
        else:
            head = tuple(files[file][:count])
            selection.append(FileHead(file, count, head))
            tests.extend(head)
    return tuple(selection), tuple(tests)


class Rechecks:
    """Tests to run again when their shard ends: failures to confirm in pytest's context (one
    fully collecting worker for all of a shard's, each file's head up to its last failure), and
    tests that passed there, to run alone as they first ran (did the context make them fail,
    or were they flaky?)."""

    def __init__(self) -> None:
        self._confirm: dict[int | None, list[NodeId]] = {}
        self._alone: dict[int | None, list[NodeId]] = {}

    def confirm(self, result: TestResult) -> None:
        self._confirm.setdefault(result.shard_id, []).append(result.nodeid)

    def reproduce(self, result: TestResult) -> None:
        self._alone.setdefault(result.shard_id, []).append(result.nodeid)

    def forget(self, shard_id: int) -> None:
        self._confirm.pop(shard_id, None)
        self._alone.pop(shard_id, None)

    def shards(
        self,
        ended: Shard,
        files: Mapping[str, Sequence[NodeId]],
        new_shard: NewShard,
    ) -> tuple[list[Shard], list[Shard]]:
        """(shards that each run one test alone, the confirmation shard if any)."""
        attempt = ended.attempt + 1
        alone = [new_shard([n], attempt=attempt) for n in self._alone.pop(ended.shard_id, [])]
        failures = self._confirm.pop(ended.shard_id, [])
        if not failures:
            return alone, []
        selection, tests = confirmation_selection(failures, files)
        confirming = new_shard(
            tests, selection, parent=ended, attempt=attempt, full_collection=True
        )
        return alone, [confirming]


class NewShard(Protocol):
    def __call__(
        self,
        nodeids: Sequence[NodeId],
        selection: Selection | None = None,
        *,
        parent: Shard | None = None,
        attempt: int = 1,
        full_collection: bool = False,
    ) -> Shard: ...
