"""Evaluate architectures with zero-cost proxies, and pre-screen trials of any evaluator with one.

``ZeroCostEvaluator`` scores the untrained network of each architecture (seconds instead of the
minutes training takes); ``PrescreenEvaluator`` puts such a score in front of another evaluator and
prunes the architectures whose score falls in the bottom of what it has seen so far.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from nasflow.errors import ConfigError, EvaluationError, TrialPruned, UnknownNameError
from nasflow.estimators.base import EvalContext, Evaluator, Measurement
from nasflow.proxies import PROXIES, get_proxy, score
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace
from nasflow.tasks import BUILTIN_DATASETS, Task, load_task

#: input shape and class count of the synthetic batch used without a task: CIFAR's, as in NAS-Bench-201
SYNTHETIC_INPUT_SHAPE = (3, 32, 32)
SYNTHETIC_CLASSES = 10


@functools.lru_cache(maxsize=2)
def _cached_task(dataset: str, data: str | None, split_seed: int) -> Task:
    # Worker processes get the evaluator without the task (only its name travels) and load it once.
    return load_task(dataset, data=data, split_seed=split_seed)


def _int_at_least(field: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{field} must be an integer >= {low}, got {value!r}")
    return int(value)


def _proxy_list(proxy: str | Sequence[str]) -> list[str]:
    names = [proxy] if isinstance(proxy, str) else list(proxy)
    if not names:
        raise ConfigError(f"proxy must name at least one proxy; allowed: {', '.join(PROXIES)}")
    for name in names:
        get_proxy(name)
    if len(set(names)) != len(names):
        raise ConfigError(f"proxy lists a name twice: {names}")
    return names


class ZeroCostEvaluator(Evaluator):
    """Scores each architecture's untrained network with one or several zero-cost proxies.

    The network is built by ``space.build(arch, task)`` with weights drawn from ``context.seed``, so
    the same architecture and seed give the same scores. Data proxies see one fixed batch: the same
    ``batch_size`` training examples, chosen by ``split_seed``, for every architecture, so scores of
    different architectures are comparable.

    Args:
        proxy: a proxy name or a list of names (see ``nasflow.proxies.PROXIES``); each becomes a metric
            of that name (higher is better for all of them).
        task: a built-in dataset name, a loaded Task, or ``None`` for a synthetic batch: the network
            is built with ``space.build(arch, None)`` (for NB201, the benchmark's own CIFAR network)
            and scored on standard Gaussian inputs shaped ``input_shape`` with uniformly random labels
            of ``num_classes`` classes, both drawn from ``split_seed``.
        data: user data (``.npz`` file or image folder) instead of a built-in dataset.
        batch_size: examples in the scoring batch (capped at the size of the training split).
        split_seed: seed of the train/validation/test split and of the choice of the batch.
        input_shape: ``(C, H, W)`` of the synthetic batch (``task=None`` only).
        num_classes: label range of the synthetic batch (``task=None`` only).
        device: torch device the networks are scored on.

    Metrics: one per proxy, named after it. A proxy can be ``-inf`` (naswot and jacob_cov, for a
    network whose output ignores its input); a NaN value fails the trial.
    """

    name = "zero-cost"

    def __init__(
        self,
        proxy: str | Sequence[str] = "synflow",
        task: str | Task | None = "digits",
        data: str | None = None,
        batch_size: int = 64,
        split_seed: int = 0,
        input_shape: Sequence[int] = SYNTHETIC_INPUT_SHAPE,
        num_classes: int = SYNTHETIC_CLASSES,
        device: str = "cpu",
    ) -> None:
        self.proxies = _proxy_list(proxy)
        if isinstance(task, Task):
            if data is not None:
                raise ConfigError("pass either a loaded Task or data=PATH, not both")
            self._task: Task | None = task
            self.task_name: str | None = task.name
        elif task is None or isinstance(task, str):
            if isinstance(task, str) and data is None and task not in BUILTIN_DATASETS:
                raise UnknownNameError(
                    f"unknown task {task!r}; built-in datasets: {sorted(BUILTIN_DATASETS)}, or None for a "
                    "synthetic CIFAR-shaped batch. Pass your own data with data=PATH"
                )
            if task is None and data is not None:
                raise ConfigError("data=PATH needs a task name too (task=None means a synthetic batch)")
            self._task = None
            self.task_name = task
        else:
            raise ConfigError(f"task must be a dataset name, a Task or None, got {type(task).__name__}")
        self.data = None if data is None else str(data)
        self.batch_size = _int_at_least("batch_size", batch_size, 1)
        self.split_seed = _int_at_least("split_seed", split_seed, 0)
        shape = tuple(input_shape)
        if len(shape) < 1 or not all(isinstance(d, (int, np.integer)) and d >= 1 for d in shape):
            raise ConfigError(
                f"input_shape must be positive integers such as (3, 32, 32), got {input_shape!r}"
            )
        self.input_shape = tuple(int(d) for d in shape)
        self.num_classes = _int_at_least("num_classes", num_classes, 1)
        try:
            torch.device(device)
        except (RuntimeError, TypeError):
            raise ConfigError(
                f"device {device!r} is not a torch device; use e.g. 'cpu' or 'cuda:0'"
            ) from None
        self.device = device
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- life cycle ------------------------------------------------------------------------
    def setup(self, space: DecisionSpace) -> None:
        """Bind the space and prepare the batch now, so that data errors surface before the search."""
        super().setup(space)
        if torch.device(self.device).type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} requested but CUDA is not available; use 'cpu'")
        self.batch()

    @property
    def task(self) -> Task | None:
        """The task (loaded on first use), or None for the synthetic batch."""
        if self._task is None and self.task_name is not None:
            return _cached_task(self.task_name, self.data, self.split_seed)
        return self._task

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed scoring batch ``(inputs, labels)``, the same for every architecture."""
        if self._batch is None:
            generator = torch.Generator().manual_seed(self.split_seed)
            task = self.task
            if task is None:
                inputs = torch.randn((self.batch_size, *self.input_shape), generator=generator)
                labels = torch.randint(self.num_classes, (self.batch_size,), generator=generator)
            else:
                chosen = torch.randperm(len(task.y_train), generator=generator)[: self.batch_size].numpy()
                inputs = torch.as_tensor(np.array(task.x_train[chosen]), dtype=torch.float32)
                labels = torch.as_tensor(np.array(task.y_train[chosen]), dtype=torch.int64)
            self._batch = (inputs, labels)
        return self._batch

    def describe(self) -> dict[str, Any]:
        # the constructor's arguments, so that a stored study can rebuild this evaluator
        return {
            "name": self.name,
            "proxy": list(self.proxies),
            "task": self.task_name,
            "data": self.data,
            "batch_size": self.batch_size,
            "split_seed": self.split_seed,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "device": self.device,
        }

    def __getstate__(self) -> dict[str, Any]:
        # worker processes rebuild the batch from split_seed rather than receive it with every task
        state = self.__dict__.copy()
        state["_batch"] = None
        return state

    # -- evaluation ------------------------------------------------------------------------
    def build(self, arch: Architecture, seed: int) -> nn.Module:
        """The untrained network of ``arch`` with weights drawn from ``seed``, on this evaluator's device."""
        space = getattr(self, "space", None)
        if space is None:
            raise ConfigError("ZeroCostEvaluator.evaluate needs setup(space) to be called first")
        device = torch.device(self.device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            model = space.build(arch, self.task)
        if not isinstance(model, nn.Module):
            raise EvaluationError(f"space {space.name!r} built {type(model).__name__}, not a torch.nn.Module")
        return model.to(device)

    def evaluate(self, arch: Architecture, context: EvalContext) -> Measurement:
        start = time.perf_counter()
        model = self.build(arch, context.seed)
        inputs, labels = self.batch()
        metrics = {name: score(name, model, inputs, labels, seed=context.seed) for name in self.proxies}
        return Measurement(metrics, time.perf_counter() - start)


# Pre-screening history, per process: evaluator key -> proxy values in the order they were computed.
# Worker processes receive a fresh copy of the evaluator for every trial, so a history kept on the
# instance would be empty each time; keyed by the evaluator's identity it lasts as long as the process.
_HISTORIES: dict[str, list[float]] = {}


class PrescreenEvaluator(Evaluator):
    """Runs ``inner`` only for architectures whose proxy score is not in the bottom of those seen so far.

    Every evaluation first computes the proxy (a :class:`ZeroCostEvaluator` with one proxy). After
    ``warmup`` scores have been seen, an architecture whose score is below the running
    ``1 - keep`` quantile (linear interpolation) of the scores seen before it is pruned: it raises
    :class:`~nasflow.errors.TrialPruned` with the score as its metric, and the study records the trial
    as PRUNED with the reason. Otherwise the inner evaluator runs and the score is added to its
    metrics. The proxy is taken as higher-is-better; ``-inf`` is pruned whenever screening is active.

    Which scores count as "seen": those this evaluator computed in the current process. With the
    inline executor that is every trial of the search so far. With worker processes, each worker
    screens against the scores it computed itself (so warm-up takes up to ``workers x warmup``
    trials, and which trials are pruned depends on how trials are scheduled), and a resumed study
    starts a new history. Copies of one evaluator (pickled or deep-copied) share its history within
    a process.

    Args:
        inner: the evaluator to run on the architectures that pass; also a registered evaluator name
            or a ``describe()`` dict (how a stored study rebuilds it).
        proxy: a proxy name, a ``ZeroCostEvaluator`` with one proxy, or its ``describe()`` dict. By name,
            the proxy scores the network the inner evaluator measures: a ``TrainEvaluator``'s task
            (same data, split and device), the benchmark's own network with a synthetic CIFAR-shaped
            batch for a ``TabularEvaluator`` (``task=None``), and the built-in digits task otherwise.
        keep: share of architectures to keep, in (0, 1): the threshold is the ``1 - keep`` quantile.
        warmup: number of scores seen before any pruning; the first ``warmup`` trials always run.
    """

    name = "prescreen"

    def __init__(
        self,
        inner: Evaluator | str | Mapping[str, Any],
        proxy: str | ZeroCostEvaluator | Mapping[str, Any] = "synflow",
        keep: float = 0.5,
        warmup: int = 10,
    ) -> None:
        self.inner = _as_evaluator(inner)
        self.screen = _as_screen(proxy, self.inner)
        self.proxy = self.screen.proxies[0]
        if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0.0 < keep < 1.0:
            raise ConfigError(
                f"keep must be a number in (0, 1), the share of architectures kept; got {keep!r}"
            )
        self.keep = float(keep)
        self.warmup = _int_at_least("warmup", warmup, 0)
        self._key = uuid.uuid4().hex  # identity of the history only; never affects results

    def setup(self, space: DecisionSpace) -> None:
        super().setup(space)
        self.inner.setup(space)
        self.screen.setup(space)

    @property
    def history(self) -> tuple[float, ...]:
        """The proxy scores this evaluator has computed in this process, oldest first."""
        return tuple(_HISTORIES.get(self._key, ()))

    def threshold(self) -> float | None:
        """The score below which an architecture is pruned now; None while warming up."""
        seen = _HISTORIES.get(self._key, [])
        if len(seen) < max(self.warmup, 1):
            return None
        # infinities would make the interpolation NaN; the extreme finite values order the same way
        values = np.nan_to_num(
            np.asarray(seen, dtype=float), posinf=np.finfo(float).max, neginf=-np.finfo(float).max
        )
        return float(np.quantile(values, 1.0 - self.keep))

    def evaluate(self, arch: Architecture, context: EvalContext) -> Measurement:
        start = time.perf_counter()
        value = self.screen.evaluate(arch, context).metrics[self.proxy]
        limit = self.threshold()
        seen = len(_HISTORIES.get(self._key, ()))
        _HISTORIES.setdefault(self._key, []).append(value)
        if limit is not None and value < limit:
            raise TrialPruned(
                f"pre-screened out: {self.proxy} = {value:.6g} is below {limit:.6g}, the "
                f"{1.0 - self.keep:.3g} quantile of the {seen} scores seen so far",
                {self.proxy: value},
            )
        measurement = self.inner.evaluate(arch, context)
        metrics = {**measurement.metrics, self.proxy: value}
        return Measurement(metrics, time.perf_counter() - start, measurement.curve)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "inner": self.inner.describe(),
            "proxy": self.screen.describe(),
            "keep": self.keep,
            "warmup": self.warmup,
        }


def _as_evaluator(inner: Evaluator | str | Mapping[str, Any]) -> Evaluator:
    if isinstance(inner, Evaluator):
        return inner
    from nasflow import catalog

    if isinstance(inner, str):
        evaluator = catalog.get_evaluator(inner)
    elif isinstance(inner, Mapping):
        evaluator = catalog.rebuild(catalog.EVALUATORS, dict(inner))
    else:
        raise ConfigError(
            f"inner must be an Evaluator, a registered evaluator name or its describe() dict, got "
            f"{type(inner).__name__}"
        )
    if not isinstance(evaluator, Evaluator):
        raise ConfigError(f"inner {inner!r} did not give an Evaluator")
    return evaluator


def _as_screen(proxy: str | ZeroCostEvaluator | Mapping[str, Any], inner: Evaluator) -> ZeroCostEvaluator:
    if isinstance(proxy, ZeroCostEvaluator):
        screen = proxy
    elif isinstance(proxy, Mapping):
        options = dict(proxy)
        if options.pop("name", ZeroCostEvaluator.name) != ZeroCostEvaluator.name:
            raise ConfigError(
                f"proxy settings must describe a {ZeroCostEvaluator.name!r} evaluator, got {proxy!r}"
            )
        try:
            screen = ZeroCostEvaluator(**options)
        except TypeError as exc:
            raise ConfigError(f"bad proxy settings {proxy!r}: {exc}") from None
    elif isinstance(proxy, str):
        screen = ZeroCostEvaluator(proxy, **_screen_options(inner))
    else:
        raise ConfigError(f"proxy must be a proxy name or a ZeroCostEvaluator, got {type(proxy).__name__}")
    if len(screen.proxies) != 1:
        raise ConfigError(f"pre-screening uses exactly one proxy, got {screen.proxies}")
    return screen


def _screen_options(inner: Evaluator) -> dict[str, Any]:
    """ZeroCostEvaluator settings that score the same network as ``inner`` measures."""
    from nasflow.estimators.tabular import TabularEvaluator
    from nasflow.estimators.train import TrainEvaluator

    if isinstance(inner, TrainEvaluator):
        task = inner._task if inner._task is not None else inner.task_name
        return {"task": task, "data": inner.data, "split_seed": inner.split_seed, "device": inner.device}
    if isinstance(inner, TabularEvaluator):
        return {"task": None}
    return {}
