"""What the morphism searches share: data tensors, brief SGDR training, results, study records."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from nasflow.errors import ConfigError, EvaluationError, SpaceError
from nasflow.morphism.ops import MORPHISMS, random_morphism
from nasflow.space.architecture import Architecture
from nasflow.space.macro import MacroNetwork, MacroSpace
from nasflow.tasks import Task, load_task, stratified_subset

_EVAL_BATCH_SIZE = 1024


@dataclass(frozen=True)
class TrainSettings:
    """SGD with momentum; each call of :func:`train` is one cosine cycle from ``lr`` to ``lr_min``.

    Restarting the cycle for every child is SGDR (Loshchilov & Hutter, 2017, "SGDR: stochastic
    gradient descent with warm restarts") as NASH uses it: a child starts from its parent's trained
    weights with a fresh, high learning rate that anneals to ``lr_min`` by the end of its epochs.
    """

    lr: float = 0.05
    lr_min: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64

    def check(self) -> TrainSettings:
        for label, value, low in (("lr", self.lr, 0.0), ("lr_min", self.lr_min, 0.0)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ConfigError(f"{label} must be a finite number, got {value!r}")
            if value < low or (label == "lr" and value == 0):
                raise ConfigError(f"{label} must be {'> 0' if label == 'lr' else '>= 0'}, got {value}")
        if self.lr_min > self.lr:
            raise ConfigError(f"lr_min ({self.lr_min}) must not exceed lr ({self.lr})")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        check_int("batch_size", self.batch_size, 1)
        return self


@dataclass
class Data:
    """Training subset and validation split of a task as tensors."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    input_shape: tuple[int, int, int]
    num_classes: int

    @classmethod
    def from_task(cls, task: Task, fraction: float = 1.0, split_seed: int = 0) -> Data:
        """Tensors of a class-balanced ``fraction`` of the training split and the whole validation split."""
        keep = stratified_subset(task.y_train, fraction, seed=split_seed)
        return cls(
            torch.tensor(task.x_train[keep], dtype=torch.float32),
            torch.tensor(task.y_train[keep], dtype=torch.int64),
            torch.tensor(task.x_val, dtype=torch.float32),
            torch.tensor(task.y_val, dtype=torch.int64),
            task.input_shape,
            int(task.num_classes),
        )


def resolve_task(task: str | Task) -> Task:
    """A Task given itself or by built-in dataset name."""
    if isinstance(task, Task):
        return task
    if isinstance(task, str):
        return load_task(task)
    raise ConfigError(f"task must be a dataset name or a Task, got {type(task).__name__}")


def check_int(field: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{field} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_fraction(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ConfigError(f"{field} must be a number in (0, 1], got {value!r}")
    return float(value)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Accuracy in percent and mean cross-entropy of ``model`` in eval mode."""
    model.eval()
    correct, loss_sum = 0, 0.0
    with torch.inference_mode():
        for start in range(0, len(y), _EVAL_BATCH_SIZE):
            logits = model(x[start : start + _EVAL_BATCH_SIZE])
            target = y[start : start + _EVAL_BATCH_SIZE]
            loss_sum += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
            correct += int((logits.argmax(dim=1) == target).sum())
    return 100.0 * correct / len(y), loss_sum / len(y)


def train(
    model: nn.Module, data: Data, epochs: int, settings: TrainSettings, seed: int
) -> list[dict[str, float]]:
    """Train ``model`` in place for ``epochs`` (one cosine cycle); returns the per-epoch curve.

    Each curve entry holds ``epoch``, validation ``accuracy`` (percent), validation ``loss`` and the
    epoch's mean ``train_loss``. The batch order draws from ``seed`` only.

    Raises:
        EvaluationError: the loss became NaN or infinite.
    """
    optimizer = torch.optim.SGD(
        model.parameters(), lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
    )
    criterion = nn.CrossEntropyLoss()
    shuffler = torch.Generator().manual_seed(seed)
    n = len(data.y_train)
    # near-equal batches: no single-example batch, which batch norm cannot train on
    batches = max(1, math.ceil(n / settings.batch_size))
    total = epochs * batches
    step = 0
    curve = []
    for epoch in range(1, epochs + 1):
        model.train()
        loss_sum = 0.0
        for batch in torch.tensor_split(torch.randperm(n, generator=shuffler), batches):
            progress = step / total
            lr = settings.lr_min + 0.5 * (settings.lr - settings.lr_min) * (
                1.0 + math.cos(math.pi * progress)
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = criterion(model(data.x_train[batch]), data.y_train[batch])
            value = loss.item()
            if not math.isfinite(value):
                raise EvaluationError(
                    f"training diverged: the loss became {value} at epoch {epoch}/{epochs} (learning rate "
                    f"{lr:.3g}); lower lr (now {settings.lr:g})"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += value * len(batch)
            step += 1
        accuracy, val_loss = evaluate(model, data.x_val, data.y_val)
        curve.append(
            {"epoch": float(epoch), "accuracy": accuracy, "loss": val_loss, "train_loss": loss_sum / n}
        )
    return curve


def seeded_network(space: MacroSpace, arch: Architecture, data: Data, seed: int) -> MacroNetwork:
    """A freshly initialised network whose weights depend only on ``seed``."""
    # torch's initialisers draw from the global stream; fork_rng restores the caller's state after
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return space.build_network(arch, data.input_shape[0], data.num_classes)


def child_seed(seed: int, number: int, purpose: int = 0) -> int:
    """A seed for one use of a search's ``number``-th network.

    ``purpose`` 0 orders training batches, 1 draws initial weights, 2 drives its morphisms.
    """
    return int(np.random.SeedSequence([seed, number, purpose]).generate_state(1)[0])


@dataclass
class Individual:
    """One trained network of a search: its architecture, weights, and how it came about."""

    index: int
    arch: Architecture
    network: MacroNetwork
    accuracy: float
    record: dict[str, Any]


@dataclass
class MorphismResult:
    """What a morphism search found.

    Attributes:
        best_arch: the architecture with the best validation accuracy.
        best_accuracy: its validation accuracy (percent).
        best_state: its trained weights (a CPU ``state_dict``).
        history: one JSON-able record per trained network, in training order: ``index``, ``arch``
            (formatted), ``parent`` (index or None), ``morphisms`` (descriptions), ``accuracy``,
            ``val_loss``, ``train_loss``, ``params``, ``epochs`` (trained in this evaluation),
            ``lineage_epochs`` (epochs its weights have seen since initialisation), ``seconds``,
            ``step`` and ``trial`` (the study trial number, or None).
        seconds: wall time of the search.
        total_epochs: epochs trained over the whole search.
    """

    best_arch: Architecture
    best_accuracy: float
    best_state: dict[str, torch.Tensor]
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    total_epochs: int = 0

    @property
    def best_record(self) -> dict[str, Any]:
        """The history record of the best network."""
        return max(self.history, key=lambda r: r["accuracy"] if r["accuracy"] is not None else -1.0)

    def network(self, space: MacroSpace, task: Task) -> MacroNetwork:
        """The best network, rebuilt for ``task`` with its trained weights."""
        network = space.build(self.best_arch, task)
        network.load_state_dict(self.best_state)
        return network


def check_study(study: Any, space: MacroSpace) -> None:
    """Refuse a study whose space cannot record this search's architectures."""
    if study is None:
        return
    studied = getattr(study, "space", None)
    if not isinstance(studied, MacroSpace) or studied.describe() != space.describe():
        described = studied.describe() if studied is not None else None
        raise ConfigError(
            f"the study's space ({described}) must be the search's macro space ({space.describe()}); "
            "create the study with space=<the same MacroSpace>"
        )


def record_trial(
    study: Any, arch: Architecture, metrics: Mapping[str, float], curve: list[dict[str, float]]
) -> int | None:
    """Add a network trained by the search to ``study`` as a trial; returns its number."""
    if study is None:
        return None
    intermediate = {int(p["epoch"]): {"accuracy": p["accuracy"], "loss": p["loss"]} for p in curve}
    return int(study.add_trial(arch, metrics, intermediate).number)


class MorphismSearch:
    """Common machinery of searches whose children inherit their parents' weights.

    Subclasses implement :meth:`fit` with :meth:`_start`, :meth:`_morph`, :meth:`_train_and_record`
    and :meth:`_finish`. Settings are constructor-only; ``fit`` may be called again (it starts over).

    Args:
        space: the macro space searched (default ``MacroSpace()``).
        morphs_per_child: morphisms applied in a row to make one child.
        epochs_per_child: training epochs of each child (one SGDR cycle).
        morphisms: which morphisms may be used (names from :data:`nasflow.morphism.ops.MORPHISMS`).
        widen_noise: ``noise`` of :func:`~nasflow.morphism.ops.widen` (random weight shares in
            [1 - noise, 1 + noise] before normalising); breaks the symmetry of copied units.
        data_fraction: class-balanced share of the training split used for training.
        split_seed: seed of that share.
        lr, lr_min, momentum, weight_decay, batch_size: see :class:`TrainSettings`.
        seed: seed of everything random in the search.
    """

    name = "morphism-search"

    def __init__(
        self,
        space: MacroSpace | None = None,
        morphs_per_child: int = 2,
        epochs_per_child: int = 2,
        morphisms: Sequence[str] = MORPHISMS,
        widen_noise: float = 0.1,
        data_fraction: float = 1.0,
        split_seed: int = 0,
        lr: float = 0.05,
        lr_min: float = 0.0,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        if space is not None and not isinstance(space, MacroSpace):
            raise ConfigError(
                f"{self.name} needs a MacroSpace (its morphisms act on macro networks), "
                f"got {type(space).__name__}"
            )
        self.space = space or MacroSpace()
        self.morphs_per_child = check_int("morphs_per_child", morphs_per_child, 1)
        self.epochs_per_child = check_int("epochs_per_child", epochs_per_child, 1)
        if isinstance(morphisms, str) or not morphisms or any(m not in MORPHISMS for m in morphisms):
            raise ConfigError(
                f"morphisms must be a non-empty list drawn from {list(MORPHISMS)}, got {morphisms!r}"
            )
        self.morphisms = tuple(morphisms)
        if (
            isinstance(widen_noise, bool)
            or not isinstance(widen_noise, (int, float))
            or not 0 <= widen_noise < 1
        ):
            raise ConfigError(f"widen_noise must be a number in [0, 1), got {widen_noise!r}")
        self.widen_noise = float(widen_noise)
        self.data_fraction = check_fraction("data_fraction", data_fraction)
        self.split_seed = check_int("split_seed", split_seed, 0)
        self.settings = TrainSettings(lr, lr_min, momentum, weight_decay, batch_size).check()
        self.seed = check_int("seed", seed, 0)
        self.result: MorphismResult | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-able settings of the search."""
        return {
            "name": self.name,
            "space": self.space.describe(),
            "morphs_per_child": self.morphs_per_child,
            "epochs_per_child": self.epochs_per_child,
            "morphisms": list(self.morphisms),
            "widen_noise": self.widen_noise,
            "data_fraction": self.data_fraction,
            "split_seed": self.split_seed,
            **asdict(self.settings),
            "seed": self.seed,
        }

    def fit(self, task: str | Task = "digits", study: Any = None) -> MorphismResult:
        """Run the search on ``task``; record every trained network as a trial of ``study`` if given."""
        raise NotImplementedError

    def derive(self) -> Architecture:
        """The best architecture found by the last :meth:`fit`."""
        if self.result is None:
            raise ConfigError(f"{self.name}: call fit(task) before derive()")
        return self.result.best_arch

    # -- helpers for subclasses --------------------------------------------------------------
    def _start(self, task: str | Task, study: Any) -> None:
        check_study(study, self.space)
        self._data = Data.from_task(resolve_task(task), self.data_fraction, self.split_seed)
        self._study = study
        self._history: list[dict[str, Any]] = []
        self._best: Individual | None = None
        self._best_state: dict[str, torch.Tensor] = {}
        self._epochs = 0
        self._clock = time.perf_counter()

    def _rng(self, number: int) -> np.random.Generator:
        """The random stream of the ``number``-th network of the search."""
        return np.random.default_rng(child_seed(self.seed, number, 2))

    def _fresh(self, arch: Architecture) -> MacroNetwork:
        """A new network for ``arch`` with weights seeded by the search seed and its position."""
        return seeded_network(self.space, arch, self._data, child_seed(self.seed, len(self._history), 1))

    def _morph(
        self, parent: Individual, rng: np.random.Generator
    ) -> tuple[Architecture, MacroNetwork, list[str]]:
        """Apply up to ``morphs_per_child`` random morphisms; fewer if the network cannot grow further."""
        arch, network, done = parent.arch, parent.network, []
        for _ in range(self.morphs_per_child):
            try:
                morphed = random_morphism(self.space, arch, network, rng, self.morphisms, self.widen_noise)
            except SpaceError:
                break  # fully grown: the child continues training the parent's network as it is
            arch, network = morphed.arch, morphed.network
            done.append(morphed.description)
        if not done:
            network = copy.deepcopy(parent.network)
        return arch, network, done

    def _train_and_record(
        self,
        arch: Architecture,
        network: MacroNetwork,
        epochs: int,
        parent: Individual | None,
        morphisms: list[str],
        step: int,
    ) -> Individual | None:
        """Train a network, record it (history and study), and return it; None if training diverged."""
        index = len(self._history)
        start = time.perf_counter()
        lineage = epochs + (parent.record["lineage_epochs"] if parent is not None else 0)
        record: dict[str, Any] = {
            "index": index,
            "arch": self.space.format(arch),
            "parent": None if parent is None else parent.index,
            "morphisms": list(morphisms),
            "step": step,
            "epochs": epochs,
            "lineage_epochs": lineage,
        }
        self._epochs += epochs
        try:
            curve = train(network, self._data, epochs, self.settings, child_seed(self.seed, index))
        except EvaluationError as error:
            record.update(accuracy=None, error=str(error), seconds=time.perf_counter() - start)
            record["trial"] = record_trial(self._study, arch, {}, [])
            self._history.append(record)
            return None
        seconds = time.perf_counter() - start
        metrics = {
            "accuracy": curve[-1]["accuracy"],
            "val_loss": curve[-1]["loss"],
            "train_loss": curve[-1]["train_loss"],
            "params": float(sum(p.numel() for p in network.parameters())),
            "train_seconds": seconds,
        }
        record.update(
            accuracy=metrics["accuracy"],
            val_loss=metrics["val_loss"],
            train_loss=metrics["train_loss"],
            params=int(metrics["params"]),
            seconds=seconds,
        )
        record["trial"] = record_trial(self._study, arch, metrics, curve)
        self._history.append(record)
        individual = Individual(index, arch, network, metrics["accuracy"], record)
        if self._best is None or individual.accuracy > self._best.accuracy:
            self._best = individual
            self._best_state = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
        return individual

    def _finish(self) -> MorphismResult:
        if self._best is None:
            raise EvaluationError(f"{self.name}: every network diverged; lower lr (now {self.settings.lr:g})")
        self.result = MorphismResult(
            best_arch=self._best.arch,
            best_accuracy=self._best.accuracy,
            best_state=self._best_state,
            history=self._history,
            seconds=time.perf_counter() - self._clock,
            total_epochs=self._epochs,
        )
        return self.result
