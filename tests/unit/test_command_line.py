"""A pytest user's command line: short-option clusters, and which options need pytest in the
foreground."""

from __future__ import annotations

import pytest

from test_framework.command_line import split_command_line, split_short_cluster
from test_framework.command_request import parse_request
from test_framework.foreground import foreground_option


@pytest.mark.parametrize(
    ("arg", "pieces"),
    [
        ("-vs", ["-v", "-s"]),
        ("-xvs", ["-x", "-v", "-s"]),
        ("-vrA", ["-v", "-rA"]),  # -r takes the rest as its value
        ("-rxv", ["-rxv"]),  # the value of -r, not the engine's -x and -v
        ("-rA", ["-rA"]),  # nothing of the engine's: pytest's as it is
        ("--verbose", ["--verbose"]),
        ("-v", ["-v"]),
    ],
)
def test_a_cluster_holding_the_engines_options_is_split(arg: str, pieces: list[str]) -> None:
    assert split_short_cluster(arg) == pieces


def test_the_engine_takes_its_share_of_a_cluster_and_pytest_the_rest() -> None:
    request, _ = parse_request(["-xvs", "-k", "slow"])
    assert request.verbose == 1
    assert request.maxfail == 1
    assert request.pytest_args == ("-s", "-k", "slow")


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["-s"], "-s"),
        (["-sv"], "-sv"),
        (["-vs"], "-vs"),
        (["--capture", "no"], "--capture no"),
        (["--capture=no"], "--capture=no"),
        (["--pdb"], "--pdb"),
        (["-rs"], None),  # -r's value, not -s
        (["-kslow"], None),
        (["-v", "--capture=fd"], None),
    ],
)
def test_options_that_need_the_foreground_are_found_in_clusters_too(
    args: list[str], option: str | None
) -> None:
    assert foreground_option(args) == option


@pytest.mark.parametrize(
    ("argv", "trace", "to_pytest"),
    [
        (["--trace"], None, ["--trace"]),  # pytest's debugger
        (["--trace", "tests/test_a.py"], None, ["--trace", "tests/test_a.py"]),
        (["--trace", "run.json"], "run.json", []),
        (["--trace=run.trace"], "run.trace", []),
        (["--", "--trace", "a.json"], None, ["--trace", "a.json"]),  # after --: pytest's
    ],
)
def test_trace_takes_a_json_file_and_leaves_pytests_debugger_alone(
    argv: list[str], trace: str | None, to_pytest: list[str]
) -> None:
    _, ns, passed_on, after = split_command_line(argv)
    assert (None if ns.trace is None else str(ns.trace)) == trace
    assert [*passed_on, *after] == to_pytest
