"""RunRequest (what the caller asked) -> RunSettings (what the run will do), applying the layers.

The CLI and the Python API both build a RunRequest; `resolve` is the one place that merges it with
the shipped config, the project's pyproject.toml and the environment, and validates the result.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from .budget import parse_budget
from .ci_shards import ShardSpec, parse_shard
from .config import (
    ISOLATIONS,
    Category,
    EnvOverrides,
    Profile,
    load_catalog,
    read_env,
    resident_wanted,
)
from .errors import ConfigError, ProjectError, UsageError
from .machine import cpu_count
from .regressions import DEFAULT_THRESHOLD
from .rootdir import find_rootdir, path_arguments, rebased

DEFAULT_CACHE_DIR = ".test_framework"


@dataclass(frozen=True, slots=True)
class RunRequest:
    categories: tuple[str, ...] = ()
    optimization: str | None = None
    workers: int | None = None
    # None: found as pytest finds its rootdir (then path arguments are rebased onto it).
    project_root: Path | None = None
    cache_dir: Path | None = None
    maxfail: int | None = None
    list_only: bool = False
    report: Path | None = None
    junitxml: Path | None = None
    html: Path | None = None
    trace: Path | None = None
    shard: str | None = None  # --shard K/N
    time_budget: str | None = None  # --time-budget 30s
    executor: str | None = None  # --executor local|dask
    scheduler: str | None = None  # --scheduler ADDRESS
    dask_upload: bool | None = None  # --dask-upload
    performance_regression: bool = False
    perf_threshold: float | None = None
    fail_on_regression: bool = False
    verbose: int = 0
    log_format: str | None = None
    pytest_args: tuple[str, ...] = ()
    collection_cache: bool | None = None
    verify_cache: bool = False
    changed: str | None = None
    changed_lenient: bool = False
    timeout: float | None = None
    retries: int | None = None
    flaky_result: str = "pass"
    isolation: str | None = None
    session_timeout: float | None = None
    memory_limit_mb: int | None = None
    breaker_threshold: int | None = None
    argv: tuple[str, ...] = ()
    resident: bool | None = None  # --resident / --no-resident
    watch: bool = False
    skip_cache: bool = False  # --skip-cache: the profile's skip_cache on for this run


@dataclass(frozen=True, slots=True)
class RunSettings:
    project_root: Path
    categories: tuple[Category, ...]
    profile: Profile
    cores: int
    fixed_workers: int | None
    initial_workers: int
    max_workers: int
    cache_dir: Path
    maxfail: int
    list_only: bool
    report: Path | None
    junitxml: Path | None
    verbose: int
    log_format: str | None
    pytest_args: tuple[str, ...]
    debug: bool
    resource_monitoring: bool
    argv: tuple[str, ...]
    isolation: str = "spawn"
    flaky_result: str = "pass"
    resource_limits: Mapping[str, int] = field(default_factory=dict)
    # `audit` only: run the selection as plain pytest would, in one worker that collects
    # everything and runs every file whole, in order (`serial`); or just these tests, in that
    # worker (`only`, a bisection's probe).
    serial: bool = False
    only: tuple[str, ...] = ()
    # --no-cache: the skip cache reports nothing from earlier runs (every test runs), and
    # still records this one.
    reuse_results: bool = True
    verify_cache: bool = False  # run everything; report what the skip cache would have got wrong
    changed: str | None = None  # --changed REF: run what the changes since REF can affect
    changed_lenient: bool = False
    # Keep a warm process between runs (docs/resident.md): the profile's choice, never in CI
    # unless asked.
    resident: bool = False
    watch: bool = False  # --watch: rerun what each saved change affects, until Ctrl-C
    html: Path | None = None
    trace: Path | None = None
    shard: ShardSpec | None = None  # --shard K/N: this CI job's part of the selection
    time_budget: float | None = None  # --time-budget: seconds (budget.py)
    executor: str = "local"  # "dask": shards on a Dask cluster (execution/dask_executor.py)
    scheduler: str | None = None  # the Dask scheduler's address; None: a local cluster
    dask_upload: bool = False  # the tree goes to the Dask workers as an archive
    # --performance-regression: tests past `perf_threshold` x their median (regressions.py)
    performance_regression: bool = False
    perf_threshold: float = DEFAULT_THRESHOLD
    fail_on_regression: bool = False
    # Keep only these tests (node ids, or files) of the collection, the rest deselected as -k
    # would: a watch cycle's selection, narrowed after the warm process collected everything.
    selected: tuple[str, ...] = ()

    @property
    def one_worker_in_order(self) -> bool:
        return self.serial or bool(self.only)

    @property
    def store_path(self) -> Path:
        return self.cache_dir / "results.sqlite"


def resolve(
    request: RunRequest,
    environ: Mapping[str, str] | None = None,
    cores: int | None = None,
) -> RunSettings:
    env = read_env(os.environ if environ is None else environ)
    pytest_args = request.pytest_args
    if request.project_root is None:
        here = Path.cwd()
        root = find_rootdir(here, pytest_args)
        pytest_args = rebased(pytest_args, here, root)
        if not path_arguments(here, request.pytest_args) and here.resolve() != root:
            # pytest run from a subfolder without paths collects that subfolder.
            pytest_args = (*pytest_args, os.path.relpath(here.resolve(), root))
    else:
        root = _project_root(request.project_root)
    catalog = load_catalog(root)
    profile_name = request.optimization or env.optimization or catalog.default_optimization
    if profile_name not in catalog.profiles:
        raise ConfigError(
            f"unknown optimization profile {profile_name!r}; valid: "
            f"{', '.join(sorted(catalog.profiles))}"
        )
    profile = _apply_overrides(catalog.profiles[profile_name], request, env)
    names = request.categories or catalog.default_categories
    unknown = [n for n in names if n not in catalog.categories]
    if unknown:
        raise ConfigError(
            f"unknown category {unknown[0]!r}; valid: {', '.join(sorted(catalog.categories))}"
        )
    categories = tuple(catalog.categories[n] for n in dict.fromkeys(names))
    fixed = request.workers or env.max_workers or catalog.max_workers
    if request.workers is not None and request.workers < 1:
        raise UsageError(f"--workers must be a whole number >= 1, got {request.workers}")
    if request.maxfail is not None and request.maxfail < 0:
        raise UsageError(f"--maxfail must be >= 0, got {request.maxfail}")
    ncores = cores or cpu_count()
    if fixed is not None:
        initial = maximum = fixed
    else:
        initial = max(profile.min_workers, round(ncores * profile.initial_workers_per_core))
        maximum = max(initial, round(ncores * profile.max_workers_per_core))
    cache_dir = _cache_dir(root, request.cache_dir, env.cache_dir or catalog.cache_dir)
    maxfail = request.maxfail if request.maxfail is not None else profile.fail_fast_threshold
    dask = request.executor == "dask"
    if request.scheduler is not None and not dask:
        raise UsageError("--scheduler is for --executor dask (shards on a Dask cluster)")
    if request.dask_upload and not dask:
        raise UsageError("--dask-upload is for --executor dask (shards on a Dask cluster)")
    upload = next(
        (v for v in (request.dask_upload, env.dask_upload) if v is not None), catalog.dask_upload
    )
    return RunSettings(
        project_root=root,
        categories=categories,
        profile=profile,
        cores=ncores,
        fixed_workers=fixed,
        initial_workers=initial,
        max_workers=maximum,
        cache_dir=cache_dir,
        maxfail=maxfail,
        list_only=request.list_only,
        report=_output_path(root, request.report, "--report"),
        junitxml=_output_path(root, request.junitxml, "--junitxml"),
        html=_output_path(root, request.html, "--html"),
        trace=_output_path(root, request.trace, "--trace"),
        shard=parse_shard(request.shard) if request.shard is not None else None,
        time_budget=parse_budget(request.time_budget) if request.time_budget else None,
        executor="dask" if dask else "local",
        scheduler=(request.scheduler or env.dask_scheduler or catalog.dask_scheduler)
        if dask
        else None,
        dask_upload=dask and upload,
        performance_regression=request.performance_regression
        or request.fail_on_regression
        or request.perf_threshold is not None,
        perf_threshold=request.perf_threshold or DEFAULT_THRESHOLD,
        fail_on_regression=request.fail_on_regression,
        verbose=request.verbose,
        log_format=request.log_format,
        pytest_args=_with_maxfail(pytest_args, request.maxfail),
        debug=env.debug_mode,
        resource_monitoring=env.resource_monitoring and fixed is None,
        argv=request.argv,
        # With fork, each Dask worker forks the shards from its own warm zygote (none here);
        # never the resident process.
        isolation=_isolation(request.isolation or profile.isolation),
        resource_limits=catalog.resource_limits,
        flaky_result=request.flaky_result,
        reuse_results=request.collection_cache is not False,
        verify_cache=request.verify_cache,
        changed=request.changed,
        changed_lenient=request.changed_lenient,
        resident=not dask
        and resident_wanted(request.resident, env.resident, profile.resident, environ),
        watch=request.watch,
    )


def _with_maxfail(pytest_args: tuple[str, ...], maxfail: int | None) -> tuple[str, ...]:
    """-x / --maxfail N asked of the engine: each worker stops at its own N-th failure too, as
    pytest would, while the run stops at the N-th run-wide."""
    return (*pytest_args, f"--maxfail={maxfail}") if maxfail else pytest_args


def _isolation(requested: str) -> str:
    """Fork where the platform has it; spawn everywhere else (same results, slower start)."""
    if requested not in ISOLATIONS:
        raise UsageError(f"unknown isolation {requested!r}; valid: {', '.join(ISOLATIONS)}")
    if requested == "fork" and not (hasattr(os, "fork") and sys.platform != "win32"):
        return "spawn"
    return requested


def _apply_overrides(profile: Profile, request: RunRequest, env: EnvOverrides) -> Profile:
    if env.fail_fast_threshold is not None:
        profile = replace(profile, fail_fast_threshold=env.fail_fast_threshold)
    if env.timeout is not None:
        profile = replace(profile, timeout=env.timeout)
    if env.cache_ttl_hours is not None:
        profile = replace(profile, cache_ttl_hours=env.cache_ttl_hours)
    if request.skip_cache:
        profile = replace(profile, skip_cache=True)
    if request.timeout is not None:
        if request.timeout < 0:
            raise UsageError(f"--timeout must be >= 0 seconds (0: never), got {request.timeout}")
        profile = replace(profile, timeout=request.timeout)
    if request.retries is not None:
        if request.retries < 0:
            raise UsageError(f"--retries must be >= 0, got {request.retries}")
        profile = replace(profile, retries=request.retries)
    if request.collection_cache is not None:
        profile = replace(profile, collection_cache=request.collection_cache)
    for option, value in (
        ("--session-timeout", request.session_timeout),
        ("--memory-limit", request.memory_limit_mb),
        ("--breaker-threshold", request.breaker_threshold),
    ):
        if value is not None and value < 0:
            raise UsageError(f"{option} must be >= 0 (0: off), got {value}")
    if request.session_timeout is not None:
        profile = replace(profile, session_timeout=request.session_timeout)
    if request.memory_limit_mb is not None:
        profile = replace(profile, memory_limit_mb=request.memory_limit_mb)
    if request.breaker_threshold is not None:
        profile = replace(profile, breaker_threshold=request.breaker_threshold)
    return profile


def _project_root(path: Path) -> Path:
    root = path.expanduser()
    if not root.exists():
        raise ProjectError(f"project root {str(path)!r} does not exist")
    if not root.is_dir():
        raise ProjectError(f"project root {str(path)!r} is not a folder")
    if not os.access(root, os.R_OK | os.X_OK):
        raise ProjectError(f"project root {str(path)!r} cannot be read (permission denied)")
    return root.resolve()


def _cache_dir(root: Path, requested: Path | None, configured: str | None) -> Path:
    """`--cache-dir` relative to the current folder, as any path typed there; the project's
    configured one (or the default) relative to the project."""
    raw = requested if requested is not None else Path(configured or DEFAULT_CACHE_DIR)
    path = raw.expanduser()
    base = Path.cwd() if requested is not None else root
    path = path if path.is_absolute() else base / path
    if path.exists() and not path.is_dir():
        raise ProjectError(f"cache dir {str(raw)!r} exists and is not a folder")
    return path


def _output_path(root: Path, path: Path | None, option: str) -> Path | None:
    if path is None:
        return None
    resolved = path.expanduser()
    resolved = resolved if resolved.is_absolute() else Path.cwd() / resolved
    if resolved.is_dir():
        raise UsageError(f"{option} {str(path)!r} is a folder; give a file path")
    if not resolved.parent.is_dir():
        raise UsageError(f"{option} {str(path)!r}: folder {str(resolved.parent)!r} does not exist")
    return resolved
