"""CostEvaluator and CostCache: added metrics, kept inner results, caching, predictors, pickling.

A tiny MLP space defined here has hand-computable parameter and MAC counts.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from nasflow.errors import ConfigError, StorageError
from nasflow.estimators import cost as cost_module
from nasflow.estimators.base import EvalContext, Evaluator, Measurement
from nasflow.estimators.cost import COST_METRICS, CostEvaluator
from nasflow.objectives.cost_cache import CostCache, cost_key
from nasflow.objectives.latency import LatencyResult
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace

SHAPE = (1, 8, 8)
CLASSES = 10


class MLPSpace(DecisionSpace):
    """``flatten -> linear(width) -> ReLU -> linear(classes)``; ``params`` and MACs by formula."""

    name = "mlp"

    def __init__(self) -> None:
        super().__init__({"width": [4, 8], "unused": ["a", "b"]})

    def canonical(self, arch: Architecture) -> str:
        return f"width={arch['width']}"  # the unused decision does not change the network

    def build(self, arch: Architecture, task: Any = None) -> nn.Module:
        inputs = int(np.prod(task.input_shape))
        width = int(arch["width"])  # type: ignore[call-overload]
        return nn.Sequential(
            nn.Flatten(), nn.Linear(inputs, width), nn.ReLU(), nn.Linear(width, task.num_classes)
        )


def expected_params(width: int) -> int:
    return 64 * width + width + width * CLASSES + CLASSES


class CurveEvaluator(Evaluator):
    """Reports two steps through the context and returns a curve and its own ``params``."""

    name = "curve"

    def evaluate(self, arch: Architecture, context: EvalContext) -> Measurement:
        curve = [{"accuracy": 50.0}, {"accuracy": 60.0 + int(arch["width"])}]  # type: ignore[call-overload]
        for step, point in enumerate(curve, 1):
            context.emit(step, point)
        return Measurement({"accuracy": curve[-1]["accuracy"], "params": -1.0}, 2.0, curve)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Replace the latency measurement by a fake that records its calls and returns 1 ms per 1000 params."""
    calls: list[tuple[int, ...]] = []

    def fake(model: nn.Module, input_shape: Any, **settings: Any) -> LatencyResult:
        calls.append(tuple(input_shape))
        value = sum(p.numel() for p in model.parameters()) / 1000
        return LatencyResult(value, value, 0.0, value, value, 0.05, 30, settings["runtime"], "cpu", 1, 1)

    monkeypatch.setattr(cost_module, "measure_latency", fake)
    return calls


def arch(width: int, unused: str = "a") -> Architecture:
    return Architecture({"width": width, "unused": unused})


def make(**options: Any) -> CostEvaluator:
    options.setdefault("input_shape", SHAPE)
    options.setdefault("num_classes", CLASSES)
    evaluator = CostEvaluator(CurveEvaluator(), **options)
    evaluator.setup(MLPSpace())
    return evaluator


# -- metrics ---------------------------------------------------------------------------------
def test_adds_every_cost_metric_and_keeps_the_inner_results() -> None:
    evaluator = make(metrics=COST_METRICS, warmup=1, repeats=3)
    reports: list[tuple[int, dict[str, float]]] = []
    result = evaluator.evaluate(arch(4), EvalContext(report=lambda step, m: reports.append((step, m))))
    assert result.metrics["accuracy"] == 64.0
    assert reports == [(1, {"accuracy": 50.0}), (2, {"accuracy": 64.0})]  # the inner hook passes through
    assert result.curve == [{"accuracy": 50.0}, {"accuracy": 64.0}]
    assert result.cost_seconds >= 2.0  # the inner evaluation's cost plus the measurement's
    # the cost metric replaces the inner evaluator's metric of the same name
    assert result.metrics["params"] == expected_params(4) == 310
    assert result.metrics["flops"] == 64 * 4 + 4 * CLASSES
    assert result.metrics["latency_ms"] > 0 and result.metrics["latency_spread"] >= 0
    # peak: the 4-wide hidden layer and its ReLU (2 x 16 bytes) at least
    assert result.metrics["peak_memory_mb"] * 2**20 >= 32
    assert set(result.metrics) == {"accuracy", *COST_METRICS}


@pytest.mark.slow  # loads digits and trains for an epoch: about 2 s
def test_builds_for_the_inner_evaluators_task(counted: list[tuple[int, ...]]) -> None:
    from nasflow.estimators.train import TrainEvaluator

    inner = TrainEvaluator("digits", epochs=1, data_fraction=0.05)
    evaluator = CostEvaluator(inner, ["latency_ms", "params"])
    evaluator.setup(MLPSpace())
    result = evaluator.evaluate(arch(8), EvalContext(seed=0))
    assert counted == [(1, 8, 8)]  # digits images
    assert result.metrics["params"] == expected_params(8)
    assert result.metrics["latency_ms"] == expected_params(8) / 1000
    assert {"accuracy", "val_loss", "train_seconds", "flops"} <= set(result.metrics)
    assert len(result.curve) == 1


def test_an_architecture_is_measured_once(counted: list[tuple[int, ...]]) -> None:
    evaluator = make(metrics=["latency_ms", "latency_spread"])
    first = evaluator.evaluate(arch(4), EvalContext())
    # same network (the unused decision is not part of the canonical key) and another network
    again = evaluator.evaluate(arch(4, "b"), EvalContext(seed=5))
    evaluator.evaluate(arch(8), EvalContext())
    assert len(counted) == 2
    assert again.metrics["latency_ms"] == first.metrics["latency_ms"] == expected_params(4) / 1000
    assert first.metrics["latency_spread"] == 0.05


def test_a_cache_file_is_shared_and_survives(counted: list[tuple[int, ...]], tmp_path: Path) -> None:
    path = tmp_path / "costs.sqlite"
    make(cache=path).evaluate(arch(4), EvalContext())
    other = make(cache=str(path))  # a new evaluator (or process) reading the same file
    assert other.evaluate(arch(4), EvalContext()).metrics["latency_ms"] == expected_params(4) / 1000
    assert len(counted) == 1
    # other settings are other keys: measured again
    make(cache=path, batch_size=2).evaluate(arch(4), EvalContext())
    assert len(counted) == 2
    assert len(CostCache(path)) == 2


def test_pickles_and_describes_as_json(counted: list[tuple[int, ...]], tmp_path: Path) -> None:
    evaluator = make(metrics=["params", "latency_ms"], cache=tmp_path / "c.sqlite")
    evaluator.evaluate(arch(8), EvalContext())
    clone = pickle.loads(pickle.dumps(evaluator))
    assert clone.evaluate(arch(8), EvalContext()).metrics["params"] == expected_params(8)
    assert len(counted) == 1  # the clone found the measurement in the cache
    description = json.loads(json.dumps(evaluator.describe()))
    assert description["inner"] == {"name": "curve"}
    assert description["metrics"] == ["params", "latency_ms"]
    assert description["latency_source"] == "measured" and description["predictor"] is None
    assert description["cache"] == str(tmp_path / "c.sqlite")
    assert (description["runtime"], description["batch_size"], description["threads"]) == ("eager", 1, 1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"metrics": ["latency"]}, "unknown cost metric"),
        ({"metrics": []}, "at least one"),
        ({"metrics": ["params", "params"]}, "twice"),
        ({"runtime": "tflite"}, "runtime must be one of"),
        ({"batch_size": 0}, "batch_size"),
        ({"input_shape": SHAPE, "num_classes": None}, "together"),
        ({"cache": 3}, "cache must be"),
    ],
)
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CostEvaluator(CurveEvaluator(), **options)


def test_needs_an_evaluator_and_a_task() -> None:
    with pytest.raises(ConfigError, match="must be an Evaluator"):
        CostEvaluator(lambda a: 1.0)  # type: ignore[arg-type]
    evaluator = CostEvaluator(CurveEvaluator())
    with pytest.raises(ConfigError, match="input_shape= and num_classes="):
        evaluator.setup(MLPSpace())


# -- with a latency predictor ----------------------------------------------------------------
def tiny_chain() -> Any:
    chain = pytest.importorskip("nasflow.space.chain")
    return chain.ChainSpace(
        stage_channels=(8, 12),
        stage_strides=(1, 2),
        max_depth=2,
        kernels=(3, 5),
        expansions=(3,),
        widths=(1.0,),
        acts=("relu",),
        se=(0,),
    )


def fake_table(space: Any) -> Any:
    from nasflow.objectives.latency_predictor import profile_blocks

    def measure(module: nn.Module, input_shape: tuple[int, ...]) -> float:
        return sum(p.numel() for p in module.parameters()) / 1000

    return profile_blocks(space, SHAPE, CLASSES, calibration=3, measure=measure)


def test_latency_from_a_predictor_is_not_measured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from nasflow.objectives.latency_predictor import LatencyPredictor

    space = tiny_chain()
    table = fake_table(space)
    path = table.save(tmp_path / "lut.json")

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("latency must come from the table")

    monkeypatch.setattr(cost_module, "measure_latency", refuse)
    evaluator = CostEvaluator(
        CurveEvaluator(), ["latency_ms", "params"], predictor=path, input_shape=SHAPE, num_classes=CLASSES
    )
    evaluator.setup(space)
    network = space.sample(np.random.default_rng(0))
    result = evaluator.evaluate(network, EvalContext())
    assert result.metrics["latency_ms"] == pytest.approx(LatencyPredictor(table, space).predict(network))
    # the fake measurer made every latency 1 ms per 1000 parameters, so a network's is its parameters'
    assert result.metrics["latency_ms"] == pytest.approx(result.metrics["params"] / 1000)
    description = json.loads(json.dumps(evaluator.describe()))
    assert description["latency_source"] == "predicted" and description["predictor"]["path"] == str(path)
    clone = pickle.loads(pickle.dumps(evaluator))
    assert clone.evaluate(network, EvalContext()).metrics == result.metrics


def test_a_predictor_must_match_the_settings_and_the_space() -> None:
    space = tiny_chain()
    table = fake_table(space)
    with pytest.raises(ConfigError, match="onnxruntime"):
        CostEvaluator(
            CurveEvaluator(), predictor=table, runtime="onnxruntime", input_shape=SHAPE, num_classes=CLASSES
        )
    with pytest.raises(ConfigError, match="latency_spread"):
        CostEvaluator(CurveEvaluator(), ["latency_spread"], predictor=table)
    other = CostEvaluator(CurveEvaluator(), predictor=table, input_shape=SHAPE, num_classes=CLASSES)
    with pytest.raises(ConfigError, match="profiled for space"):
        other.setup(MLPSpace())
    shape = CostEvaluator(CurveEvaluator(), predictor=table, input_shape=(3, 8, 8), num_classes=CLASSES)
    with pytest.raises(ConfigError, match="profiled for input"):
        shape.setup(space)


# -- the cache itself ------------------------------------------------------------------------
def test_cost_key_names_every_setting() -> None:
    key = cost_key("w=4", device="cpu", batch_size=1, runtime="eager", threads=1, scope="s")
    assert json.loads(key) == ["s", "w=4", "cpu", 1, "eager", 1]
    variants = [
        cost_key("w=8", device="cpu", batch_size=1, runtime="eager", threads=1, scope="s"),
        cost_key("w=4", device="cuda", batch_size=1, runtime="eager", threads=1, scope="s"),
        cost_key("w=4", device="cpu", batch_size=2, runtime="eager", threads=1, scope="s"),
        cost_key("w=4", device="cpu", batch_size=1, runtime="onnxruntime", threads=1, scope="s"),
        cost_key("w=4", device="cpu", batch_size=1, runtime="eager", threads=2, scope="s"),
        cost_key("w=4", device="cpu", batch_size=1, runtime="eager", threads=1, scope="t"),
    ]
    assert len({key, *variants}) == 7


def test_get_or_measure_measures_only_missing_metrics() -> None:
    cache = CostCache()
    requests: list[list[str]] = []

    def measure(names: list[str]) -> dict[str, float]:
        requests.append(names)
        return {name: float(len(name)) for name in names}

    assert cache.get_or_measure("k", ["params", "flops"], measure) == {"params": 6.0, "flops": 5.0}
    assert cache.get_or_measure("k", ["flops"], measure) == {"flops": 5.0}
    assert cache.get_or_measure("k", ["flops", "latency_ms"], measure) == {"flops": 5.0, "latency_ms": 10.0}
    assert requests == [["params", "flops"], ["latency_ms"]]
    assert "k" in cache and "other" not in cache and len(cache) == 1


def test_cache_file_reopens_and_rejects_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "costs.sqlite"
    cache = CostCache(path)
    cache.put("a", {"latency_ms": 1.5})
    cache.put("a", {"params": 10})
    reopened = CostCache(path)
    assert reopened.get("a") == {"latency_ms": 1.5, "params": 10.0}
    assert reopened.keys() == ["a"] and reopened.get("b") is None
    with pytest.raises(ConfigError, match="NaN"):
        cache.put("b", {"latency_ms": math.nan})
    with pytest.raises(ConfigError, match="numbers"):
        cache.put("b", {"latency_ms": "fast"})  # type: ignore[dict-item]
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("these are notes, not a database" * 20)
    with pytest.raises(StorageError, match="not a database"):
        CostCache(not_sqlite)
    with pytest.raises(ConfigError, match="folder"):
        CostCache(tmp_path)
