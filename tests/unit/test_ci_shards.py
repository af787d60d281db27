"""`--shard K/N`: the split (disjoint, complete, deterministic, balanced within its stated bound),
and shard reports checked (`shard-verify`) and merged (`merge-reports`)."""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from test_framework.ci_shards import ShardSpec, parse_shard, selection_digest, split
from test_framework.errors import UsageError
from test_framework.reporting.merge import merge, merged_exit_code, verify
from test_framework.reporting.run_document import RunDocument, RunMetrics, TestRecord


def suite(files: int, tests_per_file: int, seed: int = 3) -> tuple[list[str], dict[str, float]]:
    rng = random.Random(seed)
    nodeids = [
        f"tests/test_{f:03}.py::test_{t}" for f in range(files) for t in range(tests_per_file)
    ]
    durations = {n: rng.lognormvariate(-3, 1.5) for n in nodeids}
    return nodeids, durations


@pytest.mark.parametrize("text", ["3", "0/4", "5/4", "a/b", "2/", "/2", "-1/2"])
def test_a_bad_shard_is_a_usage_error_that_says_what_is_valid(text: str) -> None:
    with pytest.raises(UsageError, match=r"--shard expects K/N with 1 <= K <= N .*e\.g\. 2/4"):
        parse_shard(text)


def test_a_shard_reads_as_people_write_it() -> None:
    assert parse_shard("2/4") == ShardSpec(2, 4)
    assert str(ShardSpec(2, 4)) == "2/4"


@pytest.mark.parametrize("total", [1, 2, 3, 7, 16])
def test_the_parts_are_disjoint_complete_and_in_collection_order(total: int) -> None:
    nodeids, durations = suite(40, 12)
    parts = split(nodeids, durations, total)
    assert len(parts) == total
    joined = [n for part in parts for n in part]
    assert sorted(joined) == sorted(nodeids)
    assert len(set(joined)) == len(nodeids)
    order = {n: i for i, n in enumerate(nodeids)}
    for part in parts:
        assert part == sorted(part, key=order.__getitem__)


def test_every_machine_computes_the_same_split() -> None:
    nodeids, durations = suite(30, 9)
    first = split(nodeids, durations, 4)
    # Another machine: the same store (a copy of its durations), a dict built in another order.
    again = split(list(nodeids), dict(reversed(list(durations.items()))), 4)
    assert first == again


@pytest.mark.parametrize("total", [2, 4, 8])
def test_no_part_exceeds_the_mean_by_more_than_half_of_it(total: int) -> None:
    nodeids, durations = suite(60, 20, seed=total)
    fair = sum(durations.values()) / total
    for part in split(nodeids, durations, total):
        assert sum(durations[n] for n in part) <= 1.5 * fair


def test_a_test_longer_than_a_fair_share_is_a_part_nearly_alone() -> None:
    nodeids = ["slow.py::test", *(f"t_{i}.py::test" for i in range(20))]
    durations = {n: (30.0 if n.startswith("slow") else 0.5) for n in nodeids}
    parts = split(nodeids, durations, 3)
    assert parts[0] == ["slow.py::test"]
    assert sorted(len(p) for p in parts[1:]) == [10, 10]


def test_a_heavy_file_is_split_and_light_files_stay_whole() -> None:
    nodeids = [f"tests/test_big.py::test_{i}" for i in range(8)] + [
        f"tests/test_small_{f}.py::test_{i}" for f in range(4) for i in range(3)
    ]
    durations = {n: (5.0 if "big" in n else 0.1) for n in nodeids}
    parts = split(nodeids, durations, 2)
    big = [sum("big" in n for n in part) for part in parts]
    assert big == [4, 4]
    for f in range(4):
        holders = [i for i, part in enumerate(parts) if any(f"small_{f}.py" in n for n in part)]
        assert len(holders) == 1  # a light file's tests stay together


def test_unknown_durations_count_as_the_median_of_the_known() -> None:
    nodeids = [f"t_{i}.py::test" for i in range(6)]
    parts = split(nodeids, {"t_0.py::test": 10.0, "t_1.py::test": 10.0}, 2)
    assert sorted(len(p) for p in parts) == [3, 3]  # six files of ~10 s each
    assert split(nodeids, {}, 3) == [nodeids[0::3], nodeids[1::3], nodeids[2::3]]


# --- shard reports -----------------------------------------------------------------------------

METRICS = RunMetrics(1.0, 1.0, 1.0, 1, 1.0, 1.0, 0, 0, 0, 0, 0, 0, None, None, None, None, None)


def shard_report(
    k: int, n: int, nodeids: list[str], selection: list[str], **kw: object
) -> RunDocument:
    outcome = str(kw.pop("outcome", "passed"))
    tests = tuple(TestRecord(nid, outcome, 0.5, slot=0) for nid in nodeids)
    return RunDocument(
        run_id=f"run-{k}",
        created=1000.0 + k,
        duration=2.0,
        exit_code=int(kw.pop("exit_code", 0)),  # type: ignore[call-overload]
        interrupted=False,
        project_root="/p",
        profile="balanced",
        categories=("unit",),
        summary={outcome: len(nodeids), **kw.pop("extra", {})},  # type: ignore[dict-item]
        tests=tests,
        metrics=replace(METRICS, wall=2.0 + k, peak_slots=2),
        shard_of=(k, n),
        shard_selection=selection_digest(selection),
    )


def three_shards() -> tuple[list[RunDocument], list[str]]:
    nodeids, durations = suite(10, 5)
    parts = split(nodeids, durations, 3)
    return [shard_report(k + 1, 3, part, nodeids) for k, part in enumerate(parts)], nodeids


def test_verify_accepts_shards_that_ran_every_test_once() -> None:
    documents, _ = three_shards()
    assert verify(documents) == []


def test_verify_names_a_missing_shard_a_repeated_test_and_a_test_not_run() -> None:
    documents, _ = three_shards()
    assert verify(documents[:2]) == ["missing shard report(s): 3/3"]
    stolen = documents[0].tests[0]
    twice = replace(documents[1], tests=(*documents[1].tests, stolen))
    problems = verify([documents[0], twice, documents[2]])
    assert problems[0] == f"{stolen.nodeid} ran on shard 1/3 and on 2/3"
    not_run = replace(
        documents[2],
        tests=(replace(documents[2].tests[0], outcome="not_run"), *documents[2].tests[1:]),
    )
    assert verify([documents[0], documents[1], not_run]) == [
        f"{documents[2].tests[0].nodeid} did not run (shard 3/3)"
    ]


def test_verify_refuses_shards_of_different_splits_or_selections() -> None:
    documents, nodeids = three_shards()
    other = replace(documents[2], shard_selection=selection_digest(nodeids[:-1]))
    assert "different selections" in verify([documents[0], documents[1], other])[0]
    dropped = replace(documents[2], tests=documents[2].tests[:-1])
    assert verify([documents[0], documents[1], dropped]) == [
        f"the shards' tests are not the selection: {len(nodeids) - 1} reported, "
        f"{len(nodeids)} collected"
    ]
    unsharded = replace(documents[0], shard_of=None)
    assert verify([unsharded])[0].startswith("not a shard's report")


def test_merge_is_one_run_with_every_test_once_and_lanes_per_machine() -> None:
    documents, nodeids = three_shards()
    error = TestRecord("tests/test_broken.py", "error", 0.0, message="ImportError")
    with_errors = [
        replace(d, tests=(*d.tests, error), summary={**d.summary, "error": 1}, exit_code=1)
        for d in documents
    ]
    merged = merge(list(reversed(with_errors)))
    assert [t.nodeid for t in merged.tests if "::" in t.nodeid] == [
        t.nodeid for d in documents for t in d.tests
    ]
    assert [t.nodeid for t in merged.tests].count("tests/test_broken.py") == 1
    assert merged.summary == {"passed": len(nodeids), "error": 1}
    assert merged.exit_code == 1
    assert {t.slot for t in merged.tests if "::" in t.nodeid} == {0, 1, 2}  # a lane per machine
    assert merged.metrics.wall == 5.0  # the slowest machine's
    assert merged.metrics.peak_slots == 6
    assert merged.shard_of is None


def test_merged_exit_code_is_the_worst_trouble_first() -> None:
    assert merged_exit_code([0, 1, 0]) == 1
    assert merged_exit_code([1, 2]) == 2
    assert merged_exit_code([3, 2, 1]) == 3
    assert merged_exit_code([5, 0]) == 0
    assert merged_exit_code([5, 5]) == 5


@pytest.mark.parametrize("total", [2, 4, 8])
def test_a_released_suites_durations_split_within_the_stated_bound(total: int) -> None:
    """attrs 26.1.0's 1,386 tests with the durations one run recorded (only ids and seconds
    are kept in the fixture): every part within max(1.5 x the mean, the longest test)."""
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "durations-attrs-26.1.0.json.gz"
    durations: dict[str, float] = json.loads(gzip.decompress(fixture.read_bytes()))["durations"]
    nodeids = list(durations)
    parts = split(nodeids, durations, total)
    assert sorted(n for part in parts for n in part) == sorted(nodeids)
    fair = sum(durations.values()) / total
    loads = [sum(durations[n] for n in part) for part in parts]
    assert max(loads) <= max(1.5 * fair, max(durations.values()))
    assert min(loads) > 0
