"""Selections: which of a file's tests one worker runs, as the engine writes them and the worker
reads them (a JSON file named by `TEST_FRAMEWORK_SELECT`). Standard library only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FileSlice:
    """The k-th of n contiguous slices of a file's items, computed by the worker over what it
    collects now, so every item lands in exactly one slice whatever the file holds today."""

    file: str
    part: int
    parts: int


@dataclass(frozen=True, slots=True)
class FileTests:
    """Named tests of one file (reruns, constrained tests, ids the user gave). For a file whose
    ids change between collections (they embed the time, a counter), `positions` says where
    each named test stood among the file's `count` items: a worker that collects other ids
    for the file, as many of them, runs the item at that position under the name asked for."""

    file: str
    nodeids: tuple[str, ...]
    positions: tuple[int, ...] = ()
    count: int | None = None


@dataclass(frozen=True, slots=True)
class FileHead:
    """The first `count` items of a file, as the worker collects it now: a test and everything
    pytest runs before it in its file, in order (how a failure is confirmed in pytest's
    context), whatever the ids are today. `nodeids`, given for a file whose ids change between
    collections: the ids the engine knows for those items, which they are reported under."""

    file: str
    count: int
    nodeids: tuple[str, ...] = ()


SelectionEntry = FileSlice | FileTests | FileHead
Selection = tuple[SelectionEntry, ...]


def slice_bounds(part: int, parts: int, count: int) -> tuple[int, int]:
    """Where slice `part` of `parts` starts and ends in `count` items: the one formula the
    planner, work stealing and the worker share."""
    return part * count // parts, (part + 1) * count // parts


def selection_files(selection: Selection) -> tuple[str, ...]:
    return tuple(dict.fromkeys(entry.file for entry in selection))


def encode_selection(selection: Selection) -> str:
    return json.dumps([_selection_entry(entry) for entry in selection])


def _selection_entry(entry: SelectionEntry) -> dict[str, Any]:
    if isinstance(entry, FileSlice):
        return {"file": entry.file, "part": [entry.part, entry.parts]}
    if isinstance(entry, FileHead):
        if entry.nodeids:
            return {"file": entry.file, "head": entry.count, "ids": list(entry.nodeids)}
        return {"file": entry.file, "head": entry.count}
    if entry.positions:
        return {
            "file": entry.file,
            "ids": list(entry.nodeids),
            "at": list(entry.positions),
            "of": entry.count,
        }
    return {"file": entry.file, "ids": list(entry.nodeids)}


def decode_selection(text: str) -> Selection:
    entries: list[SelectionEntry] = []
    for raw in json.loads(text):
        if "head" in raw:
            ids = tuple(str(n) for n in raw.get("ids", ()))
            entries.append(FileHead(str(raw["file"]), int(raw["head"]), ids))
        elif "ids" in raw:
            positions = tuple(int(p) for p in raw.get("at", ()))
            count = int(raw["of"]) if raw.get("of") is not None else None
            ids = tuple(str(n) for n in raw["ids"])
            entries.append(FileTests(str(raw["file"]), ids, positions, count))
        else:
            part, parts = raw["part"]
            entries.append(FileSlice(str(raw["file"]), int(part), int(parts)))
    return tuple(entries)
