"""Discovery: categories -> pytest collection queries -> node ids, with pytest's own collection.

Collection runs in a subprocess (the same interpreter and plugin the workers use), so the ids are
exactly the ones plain pytest would run for the same arguments. The orchestrator caches the result
in the store under a fingerprint of the project's files; a cached answer is only a plan, because
every worker reports what it really collected and that is what gets run and reported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .config import Category
from .errors import CollectionFailed, ProjectError, UsageError
from .execution.process import spawn_worker
from .execution.protocol import read_messages
from .execution.runner import WORKER_PLUGIN
from .exit_codes import ExitCode


@dataclass(frozen=True, slots=True)
class CollectionQuery:
    """One pytest invocation's selection: explicit paths (or pytest's defaults) and a marker."""

    paths: tuple[str, ...]
    marker: str | None

    def key(self) -> tuple[str, ...]:
        return (*self.paths, f"-m={self.marker or ''}")


@dataclass(frozen=True, slots=True)
class CollectedError:
    nodeid: str
    longrepr: str
    skipped: bool = False


@dataclass(frozen=True, slots=True)
class Collection:
    rootdir: str
    nodeids: tuple[str, ...]
    errors: tuple[CollectedError, ...]
    positionals: tuple[str, ...]
    serial: tuple[str, ...] = ()
    resources: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


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


async def collect(
    query: CollectionQuery,
    user_args: Sequence[str],
    *,
    project_root: Path,
    env: Mapping[str, str],
) -> Collection:
    """Run pytest's collection for one query in a subprocess and return what it found."""
    argv = [
        "-m",
        "pytest",
        "-p",
        WORKER_PLUGIN,
        "--collect-only",
        "-q",
        "--continue-on-collection-errors",
        *query_args(query, user_args),
    ]
    rootdir: str | None = None
    positionals: tuple[str, ...] = ()
    nodeids: tuple[str, ...] | None = None
    serial: tuple[str, ...] = ()
    resources: dict[str, tuple[str, ...]] = {}
    errors: list[CollectedError] = []
    async with spawn_worker(argv, cwd=str(project_root), env=env) as worker:
        async for message in read_messages(worker.channel):
            data = message.data
            if message.event == "hello":
                rootdir = data["rootdir"]
                positionals = tuple(data.get("args") or ())
            elif message.event == "collected":
                nodeids = tuple(data["nodeids"])
                serial, resources = constraints_of(data)
            elif message.event in ("collect_error", "collect_skip"):
                errors.append(
                    CollectedError(
                        nodeid=data["nodeid"],
                        longrepr=data.get("longrepr") or "",
                        skipped=message.event == "collect_skip",
                    )
                )
        await worker.process.wait()
        returncode = worker.process.returncode
    failed = returncode in (ExitCode.USAGE_ERROR, ExitCode.INTERNAL_ERROR)
    if rootdir is None or nodeids is None or failed:
        raise collection_failure(returncode, worker.output.text())
    return Collection(
        rootdir=rootdir,
        nodeids=nodeids,
        errors=tuple(errors),
        positionals=positionals,
        serial=serial,
        resources=resources,
    )


def constraints_of(
    data: Mapping[str, object],
) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """The `serial` and `resources` fields of a `collected` message, typed."""
    serial = data.get("serial") or []
    resources = data.get("resources") or {}
    assert isinstance(serial, list)
    assert isinstance(resources, dict)
    return tuple(str(n) for n in serial), {
        str(n): tuple(str(r) for r in names) for n, names in resources.items()
    }


def collection_failure(returncode: int | None, output: str) -> Exception:
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    if returncode == ExitCode.USAGE_ERROR:
        # pytest prints "ERROR: usage: ..." then "<prog>: error: <the actual reason>".
        reasons = [line.split(": error: ", 1)[1] for line in lines if ": error: " in line]
        errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR:")]
        detail = (reasons or errors or lines or ["usage error"])[0]
        return UsageError(f"pytest rejected the arguments: {detail}")
    tail = "\n".join(lines[-30:])
    return CollectionFailed(
        f"pytest could not collect the suite (exit status {returncode}):\n{tail}"
    )
