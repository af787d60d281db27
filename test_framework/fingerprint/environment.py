"""The environment a test ran in, as one digest: what, changed, may change any test's outcome
without any project file changing.

The interpreter (implementation, version, executable), every installed distribution and its
version (an upgrade of a dependency), pytest's arguments, the profile, and the environment
variables Python and pytest read. A test that reads another variable of its own is not seen
here; the skip cache's trip-wire is there for what fingerprints cannot see.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata

# Variables that change how Python or pytest behave for every test.
ENVIRONMENT_VARIABLES = (
    "PYTEST_ADDOPTS",
    "PYTEST_PLUGINS",
    "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
    "PYTEST_DEBUG_TEMPROOT",
    "PYTHONPATH",
    "PYTHONHASHSEED",
    "PYTHONWARNINGS",
    "PYTHONDEVMODE",
    "PYTHONUTF8",
    "PYTHONOPTIMIZE",
    "PYTHONSAFEPATH",
    "TZ",
    "LANG",
    "LC_ALL",
)


_known: dict[tuple[tuple[str, int], ...], list[str]] = {}


def installed_distributions() -> list[str]:
    """`name==version` of every distribution this interpreter sees, sorted. Read again only
    when a folder on the path changed (an install or uninstall adds or removes entries there):
    a process that serves many runs (the resident one) pays the metadata scan once."""
    key = _path_state()
    if key not in _known:
        found = set()
        for dist in metadata.distributions():
            name = dist.metadata["Name"] if dist.metadata else None
            if name:
                found.add(f"{name.lower()}=={dist.version}")
        _known.clear()
        _known[key] = sorted(found)
    return list(_known[key])


def _path_state() -> tuple[tuple[str, int], ...]:
    state = []
    for entry in sys.path:
        try:
            state.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            state.append((entry, -1))
    return tuple(state)


def environment_fingerprint(
    pytest_args: Iterable[str],
    environ: Mapping[str, str],
    profile: str,
    distributions: Iterable[str] | None = None,
) -> str:
    digest = hashlib.sha256()

    def add(part: str) -> None:
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")

    add(sys.implementation.name)
    add(sys.version)
    add(sys.executable)
    add(f"profile={profile}")
    for arg in pytest_args:
        add(f"arg={arg}")
    for name in ENVIRONMENT_VARIABLES:
        add(f"{name}={environ.get(name, '')}")
    for dist in installed_distributions() if distributions is None else distributions:
        add(dist)
    return digest.hexdigest()
