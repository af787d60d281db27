"""The ledger decides what each result means, as values: retry, final, stop, open a circuit."""

from __future__ import annotations

from test_framework.breaker import FailureBreaker
from test_framework.ledger import (
    Confirm,
    Final,
    Ledger,
    NeedsContext,
    OpenCircuit,
    Reproduce,
    Retry,
    RetryPolicy,
    Stop,
)
from test_framework.models import Outcome, PhaseReport, TestResult


def result(
    nodeid: str, outcome: Outcome, attempt: int = 1, error: str = "E   AssertionError: no"
) -> TestResult:
    failing = outcome in (Outcome.FAILED, Outcome.ERROR)
    report = PhaseReport(
        nodeid,
        "call",
        "failed" if failing else "passed",
        outcome.value,
        0.1,
        error if failing else "",
    )
    return TestResult(nodeid, outcome, 0.1, attempt=attempt, reports=(report,), shard_id=1)


def test_a_failure_with_retries_left_runs_again_after_a_jittered_backoff() -> None:
    ledger = Ledger(retry=RetryPolicy(retries=2, base_delay=1.0, factor=3.0, random=lambda: 0.0))
    first = result("a.py::t", Outcome.FAILED)
    assert ledger.record(first) == (Retry(first, 2, 0.5),)  # 1 s, jitter at its lowest: half
    second = result("a.py::t", Outcome.FAILED, attempt=2)
    assert ledger.record(second) == (Retry(second, 3, 1.5),)
    third = result("a.py::t", Outcome.FAILED, attempt=3)
    assert ledger.record(third) == (Final(third),)
    assert ledger.failures == 1


def test_the_backoff_is_capped_and_the_jitter_stays_within_half_to_all() -> None:
    high = RetryPolicy(base_delay=1.0, factor=10.0, max_delay=4.0, random=lambda: 1.0)
    assert high.delay(5) == 4.0
    low = RetryPolicy(base_delay=1.0, factor=10.0, max_delay=4.0, random=lambda: 0.0)
    assert low.delay(5) == 2.0


def test_a_pass_after_a_failure_is_flaky_and_final() -> None:
    ledger = Ledger(retry=RetryPolicy(retries=1, random=lambda: 0.5))
    ledger.record(result("a.py::t", Outcome.FAILED))
    (decision,) = ledger.record(result("a.py::t", Outcome.PASSED, attempt=2))
    assert isinstance(decision, Final)
    assert decision.result.outcome is Outcome.FLAKY
    assert decision.result.message == "passed on attempt 2"


def test_timeouts_and_file_level_results_are_never_retried() -> None:
    ledger = Ledger(retry=RetryPolicy(retries=3))
    timeout = result("a.py::t", Outcome.TIMEOUT)
    assert ledger.record(timeout) == (Final(timeout),)
    collect_error = result("b.py", Outcome.ERROR)
    assert ledger.record(collect_error) == (Final(collect_error),)


def test_maxfail_stops_once_with_the_reason() -> None:
    ledger = Ledger(maxfail=2)
    ledger.record(result("a.py::1", Outcome.FAILED))
    decisions = ledger.record(result("a.py::2", Outcome.ERROR))
    assert decisions[1:] == (Stop("stopping after 2 failures (maxfail=2)"),)
    assert ledger.stopped
    assert ledger.record(result("a.py::3", Outcome.FAILED))[1:] == ()


def test_a_stopped_run_does_not_retry() -> None:
    ledger = Ledger(retry=RetryPolicy(retries=2))
    assert ledger.stop("interrupted by SIGINT", interrupted=True) == Stop("interrupted by SIGINT")
    assert ledger.stop("again") is None
    failed = result("a.py::t", Outcome.FAILED)
    assert ledger.record(failed) == (Final(failed),)


def test_the_first_answer_for_a_test_is_kept() -> None:
    ledger = Ledger()
    passed = result("a.py::t", Outcome.PASSED)
    assert ledger.conclude(passed) == (Final(passed),)
    assert ledger.conclude(result("a.py::t", Outcome.FAILED)) == ()
    assert ledger.final["a.py::t"] is passed


def test_one_cause_behind_many_failures_opens_the_circuit_and_leaves_a_note() -> None:
    ledger = Ledger(breaker=FailureBreaker(2))
    refused = "E   ConnectionRefusedError: [Errno 111] refused"
    for index in range(2):
        ledger.record(result(f"db.py::t{index}", Outcome.FAILED, error=refused))
    decisions = ledger.record(result("db.py::probe", Outcome.FAILED, error=refused))
    (opened,) = [d for d in decisions if isinstance(d, OpenCircuit)]
    assert opened.opened.files == ("db.py",)
    assert ledger.skips() == {"db.py": opened.opened.reason}
    ledger.conclude(
        TestResult("db.py::later", Outcome.NOT_RUN, 0.0, message=f"not run: {opened.opened.reason}")
    )
    (note,) = ledger.summary("r", 0.1).notes
    assert "ConnectionRefusedError" in note
    assert note.endswith("it kept 1 tests from running, in db.py (1)")


def test_a_circuit_that_stopped_nothing_says_so() -> None:
    ledger = Ledger(breaker=FailureBreaker(1))
    refused = "E   ConnectionRefusedError: [Errno 111] refused"
    ledger.record(result("db.py::t0", Outcome.FAILED, error=refused))
    ledger.record(result("db.py::probe", Outcome.FAILED, error=refused))
    (note,) = ledger.summary("r", 0.1).notes
    assert note.endswith("every test of its files had already run")


def test_closing_reports_every_unanswered_test_not_run_and_the_summary_fails() -> None:
    ledger = Ledger()
    ledger.plan(["a.py::1", "a.py::2", "a.py::3"])
    ledger.conclude(result("a.py::2", Outcome.PASSED))
    ledger.stop("session timeout (4s) reached")
    closed = ledger.close()
    assert [d.result.nodeid for d in closed if isinstance(d, Final)] == ["a.py::1", "a.py::3"]
    assert all(
        d.result.message == "not run: session timeout (4s) reached"
        for d in closed
        if isinstance(d, Final)
    )
    summary = ledger.summary("run-1", 1.0, ["store warning"])
    assert [r.nodeid for r in summary.results] == ["a.py::1", "a.py::2", "a.py::3"]
    assert summary.counts == {"not_run": 2, "passed": 1}
    assert summary.exit_code == 1
    assert summary.errors == ("store warning",)


def test_an_interrupt_is_exit_two_and_a_clean_run_is_zero() -> None:
    clean = Ledger()
    clean.plan(["a.py::1"])
    clean.conclude(result("a.py::1", Outcome.PASSED))
    assert clean.summary("r", 0.1).exit_code == 0
    interrupted = Ledger()
    interrupted.stop("interrupted by SIGINT", interrupted=True)
    assert interrupted.summary("r", 0.1).exit_code == 2


def test_flaky_fails_the_run_only_when_asked() -> None:
    for flaky_fails, code in ((False, 0), (True, 1)):
        ledger = Ledger(retry=RetryPolicy(retries=1), flaky_fails=flaky_fails)
        ledger.plan(["a.py::t"])
        ledger.record(result("a.py::t", Outcome.FAILED))
        ledger.record(result("a.py::t", Outcome.PASSED, attempt=2))
        assert ledger.summary("r", 0.1).exit_code == code


def test_a_failure_waiting_for_its_retry_when_the_run_stops_stays_a_failure() -> None:
    ledger = Ledger(retry=RetryPolicy(retries=2, random=lambda: 0.5))
    ledger.plan(["a.py::t", "a.py::u"])
    failed = result("a.py::t", Outcome.FAILED)
    ledger.record(failed)
    ledger.stop("interrupted by SIGINT", interrupted=True)
    closed = ledger.close()
    finals = {d.result.nodeid: d.result for d in closed if isinstance(d, Final)}
    assert finals["a.py::t"].outcome is Outcome.FAILED
    assert finals["a.py::t"].reports == failed.reports  # the failure's text is kept
    assert finals["a.py::t"].message == "its retry did not run: interrupted by SIGINT"
    assert finals["a.py::u"].outcome is Outcome.NOT_RUN
    summary = ledger.summary("r", 0.1)
    assert summary.counts == {"failed": 1, "not_run": 1}
    assert summary.exit_code == 2


def test_a_planned_test_no_worker_collected_is_no_test_of_the_run() -> None:
    """Ids from an older collection (or ones that embed the time): the worker's are the truth."""
    ledger = Ledger()
    ledger.plan(["a.py::t[at-1]", "a.py::u"])
    ledger.collected(["a.py::t[at-1]", "a.py::u"], ["a.py::t[at-2]", "a.py::u"])
    ledger.conclude(result("a.py::t[at-2]", Outcome.PASSED))
    ledger.conclude(result("a.py::u", Outcome.PASSED))
    assert ledger.close() == ()
    summary = ledger.summary("r", 0.1)
    assert [r.nodeid for r in summary.results] == ["a.py::u", "a.py::t[at-2]"]
    assert summary.exit_code == 0


def test_a_failure_waiting_for_its_retry_is_kept_when_its_rerun_collects_nothing() -> None:
    ledger = Ledger(retry=RetryPolicy(retries=1, random=lambda: 0.5))
    ledger.plan(["a.py::t"])
    ledger.record(result("a.py::t", Outcome.FAILED))
    ledger.collected(["a.py::t"], [])
    (final,) = ledger.close()
    assert isinstance(final, Final)
    assert final.result.outcome is Outcome.FAILED


def test_a_failure_counts_for_maxfail_at_once_even_while_it_waits() -> None:
    """As pytest counts: the first failure stops a `--maxfail 1` run, retry or confirmation
    pending or not."""
    for ledger, context in (
        (Ledger(retry=RetryPolicy(retries=2), maxfail=1), None),
        (Ledger(maxfail=1), "in a narrowed collection"),
    ):
        decisions = ledger.record(result("a.py::t", Outcome.FAILED), context)
        assert decisions[-1] == Stop("stopping after 1 failures (maxfail=1)")
        assert isinstance(decisions[0], (Retry, Confirm))


def test_only_the_alone_rerun_decides_between_context_and_flake() -> None:
    ledger = Ledger()
    failed = result("a.py::t", Outcome.FAILED)
    ledger.record(failed, "in a narrowed collection")
    (reproduce,) = ledger.record(result("a.py::t", Outcome.PASSED, attempt=2))
    assert isinstance(reproduce, Reproduce)
    # Another confirmation that also ran it passes it again: not the alone rerun, no answer.
    assert ledger.record(result("a.py::t", Outcome.PASSED, attempt=2)) == ()
    decisions = ledger.record(result("a.py::t", Outcome.FAILED, attempt=3), alone=True)
    assert isinstance(decisions[0], Final)
    assert decisions[0].result.outcome is Outcome.PASSED  # pytest's answer, the context explained
    assert decisions[-1] == NeedsContext("a.py::t", "in a narrowed collection")
