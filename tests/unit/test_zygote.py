"""The zygote: collects once, forks a worker per shard, reports exits, survives its children."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import psutil
import pytest

from test_framework.execution.channel import read_messages
from test_framework.execution.executor import LocalExecutor
from test_framework.execution.process import ScratchFiles
from test_framework.execution.runner import ShardOutcome, WorkerSetup
from test_framework.execution.zygote import Zygote, ZygoteGone
from test_framework.models import Outcome, Shard
from test_framework.worker.board import create as create_board
from test_framework.worker.protocol import WORKER_PLUGIN, Collected, Done, Hello
from test_framework.worker.selection import FileSlice, encode_selection

from .test_runner import Recorder, setup_for

pytestmark = pytest.mark.anyio


def shard_files(scratch: Path, select: Path) -> ScratchFiles:
    paths = ScratchFiles(select=select, stacks=scratch / "stacks", board=scratch / "board")
    create_board(paths.board)
    return paths


async def run_shard(
    shard: Shard, setup: WorkerSetup, recorder: Recorder, zygote: Zygote
) -> ShardOutcome:
    """One shard through the local executor: forked from `zygote` while it lives."""
    return await LocalExecutor(zygote).run(shard, setup, recorder)


def zygote_for(root: Path, scratch: Path, *args: str, early: bool = False) -> Zygote:
    argv = ["-m", "pytest", "-p", WORKER_PLUGIN, "--continue-on-collection-errors", *args]
    return Zygote(
        argv, cwd=str(root), env=dict(os.environ), scratch=scratch, grace=1.0, early=early
    )


def spec(shard_id: int, file: str, part: tuple[int, int] = (0, 1)) -> Shard:
    return Shard(shard_id, (), 0.0, (FileSlice(file, *part),))


async def test_collects_once_and_forks_children_that_run_their_slice(
    suites: Path, tmp_path: Path
) -> None:
    zygote = zygote_for(suites / "basic", tmp_path)
    async with anyio.create_task_group() as tg:
        await tg.start(zygote.run)
        await zygote.collected.wait()
        assert len(zygote.collection.nodeids) == 12
        assert Path(zygote.collection.rootdir) == suites / "basic"
        seen: list[str] = []
        pids: set[int] = set()
        for k in range(2):
            recorder = Recorder()
            outcome = await run_shard(
                spec(k + 1, "test_math.py", (k, 2)),
                setup_for(suites / "basic", tmp_path),
                recorder,
                zygote,
            )
            assert outcome.completed
            assert outcome.returncode == 0
            seen.extend(r.nodeid for r in recorder.results)
            pids.update(recorder.pids)
        zygote.close()
    assert sorted(seen) == sorted(n for n in zygote.collection.nodeids if "test_math" in n)
    assert len(pids) == 2
    assert not any(psutil.pid_exists(pid) for pid in pids)


async def test_forked_crash_reports_exit_status_and_the_rest(suites: Path, tmp_path: Path) -> None:
    zygote = zygote_for(suites / "crash", tmp_path)
    async with anyio.create_task_group() as tg:
        await tg.start(zygote.run)
        await zygote.collected.wait()
        recorder = Recorder()
        outcome = await run_shard(
            spec(1, "test_crash.py"), setup_for(suites / "crash", tmp_path), recorder, zygote
        )
        assert zygote.alive  # a child's crash is not the zygote's
        zygote.close()
    assert outcome.culprit is not None
    assert outcome.culprit.outcome is Outcome.CRASHED
    assert "exited with status 3" in outcome.culprit.message
    assert outcome.unstarted


async def test_forked_hang_times_out_with_stacks(suites: Path, tmp_path: Path) -> None:
    zygote = zygote_for(suites / "hang", tmp_path)
    async with anyio.create_task_group() as tg:
        await tg.start(zygote.run)
        await zygote.collected.wait()
        outcome = await run_shard(
            spec(1, "test_hang.py"),
            setup_for(suites / "hang", tmp_path, timeout=1.0),
            Recorder(),
            zygote,
        )
        zygote.close()
    assert outcome.culprit is not None
    assert outcome.culprit.outcome is Outcome.TIMEOUT
    assert "test_hang.py" in outcome.culprit.longrepr


async def test_a_forked_child_writes_captured_output_of_its_own(
    suites: Path, tmp_path: Path
) -> None:
    """Each child starts a fresh capture: one child's output never lands in another's report."""
    zygote = zygote_for(suites / "outcomes", tmp_path)
    async with anyio.create_task_group() as tg:
        await tg.start(zygote.run)
        await zygote.collected.wait()
        recorder = Recorder()
        await run_shard(
            spec(1, "test_outcomes.py"), setup_for(suites / "outcomes", tmp_path), recorder, zygote
        )
        zygote.close()
    failed = next(r for r in recorder.results if r.nodeid.endswith("::test_failed"))
    assert dict(failed.sections)["Captured stdout call"].strip() == (
        "this line goes to stdout before the failure"
    )


async def test_zygote_that_cannot_start_raises_zygote_gone_and_spawn_takes_over(
    suites: Path, tmp_path: Path
) -> None:
    zygote = zygote_for(suites / "basic", tmp_path, "--no-such-option")
    async with anyio.create_task_group() as tg:
        await tg.start(zygote.run)
        await zygote.collected.wait()
        assert not zygote.alive
        assert zygote.returncode == 4
        select = tmp_path / "select.json"
        select.write_text(encode_selection((FileSlice("test_misc.py", 0, 1),)))
        with pytest.raises(ZygoteGone):
            async with zygote.launch(spec(1, "test_misc.py"), shard_files(tmp_path, select)):
                pass  # pragma: no cover - never entered
        recorder = Recorder()
        outcome = await run_shard(
            spec(1, "test_misc.py"), setup_for(suites / "basic", tmp_path), recorder, zygote
        )
    assert outcome.completed
    assert len(recorder.results) == 3


async def test_protocol_messages_of_a_forked_child_start_with_hello(
    suites: Path, tmp_path: Path
) -> None:
    zygote = zygote_for(suites / "basic", tmp_path)
    select = tmp_path / "select.json"
    select.write_text(encode_selection((FileSlice("test_misc.py", 0, 1),)))
    async with anyio.create_task_group() as tg:
        await tg.start(zygote.run)
        await zygote.collected.wait()
        async with zygote.launch(spec(7, "test_misc.py"), shard_files(tmp_path, select)) as worker:
            events = [type(m) async for m in read_messages(worker.channel)]
            await worker.wait()
            assert worker.returncode == 0
        zygote.close()
    assert events[:2] == [Hello, Collected]
    assert events[-1] is Done


IMPORT_LOGGING = """
import os

with open(os.environ["IMPORT_LOG"], "a") as log:
    log.write(f"{__name__} {os.getpid()}\\n")


def test_one():
    pass
"""


@pytest.mark.parametrize("early", [False, True])
async def test_an_early_zygote_leaves_collection_to_each_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, early: bool
) -> None:
    """Forking before collection: the zygote imports no test module, and a child imports only
    the files of its own shard (a zygote that collects imports them all, once)."""
    root = tmp_path / "suite"
    root.mkdir()
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    for name in ("test_a.py", "test_b.py"):
        (root / name).write_text(IMPORT_LOGGING, encoding="utf-8")
    log = tmp_path / "imports.log"
    monkeypatch.setenv("IMPORT_LOG", str(log))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    zygote = zygote_for(root, scratch, early=early)
    recorder = Recorder()
    async with anyio.create_task_group() as tg:
        await tg.start(zygote.run)
        outcome = await run_shard(spec(1, "test_a.py"), setup_for(root, scratch), recorder, zygote)
        zygote.close()
    assert outcome.completed
    assert [(r.nodeid, r.outcome) for r in recorder.results] == [
        ("test_a.py::test_one", Outcome.PASSED)
    ]
    imports = [tuple(line.split()) for line in log.read_text(encoding="utf-8").splitlines()]
    if early:
        (child,) = recorder.pids
        assert imports == [("test_a", str(child))]
    else:
        assert sorted(imports) == [("test_a", str(zygote.pid)), ("test_b", str(zygote.pid))]


def test_the_zygote_indexes_module_files_once_for_every_childs_tracebacks() -> None:
    """pytest formats a failure through inspect.findsource, whose first lookup walks every
    loaded module; the zygote does it before forking, so no child pays it."""
    import inspect

    import _pytest.python

    from test_framework.worker.fork_server import _index_module_files

    path = inspect.getabsfile(_pytest.python)
    inspect.modulesbyfile.pop(path, None)
    inspect._filesbymodname.pop("_pytest.python", None)  # type: ignore[attr-defined]
    _index_module_files()
    assert inspect.modulesbyfile[path] == "_pytest.python"
