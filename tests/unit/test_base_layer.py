"""The base layer (issue 16's layers): a Python with pytest imported, from which zygotes are
forked. A layer forked from it is `python -m pytest` in every way a test can see (arguments,
environment, folder, the engine's modules imported afresh), it is stopped and reaped like a
spawned worker, a zygote forked from it serves shards, and a resident pool keeps the base
across project layers while forking each new zygote from it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import psutil
import pytest

from test_framework.execution.base_layer import BaseLayer, BaseUnavailable
from test_framework.execution.channel import read_messages
from test_framework.execution.executor import ExecutorStart
from test_framework.execution.resident import (
    HeldBase,
    _module_stats,
    environment_state,
    warm_pool,
)
from test_framework.worker.protocol import WORKER_PLUGIN, Done, Hello, Message

pytestmark = pytest.mark.anyio

PROBE = """
import os, sys

def test_sees_its_start(tmp_path):
    assert os.environ["PROBE_VALUE"] == "42"
    assert os.getcwd() == os.environ["PROBE_CWD"]
    assert sys.argv[0].endswith(os.path.join("pytest", "__main__.py"))
    assert os.getpgid(0) == os.getpid()  # its own process group, like a spawned worker
"""


def probe_project(root: Path, conftest: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\nfilterwarnings = ["error"]\naddopts = ""\n'
    )
    (root / "test_probe.py").write_text(PROBE)
    if conftest:
        (root / "conftest.py").write_text(conftest)
    return root


def base_for(root: Path, scratch: Path, **env: str) -> BaseLayer:
    scratch.mkdir(parents=True, exist_ok=True)
    return BaseLayer(
        cwd=str(root), env={**os.environ, **env, "PROBE_CWD": str(root)}, scratch=scratch, grace=1
    )


async def run_layer(base: BaseLayer, root: Path, *first: str) -> tuple[int | None, list[Message]]:
    """A layer running `pytest FIRST -p WORKER_PLUGIN` to its end: its exit status and
    messages."""
    argv = ["-m", "pytest", *first, "-p", WORKER_PLUGIN, "-q"]
    async with base.start(argv, cwd=str(root), env=base.env, grace=1) as layer:
        messages = [m async for m in read_messages(layer.channel)]
        with anyio.fail_after(30):
            await layer.wait()
        return layer.returncode, messages


async def test_a_layer_is_python_m_pytest_in_its_own_group(tmp_path: Path) -> None:
    root = probe_project(tmp_path / "project")
    base = base_for(root, tmp_path / "scratch", PROBE_VALUE="42")
    async with anyio.create_task_group() as tg:
        await tg.start(base.run)
        assert any(f.endswith(os.path.join("_pytest", "python.py")) for f in base.modules)
        for _ in range(2):  # one base, many layers
            returncode, messages = await run_layer(base, root)
            assert returncode == 0, messages
            assert any(isinstance(m, Hello) for m in messages)
            assert [m.exitstatus for m in messages if isinstance(m, Done)] == [0]
        base.close()
    assert not base.alive


async def test_a_layer_imports_the_engine_afresh_so_pytest_may_rewrite_it(
    tmp_path: Path,
) -> None:
    # The base imported the engine's protocol module. Named as a plugin before anything
    # imports it, pytest marks it for rewriting, which warns (an error here) if the module was
    # inherited: as installed from a wheel, the engine's `pytest11` entry point marks the whole
    # `test_framework` package before any plugin loads.
    root = probe_project(tmp_path / "project")
    base = base_for(root, tmp_path / "scratch", PROBE_VALUE="42")
    async with anyio.create_task_group() as tg:
        await tg.start(base.run)
        assert any(f.endswith(os.path.join("worker", "protocol.py")) for f in base.modules)
        returncode, messages = await run_layer(base, root, "-p", "test_framework.worker.protocol")
        base.close()
    assert returncode == 0, (messages, (tmp_path / "scratch" / "layer-1.out").read_text())


async def test_a_layer_is_stopped_and_reaped_like_a_worker(tmp_path: Path) -> None:
    root = probe_project(tmp_path / "project")
    (root / "test_probe.py").write_text("import time\n\ndef test_hangs():\n    time.sleep(60)\n")
    base = base_for(root, tmp_path / "scratch")
    async with anyio.create_task_group() as tg:
        await tg.start(base.run)
        argv = ["-m", "pytest", "-p", WORKER_PLUGIN, "-q"]
        async with base.start(argv, cwd=str(root), env=base.env, grace=1) as layer:
            pid = layer.pid
            assert psutil.pid_exists(pid)
        assert layer.returncode == -signal.SIGTERM
        assert not psutil.pid_exists(pid)  # reaped by the base
        base.close()


async def test_only_pytest_in_the_bases_folder_is_forked(tmp_path: Path) -> None:
    root = probe_project(tmp_path / "project")
    base = base_for(root, tmp_path / "scratch")
    async with anyio.create_task_group() as tg:
        await tg.start(base.run)
        with pytest.raises(BaseUnavailable):
            async with base.start(["-c", "pass"], cwd=str(root), env=base.env):
                pass
        with pytest.raises(BaseUnavailable):
            async with base.start(["-m", "pytest"], cwd=str(tmp_path), env=base.env):
                pass
        base.close()


async def test_the_pool_forks_each_new_zygote_from_one_base(tmp_path: Path) -> None:
    root = probe_project(tmp_path / "project")
    start = ExecutorStart(
        cwd=str(root),
        env={**os.environ, "PROBE_VALUE": "42", "PROBE_CWD": str(root)},
        scratch=tmp_path / "run",
        warm_argv=("-m", "pytest", "-p", WORKER_PLUGIN, "--continue-on-collection-errors"),
    )
    async with warm_pool(tmp_path / "pool") as pool:
        first = await pool.acquire(start)
        await first.collected.wait()
        base = pool.base
        assert base is not None
        assert psutil.Process(first.pid).ppid() == base.base.pid  # forked, not spawned
        # An edit makes the zygote stale, not the base: the next zygote forks from it too.
        (root / "test_probe.py").write_text(PROBE + "\ndef test_more():\n    pass\n")
        os.utime(root / "test_probe.py", ns=(1, 1))
        second = await pool.acquire(start)
        await second.collected.wait()
        assert second is not first
        assert pool.base is base
        assert psutil.Process(second.pid).ppid() == base.base.pid
        assert len(second.collection.nodeids) == 2
        # A base that died is noticed: the next zygote gets a new base.
        os.kill(base.base.pid or 0, signal.SIGKILL)
        with anyio.fail_after(10):
            await base.base.ended.wait()
        pool.release()
        third = await pool.acquire(start)
        await third.collected.wait()
        assert pool.base is not None
        assert pool.base is not base
        assert third.alive
        assert len(third.collection.nodeids) == 2
        assert pool.bases_replaced == ["it exited"]


def test_a_base_is_stale_when_a_file_it_imported_changes(tmp_path: Path) -> None:
    module = tmp_path / "imported.py"
    module.write_text("x = 1\n")
    held = HeldBase(
        base=BaseLayer(cwd=str(tmp_path), env={}, scratch=tmp_path, grace=1),
        key=(),
        root=tmp_path,
        environment=environment_state(tmp_path),
        modules=_module_stats((f":{module}",), None),
    )
    held.base.alive = True
    assert held.stale() is None
    module.write_text("x = 22\n")
    assert held.stale() == "a module it imported changed"
