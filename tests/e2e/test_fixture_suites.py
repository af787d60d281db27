"""The engine reports exactly what plain pytest reports, on every fixture suite.

expected.json is the hand-written table of outcomes (tests/fixtures/suites/README.md); it is
checked twice: against plain serial pytest (so the table is right) and against the engine started
through its command line (so the engine is right).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from test_framework.oracle import differences, run_engine, run_pytest

SUITES = Path(__file__).resolve().parent.parent / "fixtures" / "suites"
EXPECTED: dict[str, dict[str, object]] = json.loads(
    (SUITES / "expected.json").read_text(encoding="utf-8")
)

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("isolation", ["fork", "spawn"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_engine_matches_the_expected_table(name: str, isolation: str) -> None:
    expected = EXPECTED[name]
    # The table is pytest's with --continue-on-collection-errors (the default stop at a
    # collection error is tests/e2e/test_pytest_options.py's).
    run = run_engine(
        sys.executable,
        SUITES / name,
        ["--continue-on-collection-errors"],
        engine_args=("--retries", "0", f"--isolation={isolation}"),
    )
    assert differences(expected["outcomes"], run.outcomes) == [], run.output[-4000:]  # type: ignore[arg-type]
    assert run.exit_code == expected["exit_code"], run.output[-4000:]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_forked_run_from_the_cached_collection_matches_the_table(
    name: str, tmp_path: Path
) -> None:
    """The second run finds its collection cached, so its zygote forks before collecting and
    each worker collects only its own files: the answer must not change. A collection with
    errors (or no tests) is never cached, so there the second run collects in the zygote."""
    expected = EXPECTED[name]
    args = ("--retries", "0", "--isolation=fork", "--cache-dir", str(tmp_path / "cache"))
    keep_going = ["--continue-on-collection-errors"]
    run_engine(sys.executable, SUITES / name, keep_going, engine_args=args)
    second = run_engine(
        sys.executable, SUITES / name, keep_going, engine_args=(*args, "-vv", "--log-format=json")
    )
    outcomes: dict[str, str] = expected["outcomes"]  # type: ignore[assignment]
    # A collection error is listed under its file's path, without "::".
    clean = bool(outcomes) and all("::" in nodeid for nodeid in outcomes)
    assert ("collection_cache_hit" in second.output) == clean, second.output[-4000:]
    assert differences(outcomes, second.outcomes) == [], second.output[-4000:]
    assert second.exit_code == expected["exit_code"], second.output[-4000:]


@pytest.mark.parametrize("name", ["outcomes", "weird_ids", "collect_error"])
def test_plain_pytest_agrees_with_the_table(name: str) -> None:
    run = run_pytest(sys.executable, SUITES / name, ["--continue-on-collection-errors"])
    assert differences(EXPECTED[name]["outcomes"], run.outcomes) == []  # type: ignore[arg-type]
    assert run.exit_code == EXPECTED[name]["exit_code"]


def test_engine_in_fixed_worker_mode_with_slices_matches(tmp_path: Path) -> None:
    """Many workers and a suite cut into many shards still give pytest's answer."""
    run = run_engine(
        sys.executable, SUITES / "many_files", engine_args=("--retries", "0", "--workers", "4")
    )
    assert differences(EXPECTED["many_files"]["outcomes"], run.outcomes) == []  # type: ignore[arg-type]


def test_pass_through_keyword_selection_matches_pytest() -> None:
    args = ["-k", "square or greeting"]
    plain = run_pytest(sys.executable, SUITES / "basic", args)
    engine = run_engine(sys.executable, SUITES / "basic", args)
    assert plain.outcomes
    assert differences(plain.outcomes, engine.outcomes) == []


def test_pass_through_node_id_selection_matches_pytest() -> None:
    """A node id with `::` inside its parameter id selects just that test, as in pytest."""
    args = ["test_weird_ids.py::test_string_param[a::b]"]
    plain = run_pytest(sys.executable, SUITES / "weird_ids", args)
    engine = run_engine(sys.executable, SUITES / "weird_ids", args)
    assert list(plain.outcomes) == ["test_weird_ids.py::test_string_param[a::b]"]
    assert differences(plain.outcomes, engine.outcomes) == []


def test_failure_reports_read_the_same_in_fork_and_spawn(tmp_path: Path) -> None:
    """A forked worker renders failures as a fresh pytest does: pytest's assertion rewriting
    looks the terminal reporter up to highlight source, so the child must still have one."""
    from .helpers import run_suite

    texts = {}
    for isolation in ("fork", "spawn"):
        (tmp_path / isolation).mkdir()
        _done, document = run_suite(
            "outcomes", tmp_path / isolation, "--retries", "0", f"--isolation={isolation}"
        )
        texts[isolation] = {
            t["nodeid"]: t["longrepr"] for t in document["tests"] if t["outcome"] == "failed"
        }
    assert texts["fork"] == texts["spawn"]
    assert any("assert" in text and "AssertionError" in text for text in texts["fork"].values())
    assert not any("terminalreporter" in text for text in texts["fork"].values())


PROFILES = ("ultra_fast", "aggressive", "balanced", "conservative")


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", ["needs_import", "order_dependent"])
def test_context_dependent_suites_match_pytest_cold_and_warm_in_every_profile(
    name: str, profile: str, tmp_path: Path
) -> None:
    """A file that needs another file's import, a file whose later tests need its first one:
    whatever the profile cuts, narrows or steals, every test gets plain pytest's outcome, in a
    cold run and again warm, where the first run's lesson keeps the file whole and in order."""
    expected = EXPECTED[name]
    args = ("--optimization", profile, "--cache-dir", str(tmp_path / "cache"), "-v")
    for run in ("cold", "warm"):
        result = run_engine(sys.executable, SUITES / name, engine_args=args)
        assert differences(expected["outcomes"], result.outcomes) == [], (  # type: ignore[arg-type]
            run,
            result.output[-4000:],
        )
        assert result.exit_code == expected["exit_code"], (run, result.output[-4000:])


def test_a_warm_run_preloads_what_the_whole_collection_imported(tmp_path: Path) -> None:
    """needs_import's test_b works only after test_a's import of `pkg.sub`. Warm, each worker
    collects only its own files, but the zygote first imports what the cold run's whole
    collection imported, so nothing fails and nothing needs confirming."""
    args = ("--optimization", "ultra_fast", "--cache-dir", str(tmp_path / "cache"), "-v")
    run_engine(sys.executable, SUITES / "needs_import", engine_args=args)
    warm = run_engine(sys.executable, SUITES / "needs_import", engine_args=(*args, "-vv"))
    assert "collection_cache_hit" in warm.output, warm.output[-4000:]
    assert "CONFIRM" not in warm.output, warm.output[-4000:]
    assert set(warm.outcomes.values()) == {"passed"}


def test_the_store_learns_a_file_that_needs_pytests_context_until_it_changes(
    tmp_path: Path,
) -> None:
    root = tmp_path / "order_dependent"
    shutil.copytree(SUITES / "order_dependent", root)
    args = ("--optimization", "ultra_fast", "--cache-dir", str(tmp_path / "cache"))
    first = run_engine(sys.executable, root, engine_args=args)
    assert set(first.outcomes.values()) == {"passed"}, first.output[-4000:]
    assert "needs, before it: test_order.py::test_switch_mode_on" in first.output
    listing = run_engine(sys.executable, root, engine_args=(*args, "--list"))
    assert "kept whole, in order, in a fully collected worker: test_order.py" in listing.output
    with (root / "test_order.py").open("a", encoding="utf-8") as handle:
        handle.write("\n\ndef test_added_later():\n    pass\n")
    changed = run_engine(sys.executable, root, engine_args=(*args, "--list"))
    assert "kept whole" not in changed.output, changed.output
