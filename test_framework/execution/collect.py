"""Collection in a pytest process of its own: discovery where no warm zygote collects (spawn
isolation, several collection queries).

The same interpreter and worker plugin the workers use, with `--collect-only`, so the ids are
exactly the ones plain pytest would run for the same arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..errors import collection_failure
from ..exit_codes import ExitCode
from ..models import Collection, Terminal
from ..worker.protocol import Collected, CollectFailed, Hello, Warned
from .channel import read_messages
from .process import spawn_worker


async def collect(argv: tuple[str, ...], *, cwd: Path, env: Mapping[str, str]) -> Collection:
    """Run `argv` (discovery.pytest_argv) with `--collect-only` and return what it found."""
    hello: Hello | None = None
    collected: Collected | None = None
    errors: list[CollectFailed] = []
    warned: list[Warned] = []
    async with spawn_worker([*argv, "--collect-only", "-q"], cwd=str(cwd), env=env) as worker:
        async for message in read_messages(worker.channel):
            if isinstance(message, Hello):
                hello = message
            elif isinstance(message, Collected):
                collected = message
            elif isinstance(message, CollectFailed):
                errors.append(message)
            elif isinstance(message, Warned):
                warned.append(message)
        await worker.process.wait()
        returncode = worker.process.returncode
    failed = returncode in (ExitCode.USAGE_ERROR, ExitCode.INTERNAL_ERROR)
    if hello is None or collected is None or failed:
        raise collection_failure(returncode, worker.output.text())
    return Collection(
        rootdir=hello.rootdir,
        nodeids=collected.nodeids,
        errors=tuple(errors),
        positionals=hello.args,
        serial=collected.serial,
        resources=dict(collected.resources or {}),
        read=dict.fromkeys(collected.read, ""),
        modules=collected.modules,
        terminal=terminal_of(collected),
        warnings=tuple(warned),
        collectors=collected.collectors,
    )


def terminal_of(collected: Collected) -> Terminal:
    return Terminal(
        collected.reportchars,
        collected.durations,
        collected.durations_min,
        collected.deselected,
        collected.maxfail,
        collected.coverage,
        collected.summary_plugins,
        collected.pytest_cache,
    )
