"""The shared vocabulary: plain frozen values every stage passes along.

Outcomes are values, not exceptions (pytest's CallInfo habit): a failed test, a crashed worker and a
collection error all arrive downstream as data in the same shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from .worker.protocol import CollectFailed, Warned
from .worker.selection import Selection, selection_files

NodeId = str


class Outcome(str, Enum):
    """One outcome vocabulary for console, JSON, JUnit and the store."""

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"
    XFAILED = "xfailed"
    XPASSED = "xpassed"
    # Later stages add these; they are part of the vocabulary from the start.
    CACHED = "cached"
    FLAKY = "flaky"
    CRASHED = "crashed"
    TIMEOUT = "timeout"
    NOT_RUN = "not_run"

    def __str__(self) -> str:
        return self.value


# Outcomes that make a run fail (exit 1): the one definition every stage uses.
FAILING_OUTCOMES = frozenset({Outcome.FAILED, Outcome.ERROR, Outcome.CRASHED, Outcome.TIMEOUT})
# A failing attempt of these may run again (a timeout would only hang again).
RETRYABLE_OUTCOMES = frozenset({Outcome.FAILED, Outcome.ERROR, Outcome.CRASHED})

# Order of words in the closing line; pytest's order first, then ours.
SUMMARY_ORDER: tuple[str, ...] = (
    "failed",
    "passed",
    "skipped",
    "deselected",
    "xfailed",
    "xpassed",
    "warnings",
    "error",
    "cached",
    "flaky",
    "crashed",
    "timeout",
    "not_run",
)


@dataclass(frozen=True, slots=True)
class PhaseReport:
    """One pytest report (setup, call or teardown) as the child plugin streamed it.

    `category` is what pytest's own `pytest_report_teststatus` said ("passed", "failed", "error",
    "skipped", "xfailed", "xpassed", or "" for a silent phase), so counting it reproduces pytest's
    closing line, including plugins that customise it.
    """

    nodeid: NodeId
    when: str
    outcome: str
    category: str
    duration: float
    longrepr: str = ""
    sections: tuple[tuple[str, str], ...] = ()
    location: tuple[str, int | None, str] | None = None
    wasxfail: str | None = None  # an xfail's or xpass's reason
    where: str = ""  # a skip's "path:line"
    word: str = ""  # pytest's verbose word where not the category's own ("SUBFAILED[i] (i=1)")


_RANK = {
    Outcome.FAILED: 6,
    Outcome.ERROR: 5,
    Outcome.XPASSED: 4,
    Outcome.XFAILED: 3,
    Outcome.SKIPPED: 2,
    Outcome.PASSED: 1,
}


def final_outcome(reports: Iterable[PhaseReport]) -> Outcome:
    """Reduce a test's phase reports to its one outcome.

    failed if the call failed (a strict xpass included); else error if setup or teardown errored;
    else xpassed, xfailed, skipped, passed. The same rule reads plain pytest's output in the tests
    that compare the two.
    """
    best = Outcome.PASSED
    for report in reports:
        outcome = _category_outcome(report)
        if _RANK[outcome] > _RANK[best]:
            best = outcome
    return best


def _category_outcome(report: PhaseReport) -> Outcome:
    category = report.category
    if category in ("xfailed", "xpassed", "skipped", "passed"):
        return Outcome(category)
    if category == "error" or (report.outcome == "failed" and report.when != "call"):
        return Outcome.ERROR
    if report.outcome == "failed":
        return Outcome.FAILED
    if report.outcome == "skipped":
        return Outcome.SKIPPED
    return Outcome.PASSED


@dataclass(frozen=True, slots=True)
class TestResult:
    """The final word on one test in one run."""

    __test__ = False

    nodeid: NodeId
    outcome: Outcome
    duration: float
    attempt: int = 1
    reports: tuple[PhaseReport, ...] = ()
    message: str = ""
    shard_id: int | None = None
    cpu_time: float | None = None
    max_rss: int | None = None
    started_at: float | None = None  # wall clock, when a worker began it (its setup)

    @property
    def longrepr(self) -> str:
        return "\n".join(r.longrepr for r in self.reports if r.longrepr)

    @property
    def sections(self) -> tuple[tuple[str, str], ...]:
        return tuple(s for r in self.reports for s in r.sections)


def engine_result(
    nodeid: NodeId,
    outcome: Outcome,
    when: str,
    message: str,
    longrepr: str | None = None,
    *,
    attempt: int = 1,
    shard_id: int | None = None,
) -> TestResult:
    """A result the engine decided rather than a worker reported (a collection error, a crash
    before the test began, a breaker's skip, a session timeout): one phase report saying so."""
    skipped = outcome is Outcome.SKIPPED
    report = PhaseReport(
        nodeid=nodeid,
        when=when,
        outcome="skipped" if skipped else "failed",
        category=outcome.value,
        duration=0.0,
        longrepr=message if longrepr is None else longrepr,
    )
    return TestResult(
        nodeid=nodeid,
        outcome=outcome,
        duration=0.0,
        attempt=attempt,
        reports=(report,),
        message=message,
        shard_id=shard_id,
    )


@dataclass(frozen=True, slots=True)
class Shard:
    """A unit of dispatch: tests that run together in one worker process, in order.

    `nodeids` are what the plan expects; `selection` is what the worker is told (file slices
    that it computes over what it collects now, or named tests), so a test added since the
    collection still runs exactly once. `attempt` > 1: a retry of failures."""

    shard_id: int
    nodeids: tuple[NodeId, ...]
    expected_duration: float
    selection: Selection
    weight: int = 1
    # Whether a free slot may take over the tail of this shard while it runs (work stealing);
    # never for serial or resource shards, whose tests must not run beside each other.
    splittable: bool = True
    attempt: int = 1
    # Its worker collects the whole selection first, as pytest does (then runs only its own
    # tests): the context a failure is confirmed in, and files that need it run in.
    full_collection: bool = False

    @property
    def files(self) -> tuple[str, ...]:
        """The files to hand pytest, in first-seen order (the selection picks inside them)."""
        return selection_files(self.selection)


@dataclass(frozen=True, slots=True)
class Terminal:
    """What pytest's terminal summary shows, as the collecting pytest was configured: `-r`
    characters, `--durations` (None: off) and its minimum, and the items `-k`/`-m` deselected;
    `--maxfail` (0: none), from the command line or the ini file's `addopts`; whether
    pytest-cov measures, and the plugins whose own terminal summaries would print: both are
    printed from the run's replayed reports."""

    reportchars: str = "fE"
    durations: int | None = None
    durations_min: float = 0.005
    deselected: int = 0
    maxfail: int = 0
    coverage: bool = False
    summary_plugins: tuple[str, ...] = ()
    pytest_cache: str | None = None  # its cache folder (--lf's record); None: cacheprovider off


@dataclass(frozen=True, slots=True)
class Collection:
    """What pytest collected for a selection: the one record discovery, a zygote and the
    store's collection cache all produce. `positionals` are the arguments pytest took as paths
    or node ids; `serial` and `resources` the tests' constraint markers."""

    rootdir: str
    nodeids: tuple[NodeId, ...]
    errors: tuple[CollectFailed, ...] = ()
    positionals: tuple[str, ...] = ()
    serial: tuple[NodeId, ...] = ()
    resources: Mapping[NodeId, tuple[str, ...]] = field(default_factory=dict)
    # What the collection read besides Python source (data files; folders end in "/"), with a
    # digest of each once the collector has taken one: the cache holds only while they match.
    read: Mapping[str, str] = field(default_factory=dict)
    # The non-test modules the whole collection imported, in order (an early zygote preloads
    # them next time).
    modules: tuple[str, ...] = ()
    terminal: Terminal = field(default_factory=Terminal)
    # Warnings the collecting process recorded (a forked run's tests do not collect again).
    warnings: tuple[Warned, ...] = ()
    # How many collectors pytest started (compared with each error's `collector`).
    collectors: int = 0

    @classmethod
    def merged(cls, collections: Sequence[Collection]) -> Collection:
        """Several queries' collections as one (the union, first seen first)."""
        errors: dict[NodeId, CollectFailed] = {}
        for c in collections:
            for error in c.errors:
                errors.setdefault(error.nodeid, error)
        return cls(
            rootdir=collections[0].rootdir,
            nodeids=tuple(dict.fromkeys(n for c in collections for n in c.nodeids)),
            errors=tuple(errors.values()),
            positionals=tuple(dict.fromkeys(p for c in collections for p in c.positionals)),
            serial=tuple(dict.fromkeys(n for c in collections for n in c.serial)),
            resources={n: r for c in collections for n, r in c.resources.items()},
            read={p: d for c in collections for p, d in c.read.items()},
            modules=tuple(dict.fromkeys(m for c in collections for m in c.modules)),
            # Each query's -k/-m deselects for itself: their sum would mean nothing.
            terminal=replace(collections[0].terminal, deselected=0)
            if len(collections) > 1
            else collections[0].terminal,
            warnings=tuple(dict.fromkeys(w for c in collections for w in c.warnings)),
            collectors=sum(c.collectors for c in collections),
        )

    def error_results(self) -> tuple[TestResult, ...]:
        """Each collection error or module-level skip as the result pytest reports for it."""
        return tuple(
            engine_result(e.nodeid, Outcome.SKIPPED, "collect", "skipped at collection", e.longrepr)
            if e.skipped
            else engine_result(
                e.nodeid, Outcome.ERROR, "collect", "error during collection", e.longrepr
            )
            for e in self.errors
        )


def file_of(nodeid: NodeId) -> str:
    return nodeid.split("::", 1)[0]


@dataclass(frozen=True, slots=True)
class Plan:
    shards: tuple[Shard, ...]
    known_durations: int
    collection_errors: tuple[TestResult, ...] = ()
    # Files kept whole, in order, in a fully collected worker, and why (an earlier run learnt
    # that their tests need pytest's context).
    context_files: Mapping[str, str] = field(default_factory=dict)
    # Files whose ids changed between collections: their named tests carry positions too.
    unstable_files: tuple[str, ...] = ()
    terminal: Terminal = field(default_factory=Terminal)
    cached: int = 0  # tests the skip cache reports from their last run: in no shard
    sampled: int = 0  # of the planned tests, those the trip-wire drew from the cached ones

    @property
    def test_count(self) -> int:
        return sum(len(s.nodeids) for s in self.shards)

    @property
    def expected_total(self) -> float:
        return sum(s.expected_duration for s in self.shards)


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a run produced: every result, the pytest-like counts and the exit code."""

    run_id: str
    results: tuple[TestResult, ...]
    counts: Mapping[str, int]
    duration: float
    exit_code: int
    interrupted: bool = False
    errors: tuple[str, ...] = field(default_factory=tuple)
    # What the engine decided on its own that changed what ran: an open circuit breaker, a
    # session timeout, processes the tests leaked. Shown before the closing line.
    notes: tuple[str, ...] = field(default_factory=tuple)
    # What plugins print in pytest's terminal summary for the whole run (pytest-cov's table),
    # shown where pytest shows it: before the short test summary.
    plugin_report: str = ""


@dataclass(frozen=True, slots=True)
class FileRecord:
    """What a test file's last complete run left for the skip cache (docs/skip-cache.md): the
    environment it ran in, each file it depended on with its digest then, its tests' outcomes,
    and when."""

    test_file: str
    environment: str
    dependencies: Mapping[str, str]
    outcomes: Mapping[NodeId, Outcome]
    recorded_at: float
