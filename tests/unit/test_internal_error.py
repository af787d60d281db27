"""An engine bug (an exception outside the error tree) is exit 3 and one line that says so and
where the traceback went, as pytest reports its own internal errors; never a traceback on the
console, never exit 1, which CI would read as failing tests. Provoked through the executor
seam: an executor whose `run` raises, as a broken implementation would."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from test_framework.api import run
from test_framework.cli import main
from test_framework.errors import InternalError
from test_framework.execution.executor import ExecutorStart
from test_framework.execution.runner import ShardListener, ShardOutcome, WorkerSetup
from test_framework.models import Collection, Shard

BASIC = Path(__file__).resolve().parent.parent / "fixtures" / "suites" / "basic"


class BrokenExecutor:
    async def collected(self) -> Collection | None:
        return None

    async def run(self, shard: Shard, setup: WorkerSetup, listener: ShardListener) -> ShardOutcome:
        raise RuntimeError("executor bug: the shard went nowhere")

    early = False
    steals = True

    def kill_all(self) -> None:
        pass

    def phases(self) -> Mapping[str, float]:
        return {}


@contextlib.asynccontextmanager
async def broken(start: ExecutorStart) -> AsyncIterator[BrokenExecutor]:
    yield BrokenExecutor()


def test_the_command_line_exits_3_with_one_line_and_the_traceback_in_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    argv = ["--project-root", str(BASIC), "--cache-dir", str(cache), "--isolation", "spawn"]
    assert main(argv, executors=broken) == 3
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "internal error" in line]
    assert "RuntimeError: executor bug: the shard went nowhere" in line
    assert "bug in test_framework" in line
    log = cache / "internal-errors.log"
    assert str(log) in line
    assert "Traceback" not in err
    logged = log.read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in logged
    assert "executor bug: the shard went nowhere" in logged


@pytest.mark.anyio
async def test_the_api_raises_internal_error_with_the_log_path(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(InternalError, match="bug in test_framework") as raised:
        await run(BASIC, cache_dir=cache, quiet=True, executors=broken)
    assert raised.value.exit_code == 3
    assert raised.value.log_path == cache / "internal-errors.log"
    assert isinstance(raised.value.__cause__, RuntimeError)
