"""Discovery: categories -> pytest collection queries -> the arguments pytest collects with.

Pure: which pytest invocations select the categories' union, with the user's marker merged in,
and what a worker is then given. pytest itself does the collecting (execution/collect.py, or the
warm zygote), so the ids are exactly the ones plain pytest would run for the same arguments; the
collector caches the answer in the store.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import Category
from .errors import ProjectError
from .worker.protocol import WORKER_PLUGIN


@dataclass(frozen=True, slots=True)
class CollectionQuery:
    """One pytest invocation's selection: explicit paths (or pytest's defaults) and a marker."""

    paths: tuple[str, ...]
    marker: str | None

    def key(self) -> tuple[str, ...]:
        return (*self.paths, f"-m={self.marker or ''}")


def queries_for(categories: Sequence[Category], project_root: Path) -> list[CollectionQuery]:
    """Turn categories into the fewest collection queries that select their union."""
    paths: list[str] = []
    markers: list[str] = []
    whole_suite = False
    for category in categories:
        existing = [p for p in category.paths if (project_root / p).exists()]
        if existing:
            paths.extend(p for p in existing if p not in paths)
        elif category.marker:
            markers.append(category.marker)
        else:
            if category.paths:
                missing = ", ".join(category.paths)
                raise ProjectError(
                    f"category {category.name!r}: none of its paths exists under {project_root} "
                    f"({missing}) and it has no marker to fall back on"
                )
            whole_suite = True
    if whole_suite:
        return [CollectionQuery(paths=(), marker=None)]
    queries: list[CollectionQuery] = []
    if paths:
        queries.append(CollectionQuery(paths=tuple(paths), marker=None))
    if markers:
        expression = " or ".join(f"({m})" for m in markers) if len(markers) > 1 else markers[0]
        queries.append(CollectionQuery(paths=(), marker=expression))
    return queries


_MARKER_OPTION = re.compile(r"^-m(?P<glued>.+)?$")


def split_marker(pytest_args: Sequence[str]) -> tuple[list[str], str | None]:
    """Take the user's own `-m EXPR` out of the pass-through args, so it can be combined."""
    rest: list[str] = []
    marker: str | None = None
    args = list(pytest_args)
    index = 0
    while index < len(args):
        arg = args[index]
        match = _MARKER_OPTION.match(arg)
        if match and arg != "-m" and match.group("glued") is not None:
            marker = match.group("glued").lstrip("=")
        elif arg == "-m" and index + 1 < len(args):
            marker = args[index + 1]
            index += 1
        else:
            rest.append(arg)
        index += 1
    return rest, marker


def combine_markers(category_marker: str | None, user_marker: str | None) -> str | None:
    if category_marker and user_marker:
        return f"({category_marker}) and ({user_marker})"
    return category_marker or user_marker


def query_args(query: CollectionQuery, user_args: Sequence[str]) -> list[str]:
    rest, user_marker = split_marker(user_args)
    marker = combine_markers(query.marker, user_marker)
    return [*rest, *(["-m", marker] if marker else []), *query.paths]


def pytest_argv(query: CollectionQuery, user_args: Sequence[str]) -> tuple[str, ...]:
    """A child pytest that collects `query` with the worker plugin: discovery's, and the warm
    zygote's. Collection errors are per file, as under xdist: one broken file does not stop
    the others."""
    return (
        "-m",
        "pytest",
        "-p",
        WORKER_PLUGIN,
        "--continue-on-collection-errors",
        *query_args(query, user_args),
    )


def worker_args(
    queries: Sequence[CollectionQuery], user_args: Sequence[str], positionals: Sequence[str]
) -> tuple[tuple[str, ...], bool]:
    """The pytest args of a spawned worker (the user's args less their paths, markers merged),
    and whether shards must name their tests (several queries, or node ids given)."""
    query_paths = {p for q in queries for p in q.paths}
    user_positionals = [p for p in positionals if p not in query_paths]
    args, marker = split_marker(_without(user_args, user_positionals))
    single = len(queries) == 1
    combined = combine_markers(queries[0].marker if single else None, marker)
    if combined:
        args = [*args, "-m", combined]
    explicit = not single or any("::" in p for p in user_positionals)
    return tuple(args), explicit


def _without(args: Sequence[str], positionals: Sequence[str]) -> list[str]:
    remaining = list(args)
    for positional in positionals:
        if positional in remaining:
            remaining.remove(positional)
    return remaining
