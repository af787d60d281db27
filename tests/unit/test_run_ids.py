"""Ids that change between collections: the run follows the ids its workers collect, and every
named test also carries its position."""

from __future__ import annotations

from test_framework.dispatch.ids import RunIds
from test_framework.models import Shard
from test_framework.planning import explicit_selection, named_tests
from test_framework.worker.selection import FileHead, FileSlice, FileTests

PLANNED = ["a.py::t[at-1-0]", "a.py::t[at-1-1]", "a.py::t[at-1-2]", "a.py::t[at-1-3]"]


def run_ids(*unstable: str) -> RunIds:
    ids = RunIds(unstable)
    ids.load([*PLANNED, "b.py::u"])
    return ids


def test_a_slice_collected_under_other_ids_takes_their_places_and_marks_the_file() -> None:
    ids = run_ids()
    shard = Shard(1, tuple(PLANNED[2:]), 0.1, (FileSlice("a.py", 1, 2),))
    assert ids.collected(shard, ["a.py::t[at-2-2]", "a.py::t[at-2-3]"]) == ["a.py"]
    assert ids.files["a.py"] == [*PLANNED[:2], "a.py::t[at-2-2]", "a.py::t[at-2-3]"]
    assert ids.unstable == {"a.py"}
    # Known now: not reported again.
    assert ids.collected(shard, ["a.py::t[at-3-2]", "a.py::t[at-3-3]"]) == []


def test_tests_that_moved_or_a_file_that_changed_length_rename_nothing() -> None:
    ids = run_ids()
    shard = Shard(1, tuple(PLANNED[2:]), 0.1, (FileSlice("a.py", 1, 2),))
    assert ids.collected(shard, [PLANNED[0], PLANNED[1]]) == []  # moved, not renamed
    assert ids.collected(shard, ["a.py::t[at-2-2]"]) == []  # one test fewer
    assert ids.files["a.py"] == PLANNED
    assert ids.unstable == set()


def test_a_head_and_the_files_a_worker_renamed_are_reported() -> None:
    ids = run_ids()
    head = Shard(1, tuple(PLANNED[:2]), 0.1, (FileHead("a.py", 2),))
    assert ids.collected(head, ["a.py::t[at-2-0]", "a.py::t[at-2-1]"]) == ["a.py"]
    named = Shard(2, ("b.py::u",), 0.1, (FileTests("b.py", ("b.py::u",)),))
    assert ids.collected(named, ["b.py::u"], renamed=["b.py"]) == ["b.py"]


def test_named_tests_carry_their_positions_among_the_files_ids() -> None:
    ids = run_ids()
    (entry,) = ids.selection([PLANNED[3], PLANNED[1]])
    assert entry == FileTests("a.py", (PLANNED[3], PLANNED[1]), (3, 1), 4)


def test_a_test_the_known_ids_lack_is_named_without_positions() -> None:
    assert named_tests("a.py", ["a.py::gone"], PLANNED) == FileTests("a.py", ("a.py::gone",))
    assert named_tests("a.py", PLANNED[:1], None) == FileTests("a.py", (PLANNED[0],))
    assert explicit_selection(["b.py::u"]) == (FileTests("b.py", ("b.py::u",)),)
