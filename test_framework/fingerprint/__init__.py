"""Fingerprints: cheap, conservative answers to "could this have changed what pytest collects?".

The collection fingerprint covers every Python and pytest-config file under the project (size and
mtime in nanoseconds, so any edit, checkout or new file changes it), the interpreter, pytest's
version and the environment variables pytest reads. What else a collection read (data files a
parametrize reads, folders it lists) is recorded by the worker and checked by content
(`input_digests`) before a cached collection is used. Conservative on purpose: a stale collection
would silently drop tests, a needless recollection only costs a second.

The package also holds what the skip cache (issue 15) and the resident process (issue 16) will
decide with, one module each: `index` (content digests behind a stat shortcut, as git's
index), `environment` (the interpreter, installed distributions, pytest's arguments, the
variables Python and pytest read) and `imports` (the project files a test file imports,
statically and transitively).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".tox",
        ".nox",
        ".venv",
        "venv",
        "env",
        "node_modules",
        "__pycache__",
        ".test_framework",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "build",
        "dist",
        ".eggs",
        "site-packages",
    }
)
CONFIG_FILES = frozenset({"pytest.ini", ".pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml"})
PYTEST_ENV = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTHONPATH")


def project_files(root: Path) -> Iterator[Path]:
    """Python sources and pytest config files under `root`, skipping caches and virtualenvs."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in SKIP_DIRS
            and not d.endswith(".egg-info")
            and not (Path(dirpath, d, "pyvenv.cfg")).exists()
        )
        for name in sorted(filenames):
            if name.endswith(".py") or name in CONFIG_FILES:
                yield Path(dirpath, name)


def collection_fingerprint(root: Path, query: Iterable[str], environ: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for part in (sys.executable, sys.version, _pytest_version(), *query):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    for name in PYTEST_ENV:
        digest.update(f"{name}={environ.get(name, '')}".encode("utf-8", "surrogateescape") + b"\0")
    for path in project_files(root):
        try:
            stat = path.stat()
        except OSError:
            continue
        rel = os.path.relpath(path, root)
        digest.update(
            f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode("utf-8", "surrogateescape")
        )
    return digest.hexdigest()


def _pytest_version() -> str:
    try:
        from importlib.metadata import version

        return version("pytest")
    except Exception:
        return "unknown"


def input_digests(root: Path, paths: Iterable[str]) -> dict[str, str]:
    """A digest per file or folder a collection read besides Python source (a folder's path ends
    in "/"): a file's content, a folder's sorted listing, or "missing"."""
    return {path: input_digest(root, path) for path in paths}


def input_digest(root: Path, path: str) -> str:
    target = root / path
    try:
        if path.endswith("/"):
            listing = "\0".join(sorted(os.listdir(target)))
            return hashlib.sha256(listing.encode("utf-8", "surrogateescape")).hexdigest()
        return hashlib.sha256(target.read_bytes()).hexdigest()
    except OSError:
        return "missing"
