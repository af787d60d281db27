"""Configuration: what to run and how hard to push.

Layers, later wins: shipped defaults (`config/*.toml`) < the project's `pyproject.toml`
`[tool.test_framework]` < environment `OPTIMIZED_TEST_*` < command line. Every key is validated
where it is read, and an error names the source (file or variable) and the key, and says what is
valid, because a silently ignored typo in a config file is a wrong answer nobody notices.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError, ProjectError
from .toml_files import TOMLDecodeError, parse_toml

CATEGORY_NAMES = ("smoke", "unit", "integration", "agents", "performance", "e2e", "all")
PROFILE_NAMES = ("ultra_fast", "aggressive", "balanced", "conservative")
DEFAULT_PROFILE = "balanced"
ENV_PREFIX = "OPTIMIZED_TEST_"


@dataclass(frozen=True, slots=True)
class Category:
    name: str
    description: str
    paths: tuple[str, ...]
    marker: str | None


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    description: str
    initial_workers_per_core: float
    max_workers_per_core: float
    min_workers: int
    shards_per_slot: int
    cpu_high: float
    cpu_low: float
    memory_reserve_mb: int
    monitor_interval: float
    fail_fast_threshold: int
    timeout: float
    retries: int
    retry_base_delay: float
    retry_factor: float
    retry_max_delay: float
    collection_cache: bool
    isolation: str
    session_timeout: float = 0.0
    memory_limit_mb: int = 0
    breaker_threshold: int = 0
    skip_cache: bool = False
    cache_ttl_hours: float = 24.0
    cache_sample: float = 0.02
    resident: bool = False
    resident_idle_minutes: float = 10.0


ISOLATIONS = ("fork", "spawn")
# Keys added after the first release: a project profile written before them stays valid.
OPTIONAL_PROFILE_KEYS: dict[str, Any] = {
    "session_timeout": 0.0,
    "memory_limit_mb": 0,
    "breaker_threshold": 0,
    "skip_cache": False,
    "cache_ttl_hours": 24.0,
    "cache_sample": 0.02,
    "resident": False,
    "resident_idle_minutes": 10.0,
}
PROFILE_KEYS = tuple(f.name for f in fields(Profile) if f.name != "name")
CATEGORY_KEYS = ("description", "paths", "marker")
PROJECT_KEYS = (
    "categories",
    "profiles",
    "default_optimization",
    "default_categories",
    "cache_dir",
    "max_workers",
    "resources",
    "dask",
)
DASK_KEYS = ("scheduler", "upload")


@dataclass(frozen=True, slots=True)
class Catalog:
    """Every category and profile known after merging shipped defaults and the project file."""

    categories: Mapping[str, Category]
    profiles: Mapping[str, Profile]
    default_optimization: str = DEFAULT_PROFILE
    default_categories: tuple[str, ...] = ("all",)
    cache_dir: str | None = None
    max_workers: int | None = None
    resource_limits: Mapping[str, int] = field(default_factory=dict)
    dask_scheduler: str | None = None  # [tool.test_framework.dask] scheduler
    dask_upload: bool = False  # [tool.test_framework.dask] upload


@dataclass(frozen=True, slots=True)
class EnvOverrides:
    max_workers: int | None = None
    cache_dir: str | None = None
    fail_fast_threshold: int | None = None
    debug_mode: bool = False
    resource_monitoring: bool = True
    optimization: str | None = None
    timeout: float | None = None
    cache_ttl_hours: float | None = None
    resident: bool | None = None
    dask_scheduler: str | None = None
    dask_upload: bool | None = None


def shipped_config_dir() -> Path:
    """`config/` beside the package in a checkout; `_config/` inside it in an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_config", here.parent / "config"):
        if (candidate / "profiles.toml").is_file():
            return candidate
    raise ConfigError(
        f"shipped config not found next to {here} (looked for _config/ and ../config/)"
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return parse_toml(path.read_bytes())
    except (TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ProjectError(f"{path}: cannot be read: {exc.strerror}") from None


def _check_keys(source: str, table: Mapping[str, Any], valid: tuple[str, ...]) -> None:
    for key in table:
        if key not in valid:
            raise ConfigError(f"{source}: unknown key {key!r}; valid keys: {', '.join(valid)}")


def _typed(source: str, key: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is int and isinstance(value, bool):
        raise ConfigError(f"{source}: {key} must be an integer, got {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"{source}: {key} must be {kind.__name__}, got {value!r}")
    return value


_PROFILE_TYPES: dict[str, type] = {
    f.name: (
        float
        if f.type == "float"
        else int
        if f.type == "int"
        else bool
        if f.type == "bool"
        else str
    )
    for f in fields(Profile)
}


def _profile(source: str, name: str, table: Mapping[str, Any], base: Profile | None) -> Profile:
    _check_keys(f"{source} [profiles.{name}]", table, (*PROFILE_KEYS, "extends"))
    values: dict[str, Any] = {} if base is None else {k: getattr(base, k) for k in PROFILE_KEYS}
    for key, raw in table.items():
        if key != "extends":
            values[key] = _typed(f"{source} [profiles.{name}]", key, raw, _PROFILE_TYPES[key])
    for key, default in OPTIONAL_PROFILE_KEYS.items():
        values.setdefault(key, default)
    missing = [k for k in PROFILE_KEYS if k not in values]
    if missing:
        raise ConfigError(
            f"{source} [profiles.{name}]: missing {', '.join(missing)} "
            f"(or set extends = one of {', '.join(PROFILE_NAMES)})"
        )
    profile = Profile(name=name, **values)
    _validate_profile(f"{source} [profiles.{name}]", profile)
    return profile


def _validate_profile(source: str, p: Profile) -> None:
    checks = [
        (p.initial_workers_per_core > 0, "initial_workers_per_core must be > 0"),
        (
            p.max_workers_per_core >= p.initial_workers_per_core,
            "max_workers_per_core must be >= initial_workers_per_core",
        ),
        (p.min_workers >= 1, "min_workers must be >= 1"),
        (p.shards_per_slot >= 1, "shards_per_slot must be >= 1"),
        (0 < p.cpu_low < p.cpu_high <= 100, "need 0 < cpu_low < cpu_high <= 100"),
        (p.memory_reserve_mb >= 0, "memory_reserve_mb must be >= 0"),
        (p.monitor_interval > 0, "monitor_interval must be > 0"),
        (p.fail_fast_threshold >= 0, "fail_fast_threshold must be >= 0 (0: never)"),
        (p.timeout >= 0, "timeout must be >= 0 (0: never)"),
        (p.session_timeout >= 0, "session_timeout must be >= 0 (0: never)"),
        (p.memory_limit_mb >= 0, "memory_limit_mb must be >= 0 (0: no limit)"),
        (p.breaker_threshold >= 0, "breaker_threshold must be >= 0 (0: off)"),
        (p.cache_ttl_hours > 0, "cache_ttl_hours must be > 0"),
        (0 <= p.cache_sample <= 1, "cache_sample must be between 0 and 1"),
        (p.resident_idle_minutes > 0, "resident_idle_minutes must be > 0"),
        (p.retries >= 0, "retries must be >= 0"),
        (p.retry_base_delay >= 0 and p.retry_max_delay >= 0, "retry delays must be >= 0"),
        (p.retry_factor >= 1, "retry_factor must be >= 1"),
        (p.isolation in ISOLATIONS, f"isolation must be one of {', '.join(ISOLATIONS)}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"{source}: {message}")


def _category(source: str, name: str, table: Mapping[str, Any], base: Category | None) -> Category:
    where = f"{source} [categories.{name}]"
    _check_keys(where, table, CATEGORY_KEYS)
    description = table.get("description", base.description if base else "")
    paths = table.get("paths", list(base.paths) if base else [])
    marker = table.get("marker", base.marker if base else None)
    _typed(where, "description", description, str)
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        raise ConfigError(f"{where}: paths must be a list of non-empty strings, got {paths!r}")
    if marker is not None:
        _typed(where, "marker", marker, str)
    return Category(name=name, description=description, paths=tuple(paths), marker=marker or None)


def _table(source: str, data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: {key} must be a table, got {value!r}")
    return value


def load_catalog(project_root: Path) -> Catalog:
    shipped = shipped_config_dir()
    categories: dict[str, Category] = {}
    profiles: dict[str, Profile] = {}
    cat_file = shipped / "categories.toml"
    for name, table in _table(str(cat_file), _read_toml(cat_file), "categories").items():
        categories[name] = _category(str(cat_file), name, table, None)
    prof_file = shipped / "profiles.toml"
    for name, table in _table(str(prof_file), _read_toml(prof_file), "profiles").items():
        profiles[name] = _profile(str(prof_file), name, table, None)
    catalog = Catalog(categories=categories, profiles=profiles)
    pyproject = project_root / "pyproject.toml"
    if pyproject.is_file():
        catalog = _merge_project(catalog, pyproject)
    return catalog


def _merge_project(catalog: Catalog, pyproject: Path) -> Catalog:
    tool = _table(str(pyproject), _read_toml(pyproject), "tool")
    section = _table(str(pyproject), tool, "test_framework")
    source = f"{pyproject} [tool.test_framework]"
    _check_keys(source, section, PROJECT_KEYS)
    categories = dict(catalog.categories)
    for name, table in _table(source, section, "categories").items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source}: categories.{name} must be a table")
        categories[name] = _category(str(pyproject), name, table, categories.get(name))
    profiles = dict(catalog.profiles)
    for name, table in _table(source, section, "profiles").items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source}: profiles.{name} must be a table")
        base = profiles.get(name)
        if "extends" in table:
            parent = table["extends"]
            if parent not in profiles:
                raise ConfigError(
                    f"{pyproject} [profiles.{name}]: extends {parent!r} is not a profile; "
                    f"valid: {', '.join(sorted(profiles))}"
                )
            base = profiles[parent]
        profiles[name] = _profile(str(pyproject), name, table, base)
    default_optimization = section.get("default_optimization", catalog.default_optimization)
    if default_optimization not in profiles:
        raise ConfigError(
            f"{source}: default_optimization {default_optimization!r} is not a profile; "
            f"valid: {', '.join(sorted(profiles))}"
        )
    default_categories = section.get("default_categories", list(catalog.default_categories))
    if not isinstance(default_categories, list) or not all(
        c in categories for c in default_categories
    ):
        raise ConfigError(
            f"{source}: default_categories must be a list of categories from "
            f"{', '.join(sorted(categories))}, got {default_categories!r}"
        )
    cache_dir = section.get("cache_dir")
    if cache_dir is not None:
        _typed(source, "cache_dir", cache_dir, str)
    max_workers = section.get("max_workers")
    if max_workers is not None and (_typed(source, "max_workers", max_workers, int) < 1):
        raise ConfigError(f"{source}: max_workers must be >= 1, got {max_workers}")
    limits = _table(source, section, "resources")
    for name, limit in limits.items():
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(
                f"{source}: resources.{name} must be a whole number >= 1 (how many tests may "
                f"hold it at once), got {limit!r}"
            )
    dask = _table(source, section, "dask")
    _check_keys(f"{source} dask", dask, DASK_KEYS)
    scheduler = dask.get("scheduler")
    if scheduler is not None and not _typed(source, "dask.scheduler", scheduler, str).strip():
        raise ConfigError(f"{source}: dask.scheduler is empty: give tcp://HOST:8786")
    upload = _typed(source, "dask.upload", dask.get("upload", False), bool)
    return Catalog(
        categories=categories,
        profiles=profiles,
        default_optimization=default_optimization,
        default_categories=tuple(default_categories),
        cache_dir=cache_dir,
        max_workers=max_workers,
        resource_limits=dict(limits),
        dask_scheduler=scheduler,
        dask_upload=upload,
    )


_ENV_KEYS = {
    "MAX_WORKERS": "a whole number >= 1",
    "CACHE_DIR": "a folder path",
    "FAIL_FAST_THRESHOLD": "a whole number >= 0 (0: never)",
    "DEBUG_MODE": "true or false",
    "RESOURCE_MONITORING": "true or false",
    "OPTIMIZATION": f"one of {', '.join(PROFILE_NAMES)} or a project profile",
    "TIMEOUT": "seconds >= 0 (0: never)",
    "CACHE_TTL_HOURS": "hours > 0",
    "RESIDENT": "true or false",
    "DASK_SCHEDULER": "a Dask scheduler's address, such as tcp://10.0.0.5:8786",
    "DASK_UPLOAD": "true or false",
}


def _env_int(name: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ConfigError(f"environment {ENV_PREFIX}{name}={raw!r}: expected {_ENV_KEYS[name]}")
    return value


def _env_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"environment {ENV_PREFIX}{name}={raw!r}: expected {_ENV_KEYS[name]}")


def read_env(environ: Mapping[str, str]) -> EnvOverrides:
    """Read `OPTIMIZED_TEST_*`; an unknown name is an error, not a silent no-op."""
    overrides = EnvOverrides()
    for full, raw in environ.items():
        if not full.startswith(ENV_PREFIX):
            continue
        name = full[len(ENV_PREFIX) :]
        if name not in _ENV_KEYS:
            valid = ", ".join(ENV_PREFIX + k for k in _ENV_KEYS)
            raise ConfigError(f"environment {full}: unknown variable; valid: {valid}")
        if name == "MAX_WORKERS":
            overrides = replace(overrides, max_workers=_env_int(name, raw, 1))
        elif name == "CACHE_DIR":
            if not raw:
                raise ConfigError(f"environment {full} is empty: expected {_ENV_KEYS[name]}")
            overrides = replace(overrides, cache_dir=raw)
        elif name == "FAIL_FAST_THRESHOLD":
            overrides = replace(overrides, fail_fast_threshold=_env_int(name, raw, 0))
        elif name == "DEBUG_MODE":
            overrides = replace(overrides, debug_mode=_env_bool(name, raw))
        elif name == "RESOURCE_MONITORING":
            overrides = replace(overrides, resource_monitoring=_env_bool(name, raw))
        elif name == "OPTIMIZATION":
            overrides = replace(overrides, optimization=raw)
        elif name == "TIMEOUT":
            try:
                seconds = float(raw)
            except ValueError:
                seconds = -1.0
            if seconds < 0:
                raise ConfigError(f"environment {full}={raw!r}: expected {_ENV_KEYS[name]}")
            overrides = replace(overrides, timeout=seconds)
        elif name == "RESIDENT":
            overrides = replace(overrides, resident=_env_bool(name, raw))
        elif name == "DASK_SCHEDULER":
            if not raw.strip():
                raise ConfigError(f"environment {full} is empty: expected {_ENV_KEYS[name]}")
            overrides = replace(overrides, dask_scheduler=raw.strip())
        elif name == "DASK_UPLOAD":
            overrides = replace(overrides, dask_upload=_env_bool(name, raw))
        elif name == "CACHE_TTL_HOURS":
            overrides = replace(overrides, cache_ttl_hours=env_ttl_hours(raw))
    return overrides


def env_ttl_hours(raw: str) -> float:
    """`OPTIMIZED_TEST_CACHE_TTL_HOURS`: how long a recorded outcome may be reported again."""
    try:
        hours = float(raw)
    except ValueError:
        hours = 0.0
    if not hours > 0 or hours == float("inf"):
        name = f"{ENV_PREFIX}CACHE_TTL_HOURS"
        raise ConfigError(f"environment {name}={raw!r}: expected {_ENV_KEYS['CACHE_TTL_HOURS']}")
    return hours


def environ_snapshot() -> dict[str, str]:
    return dict(os.environ)


def resident_wanted(
    asked: bool | None,
    from_env: bool | None,
    profile: bool,
    environ: Mapping[str, str] | None = None,
) -> bool:
    """--resident/--no-resident, else OPTIMIZED_TEST_RESIDENT, else the profile's, except in
    CI (`CI` set): a CI job's processes must end with it."""
    if asked is not None:
        return asked
    if from_env is not None:
        return from_env
    ci = (os.environ if environ is None else environ).get("CI", "")
    return profile and ci.lower() in ("", "0", "false", "no")
