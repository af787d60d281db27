"""Config layering and validation: shipped < pyproject < environment < command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_framework.config import (
    CATEGORY_NAMES,
    PROFILE_NAMES,
    load_catalog,
    read_env,
)
from test_framework.errors import ConfigError, ProjectError, UsageError
from test_framework.request import RunRequest, resolve


def write_pyproject(root: Path, body: str) -> None:
    (root / "pyproject.toml").write_text(body, encoding="utf-8")


def test_shipped_catalog_has_every_documented_category_and_profile(tmp_path: Path) -> None:
    catalog = load_catalog(tmp_path)
    assert set(CATEGORY_NAMES) <= set(catalog.categories)
    assert set(PROFILE_NAMES) <= set(catalog.profiles)
    assert catalog.default_optimization == "balanced"
    assert catalog.categories["unit"].paths == ("tests/unit",)
    assert catalog.categories["unit"].marker == "unit"
    assert catalog.categories["all"].paths == ()


def test_profiles_order_from_fast_to_gentle(tmp_path: Path) -> None:
    profiles = load_catalog(tmp_path).profiles
    ceilings = [profiles[name].max_workers_per_core for name in PROFILE_NAMES]
    assert ceilings == sorted(ceilings, reverse=True)
    assert profiles["ultra_fast"].retries == 0
    assert profiles["conservative"].collection_cache is False


def test_project_overrides_a_profile_key_and_keeps_the_rest(tmp_path: Path) -> None:
    write_pyproject(
        tmp_path,
        "[tool.test_framework.profiles.balanced]\nretries = 4\n",
    )
    catalog = load_catalog(tmp_path)
    shipped = load_catalog(tmp_path / "no-pyproject-here")
    assert catalog.profiles["balanced"].retries == 4
    assert catalog.profiles["balanced"].timeout == shipped.profiles["balanced"].timeout


def test_project_adds_a_profile_with_extends_and_a_category(tmp_path: Path) -> None:
    write_pyproject(
        tmp_path,
        """
[tool.test_framework]
default_optimization = "nightly"
default_categories = ["slow"]

[tool.test_framework.profiles.nightly]
extends = "conservative"
retries = 5

[tool.test_framework.categories.slow]
description = "slow ones"
marker = "slow"
""",
    )
    catalog = load_catalog(tmp_path)
    assert catalog.profiles["nightly"].retries == 5
    assert catalog.profiles["nightly"].max_workers_per_core == 1.0
    assert catalog.categories["slow"].marker == "slow"
    assert catalog.default_optimization == "nightly"
    assert catalog.default_categories == ("slow",)


def test_unknown_key_names_the_file_and_the_key(tmp_path: Path) -> None:
    write_pyproject(tmp_path, "[tool.test_framework.profiles.balanced]\nretry = 1\n")
    with pytest.raises(ConfigError) as info:
        load_catalog(tmp_path)
    message = str(info.value)
    assert "pyproject.toml" in message
    assert "'retry'" in message
    assert "retries" in message  # the valid keys are listed


def test_wrong_type_is_an_error(tmp_path: Path) -> None:
    write_pyproject(tmp_path, '[tool.test_framework.profiles.balanced]\nretries = "two"\n')
    with pytest.raises(ConfigError, match="retries must be int"):
        load_catalog(tmp_path)


def test_invalid_value_is_an_error(tmp_path: Path) -> None:
    write_pyproject(tmp_path, "[tool.test_framework.profiles.balanced]\nmin_workers = 0\n")
    with pytest.raises(ConfigError, match="min_workers must be >= 1"):
        load_catalog(tmp_path)


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    write_pyproject(tmp_path, "[tool.test_framework\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_catalog(tmp_path)


def test_new_profile_without_extends_must_be_complete(tmp_path: Path) -> None:
    write_pyproject(tmp_path, "[tool.test_framework.profiles.mine]\nretries = 1\n")
    with pytest.raises(ConfigError, match="missing"):
        load_catalog(tmp_path)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)
    assert issubclass(ConfigError, UsageError)


def test_environment_overrides_are_read_and_validated() -> None:
    env = read_env(
        {
            "OPTIMIZED_TEST_MAX_WORKERS": "3",
            "OPTIMIZED_TEST_CACHE_DIR": "/tmp/x",
            "OPTIMIZED_TEST_FAIL_FAST_THRESHOLD": "2",
            "OPTIMIZED_TEST_DEBUG_MODE": "true",
            "UNRELATED": "1",
        }
    )
    assert env.max_workers == 3
    assert env.cache_dir == "/tmp/x"
    assert env.fail_fast_threshold == 2
    assert env.debug_mode is True


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OPTIMIZED_TEST_MAX_WORKERS", "0"),
        ("OPTIMIZED_TEST_MAX_WORKERS", "many"),
        ("OPTIMIZED_TEST_FAIL_FAST_THRESHOLD", "-1"),
        ("OPTIMIZED_TEST_DEBUG_MODE", "perhaps"),
        ("OPTIMIZED_TEST_TIMEOUT", "soon"),
    ],
)
def test_bad_environment_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        read_env({name: value})


def test_unknown_environment_variable_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="OPTIMIZED_TEST_MAX_WORKERS"):
        read_env({"OPTIMIZED_TEST_MAX_WORKER": "2"})


def test_layers_command_line_beats_environment_beats_project(tmp_path: Path) -> None:
    write_pyproject(tmp_path, "[tool.test_framework]\nmax_workers = 2\n")
    from_project = resolve(RunRequest(project_root=tmp_path), environ={}, cores=8)
    assert from_project.fixed_workers == 2
    from_env = resolve(
        RunRequest(project_root=tmp_path), environ={"OPTIMIZED_TEST_MAX_WORKERS": "3"}, cores=8
    )
    assert from_env.fixed_workers == 3
    from_cli = resolve(
        RunRequest(project_root=tmp_path, workers=5),
        environ={"OPTIMIZED_TEST_MAX_WORKERS": "3"},
        cores=8,
    )
    assert from_cli.fixed_workers == 5
    assert from_cli.initial_workers == from_cli.max_workers == 5
    assert from_cli.resource_monitoring is False


def test_adaptive_bounds_scale_with_cores(tmp_path: Path) -> None:
    settings = resolve(
        RunRequest(project_root=tmp_path, optimization="ultra_fast"), environ={}, cores=64
    )
    assert settings.initial_workers == 64
    assert settings.max_workers == 64 * 16  # ultra_fast: up to 16 slots per core
    assert settings.fixed_workers is None


def test_unknown_category_and_profile_say_what_is_valid(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown category 'units'.*unit"):
        resolve(RunRequest(project_root=tmp_path, categories=("units",)), environ={})
    with pytest.raises(ConfigError, match=r"unknown optimization profile 'fast'.*ultra_fast"):
        resolve(RunRequest(project_root=tmp_path, optimization="fast"), environ={})


def test_missing_project_root_is_a_project_error(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="does not exist"):
        resolve(RunRequest(project_root=tmp_path / "missing"), environ={})


def test_cache_dir_defaults_inside_the_project(tmp_path: Path) -> None:
    settings = resolve(RunRequest(project_root=tmp_path), environ={})
    assert settings.store_path == tmp_path.resolve() / ".test_framework" / "results.sqlite"
    env_settings = resolve(
        RunRequest(project_root=tmp_path), environ={"OPTIMIZED_TEST_CACHE_DIR": "elsewhere"}
    )
    assert env_settings.cache_dir == tmp_path.resolve() / "elsewhere"


def test_maxfail_defaults_to_the_profile_threshold_from_the_environment(tmp_path: Path) -> None:
    settings = resolve(
        RunRequest(project_root=tmp_path), environ={"OPTIMIZED_TEST_FAIL_FAST_THRESHOLD": "3"}
    )
    assert settings.maxfail == 3
    assert resolve(RunRequest(project_root=tmp_path, maxfail=1), environ={}).maxfail == 1


def test_a_complete_profile_written_before_the_resilience_keys_stays_valid(
    tmp_path: Path,
) -> None:
    shipped = load_catalog(tmp_path / "none").profiles["balanced"]
    newer = ("session_timeout", "memory_limit_mb", "breaker_threshold")
    keys = [
        f"{name} = {str(value).lower() if isinstance(value, bool) else repr(value)}"
        for name, value in (
            (n, getattr(shipped, n))
            for n in shipped.__dataclass_fields__
            if n not in ("name", *newer)
        )
    ]
    keys = [k.replace("'", '"') for k in keys]
    write_pyproject(tmp_path, "[tool.test_framework.profiles.old]\n" + "\n".join(keys) + "\n")
    old = load_catalog(tmp_path).profiles["old"]
    assert (old.session_timeout, old.memory_limit_mb, old.breaker_threshold) == (0.0, 0, 0)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("session_timeout", "-1.0", "session_timeout must be >= 0"),
        ("memory_limit_mb", "-5", "memory_limit_mb must be >= 0"),
        ("breaker_threshold", "-1", "breaker_threshold must be >= 0"),
    ],
)
def test_resilience_keys_are_validated(tmp_path: Path, key: str, value: str, message: str) -> None:
    write_pyproject(tmp_path, f"[tool.test_framework.profiles.balanced]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match=message):
        load_catalog(tmp_path)


def test_resilience_options_override_the_profile(tmp_path: Path) -> None:
    settings = resolve(
        RunRequest(
            project_root=tmp_path,
            optimization="ultra_fast",
            session_timeout=60.0,
            memory_limit_mb=512,
            breaker_threshold=0,
        ),
        environ={},
    )
    assert settings.profile.session_timeout == 60.0
    assert settings.profile.memory_limit_mb == 512
    assert settings.profile.breaker_threshold == 0
    # Off in every shipped profile: the tests it keeps from running are not what pytest says.
    for name in ("ultra_fast", "aggressive", "balanced", "conservative"):
        shipped = resolve(RunRequest(project_root=tmp_path, optimization=name), environ={})
        assert shipped.profile.breaker_threshold == 0
    with pytest.raises(UsageError, match="--memory-limit must be >= 0"):
        resolve(RunRequest(project_root=tmp_path, memory_limit_mb=-1), environ={})


def test_the_dask_scheduler_comes_from_the_command_line_environment_or_project(
    tmp_path: Path,
) -> None:
    write_pyproject(tmp_path, '[tool.test_framework.dask]\nscheduler = "tcp://project:8786"\n')
    dask = RunRequest(project_root=tmp_path, executor="dask", optimization="ultra_fast")
    from_project = resolve(dask, environ={}, cores=2)
    assert (from_project.executor, from_project.scheduler) == ("dask", "tcp://project:8786")
    # No resident process here; the profile's isolation holds (fork: each Dask worker forks
    # the shards from a warm zygote of its own).
    assert (from_project.isolation, from_project.resident) == ("fork", False)
    env = {"OPTIMIZED_TEST_DASK_SCHEDULER": "tcp://env:8786"}
    assert resolve(dask, environ=env, cores=2).scheduler == "tcp://env:8786"
    cli = RunRequest(project_root=tmp_path, executor="dask", scheduler="tcp://cli:8786")
    assert resolve(cli, environ=env, cores=2).scheduler == "tcp://cli:8786"
    local = resolve(RunRequest(project_root=tmp_path), environ=env, cores=2)
    assert (local.executor, local.scheduler) == ("local", None)


def test_the_tree_upload_comes_from_the_command_line_environment_or_project(
    tmp_path: Path,
) -> None:
    dask = RunRequest(project_root=tmp_path, executor="dask")
    assert not resolve(dask, environ={}, cores=2).dask_upload
    write_pyproject(tmp_path, "[tool.test_framework.dask]\nupload = true\n")
    assert resolve(dask, environ={}, cores=2).dask_upload
    off = {"OPTIMIZED_TEST_DASK_UPLOAD": "false"}
    assert not resolve(dask, environ=off, cores=2).dask_upload
    cli = RunRequest(project_root=tmp_path, executor="dask", dask_upload=True)
    assert resolve(cli, environ=off, cores=2).dask_upload
    # Only a Dask run uploads anything.
    assert not resolve(RunRequest(project_root=tmp_path), environ={}, cores=2).dask_upload
    with pytest.raises(UsageError, match="--dask-upload is for --executor dask"):
        resolve(RunRequest(project_root=tmp_path, dask_upload=True), environ={}, cores=2)
    write_pyproject(tmp_path, '[tool.test_framework.dask]\nupload = "yes"\n')
    with pytest.raises(ConfigError, match=r"dask\.upload"):
        resolve(dask, environ={}, cores=2)


def test_dask_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--scheduler is for --executor dask"):
        resolve(RunRequest(project_root=tmp_path, scheduler="tcp://x:1"), environ={}, cores=2)
    write_pyproject(tmp_path, '[tool.test_framework.dask]\nschedular = "tcp://x:1"\n')
    with pytest.raises(ConfigError, match="unknown key 'schedular'; valid keys: scheduler, upload"):
        resolve(RunRequest(project_root=tmp_path), environ={}, cores=2)
    with pytest.raises(ConfigError, match="OPTIMIZED_TEST_DASK_SCHEDULER"):
        resolve(
            RunRequest(project_root=tmp_path / "none"),
            environ={"OPTIMIZED_TEST_DASK_SCHEDULER": " "},
            cores=2,
        )
