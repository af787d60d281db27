"""How the project tree reaches Dask workers that do not share the client's filesystem: an
archive the client uploads (`--dask-upload`), unpacked once per worker under a name that is
its content digest, and the shard's paths moved there.

The two ways, and why this one exists: a shared path (a network filesystem, or the same checkout
at the same path on every node) needs nothing; otherwise each run packs the tree, tests
included (Dask's own `UploadDirectory` skips folders named `tests` and `docs` by default, which
would run nothing), and the shard check (shard_check.py) proves, on the worker, that what it
unpacked is what the client has. The same tree gives the same digest, hence the same folder on
the worker: its warm zygote (keyed by that folder) serves the next run too.

Left out of the archive: version control, virtual environments, caches and build output
(`SKIP_DIRS`, dot folders, `__pycache__`, `*.egg-info`, compiled `.pyc`).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from ..fingerprint import SKIP_DIRS
from .executor import ExecutorStart
from .runner import WorkerSetup

PLUGIN_PREFIX = "test_framework-tree-"
# Trees a worker keeps unpacked (the newest): older runs' trees are removed.
KEEP_TREES = 3


def _skipped_folder(dirpath: str, name: str) -> bool:
    return (
        name in SKIP_DIRS
        or name.startswith(".")
        or name == "__pycache__"
        or name.endswith(".egg-info")
        or os.path.exists(os.path.join(dirpath, name, "pyvenv.cfg"))
    )


def tree_archive(root: Path) -> tuple[bytes, str]:
    """The tree under `root` as a gzip'd tar (sorted, so the same tree gives the same bytes
    apart from gzip's header) and the digest of its members' names and contents."""
    digest = hashlib.sha256()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not _skipped_folder(dirpath, d))
            for name in sorted(filenames):
                if name.endswith((".pyc", ".pyo")):
                    continue
                path = os.path.join(dirpath, name)
                if not os.path.isfile(path):
                    continue  # a broken link, a socket
                relative = os.path.relpath(path, root)
                with open(path, "rb") as handle:
                    data = handle.read()
                digest.update(f"{relative}\0{len(data)}\0".encode("utf-8", "replace"))
                digest.update(data)
                info = archive.gettarinfo(path, arcname=relative)
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue(), digest.hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class Uploaded:
    """Where the client's tree is (`root`, the folder archived) and the archive's digest."""

    root: str
    digest: str

    @property
    def plugin_name(self) -> str:
        return PLUGIN_PREFIX + self.digest


def unpack(archive: bytes, digest: str, base: Path) -> Path:
    """The archive unpacked under `base/<digest>` (once: a folder that is there is complete,
    as it is renamed into place), the oldest trees beyond KEEP_TREES removed."""
    target = base / digest
    if target.is_dir():
        os.utime(target)  # newest again
        return target
    base.mkdir(parents=True, exist_ok=True)
    partial = base / f".{digest}.{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as members:
        members.extractall(partial, filter="tar")
    try:
        partial.rename(target)
    except OSError:  # another worker process unpacked it first
        shutil.rmtree(partial, ignore_errors=True)
    trees = sorted(
        (p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in trees[KEEP_TREES:]:
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return target


def _moved(value: str, old: str, new: str) -> str:
    """`value` with the path `old` replaced by `new` wherever it stands as a whole path (not
    `/a/project2` for `/a/project`)."""
    if old not in value:
        return value
    return re.sub(re.escape(old) + r"(?=$|[/\\:;=,\s])", lambda _: new, value)


def _moved_env(env: Mapping[str, str], old: str, new: str) -> dict[str, str]:
    return {name: _moved(value, old, new) for name, value in env.items()}


def moved_setup(setup: WorkerSetup, old: str, new: str) -> WorkerSetup:
    """The shard's setup with every path under the client's tree `old` moved to `new`."""
    return replace(
        setup,
        rootdir=_moved(setup.rootdir, old, new),
        cwd=_moved(setup.cwd, old, new),
        pytest_args=tuple(_moved(a, old, new) for a in setup.pytest_args),
        env=_moved_env(setup.env, old, new),
    )


def moved_start(start: ExecutorStart, old: str, new: str) -> ExecutorStart:
    argv = start.warm_argv
    return replace(
        start,
        cwd=_moved(start.cwd, old, new),
        env=_moved_env(start.env, old, new),
        warm_argv=None if argv is None else tuple(_moved(a, old, new) for a in argv),
    )


class TreeUpload(WorkerPlugin):
    """Unpacks the tree on every worker, those that join later too; registered under a name
    holding the digest (idempotent: once per tree). Workers of one machine share it."""

    idempotent = True

    def __init__(self, archive: bytes, uploaded: Uploaded) -> None:
        self.archive = archive
        self.uploaded = uploaded
        self.name = uploaded.plugin_name
        self.path: Path | None = None

    def setup(self, worker: Any) -> None:
        base = Path(worker.local_directory).parent / "test_framework-trees"
        self.path = unpack(self.archive, self.uploaded.digest, base)
        self.archive = b""  # unpacked: not kept in the worker's memory
