"""Where a run's time went (reporting/timings.py): the split computed from the events' stamps,
in the JSON report and on `-v`'s last lines."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from test_framework.events import (
    AttemptFinished,
    Event,
    Phase,
    RunContext,
    RunFinished,
    RunStarted,
    ShardFinished,
    ShardStarted,
)
from test_framework.models import Outcome, Plan, RunSummary, TestResult
from test_framework.reporting.console import ConsoleReporter
from test_framework.reporting.json_report import JsonReportBuilder
from test_framework.reporting.timings import TimingsBuilder, format_split

T0 = 1_000_000.0
CONTEXT = RunContext("run1", "/project", "balanced", ("all",))


def result(nodeid: str, shard: int, began: float, duration: float) -> TestResult:
    return TestResult(nodeid, Outcome.PASSED, duration, shard_id=shard, started_at=T0 + began)


def a_run(phases: dict[str, float]) -> list[Event]:
    """Two workers: shard 1 runs a 1 s and a 2 s test from t=2, shard 2 a 0.5 s test from
    t=2.1; nothing else is queued, so from shard 2's end (t=2.7) one worker is idle."""
    summary = RunSummary("run1", (), {"passed": 3}, 3.0, 0)
    return [
        RunStarted(CONTEXT, Plan((), 0), 2, phases, at=T0 + 1.6),
        ShardStarted(1, 11, ("a", "b"), at=T0 + 1.9),
        ShardStarted(2, 12, ("c",), at=T0 + 1.95),
        AttemptFinished(result("a", 1, 2.0, 1.0), at=T0 + 3.05),
        AttemptFinished(result("c", 2, 2.1, 0.5), at=T0 + 2.65),
        ShardFinished(2, 0, 0.8, at=T0 + 2.7),
        AttemptFinished(result("b", 1, 3.0, 2.0), at=T0 + 5.1),
        ShardFinished(1, 0, 3.2, at=T0 + 5.1),
        RunFinished(summary, phases={**phases, Phase.WARM_CONFIGURED: T0 + 1.2}, at=T0 + 5.3),
    ]


PHASES = {
    Phase.PROCESS: T0,
    Phase.ENGINE: T0 + 0.3,
    Phase.STORE_SECONDS: 0.05,
    Phase.WARM_SPAWNED: T0 + 0.4,
    Phase.COLLECTED: T0 + 1.5,
}


def split_of(events: list[Event]) -> dict[str, float | None]:
    builder = TimingsBuilder()
    for event in events:
        builder(event)
    return builder.split()


def test_the_split_places_each_phase_between_its_stamps() -> None:
    split = split_of(a_run(PHASES))
    assert split == {
        "engine_start": 0.3,
        "store": 0.05,
        "warm_start": 0.8,  # its Hello came after the plan: RunFinished completes the stamps
        "collection": 0.3,
        "first_test": 2.0,  # the worker's own stamp, not when the engine heard of it
        "tests": 3.0,  # from the first test's start to the last one's end (t=5.0)
        "tail": 2.3,  # from t=2.7, one worker idle, to t=5.0
        "after_last_test": 0.3,
        "wall": 5.3,
        "idle_slots": 2.3,  # one of the two slots, from t=2.7 to t=5.0
    }


def test_a_reused_resident_zygote_costs_the_run_no_start_and_no_collection() -> None:
    earlier = {**PHASES, Phase.WARM_SPAWNED: T0 - 60}
    split = split_of(a_run(earlier))
    assert split["warm_start"] == 0.0
    assert split["collection"] == 0.0


def test_a_zygote_started_before_the_engine_overlaps_its_start() -> None:
    overlapped = {**PHASES, Phase.WARM_SPAWNED: T0 + 0.1}
    split = split_of(a_run(overlapped))
    assert split["engine_start"] == 0.3
    assert split["warm_start"] == 1.1  # from t=0.1, while the engine started, to its Hello


def test_a_run_without_tests_or_warm_process_says_none_for_those_parts() -> None:
    summary = RunSummary("run1", (), {}, 0.1, 5)
    events: list[Event] = [
        RunStarted(CONTEXT, Plan((), 0), 2, {Phase.ENGINE: T0}, at=T0 + 0.1),
        RunFinished(summary, at=T0 + 0.2),
    ]
    split = split_of(events)
    assert split["wall"] == 0.2  # no process stamp: from the orchestrator's start
    assert split["first_test"] is None
    assert split["tests"] is None
    assert split["tail"] is None
    assert split["warm_start"] is None


def test_the_json_report_and_verbose_console_carry_the_split(tmp_path: Path) -> None:
    report = JsonReportBuilder(tmp_path / "report.json")
    out = io.StringIO()
    console = ConsoleReporter(out, verbose=1, tty=False)
    quiet = io.StringIO()
    plain = ConsoleReporter(quiet, verbose=0, tty=False)
    for event in a_run(PHASES):
        report(event)
        console(event)
        plain(event)
    written = json.loads((tmp_path / "report.json").read_text())
    assert written["timings"]["tail"] == 2.3
    assert written["timings"]["wall"] == 5.3
    line = format_split(split_of(a_run(PHASES)))
    assert line.startswith("time: engine start 0.30s, store 0.05s, warm start 0.80s")
    assert line in out.getvalue()
    assert "time: " not in quiet.getvalue()


def test_idle_slots_count_a_gap_in_the_middle_that_the_tail_misses() -> None:
    """A worker idle from t=3 while the other sits in a long test, then a stolen tail at t=9
    brings the run back to its peak: the tail is the last 0.9 s only; idle, 6 s and 0.9 s."""
    summary = RunSummary("run1", (), {"passed": 3}, 3.0, 0)
    events: list[Event] = [
        RunStarted(CONTEXT, Plan((), 0), 2, PHASES, at=T0 + 0.5),
        ShardStarted(1, 11, ("long", "after"), at=T0 + 0.9),
        ShardStarted(2, 12, ("quick",), at=T0 + 0.9),
        AttemptFinished(result("quick", 2, 1.0, 2.0), at=T0 + 3.0),
        ShardFinished(2, 0, 2.1, at=T0 + 3.0),
        AttemptFinished(result("long", 1, 1.0, 8.0), at=T0 + 9.0),
        ShardStarted(3, 13, ("after",), at=T0 + 9.0),
        AttemptFinished(result("after", 3, 9.0, 1.0), at=T0 + 10.0),
        ShardFinished(1, 0, 9.1, at=T0 + 9.1),
        ShardFinished(3, 0, 1.0, at=T0 + 10.0),
        RunFinished(summary, phases=PHASES, at=T0 + 10.1),
    ]
    split = split_of(events)
    assert split["tail"] == pytest.approx(0.9)
    assert split["idle_slots"] == pytest.approx(6.9)
