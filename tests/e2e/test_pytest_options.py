"""A pytest user's command line: the options they know, without `--`, mean what they mean in
pytest, with pytest's exit codes. Each test compares the engine with plain pytest on a fixture
suite."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import SUITES, engine_command, run_suite

pytestmark = pytest.mark.e2e


def engine(suite: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = engine_command(suite, tmp_path / "cache", "--retries", "0", *args)
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)


def pytest_run(suite: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--color=no", *args]
    return subprocess.run(
        command, cwd=SUITES / suite, capture_output=True, text=True, check=False, timeout=300
    )


def counts(output: str) -> dict[str, int]:
    last = [line for line in output.splitlines() if " in " in line and "==" in line][-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", last.split(" in ")[0])}


def test_k_and_a_path_need_no_double_dash(tmp_path: Path) -> None:
    done = engine("basic", tmp_path, "-k", "add", "test_math.py")
    plain = pytest_run("basic", "-k", "add", "test_math.py")
    assert done.returncode == plain.returncode == 0, done.stdout + done.stderr
    assert counts(done.stdout) == counts(plain.stdout) == {"passed": 1, "deselected": 5}


def failures(found: dict[str, int]) -> int:
    return found.get("failed", 0) + found.get("error", 0) + found.get("errors", 0)


@pytest.mark.parametrize(("option", "limit"), [(("-x",), 1), (("--maxfail", "2"), 2)])
def test_exitfirst_and_maxfail_stop_the_whole_run(
    option: tuple[str, ...], limit: int, tmp_path: Path
) -> None:
    """pytest stops at the limit; so does the run, counting failures across its workers as they
    come (a test another worker finished meanwhile keeps its outcome, as under xdist, so there
    may be more); what it kept from running is reported not run. One worker, in order: exactly
    pytest's answer."""
    plain = pytest_run("outcomes", *option)
    assert failures(counts(plain.stdout)) == limit
    for args in ((), ("--workers", "1")):
        done, document = run_suite("outcomes", tmp_path, "--retries", "0", *option, *args)
        assert done.returncode == plain.returncode == 1, done.stdout + done.stderr
        found = counts(done.stdout)
        assert failures(found) >= limit, done.stdout
        assert len(document["tests"]) == 11, done.stdout  # every test: an outcome or not run
        if args:
            assert failures(found) == limit, done.stdout
            found.pop("not", None)
            assert found == counts(plain.stdout), done.stdout


def test_collect_only_lists_like_pytest_and_exits_0(tmp_path: Path) -> None:
    done = engine("basic", tmp_path, "--co", "-q")
    plain = pytest_run("basic", "--co", "-q")
    assert done.returncode == plain.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:-1] == plain.stdout.splitlines()[:-1]  # timing aside
    assert "in the foreground" in done.stderr


def test_a_missing_path_is_a_usage_error_as_in_pytest(tmp_path: Path) -> None:
    for isolation in ("fork", "spawn"):
        done = engine("basic", tmp_path, f"--isolation={isolation}", "test_missing.py")
        plain = pytest_run("basic", "test_missing.py")
        assert done.returncode == plain.returncode == 4, done.stdout + done.stderr
        assert "file or directory not found: test_missing.py" in done.stderr
        assert "Traceback" not in done.stderr


def test_a_collection_error_interrupts_the_run_as_in_pytest(tmp_path: Path) -> None:
    done = engine("collect_error", tmp_path)
    plain = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
        cwd=SUITES / "collect_error",
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == plain.returncode == 2, done.stdout + done.stderr
    assert "Interrupted: 2 errors during collection" in done.stdout
    assert counts(done.stdout) == {"errors": 2}
    going = engine("collect_error", tmp_path, "--continue-on-collection-errors")
    assert going.returncode == 1, going.stdout
    assert counts(going.stdout) == {"passed": 5, "errors": 2}


@pytest.mark.parametrize(
    ("option", "code", "message", "found"),
    [
        # The first error is followed by another file: pytest stops collecting there.
        (("-x",), 1, "stopping after 1 failures", {"error": 1}),
        # The second error is in the last file: pytest collected everything, then interrupts.
        (("--maxfail", "2"), 2, "Interrupted: 2 errors during collection", {"errors": 2}),
        (("--maxfail", "3"), 2, "Interrupted: 2 errors during collection", {"errors": 2}),
    ],
)
def test_maxfail_counts_collection_errors_as_pytest_does(
    option: tuple[str, ...], code: int, message: str, found: dict[str, int], tmp_path: Path
) -> None:
    done = engine("collect_error", tmp_path, *option)
    plain = pytest_run("collect_error", *option)
    assert done.returncode == plain.returncode == code, done.stdout + done.stderr
    assert message in done.stdout
    assert message in plain.stdout
    assert counts(done.stdout) == counts(plain.stdout) == found, done.stdout


def test_maxfail_from_the_ini_files_addopts_stops_the_whole_run(tmp_path: Path) -> None:
    plain = pytest_run("outcomes", "-o", "addopts=-x")
    done = engine("outcomes", tmp_path, "-o", "addopts=-x", "--workers", "1")
    assert done.returncode == plain.returncode == 1, done.stdout + done.stderr
    found = counts(done.stdout)
    assert found.pop("not") > 0, done.stdout
    assert found == counts(plain.stdout) == {"failed": 1, "passed": 1}, done.stdout


def test_a_misspelt_engine_option_is_named_not_passed_to_pytest(tmp_path: Path) -> None:
    done = engine("basic", tmp_path, "--optimisation", "balanced")
    assert done.returncode == 4
    assert "unknown option --optimisation; did you mean --optimization?" in done.stderr


def test_the_store_folder_is_ignored_by_git_and_tagged_as_a_cache(tmp_path: Path) -> None:
    done = engine("basic", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    store = tmp_path / "cache"
    assert (store / ".gitignore").read_text(encoding="utf-8").splitlines()[-1] == "*"
    assert (
        (store / "CACHEDIR.TAG")
        .read_text(encoding="utf-8")
        .startswith("Signature: 8a477f597d28d172789f06886806bc55")
    )


def test_a_cache_dir_the_user_named_is_never_marked_nor_cleared(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me", encoding="utf-8")
    command = engine_command("basic", folder, "--clear-cache", "--retries", "0")
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (folder / "notes.txt").read_text(encoding="utf-8") == "keep me"
    assert not (folder / ".gitignore").exists()
    assert (folder / "results.sqlite").exists()


def test_a_run_from_a_subfolder_uses_the_projects_root_and_its_one_store(tmp_path: Path) -> None:
    project = tmp_path / "categories"
    shutil.copytree(SUITES / "categories", project)
    sub = project / "tests" / "unit"
    command = [sys.executable, "-m", "test_framework", "--retries", "0"]
    done = subprocess.run(command, cwd=sub, capture_output=True, text=True, check=False)
    plain = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
        cwd=sub,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == plain.returncode == 0, done.stdout + done.stderr
    assert f"rootdir: {project}" in done.stdout
    assert counts(done.stdout) == counts(plain.stdout) == {"passed": 4}  # the subfolder's
    assert (project / ".test_framework" / "results.sqlite").exists()
    assert not (sub / ".test_framework").exists()


def summary_sections(output: str) -> list[str]:
    """From the warnings summary to the closing line, as pytest prints them: timings masked,
    blank lines and the failure banners (`___ name ___`) and pytest's PASSES section left out."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if "warnings summary" in line)
    kept = []
    for line in lines[start:]:
        if not line.strip() or line.startswith("___") or "PASSES" in line:
            continue
        kept.append(re.sub(r"\d+\.\d\ds", "T", line.strip("= ")))
    return kept


@pytest.mark.parametrize("isolation", ["fork", "spawn"])
def test_terminal_summary_sections_read_as_pytests(isolation: str, tmp_path: Path) -> None:
    """Warnings summary (and its count), `--durations`, `-r` lines for skips, xfails, xpasses,
    passes and a failed subtest, the deselected count: line for line pytest's, cold and warm."""
    args = ("-rA", "--durations=2", "-k", "not left_out")
    plain = pytest_run("terminal_sections", *args)
    expected = summary_sections(plain.stdout)
    assert any(line.startswith("SUBFAILED[n] (n=2)") for line in expected)
    for _ in range(2):
        done = engine("terminal_sections", tmp_path, f"--isolation={isolation}", *args)
        assert done.returncode == plain.returncode == 1, done.stdout + done.stderr
        assert summary_sections(done.stdout) == expected


def test_pdb_and_capture_no_run_pytest_in_the_foreground(tmp_path: Path) -> None:
    """`--pdb` without a terminal: pytest's own answer (the failure, the debugger quit, exit
    2), not `not run`; `-s`: the test's output reaches the terminal."""
    command = engine_command("outcomes", tmp_path / "cache", "--pdb", "-k", "test_failed")
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=120, stdin=subprocess.DEVNULL
    )
    plain = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--pdb", "-k", "test_failed"],
        cwd=SUITES / "outcomes",
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == plain.returncode == 2, done.stdout + done.stderr
    assert counts(done.stdout) == counts(plain.stdout) == {"failed": 1, "deselected": 10}
    assert "--pdb needs pytest in one process on this terminal" in done.stderr
    shown = engine("outcomes", tmp_path, "-s", "-k", "test_failed")
    assert "this line goes to stdout before the failure" in shown.stdout


def test_a_cluster_like_vs_is_taken_apart_as_pytest_would(tmp_path: Path) -> None:
    """`-vs`: the engine's -v and pytest's -s; pytest in the foreground, verbose, output shown."""
    done = engine("outcomes", tmp_path, "-vs", "-k", "test_failed")
    plain = pytest_run("outcomes", "-vs", "-k", "test_failed")
    assert done.returncode == plain.returncode == 1, done.stdout + done.stderr
    assert "-s needs pytest in one process on this terminal" in done.stderr
    assert "this line goes to stdout before the failure" in done.stdout
    verbose = [line for line in done.stdout.splitlines() if line.startswith("test_outcomes.py::")]
    assert verbose, done.stdout  # pytest's verbose line (the test's output inside it, with -s)
    assert counts(done.stdout) == counts(plain.stdout)
