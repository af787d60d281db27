"""What the worker plugin reads off pytest: which items a selection keeps, the constraint and
timeout markers, the project files a process imported (what a report says: reports.py).
Standard library and pytest only, like the rest of the child side."""

from __future__ import annotations

import fnmatch
import os
import resource
import sys
import warnings
from collections.abc import Iterable

import pytest

from .selection import FileHead, FileSlice, FileTests, Selection, decode_selection, slice_bounds

# On an item renamed to the id the engine asked for: the id this collection gave it.
COLLECTED_AS = pytest.StashKey[str]()


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def load_selection(path: str | None) -> Selection | None:
    if not path:
        return None
    with open(path, encoding="utf-8") as handle:
        return decode_selection(handle.read())


def select_items(items: list[pytest.Item], selection: Selection) -> list[pytest.Item]:
    """The items a selection names, in collection order."""
    by_file: dict[str, list[pytest.Item]] = {}
    for item in items:
        by_file.setdefault(file_of(item.nodeid), []).append(item)
    keep: set[int] = set()
    for entry in selection:
        file_items = by_file.get(entry.file, [])
        if isinstance(entry, FileSlice):
            start, end = slice_bounds(entry.part, entry.parts, len(file_items))
            keep.update(id(i) for i in file_items[start:end])
        elif isinstance(entry, FileHead):
            head = file_items[: entry.count]
            keep.update(id(i) for i in head)
            if len(entry.nodeids) == len(head):
                pairs = [(i, n) for i, n in zip(head, entry.nodeids, strict=True) if i.nodeid != n]
                if not {i.nodeid for i, _ in pairs} & set(entry.nodeids):  # renamed, not moved
                    _rename(pairs)
        else:
            wanted = set(entry.nodeids)
            keep.update(id(i) for i in file_items if i.nodeid in wanted)
            keep.update(id(i) for i in _moved_ids(entry, file_items))
    return [item for item in items if id(item) in keep]


def _moved_ids(entry: FileTests, file_items: list[pytest.Item]) -> list[pytest.Item]:
    """Named tests this collection gave other ids (ids that embed the time): the item at each
    one's position, while the file holds as many items as it did and that item is the same
    function, renamed to the id the engine asked for so every report carries that one."""
    if not entry.positions or entry.count != len(file_items):
        return []
    present = {item.nodeid for item in file_items}
    claimed = set(entry.nodeids)  # an item named itself is never renamed
    moved = []
    for nodeid, position in zip(entry.nodeids, entry.positions, strict=False):
        if nodeid in present or not 0 <= position < len(file_items):
            continue
        item = file_items[position]
        if item.nodeid not in claimed:
            claimed.add(item.nodeid)
            moved.append((item, nodeid))
    return _rename(moved)


def _rename(pairs: Iterable[tuple[pytest.Item, str]]) -> list[pytest.Item]:
    """Each item that is the same function as the id paired with it takes that id (pytest's
    own attribute behind `Item.nodeid`), so every report carries the id the engine knows."""
    renamed = []
    for item, nodeid in pairs:
        if item.nodeid != nodeid and _function(item.nodeid) == _function(nodeid):
            item.stash[COLLECTED_AS] = item.nodeid
            item._nodeid = nodeid
            renamed.append(item)
    return renamed


def renamed_files(items: list[pytest.Item]) -> tuple[str, ...]:
    """Files where an item took another id than its collection gave it."""
    return tuple(dict.fromkeys(file_of(i.nodeid) for i in items if COLLECTED_AS in i.stash))


def _function(nodeid: str) -> str:
    """A test's id without its parameters: what stays when the parameters' ids change."""
    return nodeid.split("[", 1)[0]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def constraints_of(
    items: list[pytest.Item],
) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """Which tests must run alone (`serial`) or hold named resources (`resource(...)`)."""
    serial: list[str] = []
    resources: dict[str, tuple[str, ...]] = {}
    for item in items:
        if item.get_closest_marker("serial") or item.get_closest_marker("parallel_unsafe"):
            serial.append(item.nodeid)
        names = [str(n) for mark in item.iter_markers("resource") for n in mark.args]
        if names:
            resources[item.nodeid] = tuple(sorted(set(names)))
    return tuple(serial), resources


def marker_timeout(item: pytest.Item) -> float | None:
    """`@pytest.mark.timeout(seconds)` (pytest-timeout's spelling): this test's own limit."""
    mark = item.get_closest_marker("timeout")
    if mark is None:
        return None
    raw = mark.args[0] if mark.args else mark.kwargs.get("timeout")
    try:
        seconds = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


def project_modules(rootdir: str, config: pytest.Config) -> list[str]:
    """Files under the rootdir that this process imported (site-packages excluded), test modules
    left out: collection imports every test file of the selection (a forked worker inherits
    the zygote's whole collection), so they say nothing about what a test file depends on."""
    prefix = rootdir.rstrip(os.sep) + os.sep
    test_patterns = [str(p) for p in config.getini("python_files")]
    found = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not path.startswith(prefix) or "site-packages" in path:
            continue
        if any(fnmatch.fnmatch(os.path.basename(path), pattern) for pattern in test_patterns):
            continue
        found.add(os.path.relpath(path, rootdir))
    return sorted(found)


_NEVER_PRELOADED = ("_pytest", "pytest", "pluggy", "py", "test_framework", "__main__")


def collected_modules(config: pytest.Config, before: set[str]) -> tuple[str, ...]:
    """The modules a whole collection imported that a narrowed one may not, as `name:file`:
    everything new since `before` except test modules and conftests (a child collects its own),
    modules pytest rewrote or must rewrite (importing them early would cost the rewrite and warn
    "already imported"), and pytest's own. Third-party packages are included: imported once in
    the zygote, every child shares them (measured on attrs: no cost). In import order."""
    hook = getattr(getattr(config, "_assertstate", None), "hook", None)
    rewritten = set(getattr(hook, "_rewritten_names", ()) or ())
    must = tuple(getattr(hook, "_must_rewrite", ()) or ())
    patterns = [str(p) for p in config.getini("python_files")]
    found = []
    for name, module in list(sys.modules.items()):
        if name in before or module is None or name in rewritten:
            continue
        if name.split(".", 1)[0] in _NEVER_PRELOADED:
            continue
        if any(name == m or name.startswith(m + ".") for m in must):
            continue
        if hook is not None and isinstance(getattr(module, "__loader__", None), type(hook)):
            continue
        path = getattr(module, "__file__", None) or ""
        base = os.path.basename(path)
        if base == "conftest.py" or any(fnmatch.fnmatch(base, p) for p in patterns):
            continue
        found.append(f"{name}:{path}")
    return tuple(found)


def preload(path: str | None) -> None:
    """Import the modules listed in `path` (`name:file`, one per line), in order. A module that
    fails, warns, or resolves to another file than the collection's (pytest puts test folders on
    sys.path only as it collects them) is dropped and left to the collection that needs it."""
    if not path:
        return
    import importlib

    with open(path, encoding="utf-8") as handle:
        entries = [line.rstrip("\n").partition(":") for line in handle if line.strip()]
    for name, _, file in entries:
        if name in sys.modules:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                module = importlib.import_module(name)
            except Exception:  # anything: the child imports it itself, as before
                sys.modules.pop(name, None)
                continue
        if (getattr(module, "__file__", None) or "") != file:
            sys.modules.pop(name, None)
