"""History as the planner and the limiter read it: what share of their time tests keep a core."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_framework.store.connection import connect_store
from test_framework.store.queries import History, load_history


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


def test_cpu_share_and_peak_rss_of_a_shard() -> None:
    known = History(
        durations={"a": 1.0, "b": 3.0},
        recent_failures=frozenset(),
        cpu={"a": 1.0, "b": 0.2},
        max_rss={"a": 50_000_000, "b": 400_000_000},
    )
    assert known.cpu_share(["a", "b", "unknown"]) == pytest.approx(1.2 / 4.0)
    assert known.cpu_share(["unknown"]) is None
    assert known.peak_rss(["a", "b"]) == 400_000_000
    assert known.peak_rss(["unknown"]) == 0


@pytest.mark.anyio
async def test_the_store_gives_back_each_tests_peak_rss(tmp_path: Path) -> None:
    db = await connect_store(tmp_path / "results.sqlite")
    try:
        await db.execute(
            "INSERT INTO test_stats (project, nodeid, ewma_duration, ewma_cpu, max_rss, runs)"
            " VALUES ('p', 't.py::a', 0.5, 0.1, 123456, 1), ('p', 't.py::b', 0.5, NULL, NULL, 1)"
        )
        await db.commit()
        loaded = await load_history(db, "p")
    finally:
        await db.close()
    assert loaded.max_rss == {"t.py::a": 123456}
    assert loaded.cpu == {"t.py::a": 0.1}
