#!/usr/bin/env python
"""Run a suite on a Dask cluster, kill a Dask worker mid-run, and check that the engine still
reports exactly what plain pytest reports (issue 18: no result lost or counted twice).

    python scripts/dask_fault_check.py --suite DIR [--python PY] [--kill-after SECONDS]
        [engine options] [-- pytest args]

Starts a `dask scheduler` and two one-thread `dask worker` processes (PY's, on 127.0.0.1; the
nanny restarts a killed worker, as on a real cluster), runs plain pytest and the engine with
`--executor dask` on the same selection; `--kill-after` seconds into the engine's run (once a
shard runs), SIGKILLs the worker process running one of the run's tasks; compares every node
id's outcome and the exit codes, says which worker was killed and when, and exits 0 when
nothing differs and a worker was killed mid-run (1 otherwise).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from benchmark_optimization import start_dask_cluster  # noqa: E402

from test_framework.oracle import differences, run_engine, run_pytest, split_pytest_args  # noqa: E402


def kill_a_busy_worker(address: str, after: float, deadline: float) -> str:
    """After `after` seconds, SIGKILL the Dask worker process running one of the engine's
    tasks; what was killed, or why nothing was."""
    from distributed import Client

    time.sleep(after)
    with Client(address, timeout="30s") as client:  # type: ignore[no-untyped-call]
        while time.monotonic() < deadline:
            busy = [
                worker
                for worker, keys in client.processing().items()
                if any(str(key).startswith("test_framework-") for key in keys)
            ]
            if busy:
                pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                return f"killed Dask worker {busy[0]} (pid {pid}) while it ran a shard"
            time.sleep(0.05)
    return "no shard was running on the cluster: nothing killed"


def stop_all(processes: list[psutil.Process]) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(processes, timeout=10)


def main() -> int:
    argv, pytest_args = split_pytest_args(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1], allow_abbrev=False)
    parser.add_argument("--suite", type=Path, required=True, help="the project folder")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the suite")
    parser.add_argument("--kill-after", type=float, default=2.0, help="seconds into the run")
    ns, engine_options = parser.parse_known_args(argv)
    root = ns.suite.resolve()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    plain = run_pytest(ns.python, root, pytest_args)
    print(f"pytest: {len(plain.outcomes)} tests, exit {plain.exit_code}")
    address, cluster = start_dask_cluster(ns.python, root, env)
    spawned = [psutil.Process(p.pid) for p in cluster]
    try:
        killed: list[str] = []
        killer = threading.Thread(
            target=lambda: killed.append(
                kill_a_busy_worker(address, ns.kill_after, time.monotonic() + 300)
            ),
            daemon=True,
        )
        killer.start()
        with tempfile.TemporaryDirectory() as scratch:
            engine = run_engine(
                ns.python,
                root,
                pytest_args,
                ["--retries", "0", "--executor", "dask", "--scheduler", address, *engine_options],
                env=env,
                cache_dir=Path(scratch) / "cache",
            )
        killer.join(timeout=60)
    finally:
        everything = []
        for process in spawned:
            with contextlib.suppress(psutil.Error):
                everything.extend(process.children(recursive=True))
        stop_all([*everything, *spawned])
    what = killed[0] if killed else "the killer did not finish"
    print(what)
    diff = differences(plain.outcomes, engine.outcomes)
    print(f"engine on the cluster: {len(engine.outcomes)} tests, exit {engine.exit_code}")
    for line in diff:
        print(f"  {line}")
    same = not diff and plain.exit_code == engine.exit_code
    if not engine.outcomes:
        print(engine.output[-3000:])
    print("SAME outcomes and exit code" if same else "DIFFERENT")
    return 0 if same and what.startswith("killed") else 1


if __name__ == "__main__":
    sys.exit(main())
