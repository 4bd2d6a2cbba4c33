"""Evaluate architectures by training the network they describe.

Each evaluation builds the network with weights drawn from ``context.seed``, trains it on the task's
training split with a cosine learning-rate schedule and reports validation accuracy after every
epoch. On CPU the same architecture and seed give bit-identical metrics (for a fixed number of
torch threads, which the executor sets).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from nasflow.errors import ConfigError, EvaluationError, UnknownNameError
from nasflow.estimators.base import EvalContext, Evaluator, Measurement
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace
from nasflow.tasks import BUILTIN_DATASETS, Task, load_task, stratified_subset

OPTIMIZERS = ("sgd", "adam", "adamw")
#: keys of ``context.fidelity`` this evaluator honours; others are ignored
FIDELITY_KEYS = ("epochs", "data_fraction")

# Defaults tuned for small CNNs on the 8x8 digits task. Single-threaded, random NB201 cells with
# 8 channels and one cell per stage reach 96-99.4% validation accuracy (mean ~98%) in 3-4 s, and a
# ~15k-parameter plain conv net ~98.5% in ~2 s; fewer epochs cost accuracy, more buy little.
DEFAULT_EPOCHS = 10
DEFAULT_BATCH_SIZE = 64
DEFAULT_LR = 0.05
DEFAULT_OPTIMIZER = "sgd"
DEFAULT_WEIGHT_DECAY = 5e-4

#: validation batches do not affect results, so they are as large as memory comfortably allows
_EVAL_BATCH_SIZE = 1024


@functools.lru_cache(maxsize=2)
def _cached_task(dataset: str, data: str | None, split_seed: int) -> Task:
    # Worker processes receive the evaluator without its task (only the name travels) and load it
    # here once per process instead of once per trial; callers must not modify the arrays.
    return load_task(dataset, data=data, split_seed=split_seed)


def _check_int(field: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{field} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_float(
    field: str, value: object, low: float, high: float, low_open: bool = False, high_open: bool = False
) -> float:
    allowed = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{field} must be a number in {allowed}, got {value!r}")
    number = float(value)
    too_low = number <= low if low_open else number < low
    too_high = number >= high if high_open else number > high
    if math.isnan(number) or too_low or too_high:
        raise ConfigError(f"{field} must be in {allowed}, got {number}")
    return number


def _as_tensor(array: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # torch.from_numpy would share (and warn about) read-only arrays of a user's Task, so those
    # are copied; the usual writable arrays are shared without a copy
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(np.ascontiguousarray(array)).to(device=device, dtype=dtype)


def _check_device(device: str) -> str:
    try:
        torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {device!r} is not a torch device; use e.g. 'cpu' or 'cuda:0'") from None
    return device


class TrainEvaluator(Evaluator):
    """Trains each architecture on a classification task and reports validation accuracy.

    Args:
        task: a built-in dataset name (see ``nasflow.tasks.BUILTIN_DATASETS``) or a loaded Task.
        data: user data (``.npz`` file or image folder) instead of a built-in dataset.
        epochs: training epochs; ``context.fidelity["epochs"]`` overrides it per evaluation.
        batch_size: examples per training step.
        lr: peak learning rate; it follows a per-step cosine schedule down to 0.
        optimizer: ``"sgd"`` (with ``momentum``), ``"adam"`` or ``"adamw"`` (``momentum`` unused).
        momentum: SGD momentum.
        weight_decay: L2 penalty (decoupled for ``"adamw"``).
        data_fraction: share of the training split used, a class-balanced subset fixed by
            ``split_seed`` so that every trial sees the same examples;
            ``context.fidelity["data_fraction"]`` overrides it.
        split_seed: seed of the train/validation/test split and of the data subset.
        device: torch device to train on.
        label_smoothing: cross-entropy label smoothing used for training (validation loss is plain).
        report_test: also evaluate the trained network on the task's test split and report
            ``test_accuracy`` and ``test_loss`` (for building benchmark tables; a search must not
            select on them).

    Metrics: ``accuracy`` (validation, percent), ``val_loss``, ``train_loss`` (last epoch's mean),
    ``params`` (trainable parameters), ``flops`` (multiply-accumulates for one example) and
    ``train_seconds``; with ``report_test`` also ``test_accuracy`` and ``test_loss``.
    """

    name = "train"

    def __init__(
        self,
        task: str | Task = "digits",
        data: str | None = None,
        epochs: int = DEFAULT_EPOCHS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        lr: float = DEFAULT_LR,
        optimizer: str = DEFAULT_OPTIMIZER,
        momentum: float = 0.9,
        weight_decay: float = DEFAULT_WEIGHT_DECAY,
        data_fraction: float = 1.0,
        split_seed: int = 0,
        device: str = "cpu",
        label_smoothing: float = 0.0,
        report_test: bool = False,
    ) -> None:
        if isinstance(task, Task):
            if data is not None:
                raise ConfigError("pass either a loaded Task or data=PATH, not both")
            self._task: Task | None = task
            self.task_name = task.name
        elif isinstance(task, str):
            if data is None and task not in BUILTIN_DATASETS:
                raise UnknownNameError(
                    f"unknown task {task!r}; built-in datasets: {sorted(BUILTIN_DATASETS)}. "
                    "Pass your own data with data=PATH (a .npz file or an image folder)"
                )
            self._task = None
            self.task_name = task
        else:
            raise ConfigError(f"task must be a dataset name or a Task, got {type(task).__name__}")
        self.data = None if data is None else str(data)
        self.epochs = _check_int("epochs", epochs, 1)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.lr = _check_float("lr", lr, 0.0, math.inf, low_open=True, high_open=True)
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
        self.optimizer = optimizer
        self.momentum = _check_float("momentum", momentum, 0.0, 1.0, high_open=True)
        self.weight_decay = _check_float("weight_decay", weight_decay, 0.0, math.inf, high_open=True)
        self.data_fraction = _check_float("data_fraction", data_fraction, 0.0, 1.0, low_open=True)
        self.split_seed = _check_int("split_seed", split_seed, 0)
        self.device = _check_device(device)
        self.label_smoothing = _check_float("label_smoothing", label_smoothing, 0.0, 1.0, high_open=True)
        if not isinstance(report_test, bool):
            raise ConfigError(f"report_test must be true or false, got {report_test!r}")
        self.report_test = report_test

    # -- life cycle ------------------------------------------------------------------------
    def setup(self, space: DecisionSpace) -> None:
        """Bind the space and load the task now, so that data errors surface before the search."""
        super().setup(space)
        if torch.device(self.device).type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} requested but CUDA is not available; use 'cpu'")
        if self.report_test and len(self.task.y_test) == 0:
            raise ConfigError(f"report_test=True, but task {self.task_name!r} has no test examples")
        _ = self.task

    @property
    def task(self) -> Task:
        """The task, loaded on first use."""
        # A task given by name is not stored on the evaluator, so pickling it for worker processes
        # stays cheap; each process loads it once through the cache.
        if self._task is None:
            return _cached_task(self.task_name, self.data, self.split_seed)
        return self._task

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task_name,
            "data": self.data,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "optimizer": self.optimizer,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "data_fraction": self.data_fraction,
            "split_seed": self.split_seed,
            "device": self.device,
            "label_smoothing": self.label_smoothing,
            # only when set, so that studies stored before the option existed still resume
            **({"report_test": True} if self.report_test else {}),
        }

    # -- evaluation ------------------------------------------------------------------------
    def precheck(self, arch: Architecture) -> dict[str, float]:
        """``params`` and ``flops`` of the untrained network: known without training, so constraints on
        them screen architectures out before any training."""
        from nasflow.objectives.metrics import count_macs, count_parameters

        task = self.task
        # building draws initial weights; fork_rng keeps the caller's random stream untouched
        with torch.random.fork_rng(devices=[]):
            model = self.space.build(arch, task)
        return {"params": float(count_parameters(model)), "flops": float(count_macs(model, task.input_shape))}

    def _budget(self, fidelity: Mapping[str, float]) -> tuple[int, float]:
        epochs, fraction = self.epochs, self.data_fraction
        if "epochs" in fidelity:
            value = _check_float("fidelity 'epochs'", fidelity["epochs"], 0.0, math.inf, low_open=True)
            epochs = max(1, round(value))
        if "data_fraction" in fidelity:
            fraction = _check_float(
                "fidelity 'data_fraction'", fidelity["data_fraction"], 0.0, 1.0, low_open=True
            )
        return epochs, fraction

    def _make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise EvaluationError("the network has no trainable parameters, so it cannot be trained")
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

    def evaluate(self, arch: Architecture, context: EvalContext) -> Measurement:
        from nasflow.objectives.metrics import count_macs, count_parameters

        start = time.perf_counter()
        task = self.task
        epochs, fraction = self._budget(context.fidelity)
        device = torch.device(self.device)
        keep = stratified_subset(task.y_train, fraction, seed=self.split_seed)
        x_train = _as_tensor(task.x_train[keep], torch.float32, device)
        y_train = _as_tensor(task.y_train[keep], torch.int64, device)
        x_val = _as_tensor(task.x_val, torch.float32, device)
        y_val = _as_tensor(task.y_val, torch.int64, device)

        # Everything random in this evaluation (initial weights, dropout) draws from context.seed,
        # and fork_rng puts the caller's global random state back afterwards.
        rng_devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=rng_devices):
            torch.manual_seed(context.seed)
            model = self.space.build(arch, task)
            if not isinstance(model, nn.Module):
                raise EvaluationError(
                    f"space {self.space.name!r} built {type(model).__name__}, not a torch.nn.Module"
                )
            model.to(device)
            train_start = time.perf_counter()
            curve, train_loss = self._train(model, x_train, y_train, x_val, y_val, epochs, context)
            train_seconds = time.perf_counter() - train_start
            test = None
            if self.report_test:
                x_test = _as_tensor(task.x_test, torch.float32, device)
                test = self._validate(model, x_test, _as_tensor(task.y_test, torch.int64, device))
            # counted after training so that a counting forward pass cannot touch batch-norm
            # statistics or the random stream the training used
            model.cpu().eval()
            params = count_parameters(model)
            macs = count_macs(model, task.input_shape)

        metrics = {
            "accuracy": curve[-1]["accuracy"],
            "val_loss": curve[-1]["loss"],
            "train_loss": train_loss,
            "params": float(params),
            "flops": float(macs),
            "train_seconds": train_seconds,
        }
        if test is not None:
            metrics["test_accuracy"], metrics["test_loss"] = test
        return Measurement(metrics, time.perf_counter() - start, curve)

    def _train(
        self,
        model: nn.Module,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        x_val: torch.Tensor | None,
        y_val: torch.Tensor | None,
        epochs: int,
        context: EvalContext,
    ) -> tuple[list[dict[str, float]], float]:
        """Train ``model`` in place; returns the per-epoch curve and the last epoch's mean loss.

        Without validation data (``x_val`` None) the curve holds only the training loss.
        """
        optimizer = self._make_optimizer(model)
        criterion = nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)
        shuffler = torch.Generator().manual_seed(context.seed)
        n = len(y_train)
        # Near-equal batches instead of a ragged last one: no single-example batch (which would
        # break batch norm) and every example is used every epoch.
        batches_per_epoch = max(1, math.ceil(n / self.batch_size))
        total_steps = epochs * batches_per_epoch
        step = 0
        curve: list[dict[str, float]] = []
        train_loss = math.nan
        for epoch in range(1, epochs + 1):
            model.train()
            loss_sum = 0.0
            order = torch.randperm(n, generator=shuffler).to(x_train.device)
            for batch_number, batch in enumerate(torch.tensor_split(order, batches_per_epoch), 1):
                lr = 0.5 * self.lr * (1.0 + math.cos(math.pi * step / total_steps))
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss = criterion(model(x_train[batch]), y_train[batch])
                value = loss.item()
                if not math.isfinite(value):
                    raise EvaluationError(
                        f"training diverged: the loss became {value} (NaN/inf) at epoch {epoch}/{epochs}, "
                        f"step {batch_number}/{batches_per_epoch} (learning rate {lr:.3g}); lower the "
                        f"learning rate (lr={self.lr:g} now) or use a smaller network"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += value * len(batch)
                step += 1
            train_loss = loss_sum / n
            if x_val is None or y_val is None:
                curve.append({"epoch": float(epoch), "train_loss": train_loss})
                continue
            accuracy, val_loss = self._validate(model, x_val, y_val)
            if not math.isfinite(val_loss):
                raise EvaluationError(
                    f"training diverged: the validation loss became {val_loss} (NaN/inf) after epoch "
                    f"{epoch}/{epochs}; lower the learning rate (lr={self.lr:g} now)"
                )
            context.emit(epoch, {"accuracy": accuracy, "loss": val_loss})
            curve.append(
                {"epoch": float(epoch), "accuracy": accuracy, "loss": val_loss, "train_loss": train_loss}
            )
        return curve, train_loss

    def fit(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> float:
        """Train ``model`` in place on ``(x, y)`` without validation; returns the last epoch's mean loss.

        For a final retraining on train+val with these settings. ``seed`` orders the batches; the
        caller seeds the initial weights (they exist already).
        """
        epochs = _check_int("epochs", epochs, 1)
        _, train_loss = self._train(model, x, y, None, None, epochs, EvalContext(seed=seed))
        return train_loss

    @staticmethod
    def score(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """Accuracy in percent and mean (unsmoothed) cross-entropy of ``model`` on ``(x, y)``."""
        return TrainEvaluator._validate(model, x, y)

    @staticmethod
    def _validate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """Validation accuracy in percent and mean (unsmoothed) cross-entropy."""
        model.eval()
        correct, loss_sum = 0, 0.0
        with torch.inference_mode():
            for start in range(0, len(y), _EVAL_BATCH_SIZE):
                logits = model(x[start : start + _EVAL_BATCH_SIZE])
                target = y[start : start + _EVAL_BATCH_SIZE]
                loss_sum += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
                correct += int((logits.argmax(dim=1) == target).sum())
        return 100.0 * correct / len(y), loss_sum / len(y)
