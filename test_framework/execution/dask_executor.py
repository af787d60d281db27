"""Shards on a Dask cluster: the executor seam's second implementation (issue 18), the client's
side (dask_worker.py is the workers').

Each shard is one Dask task (`pure=False`, a key unique to the run, shard and attempt), run on a
Dask worker forked from the worker's warm zygote when the run has a warm process (else spawned,
as spawn isolation runs it here), its events streamed back as they happen (numbered, so they are
delivered in order and once). The planner, limiter, ledger, store and reporters are the same as
for a local run; the workers get node ids and selections, never pytest items, and check first
that they have the client's tree and environment for the shard (shard_check.py).

The dispatcher controls a remote shard as a local one: its commands (a release of the tail for
work stealing, the breaker's skips, a stop) go through a Dask queue per shard that the task
polls and hands to its pytest; what the shard runs and how many of its tests wait, it learns
from the shard's events (`RemoteProgress`), since the worker's board is on another machine.
"""

from __future__ import annotations

import contextlib
import math
import pickle
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..errors import UsageError
from ..machine import cpu_count
from ..models import Collection, Shard
from ..worker.protocol import Message
from .dask_stream import STOP, Delivery, Following, RemoteProgress
from .executor import ExecutorFactory, ExecutorStart
from .runner import ShardListener, ShardOutcome, WorkerControl, WorkerSetup
from .shard_check import environment_inputs, shard_inputs

if TYPE_CHECKING:
    from .dask_tree import Uploaded

log = structlog.get_logger("test_framework")

TOPIC = "test_framework"
# After a task returned, how long its last events may take to arrive through the scheduler.
STRAGGLER_SECONDS = 10.0
# How long the client tries to reach a scheduler before the run stops with a usage error.
CONNECT_SECONDS = 5


@dataclass
class DaskExecutor:
    client: Any  # distributed.Client, asynchronous
    run_key: str
    # The run's warm process as the client would start it: each worker forks the shards from
    # its own (None: no warm process; shards are spawned there).
    warm: ExecutorStart | None = None
    # The tree went to the workers as an archive (dask_tree.py); None: the same path there.
    uploaded: Uploaded | None = None
    futures: dict[str, Any] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=environment_inputs)

    @property
    def early(self) -> bool:
        return self.warm is None  # spawned shards collect their own files

    @property
    def steals(self) -> bool:
        return True  # commands reach a remote shard through a Dask queue

    async def collected(self) -> Collection | None:
        return None

    def phases(self) -> Mapping[str, float]:
        return {}

    async def run(self, shard: Shard, setup: WorkerSetup, listener: ShardListener) -> ShardOutcome:

        from distributed import Queue

        key = f"{TOPIC}-{self.run_key}-shard{shard.shard_id}-attempt{shard.attempt}"
        outbox, commands_out = anyio.create_memory_object_stream[bytes](math.inf)
        progress = RemoteProgress(shard.nodeids)
        control = WorkerControl(
            lambda message: _post(outbox, message), progress.running, progress.waiting
        )
        following = Following(listener, shard.shard_id, progress, control)
        delivery = Delivery(following)
        commands = Queue(f"{key}-commands", client=self.client)  # type: ignore[no-untyped-call]
        self.client.subscribe_topic(key, delivery.receive)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_send_commands, commands_out, commands)
                outcome = await self._submit(shard, setup, key, delivery, commands)
                tg.cancel_scope.cancel()
            return outcome
        finally:
            following.detach()
            outbox.close()
            self.futures.pop(key, None)
            self.client.unsubscribe_topic(key)

    async def _submit(
        self, shard: Shard, setup: WorkerSetup, key: str, delivery: Delivery, commands: Any
    ) -> ShardOutcome:
        from .dask_worker import run_remote_shard

        expected = {
            **shard_inputs(Path(setup.rootdir), shard.files),
            **self.environment,
        }
        future = self.client.submit(
            run_remote_shard,
            shard,
            setup,
            key,
            expected,
            self.warm,
            self.uploaded,
            key=key,
            pure=False,
        )
        self.futures[key] = future
        try:
            outcome, execution, sent = await future
        except BaseException:
            with anyio.CancelScope(shield=True), anyio.move_on_after(STRAGGLER_SECONDS):
                await self._stop(commands, future)
            raise
        delivery.expect(execution, sent)
        with anyio.move_on_after(STRAGGLER_SECONDS):
            await delivery.complete.wait()
        return outcome  # type: ignore[no-any-return]

    async def _stop(self, commands: Any, future: Any) -> None:
        """Stop the task where it runs (its pytest TERM, grace, KILL), and forget it."""
        await commands.put(STOP)
        await self.client.cancel([future], force=True)

    def kill_all(self) -> None:
        for future in list(self.futures.values()):
            future.cancel()


def dask_executors(scheduler: str | None, run_key: str, *, upload: bool = False) -> ExecutorFactory:
    """Open a client for the run: to `scheduler`, or to a local cluster of processes (one
    worker per core) started for the run and closed with it. With `upload`, the project tree
    goes to every worker as an archive first. With a warm process, every worker is told to
    start (or check) its warm zygote before the first shard arrives."""

    @contextlib.asynccontextmanager
    async def factory(start: ExecutorStart) -> AsyncIterator[DaskExecutor]:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise UsageError(
                "--executor dask needs Dask's distributed package: pip install "
                '"test_framework[dask]"'
            ) from None
        async with contextlib.AsyncExitStack() as stack:
            address: Any = scheduler
            if scheduler is None:
                cluster = await stack.enter_async_context(
                    LocalCluster(  # type: ignore[no-untyped-call]
                        n_workers=cpu_count(),
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                        asynchronous=True,
                    )
                )
                address = cluster
            else:
                await _probe(scheduler)
            try:
                client = await stack.enter_async_context(
                    Client(address, asynchronous=True, timeout=f"{CONNECT_SECONDS}s")  # type: ignore[no-untyped-call]
                )
            except OSError as exc:
                raise unreachable(scheduler, str(exc)) from None
            uploaded = await _upload(client, Path(start.cwd)) if upload else None
            warm = None if start.warm_argv is None else start
            if warm is not None:
                from .dask_worker import WarmWorker, prepare

                await client.register_plugin(WarmWorker())
                await client.run(prepare, warm, uploaded)
            try:
                yield DaskExecutor(client, run_key, warm, uploaded)
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(STRAGGLER_SECONDS):
                    await _forget_events(client, f"{TOPIC}-{run_key}-")

    return factory


async def _upload(client: Any, root: Path) -> Uploaded:
    """Pack the tree (in a thread: it reads every file) and register its plugin, which unpacks
    it on every worker before the call returns."""
    from .dask_tree import TreeUpload, Uploaded, tree_archive

    archive, digest = await anyio.to_thread.run_sync(tree_archive, root)
    uploaded = Uploaded(str(root), digest)
    log.info("dask_tree_uploaded", root=str(root), digest=digest, bytes=len(archive))
    await client.register_plugin(TreeUpload(archive, uploaded))
    return uploaded


async def _forget_events(client: Any, prefix: str) -> None:
    """Drop the run's event topics and command queues from the scheduler: it keeps up to 1,000
    events per topic for ever (a long-lived scheduler would grow by every run's results), and
    a queue until every handle on it was garbage collected. Dask has no call for the topics,
    so a function run on the scheduler removes them; defined here, inside, so it travels by
    value (the scheduler need not have test_framework installed)."""

    def forget(prefix: str, dask_scheduler: Any = None) -> int:
        topics = getattr(getattr(dask_scheduler, "_broker", None), "_topics", None)
        queues = getattr(dask_scheduler, "extensions", {}).get("queues")
        dropped = 0
        for table in (topics, getattr(queues, "queues", None)):
            if not isinstance(table, dict):
                continue
            names = [name for name in table if str(name).startswith(prefix)]
            for name in names:
                del table[name]
            dropped += len(names)
        refcounts = getattr(queues, "client_refcount", None)
        if isinstance(refcounts, dict):
            for name in [n for n in refcounts if str(n).startswith(prefix)]:
                del refcounts[name]
        return dropped

    try:
        await client.run_on_scheduler(forget, prefix)
    except Exception as exc:  # a scheduler that refuses: the run's answer stands
        log.info("dask_events_kept", reason=str(exc))


async def _probe(scheduler: str) -> None:
    """A TCP scheduler that refuses the connection is said at once (Dask's client would try
    again until its timeout); other transports are left to Dask."""
    scheme, _, rest = scheduler.rpartition("://")
    host, _, port = rest.rpartition(":")
    if scheme not in ("", "tcp") or not host or not port.isdigit():
        return
    try:
        with anyio.fail_after(CONNECT_SECONDS):
            stream = await anyio.connect_tcp(host.strip("[]"), int(port))
    except (OSError, TimeoutError) as exc:
        raise unreachable(scheduler, str(exc) or f"no answer in {CONNECT_SECONDS} s") from None
    await stream.aclose()


def unreachable(scheduler: str | None, reason: str) -> UsageError:
    return UsageError(
        f"cannot reach the Dask scheduler at {scheduler}: {reason} (is `dask scheduler` "
        "running there? --scheduler tcp://HOST:8786)"
    )


def _post(outbox: MemoryObjectSendStream[bytes], message: Message) -> None:
    """A command for a remote shard (the dispatcher's call is synchronous): queued here, put
    on the shard's Dask queue by `_send_commands`; a shard that ended drops it."""
    with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
        outbox.send_nowait(pickle.dumps(message))


async def _send_commands(commands_out: MemoryObjectReceiveStream[bytes], commands: Any) -> None:
    async with commands_out:
        async for payload in commands_out:
            await commands.put(payload)
