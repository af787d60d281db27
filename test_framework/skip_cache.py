"""The skip cache's decision (docs/skip-cache.md): which test files can report their recorded
outcomes instead of running, and why each other file runs. Pure: the caller reads the store,
the file index and the import graph, and hands in plain data.

Sound before precise: a file is cached only when its environment, every file it depended on
(its static imports, its conftest chain, the configuration, and what it imported and read at
run time), and its list of tests are as recorded, and when the record is younger than the TTL.
Of a cached file, the tests whose recorded outcome may be reused (passed, skipped, xfailed) are
reported; the others (failed, errored, flaky) run again, alone, as `--last-failed` would run
them; the file's record stays as it was until the whole file runs again. A changed project file
that no test file is known to depend on (an "unplaced" change: a script a test runs in a
subprocess, say) makes nothing cached: everything runs.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from .models import FileRecord, NodeId, Outcome

# Outcomes a later run may report again without running the test.
REUSABLE = frozenset({Outcome.PASSED, Outcome.SKIPPED, Outcome.XFAILED})


@dataclass(frozen=True, slots=True)
class CacheDecision:
    cached: dict[str, FileRecord] = field(default_factory=dict)  # test file -> its record
    runs: dict[str, str] = field(default_factory=dict)  # test file -> why it runs
    unplaced: tuple[str, ...] = ()  # changed files no test file depends on

    def cached_outcomes(self) -> dict[NodeId, tuple[Outcome, float]]:
        """Each test reported from its record: its recorded outcome and when it was recorded."""
        return {
            nodeid: (outcome, record.recorded_at)
            for record in self.cached.values()
            for nodeid, outcome in record.outcomes.items()
            if outcome in REUSABLE
        }

    def failed_in_context(self) -> set[NodeId]:
        """The reruns whose record says they failed or errored in pytest's context (a record
        holds a whole file's run, its failures confirmed there) with nothing they depend on
        changed since: failing again alone, they need no new confirmation in context."""
        return self._recorded({Outcome.FAILED, Outcome.ERROR})

    def rerun(self) -> set[NodeId]:
        """The tests of cached files that run all the same: their record says they failed."""
        return self._recorded(set(Outcome) - REUSABLE)

    def _recorded(self, outcomes: set[Outcome]) -> set[NodeId]:
        return {
            nodeid
            for record in self.cached.values()
            for nodeid, outcome in record.outcomes.items()
            if outcome in outcomes
        }


def decide(
    collected: Mapping[str, Sequence[NodeId]],
    records: Mapping[str, FileRecord],
    *,
    environment: str,
    digest: Callable[[str], str],
    unplaced: Sequence[str],
    now: float,
    ttl_seconds: float,
    always_run: Iterable[str] = (),
) -> CacheDecision:
    """`collected`: this run's tests by file; `digest`: a project file's content digest now;
    `always_run`: files that run whatever their record says (they need pytest's context)."""
    decision = CacheDecision(unplaced=tuple(unplaced))
    if unplaced:
        shown = ", ".join(unplaced[:3]) + (" ..." if len(unplaced) > 3 else "")
        everything = f"changed files no test is known to depend on: {shown}"
        decision.runs.update(dict.fromkeys(collected, everything))
        return decision
    forced = set(always_run)
    for test_file, nodeids in collected.items():
        record = records.get(test_file)
        why = _why_it_runs(
            test_file, nodeids, record, forced, environment, digest, now, ttl_seconds
        )
        if why is None and record is not None:
            decision.cached[test_file] = record
        else:
            decision.runs[test_file] = why or "no record"
    return decision


def _why_it_runs(
    test_file: str,
    nodeids: Sequence[NodeId],
    record: FileRecord | None,
    forced: set[str],
    environment: str,
    digest: Callable[[str], str],
    now: float,
    ttl_seconds: float,
) -> str | None:
    if record is None:
        return "never recorded"
    if test_file in forced:
        return "needs pytest's context"
    if record.environment != environment:
        return "the environment changed (interpreter, packages, options or variables)"
    if now - record.recorded_at > ttl_seconds:
        return f"recorded {(now - record.recorded_at) / 3600:.1f} h ago, past the TTL"
    if set(nodeids) != set(record.outcomes):
        return "its tests are not the recorded ones"
    for path, recorded in record.dependencies.items():
        if digest(path) != recorded:
            return f"{path} changed"
    return None


def confirm(decision: CacheDecision, collected: Mapping[str, Sequence[NodeId]]) -> None:
    """Narrow a decision made before collection (the pytest plugin's, from the records' own
    ids) to this run's collection: a file not collected is no concern of this run; a file
    whose tests are not the recorded ones runs."""
    for test_file, record in list(decision.cached.items()):
        nodeids = collected.get(test_file)
        if nodeids is None:
            del decision.cached[test_file]
        elif set(nodeids) != set(record.outcomes):
            del decision.cached[test_file]
            decision.runs[test_file] = "its tests are not the recorded ones"


def sample(
    decision: CacheDecision,
    share: float,
    random_source: Callable[[], float],
    durations: Mapping[NodeId, float] | None = None,
) -> tuple[NodeId, ...]:
    """The trip-wire: a share (at least one unless 0) of the tests the cache would report, to
    run anyway. Drawn as clusters: the cached files in a random order, and from each, its
    tests in a random order, until the count is reached. A test costs little once its file is
    collected and the file costs much (its imports), so the sample lands in as few files as it
    can; which files, changes from run to run. With `durations` (the stored ones), a test's
    chance goes as the inverse of its duration (weighted sampling: key u ** duration), a
    file's as the inverse of its tests' mean: the check stays cheap (a property-based test
    can take seconds), and no test is out of its reach."""
    files = list(decision.cached.items())
    total = len(decision.cached_outcomes())
    if not total or share <= 0:
        return ()
    count = max(1, math.ceil(share * total))
    cost = _costs(decision, durations or {})
    file_keys = {
        name: _weighted_key(random_source(), statistics.fmean(cost[n] for n in record.outcomes))
        for name, record in files
    }
    chosen: list[NodeId] = []
    for _, record in sorted(files, key=lambda item: -file_keys[item[0]]):
        keys = {
            n: _weighted_key(random_source(), cost[n])
            for n, outcome in record.outcomes.items()
            if outcome in REUSABLE
        }
        chosen.extend(sorted(keys, key=lambda n: -keys[n])[: count - len(chosen)])
        if len(chosen) == count:
            break
    return tuple(chosen)


_SHORTEST = 1e-4  # seconds: no test counts as free


def _costs(decision: CacheDecision, durations: Mapping[NodeId, float]) -> dict[NodeId, float]:
    """Each cached test's expected cost: its stored duration, else the median of the known
    ones (1 when none is known: every test alike)."""
    nodeids = [n for record in decision.cached.values() for n in record.outcomes]
    known = [durations[n] for n in nodeids if n in durations]
    typical = statistics.median(known) if known else 1.0
    return {n: max(_SHORTEST, durations.get(n, typical)) for n in nodeids}


def _weighted_key(uniform: float, cost: float) -> float:
    """Efraimidis-Spirakis: with weight 1/cost, the key u ** (1/weight); highest keys first."""
    return float(uniform**cost)


def reported(decision: CacheDecision, sampled: Iterable[NodeId]) -> dict[NodeId, str]:
    """The tests reported from their records (the sample left out), with the message that
    says so: "cached: <outcome> at <when>"."""
    skip = set(sampled)
    reasons = {}
    said: dict[tuple[Outcome, float], str] = {}  # a file's tests share their record's time
    for nodeid, key in decision.cached_outcomes().items():
        if nodeid in skip:
            continue
        reason = said.get(key)
        if reason is None:
            outcome, when = key
            at = datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M")
            reason = said[key] = f"cached: {outcome} at {at}"
        reasons[nodeid] = reason
    return reasons


def unplaced_changes(
    previous: Mapping[str, str], current: Mapping[str, str], placed: Iterable[str]
) -> list[str]:
    """Project files (sources and configuration) added, removed or changed since the last
    indexed run that no test file's record names."""
    known = set(placed)
    changed = [p for p in current if previous.get(p) != current[p]]
    removed = [p for p in previous if p not in current]
    return sorted(p for p in (*changed, *removed) if p not in known)


def affected(
    test_files: Iterable[str],
    dependencies: Callable[[str], set[str] | None],
    changed: Iterable[str],
) -> tuple[list[str], list[str]]:
    """`--changed`: the test files a set of changed files can affect, and the changed files no
    test file is known to depend on. `dependencies(file)` is None for a file never recorded:
    nothing is known of it, so it is affected."""
    changed_set = set(changed)
    files = list(test_files)
    placed: set[str] = set()
    selected = []
    for test_file in files:
        known = dependencies(test_file)
        if known is None:
            selected.append(test_file)
            continue
        placed.update(known)
        if test_file in changed_set or known & changed_set:
            selected.append(test_file)
    unplaced = sorted(changed_set - placed - set(files))
    return selected, unplaced
