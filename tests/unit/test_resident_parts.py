"""The resident process's decisions, one at a time: when it is wanted, where its socket lives
and who may use it, what makes a zygote's start differ, what a watch cycle reruns, and how a
selection narrows a collection."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
import threading
from pathlib import Path

import pytest

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from test_framework.config import env_ttl_hours, read_env, resident_wanted
from test_framework.daemon.client import daemon_request
from test_framework.daemon.wire import UnsafeSocket, check_owned, socket_path
from test_framework.errors import ConfigError
from test_framework.execution.executor import ExecutorStart
from test_framework.execution.resident import project_state, zygote_key
from test_framework.planning import kept
from test_framework.watch import _is_interrupt, affected_files, changed_paths


def test_resident_is_the_profiles_choice_except_in_ci_unless_asked() -> None:
    assert resident_wanted(None, None, True, {})
    assert not resident_wanted(None, None, False, {})
    assert not resident_wanted(None, None, True, {"CI": "true"})
    assert resident_wanted(None, None, True, {"CI": "0"})
    assert resident_wanted(True, None, False, {"CI": "1"})  # --resident wins over CI
    assert not resident_wanted(False, True, True, {})  # --no-resident wins over everything
    assert resident_wanted(None, True, False, {"CI": "1"})  # OPTIMIZED_TEST_RESIDENT=true
    assert read_env({"OPTIMIZED_TEST_RESIDENT": "false"}).resident is False


def test_bad_ttl_and_resident_variables_name_what_is_valid() -> None:
    assert env_ttl_hours("1.5") == 1.5
    for raw in ("0", "-1", "x", "inf"):
        with pytest.raises(ConfigError, match=r"CACHE_TTL_HOURS=.*expected hours > 0"):
            env_ttl_hours(raw)
    with pytest.raises(ConfigError, match=r"RESIDENT=.*true or false"):
        read_env({"OPTIMIZED_TEST_RESIDENT": "maybe"})


def test_the_socket_lives_in_the_cache_folder_unless_that_path_is_too_long() -> None:
    root = Path("/p")  # nothing is created: the path is only computed
    short = socket_path(root / ".tf", root)
    assert short.parent == root / ".tf"
    assert short.name.startswith("resident-")
    assert short.suffix == ".sock"
    long = socket_path(root / ("d" * 120), root)
    assert long.parent.name == f"test_framework-{os.getuid()}"
    assert long.name == short.name  # the same key
    assert socket_path(root / ".tf", root / "other") != short  # per project


def test_a_socket_others_may_use_is_unsafe(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    try:
        os.chmod(path, 0o600)
        check_owned(path)
        os.chmod(path, 0o660)
        with pytest.raises(UnsafeSocket, match="not a socket closed to other users"):
            check_owned(path)
    finally:
        server.close()
    path.unlink()
    path.write_text("")  # a plain file where the socket should be
    os.chmod(path, 0o600)
    with pytest.raises(UnsafeSocket, match="not a socket"):
        check_owned(path)
    check_owned(tmp_path / "missing.sock")  # nothing there yet: nothing to refuse


def start(**changes: object) -> ExecutorStart:
    values: dict[str, object] = {
        "cwd": "/p",
        "env": {"PATH": "/bin", "PWD": "/p", "SHLVL": "1"},
        "scratch": Path("/tmp/run1"),
        "warm_argv": ("tests",),
    }
    values.update(changes)
    return ExecutorStart(**values)  # type: ignore[arg-type]


def test_a_zygote_is_shared_by_runs_that_differ_only_in_volatile_things() -> None:
    base = zygote_key(start())
    assert zygote_key(start(scratch=Path("/tmp/run2"))) == base
    assert zygote_key(start(env={"PATH": "/bin", "PWD": "/q", "SHLVL": "2"})) == base
    # A zygote recording dependencies (the skip cache's) is not one that does not.
    assert zygote_key(start(protocol_env={"TEST_FRAMEWORK_RECORD_DEPS": "1"})) != base
    assert zygote_key(start(env={"PATH": "/bin", "MY_FLAG": "1"})) != base
    assert zygote_key(start(warm_argv=("tests", "-k", "x"))) != base
    assert zygote_key(start(cwd="/q")) != base


def test_the_project_state_moves_with_sources_and_config_not_with_caches(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg/mod.py").write_text("x = 1\n")
    (tmp_path / "pyproject.toml").write_text("")
    before = project_state(tmp_path)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__/mod.pyc").write_bytes(b"0")
    (tmp_path / ".test_framework").mkdir()
    (tmp_path / ".test_framework/results.sqlite").write_bytes(b"0")
    (tmp_path / "notes.txt").write_text("data files are the collection's reads' business")
    assert project_state(tmp_path) == before
    (tmp_path / "pkg/mod.py").write_text("x = 22\n")
    assert project_state(tmp_path) != before
    moved = project_state(tmp_path)
    (tmp_path / "pkg/new.py").write_text("")
    assert project_state(tmp_path) != moved


def test_a_watch_cycle_reruns_the_files_that_depend_on_the_change(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/leaf.py": "X = 1\n",
        "pkg/other.py": "Y = 1\n",
        "tests/test_leaf.py": "from pkg.leaf import X\n",
        "tests/test_other.py": "from pkg.other import Y\n",
        "tests/test_data.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    tests = ["tests/test_leaf.py", "tests/test_other.py", "tests/test_data.py"]
    assert affected_files(tmp_path, tests, ["pkg/leaf.py"], {}) == ["tests/test_leaf.py"]
    assert affected_files(tmp_path, tests, ["tests/test_other.py"], {}) == ["tests/test_other.py"]
    # A data file: placed by what the skip cache recorded, else nobody knows: everything.
    assert affected_files(tmp_path, tests, ["data.json"], {}) is None
    recorded = {"tests/test_data.py": ["data.json"]}
    assert affected_files(tmp_path, tests, ["data.json"], recorded) == ["tests/test_data.py"]


def test_changed_paths_are_edits_additions_and_removals() -> None:
    before = {"a.py": (1, 10), "b.py": (1, 10), "c.py": (1, 10)}
    after = {"a.py": (1, 10), "b.py": (2, 11), "d.py": (1, 12)}
    assert changed_paths(before, after) == ["b.py", "c.py", "d.py"]
    assert changed_paths(before, before) == []


def test_a_selection_keeps_node_ids_files_and_classes() -> None:
    nodeids = ["t/a.py::x", "t/a.py::C::y", "t/b.py::z", "t/b.py::z2", "t/c.py::w"]
    assert kept(nodeids, ["t/a.py::C"]) == ("t/a.py::C::y",)
    assert kept(nodeids, ["t/b.py"]) == ("t/b.py::z", "t/b.py::z2")
    assert kept(nodeids, ["t/b.py::z", "t/c.py"]) == ("t/b.py::z", "t/c.py::w")
    assert kept(nodeids, ["t/d.py"]) == ()


def test_ctrl_c_ends_a_watch_even_when_it_comes_wrapped_with_the_cancellations_it_caused() -> None:
    interrupt, cancelled = KeyboardInterrupt(), asyncio.CancelledError()
    assert _is_interrupt(interrupt)
    assert _is_interrupt(BaseExceptionGroup("pool", [interrupt, cancelled]))
    assert _is_interrupt(BaseExceptionGroup("outer", [BaseExceptionGroup("pool", [interrupt])]))
    # A cancellation without Ctrl-C, or an error beside it, is not an interrupt: it is reported.
    assert not _is_interrupt(BaseExceptionGroup("pool", [cancelled]))
    assert not _is_interrupt(BaseExceptionGroup("pool", [interrupt, ValueError("bug")]))


def test_a_remembered_place_holds_only_while_nothing_it_was_read_from_changed(
    tmp_path: Path,
) -> None:
    from test_framework.daemon import places

    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    here = str(project / "tests")
    environ = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "OPTIMIZED_TEST_PROFILE": "x"}
    argv = ["--resident", "-k", "fast"]
    place = ("/run/sock", str(project), 600.0)
    watched = places.watched_paths(here, str(project), ["test_a.py"], [])
    places.remember(here, argv, environ, place, watched)
    assert places.recall(here, argv, environ) == place
    # Another command line, folder or engine variable: not known.
    assert places.recall(here, ["--resident"], environ) is None
    assert places.recall(str(project), argv, environ) is None
    assert places.recall(here, argv, {**environ, "OPTIMIZED_TEST_PROFILE": "y"}) is None
    # A configuration file edited, or one added in a folder on the way up: read again.
    (project / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = '-q'\n")
    assert places.recall(here, argv, environ) is None
    places.remember(here, argv, environ, place, watched)
    (project / "tests" / "pytest.ini").write_text("[pytest]\n")
    assert places.recall(here, argv, environ) is None
    # A path the command line names appearing changes the rootdir search too.
    places.remember(here, argv, environ, place, watched)
    (project / "tests" / "test_a.py").write_text("")
    assert places.recall(here, argv, environ) is None


def test_the_client_finds_the_project_as_the_engine_does_not_from_an_options_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--cache-dir DIR` once made the client take DIR (a path that exists) for pytest's path
    argument, and so for the project: its resident process then watched the wrong files."""
    from test_framework.command_line import pytest_arguments
    from test_framework.daemon.client import _place

    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("OPTIMIZED_TEST_RESIDENT", raising=False)
    argv = ["--resident", "--cache-dir", str(elsewhere), "-k", "fast", "--report", "r.json"]
    assert pytest_arguments([*argv, "tests", "--", "-p", "x"]) == ["-k", "fast", "tests", "-p", "x"]
    place = _place(argv, str(project), argv)
    assert place is not None
    sock, root, _ = place
    assert root == str(project)
    assert sock == str(socket_path(elsewhere, project))


def test_a_resident_process_that_resets_the_connection_is_gone_not_an_error(
    tmp_path: Path,
) -> None:
    """`daemon stop` reaching a process that is leaving (its code changed, idle) gets a reset
    connection: no resident process, not an internal error."""
    path = tmp_path / "resident.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    os.chmod(path, 0o600)
    server.listen(1)

    def reset_the_next_connection() -> None:
        peer, _ = server.accept()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.recv(1024)
        peer.close()  # linger 0: the client's read gets ECONNRESET

    thread = threading.Thread(target=reset_the_next_connection)
    thread.start()
    try:
        assert daemon_request(path, {"op": "stop"}) is None
    finally:
        thread.join(5)
        server.close()
