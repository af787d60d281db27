"""Plugins' terminal summaries for the whole run, as pytest-xdist's master gives them.

Under xdist, workers send every report to the master, whose pytest session replays them to its
plugins; their terminal summaries (hypothesis' statistics, pytest-cov's `--no-cov-on-fail`,
anything built from reports) then cover the whole run. Here the same: when a plugin outside
pytest would print a summary, each worker also writes its reports, serialized by pytest's own
hook, to a file of its own; after the run the engine starts one summary process (pytest with
this plugin, collecting nothing) that replays, test by test in the run's order, the reports of
the attempt the engine reported, then lets pytest finish: its plugins print, and the engine
relays what they printed between two marker lines. A run pytest would have stopped (`-x`, a
collection error) is stopped there too, after the replay, so plugins behave as they would have.

Cheap on purpose: nothing is written, and no summary process starts, unless a plugin would
print; plugins known to print nothing by default do not count.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import pytest

from .protocol import ENV_REPORTS, ENV_SUMMARY, FAILED_BY_PLUGIN, SUMMARY_BEGIN, SUMMARY_END

# Plugins whose terminal summary prints nothing unless an option of theirs asks (None: never,
# under the engine: pytest-benchmark's table comes from state no report carries).
_QUIET_UNLESS: Mapping[str, str | None] = {
    "_hypothesis_pytestplugin": "hypothesis_show_statistics",
    "pytest_benchmark.plugin": None,
}
_OWN = ("_pytest.", "pytest_cov.", "test_framework.", "xdist.")


def summary_plugins(config: pytest.Config) -> tuple[str, ...]:
    """The plugins outside pytest whose terminal summary would print something for this run
    (pytest-cov is handled with coverage itself)."""
    names: list[str] = []
    for impl in config.pluginmanager.hook.pytest_terminal_summary.get_hookimpls():
        module = getattr(impl.plugin, "__name__", None) or type(impl.plugin).__module__
        if module == "_pytest" or module.startswith(_OWN) or impl.plugin_name in names:
            continue
        if module in _QUIET_UNLESS:
            option = _QUIET_UNLESS[module]
            if option is None or not config.getoption(option, default=False):
                continue
        names.append(impl.plugin_name)
    return tuple(names)


class ReportLog:
    """This process's reports, one JSON line each, as xdist serializes them for its master."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.pid = 0
        self.file: IO[str] | None = None

    def write(
        self, config: pytest.Config, report: pytest.TestReport | pytest.CollectReport
    ) -> None:
        if self.pid != os.getpid():  # a forked child writes a file of its own
            self.pid = os.getpid()
            folder = Path(self.folder)
            folder.mkdir(parents=True, exist_ok=True)
            self.file = open(  # noqa: SIM115 - kept open for the process's life
                folder / f"reports-{self.pid}.jsonl", "a", encoding="utf-8"
            )
        assert self.file is not None
        data = config.hook.pytest_report_to_serializable(config=config, report=report)
        self.file.write(json.dumps(data, default=repr) + "\n")
        if getattr(report, "when", "teardown") == "teardown":
            self.file.flush()  # a worker killed later loses nothing it finished


def report_log(config: pytest.Config, coverage: bool) -> ReportLog | None:
    folder = os.environ.get(ENV_REPORTS)
    if not folder or not (coverage or summary_plugins(config)):
        return None
    return ReportLog(folder)


# ---- the summary process ---------------------------------------------------------------------
def summary_instructions() -> dict[str, Any] | None:
    path = os.environ.get(ENV_SUMMARY)
    if not path:
        return None
    loaded: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return loaded


def latest_attempts(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Each test's reports from its latest attempt (a retry, a confirmation: the one the engine
    reported), and each failed collector's report under its node id."""
    attempts: dict[str, tuple[float, list[dict[str, Any]]]] = {}
    for path in sorted(folder.glob("reports-*.jsonl")):
        current: dict[str, list[dict[str, Any]]] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            data = json.loads(line)
            nodeid = str(data.get("nodeid", ""))
            if data.get("$report_type") == "CollectReport":
                attempts.setdefault(nodeid, (0.0, [data]))
                continue
            if data.get("when") == "setup" or nodeid not in current:
                current[nodeid] = []
                start = float(data.get("start") or 0.0)
                if start >= attempts.get(nodeid, (-1.0, []))[0]:
                    attempts[nodeid] = (start, current[nodeid])
            current[nodeid].append(data)
    return {nodeid: reports for nodeid, (_, reports) in attempts.items()}


def replay(session: pytest.Session, order: Iterable[str], folder: Path) -> None:
    """The run's reports to this session's plugins, as xdist's master hands them on."""
    hook = session.config.hook
    attempts = latest_attempts(folder)
    for nodeid in order:
        reports = attempts.get(nodeid, [])
        if reports and reports[0].get("$report_type") == "CollectReport":
            for data in reports:
                report = hook.pytest_report_from_serializable(config=session.config, data=data)
                hook.pytest_collectreport(report=report)
            continue
        if not reports:
            continue
        location = _location(reports[0])
        hook.pytest_runtest_logstart(nodeid=nodeid, location=location)
        for data in reports:
            report = hook.pytest_report_from_serializable(config=session.config, data=data)
            hook.pytest_runtest_logreport(report=report)
        hook.pytest_runtest_logfinish(nodeid=nodeid, location=location)


def _location(data: Mapping[str, Any]) -> tuple[str, int | None, str]:
    location: Sequence[Any] = data.get("location") or ("", None, "")
    return (str(location[0]), None if location[1] is None else int(location[1]), str(location[2]))


# The summary process's session and its failures once replayed.
_replayed: list[tuple[pytest.Session, int]] = []


def run_summary(session: pytest.Session, instructions: Mapping[str, Any]) -> bool:
    """The summary process's run loop: the replay, then the run's stop as pytest met it."""
    replay(session, instructions.get("order") or (), Path(str(instructions["reports"])))
    _replayed.append((session, session.testsfailed))
    stop = instructions.get("stop")
    if stop:
        raise session.Interrupted(stop) if instructions.get("interrupted") else session.Failed(stop)
    return True


def plugin_failed_the_run() -> bool:
    """A plugin counted a failure of its own after the replay (`--cov-fail-under`)."""
    return any(session.testsfailed > failures for session, failures in _replayed)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_terminal_summary(terminalreporter: Any) -> Generator[None]:
    """In the summary process: mark where plugins' sections start and end (inside pytest's own
    summary, which the engine rebuilt already)."""
    if summary_instructions() is None:
        return (yield)
    terminalreporter.write_line(SUMMARY_BEGIN)
    try:
        return (yield)
    finally:
        terminalreporter.write_line(SUMMARY_END)
        if plugin_failed_the_run():
            terminalreporter.write_line(FAILED_BY_PLUGIN)
