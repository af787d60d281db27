"""One pytest session with `--cache-tests`: the engine's skip cache (cache_state.py, the same
decision, trip-wire and records) inside plain pytest.

Three roles. Alone, one process does everything. Under pytest-xdist the controller (which does
not collect) opens the store, decides which test files may be reported from their records,
hands that to every worker (`workerinput`), reads every report, and writes the store once at
the end; each worker narrows the decision to its collection (every worker collects the same
tests, and the sample is drawn with the controller's seed, so all agree), skips what is cached,
and says what each test file imported and read (`workeroutput`).

A cached test is skipped by a `skip` mark added just before its setup, with the reason
`cached: <outcome> at <when>`: pytest reports it as any skipped test and runs none of its
fixtures. The trip-wire's sampled tests run; the first that does not give its recorded outcome
stops all further skipping in that process, the records of the cached files are dropped, and the
session fails, saying which tests were reported from a cache it no longer trusts.
"""

from __future__ import annotations

import os
import random
import sys
import time
import uuid
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from ..cache_state import CacheState
from ..config import ENV_PREFIX, OPTIONAL_PROFILE_KEYS, env_ttl_hours, load_catalog
from ..errors import UsageError
from ..events import (
    RunContext,
    RunFinished,
    RunStarted,
    TestFinished,
)
from ..fingerprint.environment import environment_fingerprint
from ..models import (
    FileRecord,
    NodeId,
    Outcome,
    PhaseReport,
    Plan,
    RunSummary,
    TestResult,
    file_of,
    final_outcome,
)
from ..outcomes import count_outcomes
from ..planning import ids_by_file
from ..regressions import DEFAULT_THRESHOLD, Regression, regressions
from ..skip_cache import CacheDecision, confirm, reported, sample
from ..store.rows import RunRows, Write
from ..worker.deps import DependencyRecorder
from ..worker.reads import ReadRecorder
from ..worker.reports import skip_reason
from . import store
from .store import StoreUnavailable

DEFAULT_CACHE_DIR = ".test_framework"
PROFILE = "pytest"  # the profile name in the environment fingerprint and the store's runs
WORKER_INPUT = "test_framework_cache"
WORKER_OUTPUT = "test_framework_dependencies"
# Options that change what pytest prints, never what a test does: not part of the environment.
_REPORTING_FLAGS = ("-v", "-q", "-l", "--verbose", "--quiet", "--showlocals", "--no-header")
_REPORTING_WITH_VALUE = ("--tb", "--color", "--durations", "--durations-min", "--junitxml")
_OWN_WITH_VALUE = (
    "--cache-dir",
    "--cache-tests-dir",
    "--cache-tests-sample",
    "-n",
    "--numprocesses",
    "--dist",
)
_OWN_FLAGS = ("--cache-tests",)
_EXPLAINED = 20  # files whose reason to run `-v` prints


def start(config: pytest.Config) -> CacheTests:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        return CacheTests.for_worker(config, workerinput.get(WORKER_INPUT))
    return CacheTests.for_session(config)


@dataclass
class Candidates:
    """What the controller decided before collection, as workers receive it."""

    records: dict[str, FileRecord]
    seed: int
    share: float
    durations: dict[NodeId, float] = field(default_factory=dict)  # the recorded tests' only

    def to_input(self) -> dict[str, Any]:
        return {
            "records": {
                name: [record.recorded_at, {n: str(o) for n, o in record.outcomes.items()}]
                for name, record in self.records.items()
            },
            "seed": self.seed,
            "share": self.share,
            "durations": self.durations,
        }

    @classmethod
    def from_input(cls, data: Mapping[str, Any]) -> Candidates:
        records = {
            name: FileRecord(name, "", {}, {n: Outcome(o) for n, o in outcomes.items()}, when)
            for name, (when, outcomes) in data["records"].items()
        }
        durations = {str(n): float(s) for n, s in (data.get("durations") or {}).items()}
        return cls(records, int(data["seed"]), float(data["share"]), durations)

    def narrowed(
        self, collected: Mapping[str, Sequence[NodeId]]
    ) -> tuple[CacheDecision, dict[NodeId, str], tuple[NodeId, ...]]:
        """This collection's decision, the tests reported from it, and the trip-wire's sample:
        the same in every process that collected the same tests."""
        decision = CacheDecision(cached=dict(self.records))
        confirm(decision, collected)
        sampled = sample(decision, self.share, random.Random(self.seed).random, self.durations)
        return decision, reported(decision, sampled), sampled


@dataclass(eq=False)  # a plugin is hashed by identity
class CacheTests:
    config: pytest.Config
    role: str  # "alone", "controller" or "worker"
    candidates: Candidates | None
    state: CacheState | None = None
    db: Any = None  # sqlite3.Connection, when this process writes
    project: str = ""
    problem: str | None = None  # why the cache is not used in this session
    dependencies: DependencyRecorder | None = None
    reads: ReadRecorder | None = None
    collected: dict[str, list[NodeId]] = field(default_factory=dict)
    reported: dict[NodeId, str] = field(default_factory=dict)
    sampled: tuple[NodeId, ...] = ()
    phases: dict[NodeId, list[PhaseReport]] = field(default_factory=dict)
    outcomes: dict[NodeId, Outcome] = field(default_factory=dict)
    results: list[TestResult] = field(default_factory=list)
    flaky: set[NodeId] = field(default_factory=set)
    cached: set[NodeId] = field(default_factory=set)  # reported as cached in this session
    tripped: str | None = None
    recorded_files: int = 0
    regressions: list[Regression] = field(default_factory=list)  # --performance-regression
    started: float = field(default_factory=time.time)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    # ---- start -------------------------------------------------------------------------------
    @classmethod
    def for_worker(cls, config: pytest.Config, data: Mapping[str, Any] | None) -> CacheTests:
        plugin = cls(config, "worker", Candidates.from_input(data) if data else None)
        plugin._record_dependencies()
        return plugin

    @classmethod
    def for_session(cls, config: pytest.Config) -> CacheTests:
        controller = config.pluginmanager.has_plugin("dsession")
        plugin = cls(config, "controller" if controller else "alone", None)
        root = config.rootpath.resolve()
        plugin.project = str(root)
        try:
            ttl_hours, share, path = _settings(config, root)
            plugin.db = store.open_store(path / "results.sqlite")
            records, index = store.load_records(plugin.db, plugin.project)
            stored_durations = store.load_durations(plugin.db, plugin.project)
        except UsageError as exc:  # a bad OPTIMIZED_TEST_* value or project configuration
            raise pytest.UsageError(str(exc)) from None
        except StoreUnavailable as exc:
            plugin.problem = str(exc)
            return plugin
        environment = environment_fingerprint(_pytest_args(config), os.environ, PROFILE)
        plugin.state = CacheState.load(
            root,
            environment,
            records,
            index,
            ttl_seconds=ttl_hours * 3600,
            sample_share=share,
        )
        decision = plugin.state.decide({name: tuple(r.outcomes) for name, r in records.items()})
        cached = dict(decision.cached)
        recorded = {n for record in cached.values() for n in record.outcomes}
        durations = {n: s for n, s in stored_durations.items() if n in recorded}
        plugin.candidates = Candidates(
            cached, random.getrandbits(32), plugin.state.sample_share, durations
        )
        if not controller:
            plugin._record_dependencies()
        return plugin

    def _record_dependencies(self) -> None:
        self.dependencies = DependencyRecorder()
        self.dependencies.install()
        self.reads = ReadRecorder(str(self.config.rootpath))
        self.reads.dependencies = self.dependencies
        self.reads.install()

    def _narrow(self, nodeids: Iterable[NodeId]) -> None:
        self.collected = ids_by_file(list(nodeids))
        if self.candidates is None:
            return
        decision, self.reported, self.sampled = self.candidates.narrowed(self.collected)
        if self.state is not None:
            before = self.state.decision.runs
            for test_file in self.collected:
                if test_file not in decision.cached and test_file not in decision.runs:
                    decision.runs[test_file] = before.get(test_file, "never recorded")
            self.state.decision = decision
            self.state.sampled = self.sampled

    # ---- xdist's controller ---------------------------------------------------------------------
    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        if self.candidates is not None:
            node.workerinput[WORKER_INPUT] = self.candidates.to_input()

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: Sequence[str]) -> None:
        if not self.collected:
            self._narrow(ids)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        output = getattr(node, "workeroutput", None) or {}
        said = output.get(WORKER_OUTPUT)
        if self.state is None:
            return
        if error is not None or said is None:
            self.state.worker_died = True  # what it imported is unknown: record nothing
            return
        imports, reads = said
        self.state.note_dependencies(imports, reads)

    # ---- collection and each test ----------------------------------------------------------------
    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self._narrow(item.nodeid for item in items)

    def pytest_collectstart(self, collector: pytest.Collector) -> None:
        if self.dependencies is not None and isinstance(collector, pytest.Module):
            self.dependencies.current = file_of(collector.nodeid)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if self.dependencies is not None and self.dependencies.current == report.nodeid:
            self.dependencies.current = None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        reason = self.reported.get(item.nodeid)
        if reason is not None and self.tripped is None:
            item.add_marker(pytest.mark.skip(reason=reason))
        if self.dependencies is not None:
            self.dependencies.current = file_of(item.nodeid)
        yield

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        nodeid = report.nodeid
        if str(report.outcome) == "rerun":  # pytest-rerunfailures: a failure it tried again
            self.flaky.add(nodeid)
            self.phases.pop(nodeid, None)
            return
        status = self.config.hook.pytest_report_teststatus(report=report, config=self.config)
        category = str(status[0]) if status else ""
        if report.skipped and report.when != "call" and not category:
            category = "skipped"
        self.phases.setdefault(nodeid, []).append(
            PhaseReport(nodeid, report.when, report.outcome, category, report.duration)
        )
        reason = self.reported.get(nodeid)
        # Our mark, not the test's own skip:
        if report.when == "setup" and report.skipped and reason is not None:
            self.cached.update([nodeid] if skip_reason(report).endswith(reason) else [])
        if report.when != "teardown":
            return
        if self.dependencies is not None:
            self.dependencies.current = None
        phases = self.phases.pop(nodeid)
        duration = sum(phase.duration for phase in phases)
        if nodeid in self.cached:
            self.results.append(TestResult(nodeid, Outcome.CACHED, 0.0, message=reason or ""))
            return
        outcome = final_outcome(phases)
        if nodeid in self.flaky and outcome is Outcome.PASSED:
            outcome = Outcome.FLAKY
        self.outcomes[nodeid] = outcome
        self.results.append(TestResult(nodeid, outcome, duration))
        if nodeid in self.sampled and self.tripped is None and self.candidates is not None:
            recorded = self.candidates.records[file_of(nodeid)].outcomes[nodeid]
            if outcome is not recorded:
                self.tripped = f"{nodeid} {outcome} where its record said {recorded}"

    # ---- the end ---------------------------------------------------------------------------------
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.role == "worker":
            if self.dependencies is not None:
                output = getattr(self.config, "workeroutput", None)
                if output is not None:
                    output[WORKER_OUTPUT] = list(self.dependencies.by_file())
            return
        if self.state is None or self.db is None:
            return
        if self.dependencies is not None:
            self.state.note_dependencies(*self.dependencies.by_file())
        if _judging_durations(self.config):
            self._judge_durations(session)
        writes = self._writes(int(exitstatus))
        try:
            store.write(self.db, writes)
        except Exception as exc:
            self.problem = f"the results store could not be written: {exc}"
        finally:
            self.db.close()
        if self.tripped is not None and self.cached and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _judge_durations(self, session: pytest.Session) -> None:
        """Before this session's rows are written: its tests against their past medians."""
        nodeids = [r.nodeid for r in self.results]
        try:
            past = store.load_baselines(self.db, self.project, nodeids)
        except Exception as exc:
            self.problem = f"the results store could not be read: {exc}"
            return
        threshold = self.config.getoption("perf_threshold", None) or DEFAULT_THRESHOLD
        self.regressions = regressions(self.results, past, threshold)
        failing = self.regressions and self.config.getoption("fail_on_regression", False)
        if failing and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _writes(self, exitstatus: int) -> list[Write]:
        assert self.state is not None
        rows = RunRows()
        context = RunContext(
            self.run_id, self.project, PROFILE, (), tuple(sys.argv), _pytest_args(self.config)
        )
        plan = Plan((), 0, cached=len(self.cached), sampled=len(self.sampled))
        writes: list[Write] = [*rows.rows(RunStarted(context, plan, 1, at=self.started)).writes]
        for result in self.results:
            writes.extend(rows.rows(TestFinished(result)).writes)
        recorded = self.state.recorded(self.collected, self.outcomes)
        if self.tripped is not None:  # what the cache said is no longer trusted
            recorded = replace(recorded, records=())
            writes.extend(
                (store.FORGET_FILE, (self.project, name)) for name in self.state.decision.cached
            )
        self.recorded_files = len(recorded.records)
        writes.extend(rows.rows(recorded).writes)
        summary = RunSummary(
            self.run_id,
            (),
            count_outcomes(self.results),
            time.time() - self.started,
            exitstatus,
            interrupted=exitstatus == pytest.ExitCode.INTERRUPTED,
        )
        writes.extend(rows.rows(RunFinished(summary)).writes)
        return writes

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.role == "worker":
            return
        write = terminalreporter.write_line
        if self.problem is not None:
            write(f"test_framework --cache-tests: not used: {self.problem}", yellow=True)
            return
        ran = len(self.outcomes)
        line = (
            f"test_framework --cache-tests: {len(self.cached)} cached (unchanged since they "
            f"last passed), {ran} ran"
        )
        if self.sampled:
            line += f" ({len(self.sampled)} of them sampled to check the cache)"
        write(line + f"; {self.recorded_files} test files recorded")
        if self.config.get_verbosity() > 0 and self.state is not None:
            for test_file, why in list(self.state.decision.runs.items())[:_EXPLAINED]:
                write(f"  runs {test_file}: {why}")
        if _judging_durations(self.config):
            for regression in self.regressions:
                write(f"test_framework {regression.describe()}", red=True)
            if not self.regressions:
                write("test_framework performance regression: none")
        if self.tripped is not None:
            write(
                f"test_framework --cache-tests: the cache is distrusted: {self.tripped}; "
                f"{len(self.cached)} tests were reported from it before that, so this session "
                "fails; their records are dropped: run again to run them",
                red=True,
            )


def _judging_durations(config: pytest.Config) -> bool:
    return any(
        config.getoption(name, None)
        for name in ("performance_regression", "perf_threshold", "fail_on_regression")
    )


def _settings(config: pytest.Config, root: Path) -> tuple[float, float, Path]:
    """The TTL (hours), the trip-wire's share and the store's folder: `--cache-dir`
    (relative to the current folder), else `OPTIMIZED_TEST_CACHE_DIR`, else the project's
    `cache_dir`, else `<rootdir>/.test_framework`, as the engine finds it."""
    ttl_raw = os.environ.get(f"{ENV_PREFIX}CACHE_TTL_HOURS")
    ttl = float(OPTIONAL_PROFILE_KEYS["cache_ttl_hours"])
    if ttl_raw is not None:
        ttl = env_ttl_hours(ttl_raw)
    share = config.getoption("cache_tests_sample", None)
    if share is None:
        share = float(OPTIONAL_PROFILE_KEYS["cache_sample"])
    elif not 0 <= share <= 1:
        raise UsageError(f"--cache-tests-sample must be between 0 and 1, got {share}")
    given = config.getoption("test_framework_cache_dir", None)
    if given:
        folder = Path.cwd() / Path(given).expanduser()
    else:
        configured = os.environ.get(f"{ENV_PREFIX}CACHE_DIR") or load_catalog(root).cache_dir
        folder = root / Path(configured or DEFAULT_CACHE_DIR).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"cache dir {str(folder)!r} exists and is not a folder")
    return ttl, float(share), folder


def _pytest_args(config: pytest.Config) -> tuple[str, ...]:
    """The session's arguments that may change what a test does: the plugin's own, xdist's
    and those that only change what pytest prints are left out."""
    args = list(config.invocation_params.args)
    kept: list[str] = []
    skip_next = False
    for arg in args:
        if skip_next:
            skip_next = False
            continue
        name = arg.split("=", 1)[0]
        if name in _OWN_FLAGS or name in _REPORTING_FLAGS or _repeated_short(arg, "vq"):
            continue
        if name in _OWN_WITH_VALUE or name in _REPORTING_WITH_VALUE:
            skip_next = "=" not in arg
            continue
        if (arg.startswith("-n") and arg[2:].isalnum()) or arg.startswith("-r"):
            continue
        kept.append(arg)
    return tuple(kept)


def _repeated_short(arg: str, letters: str) -> bool:
    return len(arg) > 1 and arg[0] == "-" and arg[1] != "-" and set(arg[1:]) <= set(letters)
