"""Where a command line's resident process is, remembered per working folder, so the thin
client reaches it without reading the configuration: that reading (the config module's
dataclasses, tomllib, pathlib) cost the client most of its start, ~35 ms of a ~60 ms start.

An answer is kept with what it was read from: the configuration files in every folder from the
working folder up (present or not: one added is a change), the project's pyproject.toml, the
shipped profiles and the paths the command line names, each as mtime, size and inode (or
absent). Not the folders themselves: a suite that writes a scratch file beside its tests would
make every memo stale. The answer is reused only while every one of them is as it was, and
only for the same interpreter, folder, command line and `OPTIMIZED_TEST_*`/`CI` variables.
Anything else reads the configuration again. Standard library only (os, json, hashlib).

The memo lives under `$XDG_CACHE_HOME` (or `~/.cache`) in `test_framework/places/`, one small
JSON file per working folder and interpreter, holding at most `KEEP` command lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

KEEP = 16
# What the rootdir search and the configuration look at in each folder.
CONFIG_NAMES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg", "setup.py")

Place = tuple[str, str, float]  # socket path, project root, idle seconds
Stamp = list[int] | None


def memo_folder(environ: Mapping[str, str]) -> str:
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "test_framework", "places")


def command_key(argv: Sequence[str], environ: Mapping[str, str]) -> str:
    variables = sorted(
        (k, v) for k, v in environ.items() if k.startswith("OPTIMIZED_TEST_") or k == "CI"
    )
    return hashlib.sha256(json.dumps([list(argv), variables]).encode()).hexdigest()[:24]


def _memo_file(cwd: str, environ: Mapping[str, str]) -> str:
    folder_key = hashlib.sha256(f"{sys.executable}\0{cwd}".encode()).hexdigest()[:24]
    return os.path.join(memo_folder(environ), f"{folder_key}.json")


def stamp(path: str) -> Stamp:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_mtime_ns, info.st_size, info.st_ino]


def watched_paths(cwd: str, root: str, named: Iterable[str], shipped: Iterable[str]) -> list[str]:
    """What a placement was read from: the configuration files of every folder from `cwd` up
    and of the project root, the paths the command line names, the shipped configuration."""
    paths: list[str] = []
    folder = os.path.abspath(cwd)
    while True:
        paths.extend(os.path.join(folder, name) for name in CONFIG_NAMES)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    paths.extend(os.path.join(root, name) for name in CONFIG_NAMES)
    paths.extend(os.path.join(cwd, p) for p in named)
    paths.extend(shipped)
    return list(dict.fromkeys(paths))


def recall(cwd: str, argv: Sequence[str], environ: Mapping[str, str]) -> Place | None:
    """The remembered place for this command line here, if nothing it was read from changed."""
    try:
        with open(_memo_file(cwd, environ), encoding="utf-8") as handle:
            entry = json.load(handle).get(command_key(argv, environ))
        if entry is None:
            return None
        for path, then in entry["watched"]:
            if stamp(path) != then:
                return None
        sock, root, idle = entry["place"]
        return str(sock), str(root), float(idle)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def remember(
    cwd: str,
    argv: Sequence[str],
    environ: Mapping[str, str],
    place: Place,
    watched: Iterable[str],
) -> None:
    """Keep a place for later clients (best effort: a memo that cannot be written is skipped)."""
    path = _memo_file(cwd, environ)
    try:
        try:
            with open(path, encoding="utf-8") as handle:
                memo = json.load(handle)
            if not isinstance(memo, dict):
                memo = {}
        except (OSError, ValueError):
            memo = {}
        key = command_key(argv, environ)
        memo.pop(key, None)
        memo[key] = {"place": list(place), "watched": [[p, stamp(p)] for p in watched]}
        while len(memo) > KEEP:
            memo.pop(next(iter(memo)))
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        scratch = f"{path}.{os.getpid()}"
        with open(scratch, "w", encoding="utf-8") as handle:
            json.dump(memo, handle)
        os.replace(scratch, path)  # a reader never sees half a file
    except OSError:
        return
