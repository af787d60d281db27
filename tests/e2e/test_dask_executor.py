"""`--executor dask` (issue 18): shards on a real Dask cluster on 127.0.0.1, a `dask scheduler`
and two `dask worker` processes started and stopped by the module; the per-test outcomes and
exit code equal plain pytest's (forked from each worker's warm zygote, or spawned), also with a
worker killed mid-shard, a crash, a hang or a leak on a worker, and an uploaded tree; Ctrl-C
stops the shards on the cluster; an unreachable scheduler is one line and exit 4."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from test_framework.events import AttemptFinished, TestsReleased, TestStarted
from test_framework.execution.dask_executor import DaskExecutor
from test_framework.execution.runner import WorkerControl, WorkerSetup
from test_framework.models import Shard
from test_framework.oracle import differences, run_engine, run_pytest
from test_framework.worker.protocol import Release
from test_framework.worker.selection import FileSlice

from .helpers import SUITES, engine_command, run_suite

pytestmark = pytest.mark.e2e
distributed = pytest.importorskip("distributed")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(process: subprocess.Popen[bytes]) -> None:
    """TERM its session, a grace, KILL, reap."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path_factory.mktemp("dask")
    files = contextlib.ExitStack()
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--dashboard-address",
                ":0",
            ],
            stdout=files.enter_context((logs / "scheduler.log").open("wb")),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    for index in range(2):
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "distributed.cli.dask_worker",
                    address,
                    "--nthreads",
                    "1",
                    "--nworkers",
                    "1",
                    "--no-dashboard",
                    "--name",
                    f"worker-{index}",
                ],
                stdout=files.enter_context((logs / f"worker-{index}.log").open("wb")),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    from distributed import Client

    with Client(address, timeout="30s") as client:  # type: ignore[no-untyped-call]
        client.wait_for_workers(2, timeout=60)
    try:
        yield address
    finally:
        for process in reversed(processes):
            stop(process)
        files.close()


def steal_on(
    cluster: str, tmp_path: Path, env: dict[str, str], *extra: str
) -> subprocess.Popen[bytes]:
    """The engine on the steal suite, its shards on `cluster`, one at a time, in its own session."""
    return subprocess.Popen(
        engine_command(
            "steal",
            tmp_path / "cache",
            *("--executor", "dask", "--scheduler", cluster, "--workers", "1"),
            *extra,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def steal_workers() -> list[psutil.Process]:
    """The engine's pytest workers running the steal suite, wherever they were started."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        if "test_framework.worker.plugin" in cmdline and str(SUITES / "steal") in cmdline:
            found.append(process)
    return found


def same_as_pytest(suite: str, tmp_path: Path, *engine_args: str) -> dict[str, Any]:
    """The engine on a fixture suite against plain pytest there (the oracle's recording run):
    the same exit code and per-test outcomes. The engine's JSON report."""
    done, document = run_suite(suite, tmp_path, *engine_args)
    plain = run_pytest(sys.executable, SUITES / suite)
    assert plain.outcomes
    assert done.returncode == plain.exit_code, done.stdout + done.stderr
    engine = {t["nodeid"]: t["outcome"] for t in document["tests"]}
    assert differences(plain.outcomes, engine) == []
    return document


@pytest.mark.parametrize(("suite", "isolation"), [("many_files", "fork"), ("basic", "spawn")])
def test_a_suite_on_the_cluster_gives_pytests_outcomes(
    cluster: str, suite: str, isolation: str, tmp_path: Path
) -> None:
    """Forked from each worker's warm zygote, or spawned per shard there."""
    args = ("--executor", "dask", "--scheduler", cluster, f"--isolation={isolation}")
    document = same_as_pytest(suite, tmp_path, *args)
    assert document["shards"]
    # The scheduler keeps no event of the run (it would otherwise hold them for ever).
    from distributed import Client

    def queue_names(dask_scheduler: object = None) -> list[str]:
        """The Dask queues the scheduler holds (run there; nested, so it travels by value)."""
        extension = getattr(dask_scheduler, "extensions", {}).get("queues")
        return [str(name) for name in getattr(extension, "queues", {})]

    with Client(cluster, timeout="30s") as client:  # type: ignore[no-untyped-call]
        topics = client.get_events()
        queues = client.run_on_scheduler(queue_names)
    assert not [t for t in topics if str(t).startswith("test_framework-")]
    assert not [q for q in queues if str(q).startswith("test_framework-")]


def test_an_unreachable_scheduler_is_one_line_and_exit_4(tmp_path: Path) -> None:
    done = subprocess.run(
        engine_command(
            "basic",
            tmp_path / "cache",
            "--executor",
            "dask",
            "--scheduler",
            f"tcp://127.0.0.1:{free_port()}",
        ),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 4, done.stdout + done.stderr
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_worker_killed_mid_shard_loses_no_result_and_counts_none_twice(
    cluster: str, tmp_path: Path
) -> None:
    """The steal suite (12 tests of 0.4 s in one file): once a few tests ran, the Dask worker
    running the shard is killed (SIGKILL); Dask runs the task again on the other worker, which
    runs only the tests whose results had not come back, and the run reports each test once,
    as pytest does."""
    from distributed import Client

    log = tmp_path / "ran.log"
    report = tmp_path / "report.json"
    env = {**os.environ, "STEAL_SECONDS": "0.4", "STEAL_LOG": str(log)}
    run = steal_on(cluster, tmp_path, env, "--report", str(report))
    killed = None
    finished_before: list[str] = []
    with Client(cluster, timeout="30s") as client:  # type: ignore[no-untyped-call]
        deadline = time.monotonic() + 120
        while killed is None and time.monotonic() < deadline:
            ran = log.read_text().splitlines() if log.exists() else []
            busy = [
                address
                for address, keys in client.processing().items()
                if any(str(key).startswith("test_framework-") for key in keys)
            ]
            if len(ran) >= 3 and busy:
                finished_before = ran
                pids = client.run(os.getpid, workers=busy[:1])
                killed = pids[busy[0]]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
    assert killed is not None, "the shard never ran on a Dask worker"
    output, _ = run.communicate(timeout=300)
    # The dead worker's pytest (its own session) is orphaned: stop it.
    for process in steal_workers():
        with contextlib.suppress(psutil.Error):
            process.kill()
    assert run.returncode == 0, output.decode()
    document = json.loads(report.read_text())
    nodeids = [t["nodeid"] for t in document["tests"]]
    assert len(nodeids) == len(set(nodeids)) == 12
    assert {t["outcome"] for t in document["tests"]} == {"passed"}
    assert document["summary"] == {"passed": 12}
    # Two pytest processes ran the shard: the dead worker's and the rerun's; the rerun ran
    # none of the tests the dead one had finished well before it died (the last one's result
    # may have been on its way).
    lines = [line.split() for line in log.read_text().splitlines()]
    first = lines[0][0]
    rerun = {test for pid, test in lines if pid != first}
    assert rerun
    reported = {test for _, test in (line.split() for line in finished_before[:-1])}
    assert not rerun & reported, (rerun, reported)


def test_ctrl_c_stops_the_shards_on_the_cluster(cluster: str, tmp_path: Path) -> None:
    """SIGINT while a shard runs on a Dask worker: exit 2 (interrupted), and the shard's pytest
    on the worker is stopped and its task gone from the cluster within seconds."""
    from distributed import Client

    log = tmp_path / "ran.log"
    # 12 tests of 2 s: left alone, the shard would run on for 20 s after the interrupt.
    env = {**os.environ, "STEAL_SECONDS": "2.0", "STEAL_LOG": str(log)}
    run = steal_on(cluster, tmp_path, env)
    deadline = time.monotonic() + 120
    while (
        time.monotonic() < deadline
        and len(log.read_text().splitlines() if log.exists() else []) < 2
    ):
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    output, _ = run.communicate(timeout=120)
    assert run.returncode == 2, output.decode()

    with Client(cluster, timeout="30s") as client:  # type: ignore[no-untyped-call]
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            busy = [
                key
                for keys in client.processing().values()
                for key in keys
                if str(key).startswith("test_framework-")
            ]
            if not busy and not steal_workers():
                break
            time.sleep(0.1)
    left = steal_workers()
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    assert not left, [p.info["cmdline"] for p in left]
    assert not busy


def test_a_worker_with_another_tree_refuses_the_shard_and_says_what_differs(
    cluster: str, tmp_path: Path
) -> None:
    """The task run on the cluster with what the client saw: one test file with other
    content, another pytest. The worker runs nothing and names both."""
    from distributed import Client

    from test_framework.execution.dask_worker import run_remote_shard
    from test_framework.execution.runner import WorkerSetup
    from test_framework.execution.shard_check import environment_inputs, shard_inputs
    from test_framework.models import Shard
    from test_framework.worker.selection import FileSlice

    root = SUITES / "basic"
    shard = Shard(7, ("test_math.py::test_add",), 0.1, (FileSlice("test_math.py", 0, 1),))
    setup = WorkerSetup(str(root), str(root), (), dict(os.environ), tmp_path)
    expected = {**shard_inputs(root, shard.files), **environment_inputs()}
    expected["test_math.py"] = "0" * 64
    expected["pytest"] = "0.0.1"
    with Client(cluster, timeout="30s") as client:  # type: ignore[no-untyped-call]
        future = client.submit(run_remote_shard, shard, setup, "refusal-test", expected, pure=False)
        outcome, _, sent = future.result(timeout=60)
    assert sent == 0
    assert outcome.crashed
    assert outcome.unstarted == ("test_math.py::test_add",)
    assert "refused shard 7" in outcome.output_tail
    assert "test_math.py: " in outcome.output_tail
    assert "pytest: " in outcome.output_tail


def test_each_worker_forks_shards_from_a_warm_zygote_it_keeps_for_the_next_run(
    cluster: str, tmp_path: Path
) -> None:
    """Two runs of a suite on the cluster: every test ran in a fork of a warm zygote (its
    parent is not a Dask worker), and the second run forked from zygotes that were running
    before it began (the first run started one on each worker): no start-up or collection
    paid again. Then a module the tests import changes: the third run sees the change (a
    stale zygote would have kept the old module and passed)."""
    from distributed import Client

    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\n")
    (suite / "helper.py").write_text("VALUE = 1\n")
    for index in range(4):
        (suite / f"test_file_{index}.py").write_text(
            "import os\n\nimport helper\n\n\n"
            "def test_parent():\n"
            "    with open(os.environ['PARENT_LOG'], 'a') as log:\n"
            "        log.write(f'{os.getppid()}\\n')\n"
            "    assert helper.VALUE == 1\n"
        )
    log = tmp_path / "parents.log"  # one for both runs: another environment, another zygote
    parents: list[set[int]] = []
    began: list[float] = []
    for run in range(3):
        if run == 2:
            (suite / "helper.py").write_text("VALUE = 22\n")
        began.append(time.time())
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "test_framework",
                *("--project-root", str(suite), "--cache-dir", str(tmp_path / "cache")),
                *("--executor", "dask", "--scheduler", cluster, "--isolation", "fork"),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
            env={**os.environ, "PARENT_LOG": str(log)},
        )
        assert done.returncode == (1 if run == 2 else 0), done.stdout + done.stderr
        parents.append({int(p) for p in log.read_text().split()[4 * len(parents) :]})
        if run == 1:  # its zygotes, before the edit replaces them
            assert all(psutil.Process(pid).create_time() < began[1] for pid in parents[1])
    assert "4 failed" in done.stdout
    first, second, _ = parents
    with Client(cluster, timeout="30s") as client:  # type: ignore[no-untyped-call]
        dask_workers = set(client.run(os.getpid).values())
    assert not first & dask_workers
    assert not second & dask_workers


def test_an_uploaded_tree_runs_on_the_workers_tests_folder_included(
    cluster: str, tmp_path: Path
) -> None:
    """--dask-upload: the workers run the tests from the archive the client sent (a `tests`
    folder, which Dask's UploadDirectory would skip, and a data file), not from the client's
    path, and give pytest's outcomes."""
    suite = tmp_path / "project"
    (suite / "tests").mkdir(parents=True)
    (suite / "pytest.ini").write_text("[pytest]\ntestpaths = tests\n")
    (suite / "tests" / "data.txt").write_text("42\n")
    (suite / "tests" / "test_here.py").write_text(
        "import os\nfrom pathlib import Path\n\n\n"
        "def test_reads_its_data():\n"
        "    assert (Path(__file__).parent / 'data.txt').read_text() == '42\\n'\n"
        "    with open(os.environ['WHERE_LOG'], 'a') as log:\n"
        "        log.write(__file__ + '\\n')\n\n\n"
        "def test_fails():\n"
        "    assert 0\n"
    )
    log = tmp_path / "where.log"
    report = tmp_path / "report.json"
    command = [
        sys.executable,
        "-m",
        "test_framework",
        *("--project-root", str(suite), "--cache-dir", str(tmp_path / "cache")),
        *("--executor", "dask", "--scheduler", cluster, "--dask-upload"),
        *("--report", str(report)),
    ]
    env = {**os.environ, "WHERE_LOG": str(log)}
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=300, env=env
    )
    assert done.returncode == 1, done.stdout + done.stderr
    document = json.loads(report.read_text())
    outcomes = {t["nodeid"]: t["outcome"] for t in document["tests"]}
    assert outcomes == {
        "tests/test_here.py::test_reads_its_data": "passed",
        "tests/test_here.py::test_fails": "failed",
    }
    ran_from = log.read_text().split()
    assert ran_from
    assert all("test_framework-trees" in path for path in ran_from)
    assert not any(path.startswith(str(suite)) for path in ran_from)
    # An edit goes with the next upload: the failing test is fixed, and the run says so.
    here = suite / "tests" / "test_here.py"
    here.write_text(here.read_text().replace("assert 0", "assert 1"))
    again = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=300, env=env
    )
    assert again.returncode == 0, again.stdout + again.stderr


def test_without_a_scheduler_a_local_cluster_runs_the_shards_and_goes_with_the_run(
    tmp_path: Path,
) -> None:
    """--executor dask alone: a local cluster of processes started for the run gives pytest's
    outcomes, and nothing it started outlives the run."""
    began = time.time()
    same_as_pytest("basic", tmp_path, "--executor", "dask")
    # Its zygotes name the suite; its cluster's workers, orphaned, would be spawned
    # multiprocessing children left to init.
    left = [
        p
        for p in psutil.process_iter(["cmdline", "create_time", "ppid"])
        if str(SUITES / "basic") in " ".join(p.info["cmdline"] or ())
        or (
            "multiprocessing.spawn" in " ".join(p.info["cmdline"] or ())
            and p.info["create_time"] >= began
            and p.info["ppid"] == 1
        )
    ]
    assert not left, [p.info["cmdline"] for p in left]


@pytest.mark.parametrize(
    ("suite", "extra"), [("crash", ()), ("hang", ("--timeout", "1")), ("leak", ())]
)
def test_a_crash_hang_or_leak_on_a_dask_worker_is_reported_as_it_is_locally(
    cluster: str, suite: str, extra: tuple[str, ...], tmp_path: Path
) -> None:
    """The shard's pytest dies, hangs past the timeout, or leaves a process behind on a Dask
    worker: each test's outcome and the exit code are the local engine's."""
    args = ("--retries", "0", *extra)
    local = run_engine(sys.executable, SUITES / suite, engine_args=args)
    remote = run_engine(
        sys.executable,
        SUITES / suite,
        engine_args=(*args, "--executor", "dask", "--scheduler", cluster),
    )
    assert local.outcomes
    assert remote.outcomes == local.outcomes, remote.output[-3000:]
    assert remote.exit_code == local.exit_code


class Steering:
    """A dispatcher stand-in: once the remote shard's first test runs, asks it (through the
    control the executor hands over) to give back its tail."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self.control: WorkerControl | None = None
        self.asked = False
        self.waiting_when_asked = -1

    def emit(self, event: object) -> None:
        self.events.append(event)
        if isinstance(event, TestStarted) and self.control is not None and not self.asked:
            self.asked = True
            self.waiting_when_asked = self.control.waiting()
            self.control.send(Release(1))

    def attached(self, shard_id: int, control: WorkerControl) -> None:
        self.control = control

    def detached(self, shard_id: int) -> None:
        self.control = None


@pytest.mark.anyio
async def test_a_remote_shard_gives_back_its_tail_when_the_dispatcher_asks(
    cluster: str, tmp_path: Path
) -> None:
    """Work stealing across the cluster: a Release sent through the remote shard's control
    reaches its pytest on the Dask worker, which hands back half of its waiting tests (a
    TestsReleased event) and runs only the rest."""
    from distributed import Client

    root = SUITES / "steal"
    ids = tuple(f"test_one_long_file.py::test_waits[{n}]" for n in range(12))
    shard = Shard(1, ids, 4.8, (FileSlice("test_one_long_file.py", 0, 1),))
    env = {**os.environ, "STEAL_SECONDS": "0.4"}
    setup = WorkerSetup(str(root), str(root), (), env, tmp_path)
    steering = Steering()
    async with Client(cluster, asynchronous=True, timeout="30s") as client:  # type: ignore[no-untyped-call]
        executor = DaskExecutor(client, "steering")
        outcome = await executor.run(shard, setup, steering)
    released = [e for e in steering.events if isinstance(e, TestsReleased)]
    assert steering.asked
    assert 0 < steering.waiting_when_asked <= 11
    assert len(released) == 1
    assert 3 <= len(released[0].nodeids) <= 6
    finished = {e.result.nodeid for e in steering.events if isinstance(e, AttemptFinished)}
    assert finished == set(ids) - set(released[0].nodeids)
    assert outcome.completed
    assert steering.control is None  # handed back when the shard ended
