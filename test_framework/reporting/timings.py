"""Where a run's time went (issue 19's split), from the events' timestamps alone:

  engine_start     the process's start (the client's, for a run a resident process served)
                   until the orchestrator began: interpreter, the engine's imports, config
  store            opening the results store and reading what the planner needs from it
  warm_start       the warm process's start until pytest was configured in it (interpreter,
                   pytest, plugins, conftests); 0 when a resident zygote was reused. Started
                   before the engine imported itself (prestart.py), it overlaps engine_start
  collection       its collection (or, without a warm process, discovery's)
  first_test       from the process's start until the first test started
  tests            from the first test's start until the last one ended
  tail             the end of `tests` during which fewer workers ran than at the run's peak
                   (the last worker alone with the longest tests)
  after_last_test  from the last test's end until the run finished (summaries, the store's
                   last writes, reports)
  wall             the process's start until the run finished
  idle_slots       slot-seconds without a worker while tests ran: the integral, from the
                   first test's start to the last one's end, of the run's peak number of
                   workers less those running (a worker waiting alone on a long test while
                   the others have nothing left shows here, wherever in the run it happens)

Each is seconds, or None when the run had no such part (no test ran, no warm process). With a
cached collection the warm process forks before collecting and each worker collects its own
files: `collection` is then ~0 and the collecting is inside `first_test` and `tests`.
The orchestrator stamps its phases on `RunStarted.phases` (`events.Phase`); everything after
comes from execution's events, so the split costs the run nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..events import (
    AttemptFinished,
    Event,
    Phase,
    RunFinished,
    RunStarted,
    ShardCrashed,
    ShardFinished,
    ShardStarted,
    TestStarted,
)

SPLIT = (
    "engine_start",
    "store",
    "warm_start",
    "collection",
    "first_test",
    "tests",
    "tail",
    "after_last_test",
    "wall",
    "idle_slots",
)


@dataclass
class TimingsBuilder:
    """Follows a run's events; `split()` is the table above."""

    phases: dict[str, float] = field(default_factory=dict)
    run_started: float | None = None
    first_test: float | None = None
    last_test_end: float | None = None
    finished: float | None = None
    _running: int = 0
    _peak: int = 0
    _below_peak_since: float | None = None
    _changes: list[tuple[float, int]] = field(default_factory=list)  # (time, workers running)

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.phases = dict(event.phases)
            self.run_started = event.at
        elif isinstance(event, ShardStarted):
            self._running += 1
            self._changes.append((event.at, self._running))
            if self._running >= self._peak:
                self._peak = self._running
                self._below_peak_since = None
        elif isinstance(event, (ShardFinished, ShardCrashed)):
            if self._running == self._peak and self._below_peak_since is None:
                self._below_peak_since = event.at
            self._running = max(0, self._running - 1)
            self._changes.append((event.at, self._running))
        elif isinstance(event, TestStarted):
            self._test_began(event.at)
        elif isinstance(event, AttemptFinished):
            result = event.result
            ended = event.at  # when the engine heard of it (results come in small batches)
            if result.started_at is not None:
                self._test_began(result.started_at)
                ended = result.started_at + result.duration
            if self.last_test_end is None or ended > self.last_test_end:
                self.last_test_end = ended
        elif isinstance(event, RunFinished):
            self.finished = event.at
            self.phases.update(event.phases)

    def _test_began(self, at: float) -> None:
        if self.first_test is None or at < self.first_test:
            self.first_test = at

    def split(self) -> dict[str, float | None]:
        phases = self.phases
        engine = phases.get(Phase.ENGINE, self.run_started)
        origin = phases.get(Phase.PROCESS, engine)
        end = self.finished
        spawned = phases.get(Phase.WARM_SPAWNED)
        configured = phases.get(Phase.WARM_CONFIGURED)
        collected = phases.get(Phase.COLLECTED)
        warm_start = _between(spawned, configured)
        collection = _between(configured, collected)
        if spawned is not None and origin is not None and spawned < origin:
            warm_start = collection = 0.0  # a resident zygote, started and collected before
        store = phases.get(Phase.STORE_SECONDS)
        tail = None
        if self._below_peak_since is not None and self.last_test_end is not None:
            tail = max(0.0, self.last_test_end - self._below_peak_since)
        return {
            "engine_start": _between(origin, engine),
            "store": None if store is None else round(store, 4),
            "warm_start": warm_start,
            "collection": collection,
            "first_test": _between(origin, self.first_test),
            "tests": _between(self.first_test, self.last_test_end),
            "tail": None if tail is None else round(tail, 4),
            "after_last_test": _between(self.last_test_end, end),
            "wall": _between(origin, end),
            "idle_slots": self._idle_slots(),
        }

    def _idle_slots(self) -> float | None:
        start, end = self.first_test, self.last_test_end
        if start is None or end is None or not self._changes:
            return None
        idle = 0.0
        running = 0
        at = start
        for when, count in sorted(self._changes, key=lambda change: change[0]):
            if when > at:
                span = min(when, end) - at
                if span > 0:
                    idle += (self._peak - running) * span
                at = max(at, when)
            running = count
            if at >= end:
                break
        if at < end:
            idle += (self._peak - running) * (end - at)
        return round(idle, 4)


def _between(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max(0.0, end - start), 4)


def format_split(split: dict[str, float | None]) -> str:
    """One line for `-v`: `time: engine start 0.31s, store 0.01s, ...`."""
    parts = [
        f"{name.replace('_', ' ')} {value:.2f}s"
        for name, value in split.items()
        if value is not None
    ]
    return "time: " + ", ".join(parts)
