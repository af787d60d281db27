"""The event vocabulary: what a run tells everything downstream.

Execution emits the events about processes and attempts (ShardStarted, TestStarted,
AttemptFinished, TestsReleased, ShardFinished, ShardCrashed, ProcessesLeaked); the dispatcher
emits what the ledger decided (TestFinished, TestRetrying, CircuitOpened, RunStopping) and the
monitor capacity changes; the orchestrator opens and closes the run. The store writer, the
console and the report builders subscribe; none of them drives the run. Events are frozen, so a
subscriber cannot change what another sees, and each carries `at`, the wall-clock time it
happened, so a report can draw the run without a clock of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .models import FileRecord, NodeId, Plan, RunSummary, TestResult


def _now() -> float:
    return time.time()


@dataclass(frozen=True, slots=True)
class RunContext:
    """Who asked for the run and how: what reports and the store say about it."""

    run_id: str
    project_root: str
    profile: str
    categories: tuple[str, ...]
    argv: tuple[str, ...] = ()
    pytest_args: tuple[str, ...] = ()
    isolation: str = "fork"
    shard: tuple[int, int] | None = None  # (K, N) for a run of CI shard K of N
    # For a CI shard: the whole selection's size and digest (ci_shards.selection_digest), so
    # `shard-verify` can tell that the shards together are the selection.
    shard_selection: tuple[int, str] | None = None


class Phase:
    """The names of `RunStarted.phases`: wall-clock times of what happened before the first
    test, in the order it happens (reporting/timings.py turns them into the run's split)."""

    PROCESS = "process"  # the process began (the client's, for a run a resident process served)
    ENGINE = "engine"  # the orchestrator began
    STORE_SECONDS = "store_seconds"  # a duration: opening and reading the results store
    WARM_SPAWNED = "warm_spawned"  # the warm process was started
    WARM_CONFIGURED = "warm_configured"  # pytest was configured in it (its Hello)
    COLLECTED = "collected"  # the run's collection was known


@dataclass(frozen=True, slots=True)
class RunStarted:
    context: RunContext
    plan: Plan
    capacity: int
    # When the run's phases before its first test happened (reporting/timings.py names them).
    phases: Mapping[str, float] = field(default_factory=dict)
    at: float = field(default_factory=_now, kw_only=True)

    @property
    def run_id(self) -> str:
        return self.context.run_id


@dataclass(frozen=True, slots=True)
class ShardStarted:
    shard_id: int
    pid: int
    nodeids: tuple[NodeId, ...]
    attempt: int = 1
    # The worker collected the whole selection before narrowing, as pytest does.
    full_collection: bool = False
    at: float = field(default_factory=_now, kw_only=True)


@dataclass(frozen=True, slots=True)
class ShardCollected:
    """What the shard's worker collected of its selection: the tests it will run, in order.
    The plan came from a collection that may be older (the cache) or another process's (ids
    that embed the time differ between two collections); this is what the run owes."""

    shard_id: int
    nodeids: tuple[NodeId, ...]
    # Files where the worker found a named test by its position under another id.
    renamed: tuple[str, ...] = ()
    at: float = field(default_factory=_now, kw_only=True)


@dataclass(frozen=True, slots=True)
class WarningRecorded:
    """pytest recorded a warning in a worker (or in the collecting process: `shard_id` None):
    `message` as its warnings summary prints it, `nodeid` the test's ("" at collection, then
    `location` names the place)."""

    shard_id: int | None
    nodeid: str
    when: str
    message: str
    location: str = ""
    at: float = field(default_factory=_now, kw_only=True)


@dataclass(frozen=True, slots=True)
class TestStarted:
    __test__ = False
    shard_id: int
    nodeid: NodeId
    at: float = field(default_factory=_now, kw_only=True)


@dataclass(frozen=True, slots=True)
class AttemptFinished:
    """A worker finished one attempt of a test (or the engine judged it: a crash, a timeout).
    The ledger decides whether it is final or runs again."""

    result: TestResult
    at: float = field(default_factory=_now, kw_only=True)


@dataclass(frozen=True, slots=True)
class TestsReleased:
    """A running worker gave back the tail of its tests (work stealing)."""

    __test__ = False
    shard_id: int
    nodeids: tuple[NodeId, ...]
    at: float = field(default_factory=_now, kw_only=True)


@dataclass(frozen=True, slots=True)
class TestRetrying:
    """A failing attempt that will run again in a fresh process after `delay` seconds."""

    __test__ = False
    result: TestResult
    next_attempt: int
    delay: float
    at: float = field(default_factory=_now, kw_only=True)


@dataclass(frozen=True, slots=True)
class TestConfirming:
    """A failure seen outside pytest's context (`why`) runs again in it before it is reported:
    its file from the first test up to it, in a worker that collected the whole selection."""

    __test__ = False
    result: TestResult
    why: str
    at: float = field(default_factory=_now, kw_only=True)


@dataclass(frozen=True, slots=True)
class ContextNeeded:
    """A test failed outside pytest's context and passed in it: its file needs that context.
    `digest` is the file's content now, so the lesson holds until the file changes."""

    nodeid: NodeId
    file: str
    why: str
    digest: str
    at: float = field(default_factory=_now, kw_only=True)


@dataclass(frozen=True, slots=True)
class IdsChanged:
    """A worker collected other ids for a file's tests than the run's collection (they embed
    the time, a counter): later runs name its tests with their positions too. `digest` is the
    file's content now: the record holds until the file changes."""

    file: str
    digest: str
    at: float = field(default_factory=_now, kw_only=True)


@dataclass(frozen=True, slots=True)
class CacheRecorded:
    """What the skip cache keeps from this run: each test file whose tests all got an outcome
    here, and the file index (path, mtime_ns, size, inode, digest) taken at `indexed_at_ns`."""

    records: tuple[FileRecord, ...]
    index: tuple[tuple[str, int, int, int, str], ...]
    indexed_at_ns: int
    at: float = field(default_factory=_now, kw_only=True)


@dataclass(frozen=True, slots=True)
class TestFinished:
    """The final word on a test in this run."""

    __test__ = False
    result: TestResult
    at: float = field(default_factory=_now, kw_only=True)


@dataclass(frozen=True, slots=True)
class RunStopping:
    """Dispatch stopped early: fail-fast (maxfail), a session timeout or an interrupt; running
    shards are stopped."""

    reason: str
    at: float = field(default_factory=_now, kw_only=True)


@dataclass(frozen=True, slots=True)
class ShardFinished:
    shard_id: int
    returncode: int
    duration: float
    files: tuple[str, ...] = ()
    deps: tuple[str, ...] = ()
    # Per test file, when the skip cache asked: names imported and project files read.
    imports: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    reads: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    at: float = field(default_factory=_now, kw_only=True)


@dataclass(frozen=True, slots=True)
class ShardCrashed:
    """The worker died or misbehaved; `running` names the test it was inside, if any."""

    shard_id: int
    returncode: int | None
    running: NodeId | None
    reason: str
    output_tail: str = ""
    at: float = field(default_factory=_now, kw_only=True)


@dataclass(frozen=True, slots=True)
class CircuitOpened:
    """Several failures shared one error signature and a probe confirmed it: the rest of the
    affected files is skipped with `reason`."""

    signature: str
    files: tuple[str, ...]
    failures: tuple[NodeId, ...]
    probe: NodeId
    reason: str
    at: float = field(default_factory=_now, kw_only=True)


@dataclass(frozen=True, slots=True)
class ProcessesLeaked:
    """Processes still alive in a shard's session after its worker ended; they were killed."""

    shard_id: int
    processes: tuple[str, ...]
    at: float = field(default_factory=_now, kw_only=True)


@dataclass(frozen=True, slots=True)
class CapacityChanged:
    old: int
    new: int
    reason: str
    cpu_percent: float
    memory_available: int
    waiting: int
    at: float = field(default_factory=_now, kw_only=True)


@dataclass(frozen=True, slots=True)
class RunFinished:
    summary: RunSummary
    messages: tuple[str, ...] = field(default_factory=tuple)
    phases: Mapping[str, float] = field(default_factory=dict)  # RunStarted's, completed
    at: float = field(default_factory=_now, kw_only=True)


# What a shard's execution says while it runs: the executor seam's whole output.
ExecutionEvent = (
    ShardStarted
    | ShardCollected
    | TestStarted
    | AttemptFinished
    | TestsReleased
    | ShardFinished
    | ShardCrashed
    | ProcessesLeaked
    | WarningRecorded
)

Event = (
    RunStarted
    | ExecutionEvent
    | TestFinished
    | TestRetrying
    | TestConfirming
    | ContextNeeded
    | IdsChanged
    | CacheRecorded
    | RunStopping
    | CircuitOpened
    | CapacityChanged
    | RunFinished
)

Subscriber = Callable[[Event], None]


class EventBus:
    """Delivers each event to every subscriber in order, synchronously.

    Subscribers must not block: the store writer queues, the console prints. A subscriber that
    raises is logged and dropped, so a broken reporter can never stop a run.
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.failures: list[str] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def emit(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception as exc:  # a reporter bug must not end the run
                self.failures.append(f"{subscriber!r} failed on {type(event).__name__}: {exc!r}")
                self._subscribers.remove(subscriber)
