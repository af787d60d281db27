"""The resident process (docs/resident.md): runs served through it give plain pytest's
outcomes, reuse one collected zygote while nothing changed, see every edit (a module, a conftest
fixture, the configuration), survive a killed daemon or zygote, serve two runs at once one
after the other, forward Ctrl-C without leaving a process behind, refuse a socket others could
use, and leave when idle. The client imports none of the engine's heavy packages. `--watch`
reruns what a saved change affects, failed tests first."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.processes import alive, dies

pytestmark = pytest.mark.e2e

PROJECT = {
    "pyproject.toml": (
        '[tool.pytest.ini_options]\ntestpaths = ["tests"]\naddopts = ""\n'
        'filterwarnings = ["error"]\n'
    ),
    "pkg/__init__.py": "",
    "pkg/leaf.py": "def value():\n    return 1\n",
    "pkg/other.py": "def double(x):\n    return 2 * x\n",
    "tests/conftest.py": (
        "import pytest\n\n\n@pytest.fixture\ndef user():\n    return {'name': 'ada'}\n"
    ),
    "tests/test_leaf.py": (
        "from pkg.leaf import value\n\n\ndef test_value():\n    assert value() == 1\n"
    ),
    "tests/test_other.py": (
        "from pkg.other import double\n\n\ndef test_double():\n    assert double(2) == 4\n\n\n"
        "def test_user(user):\n    assert user['name'] == 'ada'\n"
    ),
}


def environ() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TEST_FRAMEWORK_", "PYTEST_XDIST", "OPTIMIZED_TEST_", "COV_CORE"))
    }


def python(
    root: Path, *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python ARGS` in the project, with the test's environment, its output captured."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env={**environ(), **(env or {})},
    )


def engine(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return python(root, "-m", "test_framework", "--resident", "-rA", *args, timeout=timeout)


def daemon(root: Path, action: str) -> dict[str, str]:
    done = python(root, "-m", "test_framework", "daemon", action, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    pairs = [line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line]
    return {} if action == "stop" else dict(pairs)


def plain_pytest(root: Path) -> subprocess.CompletedProcess[str]:
    return python(root, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "-p", "no:benchmark")


def outcomes(output: str) -> dict[str, str]:
    """`-rA`'s short summary: node id -> PASSED/FAILED/..."""
    found = {}
    for line in output.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL", "XPASS") and "::" in rest:
            found[rest.split(" - ")[0]] = word
    return found


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "project"
    for name, text in PROJECT.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    yield root
    daemon(root, "stop")


def same_as_pytest(root: Path) -> subprocess.CompletedProcess[str]:
    done = engine(root)
    expected = plain_pytest(root)
    assert outcomes(done.stdout) == outcomes(expected.stdout), done.stdout + done.stderr
    assert outcomes(done.stdout)
    assert done.returncode == expected.returncode
    return done


def test_runs_reuse_one_warm_zygote_and_answer_as_pytest(project: Path) -> None:
    for _ in range(3):
        same_as_pytest(project)
    status = daemon(project, "status")
    assert int(status["runs"]) == 3
    assert int(status["zygote_runs"]) == 3  # collected once, served three runs
    assert status["zygote_replaced"] == "0"
    assert int(status["zygote_rss_mb"].split(".")[0]) > 0


def test_every_edit_is_seen(project: Path) -> None:
    same_as_pytest(project)
    base = daemon(project, "status")["base_pid"]
    (project / "pkg/leaf.py").write_text("def value():\n    return 2\n")
    assert same_as_pytest(project).returncode == 1
    (project / "pkg/leaf.py").write_text("def value():\n    return 1\n")
    (project / "tests/conftest.py").write_text(PROJECT["tests/conftest.py"].replace("ada", "bob"))
    done = same_as_pytest(project)
    assert outcomes(done.stdout)["tests/test_other.py::test_user"] == "FAILED"
    (project / "tests/conftest.py").write_text(PROJECT["tests/conftest.py"])
    (project / "pyproject.toml").write_text(
        PROJECT["pyproject.toml"].replace('addopts = ""', "addopts = \"-k 'not user'\"")
    )
    done = same_as_pytest(project)
    assert "tests/test_other.py::test_user" not in outcomes(done.stdout)
    assert "1 deselected" in done.stdout
    status = daemon(project, "status")
    assert int(status["zygote_replaced"]) >= 3
    # Each edit replaced the project layer only: every new zygote was forked from one base.
    assert status["base_pid"] == base
    assert psutil.Process(int(status["zygote_pid"])).ppid() == int(base)


def test_the_client_imports_nothing_heavy(project: Path) -> None:
    engine(project)  # the resident process is up
    done = python(project, "-X", "importtime", "-m", "test_framework", "--resident")
    assert done.returncode == 0, done.stdout + done.stderr
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "test_framework.daemon.client" in imported
    assert not {"anyio", "structlog", "aiosqlite", "psutil", "pytest"} & imported
    # The same command line again: its resident process's place is remembered, so not even
    # the configuration is read.
    done = python(project, "-X", "importtime", "-m", "test_framework", "--resident")
    assert done.returncode == 0, done.stdout + done.stderr
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert not {"test_framework.config", "test_framework.rootdir", "tomllib"} & imported


def test_a_killed_daemon_zygote_or_base_is_replaced_without_failing_a_run(
    project: Path,
) -> None:
    same_as_pytest(project)
    status = daemon(project, "status")
    os.kill(int(status["zygote_pid"]), signal.SIGKILL)
    same_as_pytest(project)
    status = daemon(project, "status")
    os.kill(int(status["base_pid"]), signal.SIGKILL)  # its zygote goes with it
    assert dies(int(status["base_pid"]))
    same_as_pytest(project)
    after = daemon(project, "status")
    assert after["base_pid"] != status["base_pid"]
    assert after["zygote_pid"] != status["zygote_pid"]
    status = after
    os.kill(int(status["pid"]), signal.SIGKILL)
    assert dies(int(status["pid"]))
    same_as_pytest(project)
    assert daemon(project, "status")["pid"] != status["pid"]


def test_a_hung_resident_process_is_replaced_without_failing_a_run(project: Path) -> None:
    expected = same_as_pytest(project)
    hung = int(daemon(project, "status")["pid"])
    os.kill(hung, signal.SIGSTOP)  # it still accepts connections (the kernel does), never answers
    try:
        done = python(
            project,
            "-m",
            "test_framework",
            "--resident",
            "-rA",
            env={"TEST_FRAMEWORK_RESIDENT_ACK_SECONDS": "2"},
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(hung, signal.SIGCONT)
    assert "the resident process did not answer: replaced" in done.stderr
    assert outcomes(done.stdout) == outcomes(expected.stdout), done.stdout + done.stderr
    assert done.returncode == expected.returncode
    assert dies(hung)
    assert int(daemon(project, "status")["pid"]) != hung


def test_two_runs_at_once_are_served_one_after_the_other(project: Path) -> None:
    engine(project)
    command = [sys.executable, "-m", "test_framework", "--resident", "-rA"]
    runs = [
        subprocess.Popen(
            command,
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environ(),
        )
        for _ in range(2)
    ]
    expected = outcomes(plain_pytest(project).stdout)
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, out + err
        assert outcomes(out) == expected


def test_ctrl_c_reaches_the_run_and_leaves_no_process(project: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "sleeper.pid"
    (project / "tests/test_sleep.py").write_text(
        "import os, time\n\n\ndef test_sleeps():\n"
        f"    open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n    time.sleep(60)\n"
    )
    client = subprocess.Popen(
        [sys.executable, "-m", "test_framework", "--resident"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ(),
    )
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = int(pid_file.read_text())
    client.send_signal(signal.SIGINT)
    out, err = client.communicate(timeout=60)
    assert client.returncode == 2, out + err
    assert "interrupted" in out + err
    assert dies(worker)
    status = daemon(project, "status")  # the resident process stays, for the next run
    assert alive(int(status["pid"]))
    assert status["running"] == "False"


def test_a_socket_others_may_use_is_refused(project: Path) -> None:
    engine(project)
    status = daemon(project, "status")
    os.chmod(status["socket"], 0o666)
    done = engine(project, "--project-root", str(project))
    assert "not a socket closed to other users (mode 666); not using it" in done.stderr
    assert done.returncode == 0  # the run went on in-process
    os.chmod(status["socket"], 0o600)


def test_an_idle_resident_process_leaves(project: Path) -> None:
    (project / "pyproject.toml").write_text(
        PROJECT["pyproject.toml"]
        # 6 s: long enough for `status` to find it up on a loaded machine (1.2 s was not, in
        # a CI run beside the Dask tests' clusters), short enough to wait for.
        + "\n[tool.test_framework.profiles.balanced]\nresident_idle_minutes = 0.1\n"
    )
    engine(project, "--optimization", "balanced")
    status = daemon(project, "status")
    assert dies(int(status["pid"]), timeout=60)
    assert not Path(status["socket"]).exists()


def test_watch_reruns_what_a_change_affects_failed_first(project: Path) -> None:
    watcher = subprocess.Popen(
        [sys.executable, "-m", "test_framework", "--watch", "-rA"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environ(),
    )
    assert watcher.stdout is not None
    seen: list[str] = []

    def until(text: str) -> str:
        """The output from here up to the line holding `text`."""
        chunk: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = watcher.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            chunk.append(line)
            if text in line:
                seen.extend(chunk)
                return "".join(chunk)
        raise AssertionError("".join(seen + chunk))

    try:
        first = until("watching for changes")
        assert "3 passed" in first
        (project / "pkg/leaf.py").write_text("def value():\n    return 2\n")
        second = until("watching for changes")
        assert "pkg/leaf.py changed" in second
        assert "FAILED tests/test_leaf.py::test_value" in second
        assert "test_other.py" not in second  # it does not import pkg.leaf
        (project / "pkg/other.py").write_text("def double(x):\n    return x + x\n")
        third = until("watching for changes")
        # The failed test first, in a run of its own, then what the change affects.
        assert third.index("test_leaf.py::test_value") < third.index("test_other.py::test_double")
    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.communicate(timeout=60)
    assert watcher.returncode == 2
