"""History as the planner and the limiter read it: what share of their time tests keep a core."""

from __future__ import annotations

import pytest

from test_framework.store.queries import History


def history(durations: dict[str, float], cpu: dict[str, float]) -> History:
    return History(durations=durations, recent_failures=frozenset(), cpu=cpu)


def test_cpu_fraction_of_waiting_tests_is_small() -> None:
    known = history({"a": 1.0, "b": 1.0}, {"a": 0.05, "b": 0.05})
    assert known.cpu_fraction(["a", "b"]) == pytest.approx(0.05)


def test_cpu_fraction_is_capped_at_one_core() -> None:
    threaded = history({"a": 1.0}, {"a": 1.8})  # two threads busy: still one slot's worth
    assert threaded.cpu_fraction(["a"]) == 1.0


def test_a_mostly_busy_test_counts_as_cpu_bound() -> None:
    """Measured while contended, a CPU-bound test looks 60 % busy; it must not read as 'room
    for more workers'."""
    contended = history({"a": 1.0}, {"a": 0.6})
    assert contended.cpu_fraction(["a"]) == 1.0


def test_cpu_fraction_needs_most_tests_known() -> None:
    partial = history({"a": 1.0}, {"a": 0.1})
    assert partial.cpu_fraction(["a", "b", "c"]) is None
    assert partial.cpu_fraction([]) is None
    assert partial.cpu_fraction(["a", "b"]) == pytest.approx(0.1)
