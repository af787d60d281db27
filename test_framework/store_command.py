"""`store export|import|merge`: durations and history as a CI artifact (store/transfer.py).

    python -m test_framework store export durations.json.gz [--last N]
    python -m test_framework store import durations.json.gz
    python -m test_framework store merge a.json.gz b.json.gz --output all.json.gz

A CI pipeline restores the artifact (`import`) before its `--shard K/N` jobs so each computes
the same split, and each job exports its store afterwards; a final job merges the exports and
saves the result for the next pipeline. `export` and `import` take `--project-root` and
`--cache-dir` as a run does.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from .arguments import CommandParser, add_project_options, positive_int
from .errors import UsageError
from .exit_codes import ExitCode
from .request import RunRequest, resolve
from .store.connection import open_store
from .store.readonly import read_only
from .store.transfer import (
    document,
    export_rows,
    import_rows,
    merge_documents,
    read_export,
    write_export,
)

DEFAULT_LAST = 200


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=f"{prog} store",
        description="Move the results store's durations and history between machines (CI "
        "jobs) as one file; a name ending in .gz is compressed.",
    )
    commands = parser.add_subparsers(
        dest="action", required=True, metavar="{export,import,merge}", parser_class=CommandParser
    )
    export = commands.add_parser("export", help="write the project's durations and history")
    export.add_argument("file", type=Path, metavar="FILE")
    add_project_options(export, "the project whose store to export")
    export.add_argument(
        "--last",
        type=positive_int,
        default=DEFAULT_LAST,
        metavar="N",
        help=f"the last N runs' history (default: {DEFAULT_LAST}); every test's statistics",
    )
    imported = commands.add_parser("import", help="merge an export into the project's store")
    imported.add_argument("file", type=Path, metavar="FILE")
    add_project_options(imported, "the project whose store receives it")
    merge = commands.add_parser("merge", help="merge several exports into one file")
    merge.add_argument("files", nargs="+", type=Path, metavar="FILE")
    merge.add_argument("--output", "-o", type=Path, required=True, metavar="FILE")
    return parser


def main(argv: Sequence[str], prog: str) -> int:
    ns = build_parser(prog).parse_args(list(argv))
    if ns.action == "merge":
        documents = [_read(path) for path in ns.files]
        _writable(ns.output)
        write_export(ns.output, merge_documents(documents))
        print(f"merged {len(documents)} exports into {ns.output}")
        return int(ExitCode.OK)
    settings = resolve(RunRequest(project_root=ns.project_root, cache_dir=ns.cache_dir))
    project = str(settings.project_root)
    if ns.action == "export":
        _writable(ns.file)
        store = settings.store_path
        data = anyio.run(_export, store, project, ns.last, store.is_file(), backend="asyncio")
        write_export(ns.file, data)
        print(
            f"exported {len(data['runs'])} runs and {len(data['test_stats'])} tests' statistics "
            f"of {project} to {ns.file}"
        )
        return int(ExitCode.OK)
    data = _read(ns.file)
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    added = anyio.run(_import, settings.store_path, project, data, backend="asyncio")
    print(
        f"imported {added} new runs and {len(data['test_stats'])} tests' statistics into "
        f"{settings.store_path}"
    )
    return int(ExitCode.OK)


async def _export(store: Path, project: str, last: int, exists: bool) -> dict[str, Any]:
    if not exists:
        return document([], [], [])
    async with read_only(store) as db:
        return await export_rows(db, project, last) if db is not None else document([], [], [])


async def _import(store: Path, project: str, data: dict[str, Any]) -> int:
    async with open_store(store) as db:
        return await import_rows(db, project, data)


def _read(path: Path) -> dict[str, Any]:
    try:
        return read_export(path)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"{path} is not a store export of this engine: {exc}") from None


def _writable(path: Path) -> None:
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give a file path")
    if not path.parent.is_dir():
        raise UsageError(f"{path}: folder {str(path.parent)!r} does not exist")
