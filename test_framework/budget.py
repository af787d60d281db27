"""`--time-budget 30s`: what fits in a given wall time, most useful first.

The order: the tests the change affects (`--changed`), then the ones that failed recently,
then the rest fastest first (more tests checked per second). Tests are taken in that order
while their expected time, spread over the run's worker slots, fits in the budget less the
run's start-up; a test with no stored duration counts as the median of the known ones. What
does not fit is reported `not_run` with the reason, and does not fail the run (the budget
chose it); the run is planned, not cut off: a test slower than its record still finishes.
Pure over numbers, like planning.
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

from .errors import UsageError
from .exit_codes import ExitCode
from .models import Outcome, RunSummary, TestResult, engine_result
from .outcomes import exit_code_for

# Start-up and collection before the first test, which the budget pays too.
STARTUP_SECONDS = 1.0
UNKNOWN_SECONDS = 0.5
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_budget(text: str) -> float:
    """`30s`, `2m`, `1.5h` or plain seconds (`45`)."""
    raw = text.strip().lower()
    unit = _UNITS.get(raw[-1:]) if raw else None
    number = raw[:-1] if unit is not None else raw
    try:
        value = float(number) * (unit or 1.0)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise UsageError(
            f"--time-budget expects a positive duration such as 30s, 2m or 90; got {text!r}"
        )
    return value


def within_budget(
    nodeids: Sequence[str],
    budget: float,
    slots: int,
    durations: Mapping[str, float],
    recent_failures: Collection[str] = (),
    affected: Collection[str] | None = None,
) -> tuple[list[str], list[str]]:
    """(the tests that fit, in collection order; the ones that do not, in collection order)."""
    known = [durations[n] for n in nodeids if n in durations]
    fallback = statistics.median(known) if known else UNKNOWN_SECONDS
    cost = {n: durations.get(n, fallback) for n in nodeids}
    order = {n: i for i, n in enumerate(nodeids)}

    def priority(nodeid: str) -> tuple[bool, bool, float, int]:
        unaffected = affected is not None and nodeid not in affected
        return (unaffected, nodeid not in recent_failures, cost[nodeid], order[nodeid])

    room = max(0.0, budget - STARTUP_SECONDS) * max(1, slots)
    chosen: set[str] = set()
    spent = 0.0
    for nodeid in sorted(nodeids, key=priority):
        if spent + cost[nodeid] > room:
            continue  # a cheaper one later may still fit
        spent += cost[nodeid]
        chosen.add(nodeid)
    fits = [n for n in nodeids if n in chosen]
    return fits, [n for n in nodeids if n not in chosen]


def over_budget_results(nodeids: Sequence[str], budget: float | None) -> list[TestResult]:
    return [
        engine_result(n, Outcome.NOT_RUN, "call", f"not run: over the time budget ({budget:g}s)")
        for n in nodeids
    ]


def excuse_budget(summary: RunSummary, over: Collection[str], flaky_fails: bool) -> RunSummary:
    """The exit code as if the tests the budget left out had not been asked for: they do not
    fail the run, and a run where nothing fitted has checked nothing wrong (0)."""
    asked = [r for r in summary.results if r.nodeid not in over]
    if summary.interrupted or not asked:
        return summary if summary.interrupted else replace(summary, exit_code=int(ExitCode.OK))
    code = exit_code_for(asked, interrupted=False, flaky_fails=flaky_fails)
    return replace(summary, exit_code=max(int(code), _worse_than_failures(summary.exit_code)))


def _worse_than_failures(code: int) -> int:
    return code if code > ExitCode.TESTS_FAILED and code != ExitCode.NO_TESTS_COLLECTED else 0
