"""Planning: every test in exactly one shard, longest first, files whole unless too long."""

from __future__ import annotations

from collections import Counter

import pytest

from test_framework.models import Shard, file_of
from test_framework.planning import (
    DEFAULT_TEST_ESTIMATE,
    SERIAL_WEIGHT,
    PlanInput,
    estimate_durations,
    explicit_selection,
    make_plan,
    pick_next,
    plan_slots,
    split_contiguous,
    steal_pieces,
)
from test_framework.worker.selection import FileSlice, FileTests


def plan_input(
    nodeids: list[str], durations: dict[str, float] | None = None, **kw: object
) -> PlanInput:
    options: dict[str, object] = {
        "recent_failures": (),
        "slots": 2,
        "shards_per_slot": 3,
        "min_shard_seconds": 0.0,
    }
    options.update(kw)
    return PlanInput(nodeids=nodeids, durations=durations or {}, **options)  # type: ignore[arg-type]


def suite(files: int, tests: int) -> list[str]:
    return [f"tests/test_{f}.py::test_{t}" for f in range(files) for t in range(tests)]


def test_every_test_lands_in_exactly_one_shard() -> None:
    nodeids = suite(7, 5)
    shards = make_plan(plan_input(nodeids))
    counted = Counter(n for s in shards for n in s.nodeids)
    assert set(counted) == set(nodeids)
    assert set(counted.values()) == {1}


def test_shard_ids_are_unique_and_start_at_one() -> None:
    shards = make_plan(plan_input(suite(10, 2)))
    assert [s.shard_id for s in shards] == list(range(1, len(shards) + 1))


def test_longest_shard_first() -> None:
    nodeids = suite(6, 2)
    durations = {n: (5.0 if "test_3.py" in n else 0.1) for n in nodeids}
    shards = make_plan(plan_input(nodeids, durations))
    expected = [s.expected_duration for s in shards]
    assert expected == sorted(expected, reverse=True)
    assert any("test_3.py" in n for n in shards[0].nodeids)


def test_small_files_stay_whole() -> None:
    shards = make_plan(plan_input(suite(12, 3)))
    for planned in shards:
        for entry in planned.selection:
            assert entry == FileSlice(entry.file, 0, 1)


def test_a_file_longer_than_a_shard_is_cut_into_contiguous_parts() -> None:
    nodeids = suite(1, 40) + suite(3, 1)[1:]
    durations = {n: 1.0 for n in nodeids}
    shards = make_plan(plan_input(nodeids, durations, slots=4, shards_per_slot=1))
    parts = [e for s in shards for e in s.selection if e.file == "tests/test_0.py"]
    assert len(parts) > 1
    slices = sorted((e.part, e.parts) for e in parts if isinstance(e, FileSlice))
    assert slices == [(k, len(parts)) for k in range(len(parts))]
    # Slices of one file keep pytest's order inside each shard.
    for planned in shards:
        ids = [n for n in planned.nodeids if file_of(n) == "tests/test_0.py"]
        assert ids == sorted(ids, key=nodeids.index)


def parts_of(shards: list[Shard], file: str) -> int:
    return len([e for s in shards for e in s.selection if e.file == file])


def test_where_each_shard_collects_its_files_a_file_is_cut_only_past_a_slots_share() -> None:
    """Collected once per slice (an early zygote, spawned workers), a file is cut only when it
    alone would hold a slot longer than the slots' fair share of the work."""
    # tests/test_0.py: 10 s of 30 s. Eight shards for two slots: a shard is 3.75 s, a slot's
    # share 15 s.
    nodeids = suite(1, 10) + [f"tests/test_{f}.py::test_{i}" for f in (1, 2) for i in range(10)]
    durations = {n: 1.0 for n in nodeids}
    options = {"slots": 2, "shards_per_slot": 4}
    assert parts_of(make_plan(plan_input(nodeids, durations, **options)), "tests/test_0.py") > 1
    whole = make_plan(plan_input(nodeids, durations, collects_per_shard=True, **options))
    assert parts_of(whole, "tests/test_0.py") == 1
    assert sorted(n for s in whole for n in s.nodeids) == sorted(nodeids)
    # 40 s of 60 s is more than a slot's 30 s share: still cut.
    big = suite(1, 40) + [f"tests/test_1.py::test_{i}" for i in range(20)]
    cut = make_plan(plan_input(big, {n: 1.0 for n in big}, collects_per_shard=True, **options))
    assert parts_of(cut, "tests/test_0.py") > 1


def test_recent_failures_run_first() -> None:
    nodeids = suite(6, 2)
    durations = {n: (5.0 if "test_0.py" in n else 0.1) for n in nodeids}
    failing = {"tests/test_5.py::test_1"}
    shards = make_plan(plan_input(nodeids, durations, recent_failures=failing))
    assert "tests/test_5.py::test_1" in shards[0].nodeids


def test_short_suite_becomes_one_shard() -> None:
    nodeids = suite(5, 2)
    shards = make_plan(plan_input(nodeids, min_shard_seconds=1.5))
    assert len(shards) == 1


def test_shard_count_bounded_by_slots_times_shards_per_slot() -> None:
    nodeids = suite(50, 1)
    durations = {n: 1.0 for n in nodeids}
    shards = make_plan(plan_input(nodeids, durations, slots=3, shards_per_slot=2))
    assert len(shards) == 6


def test_explicit_ids_mode_names_every_test() -> None:
    nodeids = suite(2, 3)
    shards = make_plan(plan_input(nodeids, explicit_ids=True))
    named = [n for s in shards for e in s.selection if isinstance(e, FileTests) for n in e.nodeids]
    assert all(isinstance(e, FileTests) for s in shards for e in s.selection)
    assert sorted(named) == sorted(nodeids)


def test_estimates_use_file_then_suite_medians() -> None:
    nodeids = ["a.py::x", "a.py::y", "b.py::z", "c.py::w"]
    estimates = estimate_durations(nodeids, {"a.py::x": 2.0, "b.py::z": 4.0})
    assert estimates["a.py::y"] == 2.0  # its file's median
    assert estimates["c.py::w"] == 3.0  # the suite's median
    assert estimate_durations(["d.py::q"], {})["d.py::q"] == DEFAULT_TEST_ESTIMATE


def test_empty_plan() -> None:
    assert make_plan(plan_input([])) == []


def test_explicit_selection_groups_by_file_in_order() -> None:
    selection = explicit_selection(["b.py::1", "a.py::2", "b.py::3"])
    assert selection == (
        FileTests("b.py", ("b.py::1", "b.py::3")),
        FileTests("a.py", ("a.py::2",)),
    )


@pytest.mark.parametrize("slots", [1, 2, 8, 64])
def test_plans_scale_to_many_slots(slots: int) -> None:
    nodeids = suite(200, 5)
    durations = {n: 0.2 for n in nodeids}
    shards = make_plan(plan_input(nodeids, durations, slots=slots, shards_per_slot=2))
    assert len(shards) == min(200, slots * 2)
    assert sum(len(s.nodeids) for s in shards) == len(nodeids)


def test_serial_tests_get_one_shard_that_must_run_alone() -> None:
    nodeids = suite(3, 3)
    serial = {"tests/test_1.py::test_0", "tests/test_2.py::test_2"}
    shards = make_plan(plan_input(nodeids, serial=serial))
    first = shards[0]
    assert set(first.nodeids) == serial
    assert first.weight == SERIAL_WEIGHT
    assert all(s.weight == 1 for s in shards[1:])
    counted = Counter(n for s in shards for n in s.nodeids)
    assert set(counted) == set(nodeids)
    assert set(counted.values()) == {1}


def test_only_unconstrained_shards_may_have_their_tail_stolen() -> None:
    """A serial or resource shard split over two workers would run its tests side by side."""
    nodeids = suite(3, 3)
    serial = {"tests/test_1.py::test_0"}
    resources = {"tests/test_2.py::test_1": ("db",), "tests/test_2.py::test_2": ("db",)}
    shards = make_plan(plan_input(nodeids, serial=serial, resources=resources))
    for planned in shards:
        constrained = set(planned.nodeids) & (serial | set(resources))
        assert planned.splittable is not bool(constrained)
    assert any(p.splittable for p in shards)


def test_files_with_constrained_tests_name_their_other_tests() -> None:
    """A slice of a file would pick up its serial test again; explicit ids cannot."""
    nodeids = suite(2, 3)
    shards = make_plan(plan_input(nodeids, serial={"tests/test_0.py::test_1"}))
    for planned in shards[1:]:
        for entry in planned.selection:
            if entry.file == "tests/test_0.py":
                assert isinstance(entry, FileTests)
                assert "tests/test_0.py::test_1" not in entry.nodeids


def test_tests_sharing_a_resource_share_a_shard_transitively() -> None:
    nodeids = suite(4, 2)
    resources = {
        "tests/test_0.py::test_0": ["db"],
        "tests/test_1.py::test_0": ["db", "port"],
        "tests/test_2.py::test_1": ["port"],
        "tests/test_3.py::test_1": ["gpu"],
    }
    shards = make_plan(plan_input(nodeids, resources=resources))

    def shard_of(nodeid: str) -> int:
        return next(s.shard_id for s in shards if nodeid in s.nodeids)

    db_port = {shard_of(n) for n in list(resources)[:3]}
    assert len(db_port) == 1
    assert shard_of("tests/test_3.py::test_1") not in db_port
    others = [n for n in nodeids if n not in resources]
    assert all(shard_of(n) not in db_port for n in others)


def test_a_resource_limit_allows_that_many_shards() -> None:
    nodeids = suite(1, 6)
    resources = {n: ["db"] for n in nodeids}
    shards = make_plan(plan_input(nodeids, resources=resources, resource_limits={"db": 3}))
    assert len(shards) == 3
    assert sorted(len(s.nodeids) for s in shards) == [2, 2, 2]


@pytest.mark.parametrize(
    ("shares", "running", "expected"),
    [
        ([0.9, 0.1, 0.5], 1.0, 0),  # a core to spare: the longest goes first
        ([0.9, 0.1, 0.5], 2.0, 1),  # every core busy: the one that waits most goes first
        ([0.1, 0.9], 2.0, 0),  # the first already waits most
        ([None, 0.2], 2.0, 1),  # an unknown head yields to a known waiting one
        ([0.9, None], 2.0, 0),  # unknown costs are never preferred
        ([None, None], 3.0, 0),
        ([0.98, 0.95, 0.9], 2.0, 0),  # all busy: longest first, never reordered
        ([0.9, 0.6], 2.0, 0),  # 0.6 is busy too
        ([], 5.0, 0),
    ],
)
def test_pick_next_mixes_waiting_shards_in_when_busy_ones_fill_the_cores(
    shares: list[float | None], running: float, expected: int
) -> None:
    assert pick_next(shares, running, cores=2) == expected


def test_one_free_slot_halves_the_largest_tail() -> None:
    assert steal_pieces(1, [(5.0, 10), (3.0, 10)], 0.2) == [1, 0]


def test_many_free_slots_cut_every_tail_at_once_round_robin() -> None:
    # Tails sorted largest first, as the orchestrator hands them in.
    assert steal_pieces(5, [(5.0, 10), (3.0, 10)], 0.2) == [3, 2]


def test_every_piece_keeps_a_test_and_is_worth_a_fork() -> None:
    # 4 tests: at most 3 pieces besides the part that stays; 1 s at 0.2 s a piece: at most 4.
    assert steal_pieces(50, [(10.0, 4), (1.0, 40), (0.3, 10)], 0.2) == [3, 4, 0]


def test_no_free_slot_steals_nothing() -> None:
    assert steal_pieces(0, [(10.0, 10)], 0.2) == [0]


@pytest.mark.parametrize("count", [1, 2, 5, 9])
@pytest.mark.parametrize("parts", [1, 2, 3, 12])
def test_split_contiguous_keeps_order_and_balance(count: int, parts: int) -> None:
    nodeids = [f"t.py::t{i}" for i in range(count)]
    runs = split_contiguous(nodeids, parts)
    assert [n for run in runs for n in run] == nodeids
    assert len(runs) == min(parts, count)
    assert max(map(len, runs)) - min(map(len, runs)) <= 1


@pytest.mark.parametrize(
    ("tests", "known", "forked", "busy", "fixed", "slots"),
    [
        (100, 0, True, None, 3, 3),  # --workers wins
        (100, 0, False, None, None, 2),  # spawn: the starting workers, a spawn is dear
        (100, 80, True, 12, None, 12),  # known costs: what the CPU share says
        (100, 80, True, None, None, 16),  # known durations, no shares: the ceiling
        (100, 10, True, None, None, 8),  # unknown costs: four per starting worker
    ],
)
def test_plan_slots(
    tests: int, known: int, forked: bool, busy: int | None, fixed: int | None, slots: int
) -> None:
    assert (
        plan_slots(
            tests=tests, known=known, forked=forked, busy=busy, initial=2, maximum=16, fixed=fixed
        )
        == slots
    )


def test_a_test_longer_than_half_a_shard_runs_alone_and_first() -> None:
    """Behind a long test in its file's slice, the tests after it could not go to a free worker
    until it ended (a worker hands back its tail only between tests)."""
    primes = [f"tests/test_recipes.py::test_{k}" for k in range(5)]
    others = [f"tests/test_more.py::test_{k}" for k in range(8)]
    durations = {n: 0.5 for n in primes + others}
    durations["tests/test_recipes.py::test_2"] = 10.0
    shards = make_plan(plan_input(primes + others, durations, shards_per_slot=2))
    assert shards[0].nodeids == ("tests/test_recipes.py::test_2",)
    assert shards[0].selection == (
        FileTests("tests/test_recipes.py", ("tests/test_recipes.py::test_2",), (2,), 5),
    )
    counted = Counter(n for s in shards for n in s.nodeids)
    assert set(counted) == set(primes + others)
    assert set(counted.values()) == {1}
    # Its neighbours run in file order, named, in contiguous runs around it.
    runs = [s.nodeids for s in shards if any("recipes" in n for n in s.nodeids)]
    assert sorted(runs) == [
        ("tests/test_recipes.py::test_0", "tests/test_recipes.py::test_1"),
        ("tests/test_recipes.py::test_2",),
        ("tests/test_recipes.py::test_3", "tests/test_recipes.py::test_4"),
    ]


def test_without_a_long_test_files_are_sliced_as_before() -> None:
    nodeids = suite(2, 6)
    shards = make_plan(plan_input(nodeids, dict.fromkeys(nodeids, 0.5)))
    assert all(isinstance(e, FileSlice) for s in shards for e in s.selection)
