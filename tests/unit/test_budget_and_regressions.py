"""`--time-budget` (what fits, in which order, and that what the budget left out does not fail
the run) and `--performance-regression` (the noise-aware rule)."""

from __future__ import annotations

import pytest

from test_framework.budget import (
    STARTUP_SECONDS,
    excuse_budget,
    over_budget_results,
    parse_budget,
    within_budget,
)
from test_framework.errors import UsageError
from test_framework.models import Outcome, RunSummary, TestResult
from test_framework.outcomes import count_outcomes, exit_code_for
from test_framework.regressions import judge_durations, regressions


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30.0), ("2m", 120.0), ("1.5h", 5400.0), ("45", 45.0)]
)
def test_a_budget_reads_as_people_write_it(text: str, seconds: float) -> None:
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "-3", "fast", "10x", "nan"])
def test_a_bad_budget_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="--time-budget expects a positive duration"):
        parse_budget(text)


def test_affected_first_then_recently_failed_then_fastest() -> None:
    nodeids = ["a.py::slow", "a.py::quick", "b.py::failed", "c.py::affected", "c.py::cheap"]
    durations = {
        "a.py::slow": 5.0,
        "a.py::quick": 0.2,
        "b.py::failed": 1.0,
        "c.py::affected": 1.5,
        "c.py::cheap": 0.1,
    }
    # One slot, room for 2.7 s of tests.
    budget = STARTUP_SECONDS + 2.7
    fits, over = within_budget(
        nodeids, budget, 1, durations, {"b.py::failed"}, affected={"c.py::affected"}
    )
    # affected 1.5, then the failed one 1.0 (2.5), then the fastest that still fits: 0.1; the
    # 0.2 s test no longer fits (2.8 > 2.7).
    assert fits == ["b.py::failed", "c.py::affected", "c.py::cheap"]
    assert over == ["a.py::slow", "a.py::quick"]


def test_the_budget_is_spread_over_the_slots() -> None:
    nodeids = [f"t.py::test_{i}" for i in range(10)]
    durations = dict.fromkeys(nodeids, 1.0)
    assert len(within_budget(nodeids, STARTUP_SECONDS + 2, 1, durations)[0]) == 2
    assert len(within_budget(nodeids, STARTUP_SECONDS + 2, 4, durations)[0]) == 8


def test_unknown_durations_count_as_the_median_of_the_known() -> None:
    nodeids = ["t.py::known_a", "t.py::known_b", "t.py::new"]
    durations = {"t.py::known_a": 1.0, "t.py::known_b": 3.0}
    fits, over = within_budget(nodeids, STARTUP_SECONDS + 3.0, 1, durations)
    assert fits == ["t.py::known_a", "t.py::new"]  # 1.0 + 2.0 (the median)
    assert over == ["t.py::known_b"]


def summary(results: list[TestResult]) -> RunSummary:
    return RunSummary(
        "run",
        tuple(results),
        count_outcomes(results),
        1.0,
        int(exit_code_for(results, interrupted=False)),
    )


def test_tests_the_budget_left_out_do_not_fail_the_run_but_failures_do() -> None:
    left_out = over_budget_results(["t.py::b"], 30.0)
    assert left_out[0].outcome is Outcome.NOT_RUN
    assert left_out[0].message == "not run: over the time budget (30s)"
    passed = TestResult("t.py::a", Outcome.PASSED, 0.1)
    ran = summary([passed, *left_out])
    assert ran.exit_code == 1  # a not-run test leaves the answer incomplete...
    assert excuse_budget(ran, {"t.py::b"}, False).exit_code == 0  # ...unless the budget chose it
    failing = summary([TestResult("t.py::a", Outcome.FAILED, 0.1), *left_out])
    assert excuse_budget(failing, {"t.py::b"}, False).exit_code == 1
    nothing_fit = summary(left_out)
    assert excuse_budget(nothing_fit, {"t.py::b"}, False).exit_code == 0


def result(nodeid: str, duration: float, outcome: Outcome = Outcome.PASSED) -> TestResult:
    return TestResult(nodeid, outcome, duration)


def test_a_regression_needs_the_ratio_the_growth_and_the_history() -> None:
    past = {
        "t.py::doubled": (1.0, 5),
        "t.py::tiny": (0.002, 9),  # 10x slower but only 18 ms more: noise
        "t.py::young": (1.0, 2),  # too few past runs to judge
        "t.py::failed": (1.0, 5),
        "t.py::steady": (1.0, 5),
    }
    results = [
        result("t.py::doubled", 2.5),
        result("t.py::tiny", 0.02),
        result("t.py::young", 9.0),
        result("t.py::failed", 9.0, Outcome.FAILED),
        result("t.py::steady", 1.9),
        result("t.py::new", 50.0),
    ]
    found = regressions(results, past, threshold=2.0)
    assert [(r.nodeid, r.ratio) for r in found] == [("t.py::doubled", 2.5)]
    assert found[0].describe() == (
        "performance regression: t.py::doubled took 2.50s, 2.5x its median 1.00s over 5 runs"
    )
    assert [r.nodeid for r in regressions(results, past, threshold=1.5)] == [
        "t.py::doubled",
        "t.py::steady",
    ]


def test_fail_on_regression_fails_a_run_that_passed_and_says_why() -> None:
    ran = summary([result("t.py::doubled", 2.5)])
    past = {"t.py::doubled": (1.0, 5)}
    named = judge_durations(ran, past, 2.0, fail_on_regression=False)
    assert named.exit_code == 0
    assert named.notes[-1].startswith("performance regression: t.py::doubled took 2.50s")
    assert judge_durations(ran, past, 2.0, fail_on_regression=True).exit_code == 1
    calm = judge_durations(ran, past, 3.0, fail_on_regression=True)
    assert calm.exit_code == 0
    assert calm.notes[-1] == (
        "performance regression: none (1 tests with 3+ past runs, threshold 3x their median)"
    )
