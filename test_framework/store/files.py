"""The store's files, standard library only (the engine's aiosqlite connection and the pytest
plugin's sqlite3 one both use them): telling a damaged database from a busy one, moving a bad
file aside, marking the cache folder as pytest marks its own, clearing it."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

_DAMAGED = (
    {sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT} if hasattr(sqlite3, "SQLITE_NOTADB") else set()
)


def is_damaged(exc: sqlite3.DatabaseError) -> bool:
    """Only a file that is not a database, or a corrupt one, is moved aside; never a busy one."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and _DAMAGED:
        return code in _DAMAGED
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


def move_aside(path: Path, why: str) -> Path:
    target = path.with_name(f"{path.name}.{why}-{int(time.time())}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.replace(Path(f"{target}{suffix}"))
    return target


CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by test_framework.\n"
    "# For information about cache directory tags, see https://bford.info/cachedir/\n"
)


def mark_cache_folder(folder: Path) -> None:
    """As pytest marks its cache: a `.gitignore` of `*` (so `git add -A` never stages the store
    and a pre-commit hook never sees it change) and a `CACHEDIR.TAG` for backup tools. Only a
    folder that holds nothing but the engine's own files is marked (never a `--cache-dir` the
    user pointed at a folder of theirs), and a marker already there is left alone."""
    if any(not _ours(entry.name) for entry in folder.iterdir()):
        return
    for name, text in (
        (".gitignore", "# Created by test_framework automatically.\n*\n"),
        (
            "CACHEDIR.TAG",
            CACHEDIR_TAG,
        ),
    ):
        marker = folder / name
        if not marker.exists():
            marker.write_text(text, encoding="utf-8")


def clear_store_folder(folder: Path) -> None:
    """`--clear-cache`: delete the engine's own files there (never anything else: the folder
    may be one the user named with `--cache-dir`), and the folder if that empties it."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if _ours(entry.name) and entry.is_file():
            entry.unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()


def _ours(name: str) -> bool:
    return name.startswith(
        ("results.sqlite", "internal-errors.log", "engine.log", "resident-")
    ) or name in (
        ".gitignore",
        "CACHEDIR.TAG",
    )
