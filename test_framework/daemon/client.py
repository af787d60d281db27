"""The thin client: what `python -m test_framework` (and `scripts/test_backend_optimized.py`) try
first. When the run may go to a resident process (the profile's `resident`, `--resident`,
`OPTIMIZED_TEST_RESIDENT`; never in CI unless asked), it finds the project's resident process
(starting one if none is up), hands it the command line, the working folder and the
environment, writes what the run prints, forwards Ctrl-C, and exits with the run's code.

Standard library only, so a served run starts without the engine's imports: none of anyio,
structlog, aiosqlite or psutil is loaded here. Where this command line's resident process is
comes from a memo (daemon/places.py) while nothing it was read from changed; only otherwise is
the engine's config reader (itself standard library) imported and the place remembered.
Whenever this cannot serve a run (a subcommand, a run that needs pytest in the foreground, no
resident process and none can be started, a socket that is not the user's), it returns None
and the caller runs the engine in-process as usual.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time

from ..worker.proc import started_at
from . import places
from .wire import UnsafeSocket, check_owned, encode, lines

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType
    from typing import Any

_SUBCOMMANDS = frozenset(
    {"flaky", "why", "cache", "audit", "daemon", "merge-reports", "shard-verify"}
    | {"history", "slowest", "stats", "store"}
)
_NEVER = frozenset({"--no-resident", "--watch", "-h", "--help", "--clear-cache"})
# How long a client waits for a resident process it started to listen.
START_SECONDS = 20.0
# How long a resident process may take to acknowledge a run (it does so before queueing it):
# past this it is hung, and replaced. TEST_FRAMEWORK_RESIDENT_ACK_SECONDS: the tests' seam.
ACK_SECONDS = 10.0


def resident_exit_code(argv: Sequence[str], prog: str) -> int | None:
    """The run's exit code when a resident process served it; None to run in-process."""
    own = list(argv[: argv.index("--")] if "--" in argv else argv)
    if (own and own[0] in _SUBCOMMANDS) or _NEVER & set(own):
        return None
    if _value(own, "--executor") == "dask":
        return None  # the shards run on a Dask cluster, not in a resident process here
    cwd = os.getcwd()
    place = places.recall(cwd, argv, os.environ)
    if place is None:
        place = _place(own, cwd, argv)
    if place is None:
        return None
    path, root, idle = place
    try:
        check_owned(path)
    except UnsafeSocket as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return None
    environ = dict(os.environ)
    tty = sys.stdout.isatty()
    if tty and "COLUMNS" not in environ:
        with contextlib.suppress(OSError):
            environ["COLUMNS"] = str(os.get_terminal_size(sys.stdout.fileno()).columns)
    request = {
        "op": "run",
        "argv": list(argv),
        "cwd": cwd,
        "env": environ,
        "tty": tty,
        "prog": prog,
        "started": started_at(),  # the origin of the run's time split
    }
    for _ in range(2):  # a stale or hung resident process leaves; one new one is started
        sock = _connect_or_start(path, root, idle)
        if sock is None:
            return None
        outcome = _serve(sock, request)
        if outcome == "hung":
            with contextlib.suppress(OSError):
                os.unlink(path)
            continue
        if outcome != "stale":
            return outcome if isinstance(outcome, int) else None
        _wait_gone(path)
    return None


def _place(own: list[str], cwd: str, argv: Sequence[str]) -> places.Place | None:
    """The socket of the project's resident process, the project, the idle time-out, read
    from the configuration (and remembered, daemon/places.py); None when this run is not for
    a resident process (or its settings cannot be read here: the engine then says what is
    wrong)."""
    from pathlib import Path

    from ..command_line import pytest_arguments
    from ..config import load_catalog, read_env, resident_wanted, shipped_config_dir
    from ..rootdir import find_rootdir
    from .wire import socket_path

    try:
        root_arg = _value(own, "--project-root")
        here = Path(cwd)
        # As the engine finds it: from the paths among pytest's arguments, not from an engine
        # option's value (`--cache-dir DIR` once made DIR the root).
        for_pytest = pytest_arguments(argv)
        named = [a.split("::", 1)[0] for a in for_pytest if not a.startswith("-")]
        root = Path(root_arg).resolve() if root_arg else find_rootdir(here, for_pytest)
        catalog = load_catalog(root)
        env = read_env(os.environ)
        name = _value(own, "--optimization") or env.optimization or catalog.default_optimization
        profile = catalog.profiles.get(name)
        if profile is None:
            return None
        asked = True if "--resident" in own else None
        if not resident_wanted(asked, env.resident, profile.resident):
            return None
        cache_arg = _value(own, "--cache-dir")
        if cache_arg:
            cache_dir = here / Path(cache_arg).expanduser()
        else:
            cache_dir = root / Path(env.cache_dir or catalog.cache_dir or ".test_framework")
        place = (
            str(socket_path(cache_dir, root)),
            str(root),
            profile.resident_idle_minutes * 60,
        )
        shipped = [str(p) for p in shipped_config_dir().glob("*.toml")]
        if root_arg:
            named.append(root_arg)
        places.remember(
            cwd, argv, os.environ, place, places.watched_paths(cwd, str(root), named, shipped)
        )
        return place
    except Exception:
        return None


def _value(args: list[str], option: str) -> str | None:
    for index, arg in enumerate(args):
        if arg == option and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


def _connect(path: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def _connect_or_start(path: str, root: str, idle: float) -> socket.socket | None:
    sock = _connect(path)
    if sock is not None:
        return sock
    start_server(path, root, idle)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.02)
        sock = _connect(path)
        if sock is not None:
            try:
                check_owned(path)
            except UnsafeSocket:
                sock.close()
                return None
            return sock
            return None
    return None


def start_server(path: str, root: str, idle: float) -> None:
    """A resident process for the project, in a session of its own, its output in a log file
    beside the socket."""
    import subprocess  # only here: a served run never needs it

    os.makedirs(os.path.dirname(path), exist_ok=True, mode=0o700)
    with open(os.path.splitext(path)[0] + ".log", "ab") as log:
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "test_framework.daemon.server",
                path,
                root,
                str(idle),
            ],
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def _serve(sock: socket.socket, request: dict[str, Any]) -> int | str | None:
    """Send the run and relay it: its exit code, "stale" (ask a new process), or None (run
    it in-process)."""
    interrupts = 0

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupts
        interrupts += 1
        with contextlib.suppress(OSError):
            sock.sendall(encode({"op": "interrupt"}))

    previous = signal.signal(signal.SIGINT, on_interrupt)
    out, err = sys.stdout.buffer, sys.stderr.buffer
    try:
        sock.sendall(encode(request))
        sock.settimeout(float(os.environ.get("TEST_FRAMEWORK_RESIDENT_ACK_SECONDS", ACK_SECONDS)))
        for message in lines(sock):
            if "accepted" in message:
                sock.settimeout(None)
            elif "o" in message:
                out.write(message["o"].encode("utf-8", "replace"))
                out.flush()
            elif "e" in message:
                err.write(message["e"].encode("utf-8", "replace"))
                err.flush()
            elif "exit" in message:
                return int(message["exit"])
            elif "stale" in message:
                return "stale"
            elif "local" in message:
                return None
        # The resident process went away mid-run (killed): the run's answer is lost.
        print(
            f"{request['prog']}: the resident process ended during the run; run again "
            "(or with --no-resident)",
            file=sys.stderr,
        )
        return 2 if interrupts else 3
    except TimeoutError:
        _end_hung(sock, str(request["prog"]))
        return "hung"
    except OSError:
        return None
    finally:
        signal.signal(signal.SIGINT, previous)
        sock.close()


def _end_hung(sock: socket.socket, prog: str) -> None:
    """A resident process that did not acknowledge a run: killed with its session (it started
    one of its own; its zygote leaves when the connection to it closes)."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)  # pid, uid, gid
        pid = int.from_bytes(creds[:4], sys.byteorder)
        if pid > 0 and pid != os.getpid():
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    print(f"{prog}: the resident process did not answer: replaced", file=sys.stderr)


def _wait_gone(path: str) -> None:
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and os.path.exists(path):
        sock = _connect(path)
        if sock is None:
            return
        sock.close()
        time.sleep(0.02)


def daemon_request(path: str | os.PathLike[str], request: dict[str, Any]) -> dict[str, Any] | None:
    """One status or stop exchange with the resident process at `path`; None if none is up."""
    check_owned(path)
    sock = _connect(os.fspath(path))
    if sock is None:
        return None
    try:
        sock.sendall(encode(request))
        for message in lines(sock):
            return message
        return None
    except ConnectionError:  # it was leaving (its code changed, idle): it is gone
        return None
    finally:
        sock.close()
