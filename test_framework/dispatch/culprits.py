"""Who a test needs: of the tests before it, the few that must run first for it to pass.

A test that failed outside pytest's context and passed in it needed something pytest's run gave
it: the whole collection, or earlier tests of its file. Delta debugging (Zeller's ddmin) over
those earlier tests finds a small set that is enough, each probe a run of the set plus the test
in a worker that collected the whole selection. Probes cost workers, so the search stops at its
time budget and says so. `probe` answers whether the test passes after the given tests; the
search itself is pure and tested with a scripted probe.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from ..events import AttemptFinished, ExecutionEvent
from ..execution.executor import ShardExecutor
from ..execution.runner import WorkerControl, WorkerSetup
from ..models import FAILING_OUTCOMES, NodeId, Outcome, Shard, file_of

# Seconds one run may spend naming what its context-dependent tests need.
NEEDS_BUDGET_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Needs:
    tests: tuple[NodeId, ...]  # enough earlier tests (none: the whole collection was enough)
    probes: int
    complete: bool  # False: the budget ran out; `tests` is enough but maybe not the fewest


async def minimal_needs(
    before: Sequence[NodeId],
    probe: Callable[[tuple[NodeId, ...]], Awaitable[bool]],
    out_of_time: Callable[[], bool],
    hint: Sequence[NodeId] = (),
) -> Needs:
    """A small subset of `before` (known to be enough) after which the test passes. `hint`, what
    a sibling test needed, is tried first: tests of one file often need the same thing."""
    probes = 0

    async def passes(tests: tuple[NodeId, ...]) -> bool:
        nonlocal probes
        probes += 1
        return await probe(tests)

    if out_of_time():
        return Needs(tuple(before), probes, False)
    if await passes(()):
        return Needs((), probes, True)
    current = tuple(before)
    if hint and set(hint) <= set(before) and await passes(tuple(hint)):
        current = tuple(hint)
    parts = 2
    while len(current) >= 2:
        if out_of_time():
            return Needs(current, probes, False)
        chunks = _chunks(current, parts)
        smaller = None
        for chunk in chunks:
            if await passes(chunk):
                smaller, parts = chunk, 2
                break
        else:
            for index in range(len(chunks)):
                rest = tuple(n for j, c in enumerate(chunks) if j != index for n in c)
                if parts > 2 and await passes(rest):
                    smaller, parts = rest, max(parts - 1, 2)
                    break
        if smaller is not None:
            current = smaller
        elif parts >= len(current):
            break
        else:
            parts = min(len(current), parts * 2)
    return Needs(current, probes, True)


def _chunks(tests: tuple[NodeId, ...], parts: int) -> list[tuple[NodeId, ...]]:
    size = len(tests)
    return [tests[k * size // parts : (k + 1) * size // parts] for k in range(parts)]


def describe(nodeid: NodeId, needs: Needs) -> str:
    if not needs.tests:
        return (
            f"{nodeid} needs the whole collection before it (what other test files import), "
            f"no earlier test (found in {needs.probes} runs)"
        )
    names = ", ".join(needs.tests)
    how = "" if needs.complete else "; the search ran out of time, so maybe fewer"
    return f"{nodeid} needs, before it: {names} (found in {needs.probes} runs{how})"


async def needs_notes(
    nodeids: Sequence[NodeId],
    files: Mapping[str, Sequence[NodeId]],
    executor: ShardExecutor,
    setup: WorkerSetup,
    make_shard: Callable[[tuple[NodeId, ...]], Shard],
    budget: float,
    clock: Callable[[], float],
) -> list[str]:
    """What each of `nodeids` needs, as summary notes, probing through `executor` until the
    budget is spent."""
    deadline = clock() + budget
    notes = []
    found: dict[str, tuple[NodeId, ...]] = {}  # file -> what a test of it needed
    for nodeid in nodeids:
        if clock() >= deadline:
            break
        ids = list(files.get(file_of(nodeid), ()))
        before = tuple(ids[: ids.index(nodeid)]) if nodeid in ids else ()

        async def probe(tests: tuple[NodeId, ...], nodeid: NodeId = nodeid) -> bool:
            watcher = _Outcomes()
            await executor.run(make_shard((*tests, nodeid)), setup, watcher)
            outcome = watcher.outcomes.get(nodeid)
            return outcome is not None and outcome not in FAILING_OUTCOMES

        hint = found.get(file_of(nodeid), ())
        needs = await minimal_needs(before, probe, lambda: clock() >= deadline, hint)
        found[file_of(nodeid)] = needs.tests
        notes.append(describe(nodeid, needs))
    return notes


class _Outcomes:
    """A listener for probes: keeps each test's outcome, publishes nothing."""

    def __init__(self) -> None:
        self.outcomes: dict[NodeId, Outcome] = {}

    def emit(self, event: ExecutionEvent) -> None:
        if isinstance(event, AttemptFinished):
            self.outcomes[event.result.nodeid] = event.result.outcome

    def attached(self, shard_id: int, control: WorkerControl) -> None:
        pass

    def detached(self, shard_id: int) -> None:
        pass
