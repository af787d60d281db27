"""The skip cache's decision: a file is cached only when everything it depended on is as
recorded; any doubt runs it, and a change no record can place runs everything."""

from __future__ import annotations

import random

from test_framework.fingerprint.dependencies import conftest_chain
from test_framework.models import FileRecord, Outcome
from test_framework.skip_cache import CacheDecision, confirm, decide, sample, unplaced_changes

NOW = 1_000_000.0
DAY = 24 * 3600.0
DIGESTS = {"tests/test_a.py": "a1", "pkg/leaf.py": "l1", "conftest.py": "c1", "data.json": "d1"}


def record(**changes: object) -> FileRecord:
    values: dict[str, object] = {
        "test_file": "tests/test_a.py",
        "environment": "env1",
        "dependencies": dict(DIGESTS),
        "outcomes": {"tests/test_a.py::t1": Outcome.PASSED, "tests/test_a.py::t2": Outcome.SKIPPED},
        "recorded_at": NOW - 60,
    }
    values.update(changes)
    return FileRecord(**values)  # type: ignore[arg-type]


COLLECTED = {"tests/test_a.py": ["tests/test_a.py::t1", "tests/test_a.py::t2"]}


def run_decide(rec: FileRecord | None, digests: dict[str, str] | None = None, **kw: object):  # type: ignore[no-untyped-def]
    now_digests = {**DIGESTS, **(digests or {})}
    options: dict[str, object] = {
        "environment": "env1",
        "digest": lambda path: now_digests.get(path, "missing"),
        "unplaced": (),
        "now": NOW,
        "ttl_seconds": DAY,
        **kw,
    }
    records = {} if rec is None else {rec.test_file: rec}
    return decide(COLLECTED, records, **options)  # type: ignore[arg-type]


def test_a_file_whose_every_input_is_as_recorded_is_cached() -> None:
    decision = run_decide(record())
    assert set(decision.cached) == {"tests/test_a.py"}
    assert decision.cached_outcomes()["tests/test_a.py::t1"] == (Outcome.PASSED, NOW - 60)


def test_each_doubt_runs_the_file_and_says_why() -> None:
    cases = {
        "never recorded": run_decide(None),
        "a dependency changed": run_decide(record(), {"pkg/leaf.py": "l2"}),
        "a data file it read changed": run_decide(record(), {"data.json": "d2"}),
        "a dependency is gone": run_decide(record(), {"conftest.py": "missing"}),
        "the environment changed": run_decide(record(environment="env0")),
        "past the TTL": run_decide(record(recorded_at=NOW - 2 * DAY)),
        "a new test": run_decide(record(outcomes={"tests/test_a.py::t1": Outcome.PASSED})),
        "needs pytest's context": run_decide(record(), always_run=["tests/test_a.py"]),
    }
    for case, decision in cases.items():
        assert not decision.cached, case
        assert decision.runs["tests/test_a.py"], case


def test_a_failed_or_flaky_test_runs_alone_and_the_rest_of_its_file_is_reported() -> None:
    for failing in (Outcome.FAILED, Outcome.ERROR, Outcome.FLAKY):
        decision = run_decide(
            record(outcomes={"tests/test_a.py::t1": failing, "tests/test_a.py::t2": Outcome.PASSED})
        )
        assert set(decision.cached) == {"tests/test_a.py"}, failing
        assert decision.rerun() == {"tests/test_a.py::t1"}, failing
        assert set(decision.cached_outcomes()) == {"tests/test_a.py::t2"}, failing
        # The trip-wire samples only what would be reported; a failing test runs anyway.
        assert sample(decision, 1.0, random.Random(1).random) == ("tests/test_a.py::t2",)
    # Once its file changes, the whole file runs, as any other doubt makes it.
    changed = run_decide(
        record(
            outcomes={"tests/test_a.py::t1": Outcome.FAILED, "tests/test_a.py::t2": Outcome.PASSED}
        ),
        {"pkg/leaf.py": "l2"},
    )
    assert not changed.cached
    assert not changed.rerun()


def test_a_change_no_record_places_runs_everything() -> None:
    decision = run_decide(record(), unplaced=["scripts/tool.py"])
    assert not decision.cached
    assert "scripts/tool.py" in decision.runs["tests/test_a.py"]


def test_unplaced_changes_are_changed_added_or_removed_files_no_record_names() -> None:
    previous = {"pkg/leaf.py": "l1", "scripts/tool.py": "t1", "old.py": "o1"}
    current = {"pkg/leaf.py": "l2", "scripts/tool.py": "t2", "new.py": "n1"}
    assert unplaced_changes(previous, current, placed={"pkg/leaf.py"}) == [
        "new.py",
        "old.py",
        "scripts/tool.py",
    ]
    assert unplaced_changes(previous, previous, placed=()) == []


def test_the_conftest_chain_runs_from_the_rootdir_down() -> None:
    present = {"conftest.py", "tests/conftest.py", "tests/unit/conftest.py"}
    assert conftest_chain("tests/unit/test_a.py", present.__contains__) == [
        "conftest.py",
        "tests/conftest.py",
        "tests/unit/conftest.py",
    ]
    assert conftest_chain("test_top.py", present.__contains__) == ["conftest.py"]


def test_changed_selects_files_whose_dependencies_changed_and_names_unplaced_ones() -> None:
    from test_framework.skip_cache import affected

    deps = {"t/test_a.py": {"t/test_a.py", "pkg/a.py"}, "t/test_b.py": {"t/test_b.py"}}
    selected, unplaced = affected(
        ["t/test_a.py", "t/test_b.py", "t/test_new.py"],
        deps.get,
        ["pkg/a.py", "README.md"],
    )
    assert selected == ["t/test_a.py", "t/test_new.py"]  # a file never recorded: affected
    assert unplaced == ["README.md"]
    assert affected(["t/test_b.py"], deps.get, ["t/test_b.py"]) == (["t/test_b.py"], [])


def cached_files(tests_per_file: dict[str, int]) -> CacheDecision:
    return CacheDecision(
        cached={
            name: record(
                test_file=name,
                outcomes={f"{name}::t{i}": Outcome.PASSED for i in range(count)},
            )
            for name, count in tests_per_file.items()
        }
    )


def test_the_sample_lands_in_as_few_files_as_it_can() -> None:
    decision = cached_files({f"tests/test_{i}.py": 10 for i in range(20)})
    for seed in range(20):
        chosen = sample(decision, 0.05, random.Random(seed).random)  # 10 of 200 tests
        assert len(chosen) == 10
        assert len(set(chosen)) == 10
        assert len({nodeid.split("::")[0] for nodeid in chosen}) == 1
    # Over runs, the files it lands in change.
    firsts = {sample(decision, 0.05, random.Random(seed).random)[0] for seed in range(20)}
    assert len({nodeid.split("::")[0] for nodeid in firsts}) > 5


def test_a_sample_larger_than_a_file_spills_into_the_next_and_is_at_least_one() -> None:
    decision = cached_files({"tests/test_a.py": 3, "tests/test_b.py": 3, "tests/test_c.py": 3})
    chosen = sample(decision, 0.5, random.Random(1).random)  # 5 of 9
    assert len(chosen) == 5
    assert len({nodeid.split("::")[0] for nodeid in chosen}) == 2
    assert len(sample(decision, 0.001, random.Random(1).random)) == 1
    assert sample(decision, 0.0, random.Random(1).random) == ()
    assert sample(CacheDecision(), 0.5, random.Random(1).random) == ()
    everything = sample(decision, 1.0, random.Random(1).random)
    assert sorted(everything) == sorted(decision.cached_outcomes())


def test_confirm_narrows_a_decision_made_before_collection() -> None:
    decision = cached_files({"tests/test_a.py": 2, "tests/test_b.py": 2, "tests/test_c.py": 1})
    confirm(
        decision,
        {
            "tests/test_a.py": ["tests/test_a.py::t0", "tests/test_a.py::t1"],
            "tests/test_b.py": ["tests/test_b.py::t0", "tests/test_b.py::new"],
        },
    )
    assert list(decision.cached) == ["tests/test_a.py"]  # test_c.py: not in this run
    assert decision.runs == {"tests/test_b.py": "its tests are not the recorded ones"}


def test_the_sample_favours_quick_tests_yet_reaches_slow_ones() -> None:
    """Weighted by the inverse of each test's stored duration: ten times slower, about ten
    times rarer; without durations, every test alike."""
    outcomes = {f"t.py::fast{i}": Outcome.PASSED for i in range(50)}
    outcomes |= {f"t.py::slow{i}": Outcome.PASSED for i in range(50)}
    decision = CacheDecision(cached={"t.py": FileRecord("t.py", "e", {}, outcomes, NOW)})
    durations = {n: 0.005 if "fast" in n else 0.05 for n in outcomes}

    def slow_share(with_durations: dict[str, float] | None) -> tuple[float, int]:
        draws = [
            sample(decision, 0.1, random.Random(seed).random, with_durations) for seed in range(200)
        ]
        slow = [n for drawn in draws for n in drawn if "slow" in n]
        return len(slow) / sum(map(len, draws)), len(set(slow))

    share, reached = slow_share(durations)
    assert share < 0.2
    assert reached > 25  # most slow tests were drawn at least once
    assert 0.4 < slow_share(None)[0] < 0.6


def test_the_plugins_workers_draw_the_controllers_weighted_sample() -> None:
    """Under pytest-xdist each worker draws the sample from what the controller sent: the
    records, the seed and the stored durations, so every process skips the same tests."""
    from test_framework.pytest_plugin.session import Candidates

    outcomes = {f"t.py::t{i}": Outcome.PASSED for i in range(40)}
    records = {"t.py": FileRecord("t.py", "e", {}, outcomes, NOW)}
    durations = {n: (0.001 if i % 2 else 2.0) for i, n in enumerate(outcomes)}
    controller = Candidates(records, 7, 0.25, durations)
    worker = Candidates.from_input(controller.to_input())
    assert worker.durations == durations
    collected = {"t.py": list(outcomes)}
    _, _, drawn = controller.narrowed(collected)
    assert worker.narrowed(collected)[2] == drawn
    assert sum(durations[n] == 2.0 for n in drawn) <= 2  # the slow half is rarely drawn
