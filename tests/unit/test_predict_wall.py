"""scripts/predict_wall.py: the engine's planner dealt over W slots predicts a wall that is
never under its lower bounds, and reaches them when the work is even."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "predict_wall.py"


@pytest.fixture(scope="module")
def predict_wall() -> ModuleType:
    spec = importlib.util.spec_from_file_location("predict_wall", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["predict_wall"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("workers", [1, 2, 8, 32])
def test_the_prediction_respects_both_lower_bounds(predict_wall: ModuleType, workers: int) -> None:
    durations = predict_wall.generate(5000)
    p = predict_wall.predict(durations, workers, start_cost=0.01)
    assert p.wall >= p.work_bound - 1e-9
    assert p.wall >= p.longest_shard - 1e-9
    assert p.shards >= workers


def test_one_worker_takes_all_the_work_and_each_shards_start(predict_wall: ModuleType) -> None:
    durations = {f"t_{i}.py::test": 1.0 for i in range(10)}
    p = predict_wall.predict(durations, 1, start_cost=0.5, startup=2.0)
    assert p.wall == pytest.approx(2.0 + 10.0 + 0.5 * p.shards)


def test_one_long_test_limits_many_workers(predict_wall: ModuleType) -> None:
    durations = {"slow.py::test": 60.0, **{f"t_{i}.py::test": 0.1 for i in range(200)}}
    p = predict_wall.predict(durations, 32, start_cost=0.01)
    assert p.wall == pytest.approx(1.0 + 60.01, abs=0.05)
    assert p.limit() == "the longest test (its shard alone)"
