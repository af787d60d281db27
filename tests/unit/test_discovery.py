"""Discovery: categories become collection queries; pytest's own collection finds the ids."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from test_framework.config import Category
from test_framework.discovery import (
    CollectionQuery,
    combine_markers,
    pytest_argv,
    queries_for,
    query_args,
    split_marker,
)
from test_framework.errors import ProjectError, UsageError
from test_framework.execution.collect import collect as collect_argv
from test_framework.models import Collection


async def collect(
    query: CollectionQuery, user_args: list[str], *, project_root: Path, env: dict[str, str]
) -> Collection:
    """pytest's collection of one query, in a process of its own."""
    return await collect_argv(pytest_argv(query, user_args), cwd=project_root, env=env)


UNIT = Category("unit", "", ("tests/unit",), "unit")
INTEGRATION = Category("integration", "", ("tests/integration",), "integration")
ALL = Category("all", "", (), None)


def test_existing_paths_win_over_the_marker(tmp_path: Path) -> None:
    (tmp_path / "tests" / "unit").mkdir(parents=True)
    assert queries_for([UNIT], tmp_path) == [CollectionQuery(("tests/unit",), None)]


def test_marker_is_the_fallback_when_no_path_exists(tmp_path: Path) -> None:
    assert queries_for([UNIT], tmp_path) == [CollectionQuery((), "unit")]


def test_several_marker_categories_become_one_or_expression(tmp_path: Path) -> None:
    queries = queries_for([UNIT, INTEGRATION], tmp_path)
    assert queries == [CollectionQuery((), "(unit) or (integration)")]


def test_paths_and_markers_mix_into_two_queries(tmp_path: Path) -> None:
    (tmp_path / "tests" / "unit").mkdir(parents=True)
    queries = queries_for([UNIT, INTEGRATION], tmp_path)
    assert queries == [
        CollectionQuery(("tests/unit",), None),
        CollectionQuery((), "integration"),
    ]


def test_all_means_the_whole_suite(tmp_path: Path) -> None:
    assert queries_for([UNIT, ALL], tmp_path) == [CollectionQuery((), None)]


def test_a_category_with_missing_paths_and_no_marker_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="none of its paths exists"):
        queries_for([Category("x", "", ("nowhere",), None)], tmp_path)


@pytest.mark.parametrize(
    ("args", "rest", "marker"),
    [
        (["-k", "foo", "-m", "slow"], ["-k", "foo"], "slow"),
        (["-mslow", "-x"], ["-x"], "slow"),
        (["-x"], ["-x"], None),
    ],
)
def test_split_marker(args: list[str], rest: list[str], marker: str | None) -> None:
    assert split_marker(args) == (rest, marker)


def test_user_marker_is_combined_with_the_category_marker() -> None:
    assert combine_markers("unit", "not slow") == "(unit) and (not slow)"
    assert combine_markers(None, "slow") == "slow"
    assert query_args(CollectionQuery(("t",), "unit"), ["-m", "fast", "-x"]) == [
        "-x",
        "-m",
        "(unit) and (fast)",
        "t",
    ]


@pytest.mark.anyio
async def test_collect_returns_pytest_node_ids_in_order(suites: Path) -> None:
    root = suites / "basic"
    collection = await collect(
        CollectionQuery((), None), [], project_root=root, env=dict(os.environ)
    )
    assert Path(collection.rootdir) == root
    assert len(collection.nodeids) == 12
    assert collection.nodeids[0] == "test_math.py::TestArithmetic::test_add"
    assert collection.errors == ()


@pytest.mark.anyio
async def test_collect_reports_collection_errors_per_file(suites: Path) -> None:
    collection = await collect(
        CollectionQuery((), None), [], project_root=suites / "collect_error", env=dict(os.environ)
    )
    assert len(collection.nodeids) == 5
    assert sorted(e.nodeid for e in collection.errors) == [
        "test_import_error.py",
        "test_zero_division.py",
    ]
    assert all("Error" in e.longrepr for e in collection.errors)


@pytest.mark.anyio
async def test_collect_with_a_marker_category(suites: Path) -> None:
    collection = await collect(
        CollectionQuery((), "unit"), [], project_root=suites / "markers_only", env=dict(os.environ)
    )
    assert len(collection.nodeids) == 3


@pytest.mark.anyio
async def test_pytest_usage_error_becomes_a_usage_error(suites: Path) -> None:
    with pytest.raises(UsageError, match="pytest rejected the arguments"):
        await collect(
            CollectionQuery((), None),
            ["--no-such-option"],
            project_root=suites / "basic",
            env=dict(os.environ),
        )
