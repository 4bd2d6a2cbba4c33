"""One-shot (weight-sharing) searches: a family of their own, not ask/tell strategies.

A :class:`OneShotSearch` trains a supernet (and, for differentiable searches, architecture
parameters) in :meth:`~OneShotSearch.fit`, then hands back one architecture with
:meth:`~OneShotSearch.derive` and scores any architecture of the space with the shared weights
(:meth:`~OneShotSearch.rank`). Everything random draws from the search's ``seed``.

Data: the supernet's weights train on the task's training split; architecture parameters,
controller rewards and candidate scores use the *selection* split, which is the task's validation
split by default (``arch_split="val"``). ``arch_split="half"`` instead splits the training data into
two stratified halves, one for each, as DARTS (Liu et al. 2019) does on CIFAR-10, which has no
validation split; the validation split then stays untouched by the search.
"""

from __future__ import annotations

import inspect
import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from nasflow.errors import ConfigError, EvaluationError, NasflowError
from nasflow.oneshot.supernet import Path, build_supernet, weight_sharing_accuracy
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace
from nasflow.tasks import Task, load_task, stratified_subset

ARCH_SPLITS = ("val", "half")


@dataclass
class EpochLog:
    """What one epoch of a one-shot search left behind (all JSON-able).

    Attributes:
        epoch: 1-based epoch number.
        weights: ``name -> one number per choice`` (see :attr:`OneShotResult.choices`): mixing
            weights (softmax or sigmoid), sampling probabilities or observed sampling frequencies.
        arch: the architecture the search points to after this epoch (the space's text form), if any.
        metrics: e.g. ``train_loss``, ``train_accuracy``, ``arch_loss``, ``temperature``, ``reward``.
        alphas: raw architecture parameters per edge, for searches that have them.
    """

    epoch: int
    weights: dict[str, list[float]]
    arch: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    alphas: dict[str, list[float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "weights": self.weights,
            "arch": self.arch,
            "metrics": self.metrics,
            "alphas": self.alphas,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochLog:
        return cls(
            int(data["epoch"]), data["weights"], data.get("arch"), data.get("metrics", {}), data.get("alphas")
        )


@dataclass
class OneShotResult:
    """The outcome of :meth:`OneShotSearch.fit`.

    Attributes:
        search: the search's registered name.
        settings: its constructor settings (``describe()``).
        space: the space's settings.
        choices: ``name -> labels`` of the entries of every epoch's ``weights``.
        epochs: one :class:`EpochLog` per epoch run.
        arch: the derived architecture.
        arch_str: its text form.
        score: its weight-sharing accuracy (percent) on the selection split.
        candidates: every architecture the search scored with shared weights, best first, as
            ``{"arch": {...}, "arch_str": ..., "score": ...}``.
        stopped_early: why training stopped before the last epoch (DARTS+), else None.
        seconds: wall time of ``fit``.
    """

    search: str
    settings: dict[str, Any]
    space: dict[str, Any]
    choices: dict[str, list[str]]
    epochs: list[EpochLog]
    arch: Architecture
    arch_str: str
    score: float
    candidates: list[dict[str, Any]]
    stopped_early: str | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "search": self.search,
            "settings": self.settings,
            "space": self.space,
            "choices": self.choices,
            "arch": self.arch.to_dict(),
            "arch_str": self.arch_str,
            "score": self.score,
            "stopped_early": self.stopped_early,
            "seconds": self.seconds,
            "candidates": self.candidates,
            "epochs": [log.to_dict() for log in self.epochs],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OneShotResult:
        return cls(
            search=data["search"],
            settings=data["settings"],
            space=data["space"],
            choices=data["choices"],
            epochs=[EpochLog.from_dict(e) for e in data["epochs"]],
            arch=Architecture(data["arch"]),
            arch_str=data["arch_str"],
            score=float(data["score"]),
            candidates=data["candidates"],
            stopped_early=data.get("stopped_early"),
            seconds=float(data["seconds"]),
        )


# -- argument checks ---------------------------------------------------------------------------


def check_int(label: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{label} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_float(label: str, value: object, low: float, high: float = math.inf, strict: bool = False) -> float:
    """A number in ``[low, high]`` (``(low, high]`` with ``strict``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{label} must be a number, got {value!r}")
    number = float(value)
    if math.isnan(number) or number < low or (strict and number == low) or number > high:
        interval = f"{'(' if strict else '['}{low}, {high}]"
        raise ConfigError(f"{label} must be in {interval}, got {number}")
    return number


def _check_choice(label: str, value: object, allowed: Sequence[Any]) -> Any:
    if value not in allowed:
        raise ConfigError(f"{label} must be one of {list(allowed)}, got {value!r}")
    return value


# -- the base class ----------------------------------------------------------------------------


class OneShotSearch(ABC):
    """Base class of weight-sharing searches: ``fit(task)``, then ``derive()`` and ``rank(archs)``.

    Constructor arguments are settings only (as in scikit-learn). Common ones:

    Args:
        space: the search space (instance or registered name); None leaves it to
            :func:`nasflow.oneshot.run_oneshot`, which uses the study's space.
        epochs: passes over the weight-training data.
        batch_size: examples per step.
        lr: peak learning rate of the supernet weights (SGD with momentum, cosine to ``lr_min``).
        lr_min: final learning rate.
        momentum: SGD momentum of the weights.
        weight_decay: L2 penalty of the weights.
        grad_clip: gradient-norm clipping of the weights (DARTS uses 5).
        arch_split: ``"val"`` or ``"half"``: where architecture parameters learn and candidates are
            scored (see the module docs).
        bn_examples: training examples used to recalibrate batch norm before each weight-sharing
            score.
        device: torch device.
        seed: seed of everything random; None means 0 for ``fit`` and the study's seed for
            ``run_oneshot``.
    """

    name: str = "oneshot"

    def __init__(
        self,
        space: DecisionSpace | str | None = None,
        epochs: int = 50,
        batch_size: int = 64,
        lr: float = 0.025,
        lr_min: float = 0.001,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        grad_clip: float = 5.0,
        arch_split: str = "val",
        bn_examples: int = 512,
        device: str = "cpu",
        seed: int | None = None,
    ) -> None:
        if space is not None and not isinstance(space, (DecisionSpace, str)):
            raise ConfigError(f"space must be a search space or its name, got {type(space).__name__}")
        self.space = space
        self.epochs = check_int("epochs", epochs, 1)
        self.batch_size = check_int("batch_size", batch_size, 2)
        self.lr = check_float("lr", lr, 0.0, strict=True)
        self.lr_min = check_float("lr_min", lr_min, 0.0, self.lr)
        self.momentum = check_float("momentum", momentum, 0.0, 1.0)
        self.weight_decay = check_float("weight_decay", weight_decay, 0.0)
        self.grad_clip = check_float("grad_clip", grad_clip, 0.0, strict=True)
        self.arch_split = _check_choice("arch_split", arch_split, ARCH_SPLITS)
        self.bn_examples = check_int("bn_examples", bn_examples, 2)
        try:
            torch.device(device)
        except (RuntimeError, TypeError):
            raise ConfigError(
                f"device {device!r} is not a torch device; use e.g. 'cpu' or 'cuda:0'"
            ) from None
        self.device = device
        if seed is not None:
            check_int("seed", seed, 0)
        self.seed = seed
        self.result_: OneShotResult | None = None

    # -- settings --------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """The constructor settings."""
        params = inspect.signature(type(self).__init__).parameters
        return {p: getattr(self, p) for p in params if p != "self" and hasattr(self, p)}

    def describe(self) -> dict[str, Any]:
        """JSON-able name and settings (the space by its own description)."""
        params = self.get_params()
        space = params.pop("space", None)
        described = space.describe() if isinstance(space, DecisionSpace) else space
        return {"name": self.name, **params, "space": described}

    def bind(self, space: DecisionSpace, seed: int) -> None:
        """Use ``space`` and ``seed`` where the constructor left them open (as ``run_oneshot`` does).

        Raises:
            ConfigError: the search was configured for another space.
        """
        if self.space is None:
            self.space = space
        elif self._resolve_space().describe() != space.describe():
            raise ConfigError(
                f"the one-shot search was configured for space {self._resolve_space().describe()}, but the "
                f"study searches {space.describe()}; leave the search's space unset to use the study's"
            )
        if self.seed is None:
            self.seed = seed

    def _resolve_space(self) -> DecisionSpace:
        if self.space is None:
            raise ConfigError(
                f"{self.name}: no search space; pass space=... (e.g. NB201Space(channels=8, "
                "cells_per_stage=1)) or run it with run_oneshot(study, search, task)"
            )
        if isinstance(self.space, str):
            from nasflow.catalog import get_space

            self.space = get_space(self.space)
        return self.space  # type: ignore[return-value]

    # -- the search ------------------------------------------------------------------------
    def fit(self, task: Task | str, callback: Callable[[EpochLog], None] | None = None) -> OneShotResult:
        """Train the supernet (and architecture parameters) on ``task`` and choose an architecture.

        Args:
            task: a loaded Task or a built-in dataset name (e.g. ``"digits"``).
            callback: called with each epoch's log as soon as the epoch ends (e.g. a progress bar).
        """
        start = time.perf_counter()
        self.prepare(task)
        logs: list[EpochLog] = []
        stopped = None
        for epoch in range(1, self.epochs + 1):
            metrics = self._train_epoch(epoch)
            log = self._epoch_log(epoch, metrics)
            logs.append(log)
            if callback is not None:
                callback(log)
            stopped = self._stop_reason(logs)
            if stopped is not None:
                break
        arch, candidates = self._select(logs)
        arch = self.space_.validate(arch)
        scored = {c["arch_str"]: c["score"] for c in candidates}
        arch_str = self.space_.format(arch)
        score = scored[arch_str] if arch_str in scored else self.score(arch)
        self.result_ = OneShotResult(
            search=self.name,
            settings=self.describe(),
            space=self.space_.describe(),
            choices=self._choices(),
            epochs=logs,
            arch=arch,
            arch_str=arch_str,
            score=score,
            candidates=sorted(candidates, key=lambda c: -c["score"]),
            stopped_early=stopped,
            seconds=time.perf_counter() - start,
        )
        return self.result_

    def prepare(self, task: Task | str) -> None:
        """Build the supernet, data and search state for ``task`` without training (``fit`` does this)."""
        self._prepare(_resolve_task(task), self._resolve_space(), 0 if self.seed is None else self.seed)

    def derive(self) -> Architecture:
        """The architecture the fitted search chose."""
        return self._fitted().arch

    def rank(self, archs: Sequence[Architecture | dict[str, Any]]) -> list[float]:
        """Weight-sharing accuracy (percent, selection split) of each architecture, in order."""
        self._fitted()
        return [self.score(arch) for arch in archs]

    def score(self, arch: Architecture | dict[str, Any]) -> float:
        """Accuracy of ``arch`` with inherited weights, after recalibrating batch norm for it."""
        arch = self.space_.validate(arch if isinstance(arch, Architecture) else Architecture(arch))
        return self.score_path(self.supernet.path_of(arch))

    def score_path(self, path: Path) -> float:
        return weight_sharing_accuracy(self.supernet, path, self._x_calibrate, self._x_arch, self._y_arch)

    def _fitted(self) -> OneShotResult:
        if self.result_ is None:
            raise NasflowError(f"{self.name}: call fit(task) first")
        return self.result_

    # -- shared machinery ------------------------------------------------------------------
    def _prepare(self, task: Task, space: DecisionSpace, seed: int) -> None:
        """Data tensors, random generators, the supernet and its optimiser, then subclass set-up."""
        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} requested but CUDA is not available; use 'cpu'")
        self.space_ = space
        self.task_ = task
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)
        x_train, y_train = task.x_train, task.y_train
        if self.arch_split == "half":
            first = stratified_subset(y_train, 0.5, seed=seed)
            second = np.setdiff1d(np.arange(len(y_train)), first)
            x_weights, y_weights = x_train[first], y_train[first]
            x_arch, y_arch = x_train[second], y_train[second]
        else:
            x_weights, y_weights, x_arch, y_arch = x_train, y_train, task.x_val, task.y_val
        if len(y_weights) < 2 or len(y_arch) < 1:
            raise ConfigError(f"task {task.name!r} has too few examples for a one-shot search")
        self._x_w, self._y_w = (
            _tensor(x_weights, torch.float32, device),
            _tensor(y_weights, torch.int64, device),
        )
        self._x_arch, self._y_arch = (
            _tensor(x_arch, torch.float32, device),
            _tensor(y_arch, torch.int64, device),
        )
        calibrate = torch.randperm(len(y_weights), generator=self.generator)[: self.bn_examples]
        self._x_calibrate = self._x_w[calibrate.to(device)]
        # Module constructors draw initial weights from torch's global generator; fork_rng puts
        # the caller's random state back, so the weights depend on ``seed`` only.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.supernet = build_supernet(space, task).to(device)
        self._weight_optimizer = torch.optim.SGD(
            self.supernet.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )
        self._steps_per_epoch = max(1, math.ceil(len(y_weights) / self.batch_size))
        self._total_steps = self.epochs * self._steps_per_epoch
        self._step = 0
        self._arch_batches = _BatchCycle(len(y_arch), self.batch_size, self.generator)
        self._setup_search()

    def _weight_batches(self) -> list[torch.Tensor]:
        """One epoch of index batches of near-equal size (no single-example batch for batch norm)."""
        order = torch.randperm(len(self._y_w), generator=self.generator)
        return list(torch.tensor_split(order, self._steps_per_epoch))

    def _next_arch_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        index = self._arch_batches.next().to(self._x_arch.device)
        return self._x_arch[index], self._y_arch[index]

    def _learning_rate(self) -> float:
        progress = min(1.0, self._step / self._total_steps)
        return self.lr_min + 0.5 * (self.lr - self.lr_min) * (1.0 + math.cos(math.pi * progress))

    def _weight_step(
        self, index: torch.Tensor, weights: torch.Tensor | None = None, path: Path | None = None
    ) -> tuple[float, int]:
        """One SGD step of the supernet weights on a training batch; returns (loss, correct)."""
        index = index.to(self._x_w.device)
        x, y = self._x_w[index], self._y_w[index]
        for group in self._weight_optimizer.param_groups:
            group["lr"] = self._learning_rate()
        self.supernet.train()
        logits = self.supernet(x, weights=weights, path=path)
        loss = nn.functional.cross_entropy(logits, y)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise EvaluationError(
                f"{self.name}: supernet training diverged (loss {value}) at step {self._step}; "
                f"lower lr (now {self.lr:g})"
            )
        self._weight_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.supernet.parameters(), self.grad_clip)
        self._weight_optimizer.step()
        self._step += 1
        return value, int((logits.argmax(dim=1) == y).sum())

    def _epoch_log(self, epoch: int, metrics: dict[str, float]) -> EpochLog:
        arch = self.current_arch()
        return EpochLog(
            epoch=epoch,
            weights=self._weights_log(),
            arch=None if arch is None else self.space_.format(arch),
            metrics=metrics,
            alphas=self._alphas_log(),
        )

    def _scored(self, archs: Sequence[Architecture]) -> list[dict[str, Any]]:
        """Distinct architectures (by canonical key) with their weight-sharing scores."""
        seen: dict[str, Architecture] = {}
        for arch in archs:
            seen.setdefault(self.space_.canonical(arch), arch)
        return [
            {"arch": a.to_dict(), "arch_str": self.space_.format(a), "score": self.score(a)}
            for a in seen.values()
        ]

    # -- hooks -----------------------------------------------------------------------------
    def _setup_search(self) -> None:
        """Create architecture parameters, controllers, ... (after the supernet exists)."""

    @abstractmethod
    def _train_epoch(self, epoch: int) -> dict[str, float]:
        """Run one epoch; return its metrics (at least ``train_loss`` and ``train_accuracy``)."""

    def current_arch(self) -> Architecture | None:
        """The architecture the search points to now (after ``prepare``), if it has one before selection."""
        return None

    @abstractmethod
    def _weights_log(self) -> dict[str, list[float]]:
        """This epoch's weights / probabilities, keyed like :meth:`_choices`."""

    def _choices(self) -> dict[str, list[str]]:
        """Labels of the logged weights: the supernet's operations on every edge by default."""
        return {edge: list(self.supernet.op_names) for edge in self.supernet.edge_names}

    def _alphas_log(self) -> dict[str, list[float]] | None:
        return None

    def _stop_reason(self, logs: list[EpochLog]) -> str | None:
        """Why to stop after the last logged epoch (DARTS+), or None to go on."""
        return None

    @abstractmethod
    def _select(self, logs: list[EpochLog]) -> tuple[Architecture, list[dict[str, Any]]]:
        """The final architecture and the scored candidates (see :attr:`OneShotResult.candidates`)."""


def _resolve_task(task: Task | str) -> Task:
    if isinstance(task, Task):
        return task
    if isinstance(task, str):
        return load_task(task)
    raise ConfigError(f"task must be a Task or a built-in dataset name, got {type(task).__name__}")


def _tensor(array: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.array(array), dtype=dtype, device=device)


class _BatchCycle:
    """Index batches over ``n`` examples, reshuffled after every pass, forever.

    A class rather than a generator so that a fitted search pickles (for worker processes).
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator) -> None:
        self.n = n
        self.count = max(1, math.ceil(n / batch_size))
        self.generator = generator
        self.pending: list[torch.Tensor] = []

    def next(self) -> torch.Tensor:
        if not self.pending:
            order = torch.randperm(self.n, generator=self.generator)
            self.pending = list(torch.tensor_split(order, self.count))[::-1]
        return self.pending.pop()


def as_lists(matrix: np.ndarray, names: Sequence[str]) -> dict[str, list[float]]:
    """``name -> row as plain floats`` for JSON logs."""
    return {name: [float(v) for v in row] for name, row in zip(names, np.asarray(matrix))}
