"""The environment fingerprint changes with whatever may change any test's outcome."""

from __future__ import annotations

from test_framework.fingerprint.environment import (
    environment_fingerprint,
    installed_distributions,
)

BASE = {"args": ("-k", "fast"), "environ": {"PYTHONHASHSEED": "0"}, "profile": "balanced"}
DISTS = ("attrs==26.1.0", "pytest==9.0.3")


def fingerprint(**changes: object) -> str:
    values = {**BASE, "distributions": DISTS, **changes}
    return environment_fingerprint(
        values["args"],  # type: ignore[arg-type]
        values["environ"],  # type: ignore[arg-type]
        values["profile"],  # type: ignore[arg-type]
        values["distributions"],  # type: ignore[arg-type]
    )


def test_the_same_environment_gives_the_same_digest() -> None:
    assert fingerprint() == fingerprint()


def test_each_input_changes_it() -> None:
    base = fingerprint()
    assert fingerprint(args=("-k", "slow")) != base
    assert fingerprint(environ={"PYTHONHASHSEED": "1"}) != base
    assert fingerprint(environ={"PYTHONHASHSEED": "0", "PYTEST_ADDOPTS": "-x"}) != base
    assert fingerprint(profile="conservative") != base
    assert fingerprint(distributions=("attrs==26.2.0", "pytest==9.0.3")) != base


def test_a_variable_nobody_reads_does_not() -> None:
    assert fingerprint(environ={"PYTHONHASHSEED": "0", "EDITOR": "vi"}) == fingerprint()


def test_the_installed_distributions_include_pytest() -> None:
    assert any(d.startswith("pytest==") for d in installed_distributions())
