"""A warm zygote kept between runs: the resident process's layers (issue 16), behind the
executor seam.

One process that serves several runs (the resident daemon, or a `--watch` loop) holds a
`WarmPool`. A run whose warm process would be started with the same pytest arguments,
environment and protocol variables as the held zygote's, while every file that zygote imported
or read is unchanged, forks its shards from it: no interpreter start, no pytest import, no
collection. Anything else replaces it. The zygote is never told to end by a run; the pool
closes it when it is replaced or the pool ends.

Never stale, and conservative about it. The held zygote is reused only when, against the moment
it started: every Python and configuration file under the project (and extension modules) has
its size and mtime (`project_state`); every data file and folder its collection read has its
digest; every module file its collection imported outside the project has its size and mtime;
and no folder on the interpreter's path outside the project was modified (an install or an
uninstall changes its listing). An edit anywhere in the project replaces the zygote, which
costs one collection; a stale one would run old code.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.abc import TaskGroup

from ..fingerprint import SKIP_DIRS, input_digests
from ..worker.protocol import reports_folder
from .base_layer import BaseLayer, BaseUnavailable
from .executor import ExecutorStart, LocalExecutor, local_executor
from .zygote import Zygote

# Variables that say nothing about what a test may see (the shell's bookkeeping): a run from
# another shell with another value of these still reuses the zygote.
VOLATILE_VARIABLES = frozenset({"_", "OLDPWD", "PWD", "SHLVL", "COLUMNS", "LINES"})
_WATCHED_SUFFIXES = (".py", ".pyi", ".so", ".pyd", ".pth", ".toml", ".cfg", ".ini")


def project_state(root: Path) -> str:
    """Size and mtime of every file under `root` whose change could change what a warm process
    imported or collected, and the folders' listings (a file added or removed), as one digest.
    A stat per file: milliseconds for a few thousand files."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in SKIP_DIRS
            and not d.startswith(".")
            and not d.endswith(".egg-info")
            and not os.path.exists(os.path.join(dirpath, d, "pyvenv.cfg"))
        )
        for name in sorted(filenames):
            if not name.endswith(_WATCHED_SUFFIXES):
                continue
            path = os.path.join(dirpath, name)
            try:
                stat = os.stat(path)
            except OSError:
                continue
            digest.update(
                f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode("utf-8", "replace")
            )
    return digest.hexdigest()


def environment_state(root: Path) -> str:
    """The interpreter's path outside the project: each folder's mtime (pip adds and removes
    entries there) and the interpreter itself."""
    digest = hashlib.sha256(f"{sys.executable}\0{sys.version}".encode())
    inside = str(root) + os.sep
    for entry in sys.path:
        if not entry or entry.startswith(inside) or entry == str(root):
            continue
        with contextlib.suppress(OSError):
            digest.update(f"{entry}\0{os.stat(entry).st_mtime_ns}\0".encode("utf-8", "replace"))
    return digest.hexdigest()


def _module_stats(modules: tuple[str, ...], root: Path | None) -> dict[str, tuple[int, int]]:
    """Size and mtime of the module files a collection imported outside the project `root`
    (those inside are `project_state`'s; None: every file); `modules` are `name:file`."""
    inside = None if root is None else str(root) + os.sep
    stats: dict[str, tuple[int, int]] = {}
    for entry in modules:
        path = entry.partition(":")[2]
        if not path or (inside is not None and path.startswith(inside)):
            continue
        try:
            stat = os.stat(path)
        except OSError:
            stats[path] = (-1, -1)
            continue
        stats[path] = (stat.st_size, stat.st_mtime_ns)
    return stats


def base_key(start: ExecutorStart) -> tuple[object, ...]:
    """What a base layer was started with that a run's zygote must share to fork from it: the
    folder and the environment (the interpreter read some of it at its start)."""
    env = tuple(sorted((k, v) for k, v in start.env.items() if k not in VOLATILE_VARIABLES))
    return (start.cwd, env)


def zygote_key(start: ExecutorStart) -> tuple[object, ...]:
    """What a zygote was started with that a run must share to use it, protocol variables
    included: recording what each test file imports and reads (the skip cache's input) costs
    its tests ~15 % on attrs (an audit hook on every open and import), so a zygote records
    only for runs that use the record, and a run without the skip cache gets one that does
    not."""
    protocol = tuple(sorted(start.protocol_env.items()))
    return (start.warm_argv, *base_key(start), protocol)


@dataclass
class HeldBase:
    """The base layer the pool holds: pytest imported, forked into each new zygote."""

    base: BaseLayer
    key: tuple[object, ...]
    root: Path
    environment: str
    modules: dict[str, tuple[int, int]] = field(default_factory=dict)

    def stale(self) -> str | None:
        if not self.base.alive:
            return "it exited"
        if environment_state(self.root) != self.environment:
            return "the installed packages changed"
        # Inside the project too: pytest itself may import the project (pluggy's suite).
        if _module_stats(tuple(f":{path}" for path in self.modules), None) != self.modules:
            return "a module it imported changed"
        return None


@dataclass
class Held:
    """The zygote the pool holds, and what it was started against."""

    zygote: Zygote
    key: tuple[object, ...]
    root: Path
    project: str
    environment: str
    runs: int = 0
    read: dict[str, str] | None = None  # digests of what its collection read, once known
    modules: dict[str, tuple[int, int]] | None = None

    def settle(self) -> None:
        """Once the collection is in: what it read and imported, as it is now."""
        if self.read is None and self.zygote.collected.is_set():
            collection = self.zygote.collection
            self.read = input_digests(self.root, collection.read)
            self.modules = _module_stats(collection.modules, self.root)

    def stale(self) -> str | None:
        """Why this zygote may no longer be used (None: it may)."""
        zygote = self.zygote
        if not zygote.alive:
            return f"it exited (status {zygote.returncode})"
        if not zygote.collected.is_set():
            return None  # still collecting what it found at its start
        if zygote.collection.terminal.coverage:
            return "coverage is measured from a process's start, so each run needs its own"
        self.settle()
        if project_state(self.root) != self.project:
            return "a project file changed"
        if environment_state(self.root) != self.environment:
            return "the installed packages changed"
        assert self.read is not None
        assert self.modules is not None
        if input_digests(self.root, self.read) != self.read:
            return "a file its collection read changed"
        if _module_stats(tuple(f":{path}" for path in self.modules), self.root) != self.modules:
            return "a module its collection imported changed"
        return None


@dataclass
class WarmPool:
    """Holds one warm zygote for the runs of a long-lived process; lives in `task_group`."""

    task_group: TaskGroup
    scratch: Path
    held: Held | None = None
    replaced: list[str] = field(default_factory=list)  # why each earlier zygote went
    base: HeldBase | None = None
    bases_replaced: list[str] = field(default_factory=list)
    layered: bool = True  # fork zygotes from a base layer (False: spawn each)

    async def acquire(self, start: ExecutorStart) -> Zygote:
        """The held zygote when `start` may use it, else a new one in its place."""
        assert start.warm_argv is not None
        key = zygote_key(start)
        held = self.held
        if held is not None:
            why = self._unusable(held, key)
            if why is None:
                held.runs += 1
                return held.zygote
            self.replaced.append(why)
            self.release()
        return await self._start(start, key)

    async def share(self, start: ExecutorStart) -> Zygote | None:
        """As `acquire`, for a zygote others may be forking from right now: None instead of
        replacing it."""
        held = self.held
        if held is not None and self._unusable(held, zygote_key(start)) is not None:
            return None
        return await self.acquire(start)

    @staticmethod
    def _unusable(held: Held, key: tuple[object, ...]) -> str | None:
        return "its pytest arguments or environment differ" if held.key != key else held.stale()

    async def _start(self, start: ExecutorStart, key: tuple[object, ...]) -> Zygote:
        assert start.warm_argv is not None
        root = Path(start.cwd)
        project, environment = project_state(root), environment_state(root)
        self.scratch.mkdir(parents=True, exist_ok=True)
        base = await self._base(start, environment) if self.layered else None
        zygote = Zygote(
            start.warm_argv,
            cwd=start.cwd,
            env=start.env,
            scratch=self.scratch,
            grace=start.grace,
            early=False,  # a resident zygote collects once, for every run it serves
            protocol_env=start.protocol_env,
            starter=None if base is None else base.start,
        )
        await self.task_group.start(zygote.run)
        self.held = Held(zygote, key, root, project, environment, runs=1)
        return zygote

    async def _base(self, start: ExecutorStart, environment: str) -> BaseLayer | None:
        """The base layer to fork the next zygote from: the held one while it is fresh and was
        started in the run's folder and environment, else a new one (None: it could not start,
        and the zygote is spawned)."""
        key = base_key(start)
        held = self.base
        if held is not None:
            why = "its folder or environment differ" if held.key != key else held.stale()
            if why is None:
                return held.base
            self.bases_replaced.append(why)
            self.release_base()
        base = BaseLayer(cwd=start.cwd, env=start.env, scratch=self.scratch, grace=start.grace)
        try:
            await self.task_group.start(base.run)
        except BaseUnavailable as exc:
            self.bases_replaced.append(str(exc))
            return None
        root = Path(start.cwd)
        modules = _module_stats(tuple(f":{path}" for path in base.modules), None)
        self.base = HeldBase(base, key, root, environment, modules)
        return base

    def release(self) -> None:
        if self.held is not None:
            self.held.zygote.close()
            self.held = None

    def release_base(self) -> None:
        if self.base is not None:
            self.base.base.close()
            self.base = None

    def refresh(self) -> str | None:
        """Between runs: settle what the held zygote collected, and drop it when stale (the
        next run then starts one). Why it went, or None."""
        if self.held is None:
            return None
        why = self.held.stale()
        if why is not None:
            self.replaced.append(why)
            self.release()
        return why

    @contextlib.asynccontextmanager
    async def executor(self, start: ExecutorStart) -> AsyncIterator[LocalExecutor]:
        """The executor factory for a run served by this pool: its zygote when the run has a
        warm query, else the plain local executor (spawning)."""
        if start.warm_argv is None:
            async with local_executor(start) as executor:
                yield executor
            return
        zygote = await self.acquire(start)
        self._share_reports(start.scratch)
        try:
            yield LocalExecutor(zygote)
        finally:
            if self.held is not None and self.held.zygote is zygote:
                self.held.settle()

    def _share_reports(self, run_scratch: Path) -> None:
        """The zygote's workers write their reports (for plugins' summaries) where it was told
        at its start: the run looks for them in its own scratch folder, which points there."""
        shared = reports_folder(self.scratch)
        shutil.rmtree(shared, ignore_errors=True)  # the last run's
        shared.mkdir(parents=True, exist_ok=True)
        mine = reports_folder(run_scratch)
        if not mine.exists():
            mine.symlink_to(shared, target_is_directory=True)

    def status(self) -> Mapping[str, object]:
        held = self.held
        if held is None:
            return {"zygote": None, "replaced": len(self.replaced)}
        return {
            "zygote": held.zygote.pid,
            "runs": held.runs,
            "tests": len(held.zygote.collection.nodeids),
            "replaced": len(self.replaced),
        }

    @property
    def base_pid(self) -> int | None:
        return None if self.base is None else self.base.base.pid


@contextlib.asynccontextmanager
async def warm_pool(scratch: Path) -> AsyncIterator[WarmPool]:
    """A pool for the life of the block; its zygote is closed when the block ends."""
    async with anyio.create_task_group() as tg:
        pool = WarmPool(tg, scratch)
        try:
            yield pool
        finally:
            pool.release()
            pool.release_base()
