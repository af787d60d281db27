"""The executor seam: how shards run, handed to the orchestrator instead of built inside it.

A `ShardExecutor` runs one shard at a time per call (the dispatcher calls it concurrently) and
reports through the shard's listener; it may also have collected the run's selection already (a
warm zygote did), which the collector uses instead of collecting again. The local executor forks
shards from a warm zygote and spawns a fresh interpreter when there is none (spawn isolation,
several collection queries) or it died. A resident warm process and a Dask cluster are two more
implementations of the same protocol, so nothing here assumes that the executor started its warm
process or that the process ends with the run: the factory that opens an executor owns that.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import anyio

from ..errors import collection_failure
from ..events import ExecutionEvent, Phase, ShardStarted
from ..models import Collection, Shard
from ..worker.protocol import ENV_BOARD, ENV_REPORTS, ENV_SELECT, ENV_STACKS, reports_folder
from .prestart import Prestarted
from .process import Launcher, ScratchFiles, WorkerHandle, signal_group, spawn_worker
from .runner import (
    STOP_GRACE,
    ShardListener,
    ShardOutcome,
    WorkerControl,
    WorkerSetup,
    run_shard,
)
from .zygote import Zygote, ZygoteGone


class ShardExecutor(Protocol):
    async def collected(self) -> Collection | None:
        """What the executor's warm process collected for this run; None when it collected
        nothing (no warm process, or one that forks before collecting)."""
        ...

    async def run(self, shard: Shard, setup: WorkerSetup, listener: ShardListener) -> ShardOutcome:
        """Run one shard to its end; never raises for what the tests or the worker did."""
        ...

    def kill_all(self) -> None:
        """A second interrupt: SIGKILL every process the executor started, at once."""
        ...

    @property
    def early(self) -> bool:
        """Its workers collect their own files (a warm process that forks before collecting,
        or none): the planner then prices cutting a file across shards."""
        ...

    def phases(self) -> Mapping[str, float]:
        """When its warm process started and was configured (`events.Phase` names); empty
        without one."""
        ...

    @property
    def steals(self) -> bool:
        """A free slot may take over a running shard's tail (its worker has a control
        channel here)."""
        ...


@dataclass(frozen=True, slots=True)
class ExecutorStart:
    """What any executor needs before the collection is known: where and how workers start,
    and the warm process's pytest arguments (None: no warm process)."""

    cwd: str
    env: Mapping[str, str]
    scratch: Path
    warm_argv: tuple[str, ...] | None = None
    # The collection is known (cached): the warm process forks before collecting, after it
    # imported the modules the cached collection imported (`preload`).
    early: bool = False
    grace: float = STOP_GRACE
    preload: tuple[str, ...] = ()
    # Protocol variables every worker of the run gets (the skip cache's recording).
    protocol_env: Mapping[str, str] = field(default_factory=dict)


class ExecutorFactory(Protocol):
    def __call__(self, start: ExecutorStart) -> AbstractAsyncContextManager[ShardExecutor]: ...


@dataclass(frozen=True, slots=True)
class SpawnLauncher:
    """A fresh `python -m pytest` per shard: pays start-up and collection every time, shares
    nothing with other shards; the conservative choice and the fallback where fork is not."""

    setup: WorkerSetup

    @contextlib.asynccontextmanager
    async def launch(self, shard: Shard, paths: ScratchFiles) -> AsyncIterator[WorkerHandle]:
        """A full-collection shard's worker is given every file of the run, in collection
        order, so it imports what pytest's whole collection imports before it narrows."""
        every = self.setup.all_files
        # A shard that holds every file of the run collects everything anyway.
        full = bool(every) and (shard.full_collection or set(shard.files) >= set(every))
        async with spawn_worker(
            self.setup.argv(self.setup.all_files if full else shard.files),
            cwd=self.setup.cwd,
            env=self.setup.env,
            protocol_env={
                ENV_SELECT: str(paths.select),
                ENV_STACKS: str(paths.stacks),
                ENV_BOARD: str(paths.board),
                ENV_REPORTS: str(reports_folder(self.setup.scratch_dir)),
                **self.setup.protocol_env,
            },
            grace=self.setup.grace,
        ) as worker:
            worker.full_collection = full
            yield worker


@dataclass(frozen=True, slots=True)
class ForkOrSpawn:
    """Fork from the zygote while it lives; spawn a fresh worker when it does not."""

    zygote: Zygote | None
    spawn: Launcher

    @contextlib.asynccontextmanager
    async def launch(self, shard: Shard, paths: ScratchFiles) -> AsyncIterator[WorkerHandle]:
        async with contextlib.AsyncExitStack() as stack:
            worker: WorkerHandle | None = None
            if self.zygote is not None and self.zygote.alive:
                with contextlib.suppress(ZygoteGone):
                    worker = await stack.enter_async_context(self.zygote.launch(shard, paths))
            if worker is None:
                worker = await stack.enter_async_context(self.spawn.launch(shard, paths))
            yield worker


@dataclass
class LocalExecutor:
    """Shards on this machine: forked from `zygote` while it lives, spawned otherwise."""

    zygote: Zygote | None = None
    _pids: dict[int, int] = field(default_factory=dict)

    @property
    def early(self) -> bool:
        return self.zygote is None or self.zygote.early

    @property
    def steals(self) -> bool:
        return True

    async def collected(self) -> Collection | None:
        zygote = self.zygote
        if zygote is None or zygote.early:
            return None
        await zygote.collected.wait()
        collection = zygote.collection
        if not zygote.alive and not collection.rootdir:
            raise collection_failure(zygote.returncode, zygote.output_tail)
        if not zygote.alive and not collection.nodeids and zygote.returncode not in (0, 1, 2, 5):
            raise collection_failure(zygote.returncode, zygote.output_tail)
        return collection

    async def run(self, shard: Shard, setup: WorkerSetup, listener: ShardListener) -> ShardOutcome:
        launcher = ForkOrSpawn(self.zygote, SpawnLauncher(setup))
        return await run_shard(shard, setup, _Tracking(listener, self._pids), launcher)

    def phases(self) -> Mapping[str, float]:
        zygote = self.zygote
        if zygote is None:
            return {}
        stamps = {
            Phase.WARM_SPAWNED: zygote.spawned_at,
            Phase.WARM_CONFIGURED: zygote.configured_at,
        }
        return {name: at for name, at in stamps.items() if at is not None}

    def kill_all(self) -> None:
        zygote_pid = self.zygote.pid if self.zygote is not None else None
        for pid in (*self._pids.values(), zygote_pid):
            if pid is not None:
                signal_group(pid, signal.SIGKILL)


@dataclass(frozen=True, slots=True)
class _Tracking:
    """Passes a shard's events on and keeps its worker's pid while it runs (for kill_all)."""

    listener: ShardListener
    pids: dict[int, int]

    def emit(self, event: ExecutionEvent) -> None:
        if isinstance(event, ShardStarted):
            self.pids[event.shard_id] = event.pid
        self.listener.emit(event)

    def attached(self, shard_id: int, control: WorkerControl) -> None:
        self.listener.attached(shard_id, control)

    def detached(self, shard_id: int) -> None:
        self.pids.pop(shard_id, None)
        self.listener.detached(shard_id)


@contextlib.asynccontextmanager
async def local_executor(
    start: ExecutorStart, adopt: Prestarted | None = None
) -> AsyncIterator[LocalExecutor]:
    """The local executor for one run: with `warm_argv`, a zygote started now (in a task group
    of its own; or `adopt`, started before the engine) and closed when the run leaves; else
    spawn only."""
    if start.warm_argv is None:
        yield LocalExecutor()
        return
    zygote = Zygote(
        start.warm_argv,
        cwd=start.cwd,
        env=start.env,
        scratch=start.scratch,
        grace=start.grace,
        early=start.early,
        preload=start.preload,
        protocol_env=start.protocol_env,
        adopt=adopt,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(zygote.run)
        try:
            yield LocalExecutor(zygote)
        finally:
            zygote.close()


def adopting(prestarted: Prestarted) -> ExecutorFactory:
    """The local executor, whose zygote is `prestarted` when the run wants exactly that one
    (else it is stopped and the zygote started as usual)."""

    @contextlib.asynccontextmanager
    async def factory(start: ExecutorStart) -> AsyncIterator[LocalExecutor]:
        wanted = prestarted.matches(start.warm_argv, start.cwd, start.env, start.protocol_env)
        if not wanted:
            prestarted.stop()
        async with local_executor(start, prestarted if wanted else None) as executor:
            yield executor

    return factory
