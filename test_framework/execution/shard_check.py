"""What a shard needs to be the same where it runs: so a remote worker (a Dask worker) with
another tree or another environment refuses the shard instead of running something else.

The tree: the content digest of each of the shard's test files, the `conftest.py` files pytest
loads for them, and the project's pytest configuration files. The environment: the Python
implementation and version, pytest's version and every installed pytest plugin (`pytest11`
entry points, which change how collection and tests behave) with its version. Not the
interpreter's path, nor unrelated packages: cluster nodes install the same project in other
places, and Dask's own packages differ between a client and its workers.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path

from ..fingerprint import CONFIG_FILES, input_digest
from ..fingerprint.dependencies import conftest_chain

MISSING = "missing"


def shard_inputs(root: Path, files: Iterable[str]) -> dict[str, str]:
    """Path -> content digest of every file the shard's collection reads from the tree."""
    paths: set[str] = {name for name in CONFIG_FILES if (root / name).is_file()}
    for file in files:
        paths.add(file)
        paths.update(conftest_chain(file, lambda path: (root / path).is_file()))
    digests = {}
    for path in sorted(paths):
        try:
            digests[path] = input_digest(root, path)
        except OSError:
            digests[path] = MISSING
    return digests


def environment_inputs() -> dict[str, str]:
    found = {
        "python": f"{sys.implementation.name} {platform.python_version()}",
        "pytest": _version("pytest"),
    }
    for entry in metadata.entry_points(group="pytest11"):
        dist = entry.dist
        if dist is not None:
            found[f"plugin {dist.metadata['Name'].lower()}"] = dist.version
    return found


def differences(expected: Mapping[str, str], here: Mapping[str, str], limit: int = 5) -> list[str]:
    """What differs, worded for a person: at most `limit` items, then how many more."""
    found = []
    for key in sorted(set(expected) | set(here)):
        want, have = expected.get(key, MISSING), here.get(key, MISSING)
        if want != have:
            found.append(f"{key}: {_short(have)} here, {_short(want)} on the client")
    if len(found) > limit:
        found = [*found[:limit], f"and {len(found) - limit} more"]
    return found


def _short(value: str) -> str:
    return value[:12] if len(value) == 64 else value


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return MISSING
