"""The store's history queries and its export/import/merge, on real SQLite files written by the
engine's own row writer (store/rows.py)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from test_framework.events import Event, RunContext, RunFinished, RunStarted, TestFinished
from test_framework.models import Outcome, Plan, RunSummary, TestResult
from test_framework.store.connection import open_store
from test_framework.store.history import baselines, recent_runs, runs_of_test, slowest_tests
from test_framework.store.rows import RunRows
from test_framework.store.transfer import (
    export_rows,
    import_rows,
    merge_documents,
    read_export,
    write_export,
)

pytestmark = pytest.mark.anyio


async def record_run(
    store: Path, project: str, run_id: str, at: float, results: list[TestResult]
) -> None:
    rows = RunRows()
    context = RunContext(run_id, project, "balanced", ("unit",))
    events: list[Event] = [
        RunStarted(context, Plan((), 0), 2, at=at),
        *(TestFinished(r, at=at + 1) for r in results),
        RunFinished(
            RunSummary(run_id, tuple(results), {"passed": len(results)}, 2.0, 0), at=at + 2
        ),
    ]
    async with open_store(store) as db:
        for event in events:
            for sql, params in rows.rows(event).writes:
                await db.execute(sql, params)
        await db.commit()


def passed(nodeid: str, duration: float) -> TestResult:
    return TestResult(nodeid, Outcome.PASSED, duration)


async def five_runs(store: Path, project: str) -> None:
    for i in range(5):
        await record_run(
            store,
            project,
            f"run-{i}",
            1000.0 + 10 * i,
            [passed("t.py::slow", 2.0 + i * 0.1), passed("t.py::quick", 0.01)],
        )


async def test_history_queries_see_runs_tests_and_baselines(tmp_path: Path) -> None:
    store = tmp_path / "results.sqlite"
    await five_runs(store, "/p")
    await record_run(store, "/other", "run-x", 5000.0, [passed("t.py::slow", 99.0)])
    async with open_store(store) as db:
        runs = await recent_runs(db, "/p", 3)
        assert [r.run_id for r in runs] == ["run-4", "run-3", "run-2"]
        assert runs[0].counts == {"passed": 2}
        slowest = await slowest_tests(db, "/p", 1)
        assert [t.nodeid for t in slowest] == ["t.py::slow"]
        mine = await runs_of_test(db, "/p", "t.py::slow", 20)
        assert [round(r.duration, 2) for r in mine] == [2.4, 2.3, 2.2, 2.1, 2.0]
        past = await baselines(db, "/p", ["t.py::slow", "t.py::quick", "t.py::none"], 20)
        assert past["t.py::slow"].median == pytest.approx(2.2)
        assert past["t.py::slow"].runs == 5
        assert "t.py::none" not in past


async def test_an_export_imports_under_another_root_and_merges_by_recency(
    tmp_path: Path,
) -> None:
    here = tmp_path / "here.sqlite"
    await five_runs(here, "/ci/checkout")
    async with open_store(here) as db:
        data = await export_rows(db, "/ci/checkout", 3)
    assert len(data["runs"]) == 3
    path = tmp_path / "durations.json.gz"
    write_export(path, data)
    assert gzip.decompress(path.read_bytes())  # compressed, by its name
    there = tmp_path / "there.sqlite"
    async with open_store(there) as db:
        assert await import_rows(db, "/home/me/project", read_export(path)) == 3
        assert await import_rows(db, "/home/me/project", read_export(path)) == 0  # idempotent
        runs = await recent_runs(db, "/home/me/project", 10)
        assert len(runs) == 3
        slowest = await slowest_tests(db, "/home/me/project", 5)
        assert {t.nodeid for t in slowest} == {"t.py::slow", "t.py::quick"}
    # Two shards' exports: a test's statistics from the later one win.
    older = json.loads(json.dumps(data))
    newer = json.loads(json.dumps(data))
    updated = list(data["columns"]["test_stats"]).index("updated_at")
    typical = list(data["columns"]["test_stats"]).index("ewma_duration")
    for row in newer["test_stats"]:
        row[updated] += 100
        row[typical] = 42.0
    merged = merge_documents([newer, older])
    assert {row[typical] for row in merged["test_stats"]} == {42.0}
    assert len(merged["runs"]) == 3


def test_an_export_of_another_shape_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a store export"):
        read_export(path)
    path.write_text("not json")
    with pytest.raises(ValueError, match="not JSON"):
        read_export(path)
