"""`--performance-regression`: tests that took much longer than they usually do.

A test regressed when it passed, has a baseline of at least `MIN_RUNS` earlier runs (the median
of its passing durations over the project's last `BASELINE_RUNS` runs, store/history.py), took
more than `threshold` times that median, and at least `MIN_GROWTH_SECONDS` more: timing noise
on a busy machine doubles a 2 ms test easily and means nothing. Pure over numbers; the
orchestrator reads the baselines before the run and judges its results after.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from .exit_codes import ExitCode
from .models import Outcome, RunSummary, TestResult

DEFAULT_THRESHOLD = 2.0
MIN_RUNS = 3
MIN_GROWTH_SECONDS = 0.1
BASELINE_RUNS = 20


@dataclass(frozen=True, slots=True)
class Regression:
    nodeid: str
    duration: float
    median: float
    runs: int

    @property
    def ratio(self) -> float:
        return self.duration / self.median if self.median > 0 else float("inf")

    def describe(self) -> str:
        return (
            f"performance regression: {self.nodeid} took {self.duration:.2f}s, "
            f"{self.ratio:.1f}x its median {self.median:.2f}s over {self.runs} runs"
        )


def regressions(
    results: Iterable[TestResult],
    baselines: Mapping[str, tuple[float, int]],
    threshold: float = DEFAULT_THRESHOLD,
) -> list[Regression]:
    """`baselines`: node id -> (median duration, runs). Worst ratio first."""
    found = []
    for result in results:
        if result.outcome is not Outcome.PASSED or result.nodeid not in baselines:
            continue
        median, runs = baselines[result.nodeid]
        grew = result.duration - median
        if runs >= MIN_RUNS and result.duration > threshold * median and grew >= MIN_GROWTH_SECONDS:
            found.append(Regression(result.nodeid, result.duration, median, runs))
    return sorted(found, key=lambda r: (-r.ratio, r.nodeid))


def judge_durations(
    summary: RunSummary,
    past: Mapping[str, tuple[float, int]],
    threshold: float,
    fail_on_regression: bool,
) -> RunSummary:
    """The run's summary with its regressions named in its notes (or that there were none), and
    with `fail_on_regression` a run that otherwise passed failing (exit 1) when there are some."""
    found = regressions(summary.results, past, threshold)
    judged = sum(1 for _, runs in past.values() if runs >= MIN_RUNS)
    notes = [r.describe() for r in found] or [
        f"performance regression: none ({judged} tests with {MIN_RUNS}+ past runs, threshold "
        f"{threshold:g}x their median)"
    ]
    code = summary.exit_code
    if found and fail_on_regression and code == ExitCode.OK:
        code = int(ExitCode.TESTS_FAILED)
    return replace(summary, notes=(*summary.notes, *notes), exit_code=code)
