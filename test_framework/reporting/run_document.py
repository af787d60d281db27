"""The run document: one versioned record of a run that every report renders from.

The JSON report is this document (`docs/run-document.schema.json` is its schema); JUnit, the
HTML report, the trace, GitHub's annotations and summary, and `merge-reports` all read it, so
every format says the same thing about a run, and shard reports written on other machines can
be merged and rendered again. The Python API returns it too (`api.run_document`).

What it adds to the summary: when each test ran (wall-clock `start`/`end`) and on which worker
slot (`slot`: the lane a shard's process occupied, the lowest one free when it started, so a
timeline draws one lane per slot), each shard's life, the capacity changes, and the run's
metrics (`RunMetrics`). Version 2; version 1 (the JSON report before it) had no `start`,
`end`, `slot`, `sections`, `shards`, `metrics` or `shard_of`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..events import (
    CapacityChanged,
    Event,
    RunStarted,
    ShardCrashed,
    ShardFinished,
    ShardStarted,
    TestConfirming,
    TestRetrying,
)
from ..models import Outcome, RunSummary, TestResult
from .timings import TimingsBuilder

SCHEMA_VERSION = 2
# Outcomes of tests that did not run in this run (their time is not this run's work).
NOT_RUN_HERE = frozenset({Outcome.CACHED.value, Outcome.NOT_RUN.value})


@dataclass(frozen=True, slots=True)
class Attempt:
    """A failed attempt before the test's final word (a retry, or a confirmation)."""

    attempt: int
    outcome: str
    duration: float
    longrepr: str


@dataclass(frozen=True, slots=True)
class TestRecord:
    __test__ = False
    nodeid: str
    outcome: str
    duration: float
    attempts: int = 1
    shard: int | None = None
    slot: int | None = None
    start: float | None = None  # wall clock (seconds since the epoch)
    end: float | None = None
    message: str = ""
    longrepr: str = ""
    sections: tuple[tuple[str, str], ...] = ()  # captured output: (title, text)
    failed_attempts: tuple[Attempt, ...] = ()


@dataclass(frozen=True, slots=True)
class ShardRecord:
    """One worker process's life: a lane's bar on the timeline."""

    shard: int
    slot: int
    start: float
    end: float | None
    tests: int
    crashed: bool = False
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class CapacityRecord:
    t: float
    old: int
    new: int
    reason: str


@dataclass(frozen=True, slots=True)
class RunMetrics:
    """How well the run used the machine. `serial_estimate`: the tests' own time this run (all
    attempts, cached tests excluded): roughly what one process would have taken."""

    serial_estimate: float
    wall: float
    speedup: float | None  # serial_estimate / wall
    peak_slots: int  # the most worker slots the run had at once
    parallel_efficiency: float | None  # speedup / peak_slots
    worker_utilisation: float | None  # tests' time / worker processes' lifetime
    tests: int
    tests_run: int
    cached: int
    not_run: int
    retried: int
    flaky: int
    cache_hit_rate: float | None  # cached / (cached + run)
    engine_start: float | None
    collection: float | None
    first_test: float | None
    peak_worker_rss_mb: float | None


@dataclass(frozen=True, slots=True)
class RunDocument:
    run_id: str
    created: float
    duration: float
    exit_code: int
    interrupted: bool
    project_root: str
    profile: str
    categories: tuple[str, ...]
    summary: Mapping[str, int]
    tests: tuple[TestRecord, ...]
    metrics: RunMetrics
    timings: Mapping[str, float | None] = field(default_factory=dict)
    shards: tuple[ShardRecord, ...] = ()
    capacity: tuple[CapacityRecord, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    argv: tuple[str, ...] = ()
    started: float | None = None  # wall clock: the run's origin (the process's start)
    shard_of: tuple[int, int] | None = None  # (K, N) for a `--shard K/N` run
    # For a shard: the whole selection's size and digest (ci_shards.selection_digest).
    shard_selection: tuple[int, str] | None = None
    schema: int = SCHEMA_VERSION

    def origin(self) -> float:
        """The run's time zero for a timeline: its start, else its earliest worker or test."""
        starts = [s.start for s in self.shards] + [t.start for t in self.tests if t.start]
        known = [self.started] if self.started is not None else []
        return min(known + starts, default=self.created - self.duration)

    def capacity_steps(self) -> list[tuple[float, int]]:
        """The worker slots allowed over time, as (wall-clock time, slots) steps from the
        origin; the run's peak throughout when the monitor never changed it."""
        origin = self.origin()
        if not self.capacity:
            return [(origin, self.metrics.peak_slots)] if self.metrics.peak_slots else []
        first = self.capacity[0]
        return [(min(origin, first.t), first.old), *((c.t, c.new) for c in self.capacity)]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["summary"] = dict(self.summary)
        data["timings"] = dict(self.timings)
        data["shard_of"] = list(self.shard_of) if self.shard_of else None
        data["shard_selection"] = list(self.shard_selection) if self.shard_selection else None
        # The schema's first key, then the rest in declaration order.
        return {"schema": self.schema, **{k: v for k, v in data.items() if k != "schema"}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunDocument:
        """The document a JSON report holds (raises KeyError/TypeError/ValueError on another
        shape; callers turn that into a usage error naming the file)."""
        if data.get("schema") != SCHEMA_VERSION:
            raise ValueError(
                f"run document schema {data.get('schema')!r}; this engine reads {SCHEMA_VERSION}"
            )
        tests = tuple(
            TestRecord(
                **{
                    **_known(TestRecord, t),
                    "sections": tuple((str(a), str(b)) for a, b in t.get("sections", ())),
                    "failed_attempts": tuple(
                        Attempt(**_known(Attempt, a)) for a in t.get("failed_attempts", ())
                    ),
                }
            )
            for t in data["tests"]
        )
        shard_of = data.get("shard_of")
        selection = data.get("shard_selection")
        return cls(
            **{
                **_known(cls, data),
                "categories": tuple(data.get("categories", ())),
                "summary": {str(k): int(v) for k, v in data["summary"].items()},
                "tests": tests,
                "metrics": RunMetrics(**_known(RunMetrics, data["metrics"])),
                "shards": tuple(ShardRecord(**_known(ShardRecord, s)) for s in data["shards"]),
                "capacity": tuple(
                    CapacityRecord(**_known(CapacityRecord, c)) for c in data["capacity"]
                ),
                "warnings": tuple(data.get("warnings", ())),
                "notes": tuple(data.get("notes", ())),
                "argv": tuple(data.get("argv", ())),
                "shard_of": (int(shard_of[0]), int(shard_of[1])) if shard_of else None,
                "shard_selection": (int(selection[0]), str(selection[1])) if selection else None,
            }
        )


def _known(kind: type, data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(kind)}
    return {k: v for k, v in data.items() if k in names}


class RunDocumentBuilder:
    """Follows a run's events; `document(summary)` is the run's document once it finished.
    One per run, subscribed before everything that reads it (subscribers_for): the console's
    `-v` lines, the report files and the API's document all read the same one, built once."""

    def __init__(self) -> None:
        self._built: tuple[RunSummary, RunDocument] | None = None
        self.timings = TimingsBuilder()
        self.context: RunStarted | None = None
        self.capacity: list[CapacityRecord] = []
        self.peak_capacity = 0
        self.failed_attempts: dict[str, list[Attempt]] = {}
        self.shards: dict[int, ShardRecord] = {}  # shard id -> its latest process
        self.slots_busy: set[int] = set()

    def __call__(self, event: Event) -> None:
        self.timings(event)
        if isinstance(event, RunStarted):
            self.context = event
            self.peak_capacity = max(self.peak_capacity, event.capacity)
        elif isinstance(event, CapacityChanged):
            self.capacity.append(CapacityRecord(event.at, event.old, event.new, event.reason))
            self.peak_capacity = max(self.peak_capacity, event.new)
        elif isinstance(event, ShardStarted):
            slot = next(i for i in range(len(self.slots_busy) + 1) if i not in self.slots_busy)
            self.slots_busy.add(slot)
            self.shards[event.shard_id] = ShardRecord(
                event.shard_id, slot, event.at, None, len(event.nodeids), attempt=event.attempt
            )
        elif isinstance(event, (ShardFinished, ShardCrashed)):
            shard = self.shards.get(event.shard_id)
            if shard is not None and shard.end is None:
                self.slots_busy.discard(shard.slot)
                self.shards[event.shard_id] = replace(
                    shard, end=event.at, crashed=isinstance(event, ShardCrashed)
                )
        elif isinstance(event, (TestRetrying, TestConfirming)):
            result = event.result
            self.failed_attempts.setdefault(result.nodeid, []).append(
                Attempt(result.attempt, result.outcome.value, result.duration, result.longrepr)
            )

    def document(self, summary: RunSummary) -> RunDocument:
        """The run's document; call it once the builder saw `RunFinished` (its phases). Built
        once per summary, however many read it."""
        if self._built is not None and self._built[0] is summary:
            return self._built[1]
        built = self._build(summary)
        self._built = (summary, built)
        return built

    def _build(self, summary: RunSummary) -> RunDocument:
        context = self.context.context if self.context is not None else None
        split = self.timings.split()
        tests = tuple(self._record(r) for r in summary.results)
        shards = tuple(sorted(self.shards.values(), key=lambda s: (s.start, s.shard)))
        phases = self.timings.phases
        return RunDocument(
            run_id=summary.run_id,
            created=time.time(),
            duration=summary.duration,
            exit_code=summary.exit_code,
            interrupted=summary.interrupted,
            project_root=context.project_root if context else "",
            profile=context.profile if context else "",
            categories=tuple(context.categories) if context else (),
            summary=self._counts(summary),
            tests=tests,
            metrics=metrics(
                tests,
                shards,
                split,
                summary.duration,
                self.peak_capacity,
                max((r.max_rss for r in summary.results if r.max_rss), default=None),
            ),
            timings=split,
            shards=shards,
            capacity=tuple(self.capacity),
            warnings=tuple(summary.errors),
            notes=tuple(summary.notes),
            argv=tuple(context.argv) if context else (),
            started=phases.get("process", self.context.at if self.context else None),
            shard_of=context.shard if context else None,
            shard_selection=context.shard_selection if context else None,
        )

    def _counts(self, summary: RunSummary) -> dict[str, int]:
        """pytest's closing-line counts, `deselected` included (as the console prints them)."""
        counts = dict(summary.counts)
        deselected = self.context.plan.terminal.deselected if self.context is not None else 0
        if deselected:
            counts["deselected"] = deselected
        return counts

    def _record(self, result: TestResult) -> TestRecord:
        shard = self.shards.get(result.shard_id) if result.shard_id is not None else None
        start = result.started_at
        return TestRecord(
            nodeid=result.nodeid,
            outcome=result.outcome.value,
            duration=round(result.duration, 6),
            attempts=result.attempt,
            shard=result.shard_id,
            slot=shard.slot if shard is not None else None,
            start=start,
            end=None if start is None else start + result.duration,
            message=result.message,
            longrepr=result.longrepr,
            sections=result.sections,
            failed_attempts=tuple(self.failed_attempts.get(result.nodeid, ())),
        )


def metrics(
    tests: Sequence[TestRecord],
    shards: Sequence[ShardRecord],
    split: Mapping[str, float | None],
    duration: float,
    peak_capacity: int,
    peak_rss: int | None = None,
) -> RunMetrics:
    ran = [t for t in tests if t.outcome not in NOT_RUN_HERE]
    serial = sum(t.duration for t in ran) + sum(a.duration for t in ran for a in t.failed_attempts)
    wall = split.get("wall") or duration
    lifetimes = sum(s.end - s.start for s in shards if s.end is not None)
    peak_slots = max(peak_capacity, _most_at_once(shards))
    speedup = serial / wall if wall > 0 else None
    cached = sum(t.outcome == Outcome.CACHED.value for t in tests)
    return RunMetrics(
        serial_estimate=round(serial, 4),
        wall=round(wall, 4),
        speedup=_round(speedup),
        peak_slots=peak_slots,
        parallel_efficiency=_round(speedup / peak_slots if speedup and peak_slots else None),
        worker_utilisation=_round(serial / lifetimes if lifetimes > 0 else None),
        tests=len(tests),
        tests_run=len(ran),
        cached=cached,
        not_run=sum(t.outcome == Outcome.NOT_RUN.value for t in tests),
        retried=sum(t.attempts > 1 for t in tests),
        flaky=sum(t.outcome == Outcome.FLAKY.value for t in tests),
        cache_hit_rate=_round(cached / (cached + len(ran)) if cached + len(ran) else None),
        engine_start=split.get("engine_start"),
        collection=split.get("collection"),
        first_test=split.get("first_test"),
        peak_worker_rss_mb=None if peak_rss is None else round(peak_rss / 2**20, 1),
    )


def _most_at_once(shards: Sequence[ShardRecord]) -> int:
    return max((s.slot + 1 for s in shards), default=0)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def format_metrics(m: RunMetrics) -> str:
    """One line for `-v`: how well the run used the machine."""
    parts = [f"serial {m.serial_estimate:.2f}s", f"wall {m.wall:.2f}s"]
    if m.speedup is not None:
        efficiency = (
            f" (efficiency {m.parallel_efficiency:.0%})"
            if m.parallel_efficiency is not None
            else ""
        )
        parts.append(f"speed-up {m.speedup:.2f}x on {m.peak_slots} slots{efficiency}")
    if m.worker_utilisation is not None:
        parts.append(f"worker utilisation {m.worker_utilisation:.0%}")
    parts.append(f"{m.tests_run} run, {m.cached} cached, {m.retried} retried, {m.flaky} flaky")
    if m.cache_hit_rate is not None and m.cached:
        parts.append(f"cache hit rate {m.cache_hit_rate:.0%}")
    if m.peak_worker_rss_mb is not None:
        parts.append(f"peak worker {m.peak_worker_rss_mb:.0f} MB")
    return "metrics: " + ", ".join(parts)
