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
    """Named tests of one file (reruns, constrained tests, ids the user gave)."""

    file: str
    nodeids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FileHead:
    """The first `count` items of a file, as the worker collects it now: a test and everything
    pytest runs before it in its file, in order (how a failure is confirmed in pytest's
    context), whatever the ids are today."""

    file: str
    count: int


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
        return {"file": entry.file, "head": entry.count}
    return {"file": entry.file, "ids": list(entry.nodeids)}


def decode_selection(text: str) -> Selection:
    entries: list[SelectionEntry] = []
    for raw in json.loads(text):
        if "ids" in raw:
            entries.append(FileTests(str(raw["file"]), tuple(str(n) for n in raw["ids"])))
        elif "head" in raw:
            entries.append(FileHead(str(raw["file"]), int(raw["head"])))
        else:
            part, parts = raw["part"]
            entries.append(FileSlice(str(raw["file"]), int(part), int(parts)))
    return tuple(entries)
