"""`--executor dask` (issue 18, in progress): shards on a real Dask cluster on 127.0.0.1, a
`dask scheduler` and two `dask worker` processes started and stopped by the test; the
per-test outcomes and exit code equal plain pytest's. An unreachable scheduler is one line and
exit 4."""

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

import pytest

from .helpers import SUITES, engine_command

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


def pytest_outcomes(suite: str, tmp_path: Path) -> dict[str, str]:
    """Plain pytest's per-test outcomes, from its JUnit XML."""
    import xml.etree.ElementTree as ET

    xml = tmp_path / "pytest.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}"],
        cwd=SUITES / suite,
        capture_output=True,
        check=False,
        timeout=300,
    )
    outcomes = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        outcome = (
            "failed"
            if kinds & {"failure", "error"}
            else "skipped"
            if "skipped" in kinds
            else "passed"
        )
        outcomes[case.attrib["name"]] = outcome
    return outcomes


@pytest.mark.parametrize("suite", ["many_files", "basic"])
def test_a_suite_on_the_cluster_gives_pytests_outcomes(
    cluster: str, suite: str, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    done = subprocess.run(
        engine_command(
            suite,
            tmp_path / "cache",
            "--executor",
            "dask",
            "--scheduler",
            cluster,
            "--report",
            str(report),
        ),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    plain = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=SUITES / suite,
        capture_output=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == plain.returncode, done.stdout + done.stderr
    document = json.loads(report.read_text())
    engine = {t["nodeid"].rpartition("::")[2]: t["outcome"] for t in document["tests"]}
    assert engine == pytest_outcomes(suite, tmp_path)
    # The shards ran in the cluster's workers, not here: their pytest processes are gone.
    assert document["shards"]


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
