"""The failure-class circuit breaker as pure logic: signatures, threshold, the half-open probe."""

from __future__ import annotations

import pytest

from test_framework.breaker import CircuitState, FailureBreaker, error_signature
from test_framework.models import Outcome, PhaseReport, TestResult

REFUSED = """    def connect():
>       sock.connect(sa)
E       ConnectionRefusedError: [Errno 111] Connection refused

socket.py:836: ConnectionRefusedError"""


def result(
    nodeid: str, longrepr: str = "", outcome: Outcome = Outcome.ERROR, when: str = "setup"
) -> TestResult:
    failed = outcome in (Outcome.FAILED, Outcome.ERROR)
    report = PhaseReport(
        nodeid=nodeid,
        when=when,
        outcome="failed" if failed else outcome.value,
        category="error" if outcome is Outcome.ERROR else outcome.value,
        duration=0.0,
        longrepr=longrepr,
    )
    return TestResult(nodeid=nodeid, outcome=outcome, duration=0.0, reports=(report,))


def test_the_signature_is_the_exception_type_and_message() -> None:
    assert (
        error_signature(result("a.py::t", REFUSED))
        == "ConnectionRefusedError: [Errno 111] Connection refused"
    )


def test_a_chained_exception_signs_with_the_last_one() -> None:
    text = (
        "E   KeyError: 'x'\n\nDuring handling of the above exception, another exception "
        "occurred:\n\n>   raise RuntimeError('db down')\nE   RuntimeError: db down\n"
    )
    assert error_signature(result("a.py::t", text)) == "RuntimeError: db down"


def test_addresses_and_temporary_paths_are_normalized_away() -> None:
    one = "E   ValueError: bad <Conn object at 0x7f3a2b> in /tmp/pytest-of-me/pytest-12/t0/db"
    two = "E   ValueError: bad <Conn object at 0x7f99ff> in /tmp/pytest-of-me/pytest-13/t1/db"
    assert error_signature(result("a.py::t", one)) == error_signature(result("a.py::u", two))
    assert "0x7f" not in (error_signature(result("a.py::t", one)) or "")


@pytest.mark.parametrize(
    "text",
    [
        "E       assert 1 == 2",
        "E   AssertionError: values differ",
        "E   where 3 = f()",
        "no exception lines at all",
    ],
)
def test_assertions_and_unnamed_failures_have_no_signature(text: str) -> None:
    assert error_signature(result("a.py::t", text, Outcome.FAILED, "call")) is None


def test_passed_and_engine_outcomes_have_no_signature() -> None:
    assert error_signature(result("a.py::t", REFUSED, Outcome.PASSED)) is None
    assert error_signature(result("a.py::t", REFUSED, Outcome.CRASHED)) is None


def test_threshold_failures_then_a_failing_probe_open_the_circuit() -> None:
    breaker = FailureBreaker(threshold=3)
    for n in range(3):
        assert breaker.record(result(f"a.py::t{n}", REFUSED)) is None
    assert breaker.open_files() == {}  # half-open: nothing skipped before the probe
    opened = breaker.record(result("a.py::t3", REFUSED))
    assert opened is not None
    assert opened.probe == "a.py::t3"
    assert opened.files == ("a.py",)
    assert opened.failures == ("a.py::t0", "a.py::t1", "a.py::t2", "a.py::t3")
    skips = breaker.open_files()
    assert list(skips) == ["a.py"]
    assert "ConnectionRefusedError" in skips["a.py"]
    assert "probe a.py::t3" in skips["a.py"]


def test_a_passing_probe_closes_the_circuit_and_counting_starts_again() -> None:
    breaker = FailureBreaker(threshold=2)
    breaker.record(result("a.py::t0", REFUSED))
    breaker.record(result("a.py::t1", REFUSED))
    assert breaker.circuits[next(iter(breaker.circuits))].state is CircuitState.HALF_OPEN
    assert breaker.record(result("a.py::t2", outcome=Outcome.PASSED)) is None
    assert breaker.open_files() == {}
    # Two fresh failures are needed again, then another probe.
    assert breaker.record(result("a.py::t3", REFUSED)) is None
    assert breaker.record(result("a.py::t4", REFUSED)) is None
    assert breaker.record(result("a.py::t5", REFUSED)) is not None


def test_a_probe_from_an_unaffected_file_is_not_a_probe() -> None:
    breaker = FailureBreaker(threshold=2)
    breaker.record(result("a.py::t0", REFUSED))
    breaker.record(result("a.py::t1", REFUSED))
    assert breaker.record(result("b.py::t0", outcome=Outcome.PASSED)) is None
    assert breaker.circuits[next(iter(breaker.circuits))].state is CircuitState.HALF_OPEN


def test_different_signatures_count_separately() -> None:
    breaker = FailureBreaker(threshold=2)
    breaker.record(result("a.py::t0", REFUSED))
    breaker.record(result("a.py::t1", "E   ImportError: no module named db"))
    assert all(c.state is CircuitState.CLOSED for c in breaker.circuits.values())


def test_threshold_zero_turns_the_breaker_off() -> None:
    breaker = FailureBreaker(threshold=0)
    for n in range(10):
        assert breaker.record(result(f"a.py::t{n}", REFUSED)) is None
    assert breaker.circuits == {}
