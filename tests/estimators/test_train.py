"""TrainEvaluator: accuracy, determinism, fidelity, divergence, metrics, pickling and validation.

A tiny space defined here keeps these tests independent of the built-in spaces.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from nasflow.errors import ConfigError, EvaluationError, UnknownNameError
from nasflow.estimators.base import EvalContext
from nasflow.estimators.train import TrainEvaluator
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace
from nasflow.tasks import load_task


class TinyCNNSpace(DecisionSpace):
    """Three 3x3 convolutions whose width is the only decision (~15k parameters at width 16)."""

    def __init__(self) -> None:
        super().__init__({"width": [4, 8, 16]}, name="tiny_cnn")

    def build(self, arch: Architecture, task: Any = None) -> nn.Module:
        w = int(arch["width"])
        channels = task.input_shape[0]
        return nn.Sequential(
            nn.Conv2d(channels, w, 3, padding=1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * w, task.num_classes),
        )


WIDE = Architecture(width=16)
NARROW = Architecture(width=4)


def _evaluator(**settings: Any) -> TrainEvaluator:
    evaluator = TrainEvaluator(**settings)
    evaluator.setup(TinyCNNSpace())
    return evaluator


def test_reasonable_settings_learn_digits() -> None:
    reports: list[tuple[int, dict[str, float]]] = []
    context = EvalContext(seed=0, report=lambda step, metrics: reports.append((step, metrics)))
    measurement = _evaluator(epochs=6).evaluate(WIDE, context)
    assert measurement.metrics["accuracy"] >= 90.0
    assert 0.0 <= measurement.metrics["accuracy"] <= 100.0
    assert [step for step, _ in reports] == [1, 2, 3, 4, 5, 6]
    assert all(set(m) == {"accuracy", "loss"} for _, m in reports)
    assert [c["accuracy"] for c in measurement.curve] == [m["accuracy"] for _, m in reports]
    assert measurement.metrics["val_loss"] == measurement.curve[-1]["loss"]
    assert measurement.metrics["train_loss"] < 1.0
    assert measurement.cost_seconds >= measurement.metrics["train_seconds"] > 0


def test_same_seed_gives_identical_metrics_and_leaves_global_rng_alone() -> None:
    evaluator = _evaluator(epochs=2, data_fraction=0.5)
    torch.manual_seed(999)
    state = torch.get_rng_state()
    first = evaluator.evaluate(NARROW, EvalContext(seed=7))
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(12345)  # the caller's random state must not matter
    second = evaluator.evaluate(NARROW, EvalContext(seed=7))
    for key in ("accuracy", "val_loss", "train_loss", "params", "flops"):
        assert first.metrics[key] == second.metrics[key]
    assert first.curve == second.curve
    other = evaluator.evaluate(NARROW, EvalContext(seed=8))
    assert other.metrics["train_loss"] != first.metrics["train_loss"]


def test_fidelity_overrides_epochs_and_data_fraction() -> None:
    evaluator = _evaluator(epochs=5)
    short = evaluator.evaluate(NARROW, EvalContext(seed=0, fidelity={"epochs": 2, "data_fraction": 0.2}))
    assert len(short.curve) == 2
    assert [c["epoch"] for c in short.curve] == [1.0, 2.0]
    with pytest.raises(ConfigError, match="data_fraction"):
        evaluator.evaluate(NARROW, EvalContext(seed=0, fidelity={"data_fraction": 1.5}))


def test_absurd_learning_rate_diverges_with_an_actionable_error() -> None:
    evaluator = _evaluator(epochs=1, lr=1e6, optimizer="sgd")
    with pytest.raises(EvaluationError, match=r"diverged.*NaN.*epoch 1/1, step \d+/\d+.*lower the learning"):
        evaluator.evaluate(WIDE, EvalContext(seed=0))


def test_metrics_report_parameter_count_and_macs() -> None:
    evaluator = _evaluator(epochs=1, data_fraction=0.2)
    measurement = evaluator.evaluate(WIDE, EvalContext(seed=0))
    model = TinyCNNSpace().build(WIDE, evaluator.task)
    assert measurement.metrics["params"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert measurement.metrics["flops"] > 0
    assert set(measurement.metrics) == {
        "accuracy",
        "val_loss",
        "train_loss",
        "params",
        "flops",
        "train_seconds",
    }


def test_pickles_after_setup_and_gives_the_same_result() -> None:
    evaluator = _evaluator(epochs=1, data_fraction=0.3)
    payload = pickle.dumps(evaluator)
    assert len(payload) < 100_000  # the task is reloaded by workers, not shipped with the evaluator
    clone = pickle.loads(payload)
    context = EvalContext(seed=3)
    assert (
        clone.evaluate(NARROW, context).metrics["accuracy"]
        == evaluator.evaluate(NARROW, context).metrics["accuracy"]
    )


def test_optimizers_and_label_smoothing_run() -> None:
    for optimizer, lr in (("adam", 3e-3), ("adamw", 3e-3)):
        evaluator = _evaluator(epochs=1, data_fraction=0.2, optimizer=optimizer, lr=lr, label_smoothing=0.1)
        assert evaluator.evaluate(NARROW, EvalContext(seed=0)).metrics["accuracy"] > 10.0


def test_task_object_and_npz_data(tmp_path: Path) -> None:
    digits = load_task("digits")
    evaluator = _evaluator(task=digits, epochs=1, data_fraction=0.2)
    assert evaluator.task is digits
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 6, 6, 3), dtype=np.uint8)
    path = tmp_path / "colors.npz"
    np.savez(path, X=x, y=np.repeat(["red", "blue"], 20))
    evaluator = _evaluator(data=str(path), epochs=1)
    assert evaluator.task.input_shape == (3, 6, 6)
    assert 0.0 <= evaluator.evaluate(NARROW, EvalContext(seed=0)).metrics["accuracy"] <= 100.0
    assert evaluator.describe()["data"] == str(path)


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"momentum": 1.0}, "momentum"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"data_fraction": 0.0}, "data_fraction"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"device": "not-a-device"}, "device"),
        ({"task": load_task("digits"), "data": "x.npz"}, "not both"),
    ],
)
def test_bad_settings_name_the_field(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        TrainEvaluator(**settings)


def test_unknown_task_name() -> None:
    with pytest.raises(UnknownNameError, match="digits"):
        TrainEvaluator(task="imagenet")
