"""Add cost metrics (parameters, MACs, latency, peak memory) to any evaluator's results.

``CostEvaluator(inner, metrics=[...])`` runs ``inner`` and then measures the requested costs of the
same architecture's network, built with fixed weights for the inner evaluator's task (or a given input
shape). Measurements are cached by canonical architecture and settings, so an architecture is never
profiled twice; with a latency predictor, ``latency_ms`` comes from a look-up table instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nasflow.errors import ConfigError, EvaluationError
from nasflow.estimators.base import EvalContext, Evaluator, Measurement
from nasflow.objectives.cost_cache import CostCache, cost_key
from nasflow.objectives.latency import (
    DEFAULT_REPEATS,
    DEFAULT_WARMUP,
    ShapeTask,
    check_device,
    check_input_shape,
    check_runtime,
    int_at_least,
    measure_latency,
)
from nasflow.objectives.latency_predictor import LatencyPredictor, LatencyTable
from nasflow.objectives.spec import MEASURED_COSTS
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace
from nasflow.trial import TrialState

if TYPE_CHECKING:
    from nasflow.study import Study

#: the metrics a CostEvaluator can add; all are to be minimised
COST_METRICS = ("params", "flops", "latency_ms", "latency_spread", "peak_memory_mb")
_MEASURED = MEASURED_COSTS


def _metric_list(metrics: str | Sequence[str]) -> tuple[str, ...]:
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    if not names:
        raise ConfigError(f"metrics must name at least one cost metric; allowed: {list(COST_METRICS)}")
    unknown = [m for m in names if m not in COST_METRICS]
    if unknown:
        raise ConfigError(f"unknown cost metric(s) {unknown}; allowed: {list(COST_METRICS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"metrics lists a name twice: {list(names)}")
    return names


class CostEvaluator(Evaluator):
    """Runs ``inner`` and adds cost metrics of the architecture's network to its metrics.

    Args:
        inner: the evaluator whose metrics (and learning curve, and intermediate reports) are kept.
        metrics: any of ``params`` (trainable parameters), ``flops`` (multiply-accumulates of one
            example), ``latency_ms`` (median inference latency of one batch), ``latency_spread``
            (``(p90 - p10) / median`` of that measurement) and ``peak_memory_mb`` (peak memory of one
            forward pass beyond weights and input, MiB). A cost metric replaces an inner metric of the
            same name.
        runtime: ``"eager"`` or ``"onnxruntime"`` for latency (default eager, or the predictor's).
        batch_size: examples per forward pass (default 1, or the predictor's).
        threads: intra-op threads during the measurement (default 1, or the predictor's).
        device: where the network is measured (default ``"cpu"``, or the predictor's).
        cache: a :class:`~nasflow.objectives.cost_cache.CostCache`, or the path of its SQLite file;
            by default an in-memory cache of this evaluator.
        predictor: a :class:`~nasflow.objectives.latency_predictor.LatencyPredictor`, a table, or a
            table's path: ``latency_ms`` is then predicted from the table, not measured (the table's
            settings must match the ones above). ``latency_spread`` cannot be predicted.
        input_shape, num_classes: what the network is built for; by default the inner evaluator's
            task's (required when the inner evaluator has no task, e.g. a tabular one).
        warmup, repeats: latency measurement settings.
        seed: seed of the network's weights (the same for every architecture).

    Networks are built with ``space.build(arch, task)``; measured costs are cached under the
    canonical architecture, the settings and the space, so a repeated architecture costs nothing.
    Latency measured while other processes compete for the CPU (e.g. parallel workers) is inflated;
    measure with one worker, or use a predictor.
    """

    name = "cost"

    def __init__(
        self,
        inner: Evaluator,
        metrics: str | Sequence[str] = ("latency_ms",),
        *,
        runtime: str | None = None,
        batch_size: int | None = None,
        threads: int | None = None,
        device: str | None = None,
        cache: CostCache | str | Path | None = None,
        predictor: LatencyPredictor | LatencyTable | str | Path | None = None,
        input_shape: Sequence[int] | None = None,
        num_classes: int | None = None,
        warmup: int = DEFAULT_WARMUP,
        repeats: int = DEFAULT_REPEATS,
        seed: int = 0,
    ) -> None:
        if not isinstance(inner, Evaluator):
            raise ConfigError(f"inner must be an Evaluator, got {type(inner).__name__}")
        self.inner = inner
        self.metrics = _metric_list(metrics)
        self.predictor_path: str | None = None
        self._predictor_table: LatencyTable | None = None
        self.predictor: LatencyPredictor | None = None
        if isinstance(predictor, (str, Path)):
            self.predictor_path = str(predictor)
            self._predictor_table = LatencyTable.load(predictor)
        elif isinstance(predictor, LatencyTable):
            self._predictor_table = predictor
        elif isinstance(predictor, LatencyPredictor):
            self.predictor = predictor
            self._predictor_table = predictor.table
        elif predictor is not None:
            raise ConfigError(
                "predictor must be a LatencyPredictor, a LatencyTable or a table path, "
                f"got {type(predictor).__name__}"
            )
        table = self._predictor_table
        defaults = dict(table.settings) if table is not None else {}
        self.runtime = check_runtime(runtime if runtime is not None else defaults.get("runtime", "eager"))
        self.batch_size = int_at_least(
            "batch_size", batch_size if batch_size is not None else defaults.get("batch_size", 1), 1
        )
        self.threads = int_at_least(
            "threads", threads if threads is not None else defaults.get("threads", 1), 1
        )
        self.device = str(device if device is not None else defaults.get("device", "cpu"))
        if table is not None:
            if "latency_spread" in self.metrics:
                raise ConfigError(
                    "latency_spread is a property of a measurement; with a predictor ask for latency_ms"
                )
            table.require(
                device=self.device, runtime=self.runtime, batch_size=self.batch_size, threads=self.threads
            )
        if any(m in _MEASURED for m in self._measured_metrics()):
            check_device(self.device)
        else:
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError):
                raise ConfigError(f"device {self.device!r} is not a torch device; use e.g. 'cpu'") from None
        if cache is None or isinstance(cache, CostCache):
            self.cache = cache if cache is not None else CostCache()
        elif isinstance(cache, (str, Path)):
            self.cache = CostCache(cache)
        else:
            raise ConfigError(f"cache must be a CostCache, a file path or None, got {type(cache).__name__}")
        if (input_shape is None) != (num_classes is None):
            raise ConfigError(
                "give input_shape and num_classes together (or neither, to use the inner task's)"
            )
        self.input_shape = None if input_shape is None else check_input_shape(input_shape)
        self.num_classes = None if num_classes is None else int_at_least("num_classes", num_classes, 1)
        self.warmup = int_at_least("warmup", warmup, 0)
        self.repeats = int_at_least("repeats", repeats, 1)
        self.seed = int_at_least("seed", seed, 0)
        self._scope: str | None = None

    # -- life cycle ------------------------------------------------------------------------
    def _measured_metrics(self) -> list[str]:
        """The metrics built networks are needed for (all but a predicted latency).

        A measured latency always brings its spread along, so every report can show how steady the
        measurement was.
        """
        predicted = self._predictor_table is not None
        measured = [m for m in self.metrics if not (predicted and m == "latency_ms")]
        if "latency_ms" in measured and "latency_spread" not in measured:
            measured.append("latency_spread")
        return measured

    def setup(self, space: DecisionSpace) -> None:
        """Set up the inner evaluator, then check that ``space`` builds networks of a known shape."""
        self.inner.setup(space)
        super().setup(space)
        self._scope = None
        task = self.task
        table = self._predictor_table
        if table is not None:
            if space.describe() != table.space:
                raise ConfigError(
                    f"the latency table was profiled for space {table.space}, but the study's space is "
                    f"{space.describe()}; profile a table for this space"
                )
            if tuple(table.input_shape) != tuple(task.input_shape) or table.num_classes != task.num_classes:
                raise ConfigError(
                    f"the latency table was profiled for input {list(table.input_shape)} with "
                    f"{table.num_classes} classes, but networks here take {list(task.input_shape)} with "
                    f"{task.num_classes} classes"
                )
            self.predictor = LatencyPredictor(table, space)

    @property
    def task(self) -> ShapeTask:
        """The input shape and classes networks are built for."""
        if self.input_shape is not None and self.num_classes is not None:
            return ShapeTask(self.input_shape, self.num_classes)
        inner_task = getattr(self.inner, "task", None)
        if inner_task is None:
            raise ConfigError(
                f"evaluator {self.inner.name!r} has no task to build networks for, so their cost cannot be "
                "measured; search with the train evaluator (--evaluator train), or in Python pass "
                "input_shape= and num_classes= to CostEvaluator (e.g. (3, 32, 32) and 10)"
            )
        return ShapeTask(
            check_input_shape(inner_task.input_shape), int(inner_task.num_classes), inner_task.name
        )

    def describe(self) -> dict[str, Any]:
        predictor: dict[str, Any] | None = None
        if self._predictor_table is not None:
            table = self._predictor_table
            predictor = {
                "path": self.predictor_path,
                "device_name": table.machine.get("device_name"),
                "a": table.a,
                "b": table.b,
                "blocks": len(table.blocks),
            }
        return {
            "name": self.name,
            "inner": self.inner.describe(),
            "metrics": list(self.metrics),
            "runtime": self.runtime,
            "batch_size": self.batch_size,
            "threads": self.threads,
            "device": self.device,
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "num_classes": self.num_classes,
            "warmup": self.warmup,
            "repeats": self.repeats,
            "seed": self.seed,
            "cache": self.cache.describe()["path"],
            "predictor": predictor,
            "latency_source": "predicted" if predictor is not None else "measured",
        }

    # -- evaluation ------------------------------------------------------------------------
    def scope(self) -> str:
        """What, besides the architecture and settings, the cached costs depend on (a short hash)."""
        if self._scope is None:
            space = getattr(self, "space", None)
            if space is None:
                raise ConfigError("CostEvaluator.evaluate needs setup(space) to be called first")
            task = self.task
            description = {
                "space": space.describe(),
                "input_shape": list(task.input_shape),
                "num_classes": task.num_classes,
                "warmup": self.warmup,
                "repeats": self.repeats,
                "seed": self.seed,
            }
            text = json.dumps(description, sort_keys=True, default=str)
            self._scope = hashlib.sha256(text.encode()).hexdigest()[:16]
        return self._scope

    def build(self, arch: Architecture) -> nn.Module:
        """The network of ``arch`` with weights drawn from ``seed`` (on the CPU)."""
        space = getattr(self, "space", None)
        if space is None:
            raise ConfigError("CostEvaluator.evaluate needs setup(space) to be called first")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = space.build(arch, self.task)
        if not isinstance(model, nn.Module):
            raise EvaluationError(f"space {space.name!r} built {type(model).__name__}, not a torch.nn.Module")
        return model

    def _measure(self, arch: Architecture, names: list[str]) -> dict[str, float]:
        from nasflow.objectives.memory import peak_memory_mb
        from nasflow.objectives.metrics import count_macs, count_parameters

        model = self.build(arch)
        shape = self.task.input_shape
        values: dict[str, float] = {}
        if "params" in names:
            values["params"] = float(count_parameters(model))
        if "flops" in names:
            values["flops"] = float(count_macs(model, shape))
        if "latency_ms" in names or "latency_spread" in names:
            result = measure_latency(
                model,
                shape,
                batch_size=self.batch_size,
                runtime=self.runtime,
                device=self.device,
                threads=self.threads,
                warmup=self.warmup,
                repeats=self.repeats,
            )
            values["latency_ms"], values["latency_spread"] = result.estimate_ms, result.spread
        if "peak_memory_mb" in names:
            values["peak_memory_mb"] = peak_memory_mb(
                model, shape, batch_size=self.batch_size, device=self.device
            )
        return values

    def costs(self, arch: Architecture) -> dict[str, float]:
        """The requested cost metrics of ``arch`` (cached measurements, or predictions)."""
        measured = self._measured_metrics()
        values: dict[str, float] = {}
        if measured:
            key = cost_key(
                self.space.canonical(arch),
                device=self.device,
                batch_size=self.batch_size,
                runtime=self.runtime,
                threads=self.threads,
                scope=self.scope(),
            )
            values.update(self.cache.get_or_measure(key, measured, lambda names: self._measure(arch, names)))
        if "latency_ms" in self.metrics and "latency_ms" not in measured:
            assert self.predictor is not None, "setup() builds the predictor"
            values["latency_ms"] = self.predictor.predict(arch)
        return {name: values[name] for name in (*self.metrics, "latency_spread") if name in values}

    def precheck(self, arch: Architecture) -> dict[str, float]:
        """What the inner evaluator knows in advance plus the costs (measured once and cached, or predicted).

        Costs are cheap next to training, so constraints on them screen architectures out before
        the inner evaluation runs.
        """
        return {**self.inner.precheck(arch), **self.costs(arch)}

    def remeasure(self, arch: Architecture) -> dict[str, float]:
        """Fresh measurements of the measured cost metrics of ``arch``: no cache, no predictor.

        For checking, after a search, that a predicted or once-measured latency holds.
        """
        names = [m for m in self.metrics if m in _MEASURED]
        return self._measure(arch, names) if names else {}

    def evaluate(self, arch: Architecture, context: EvalContext) -> Measurement:
        inner = self.inner.evaluate(arch, context)
        start = time.perf_counter()
        costs = self.costs(arch)
        # replace() keeps everything else the inner evaluator returned (its learning curve, ...)
        return dataclasses.replace(
            inner,
            metrics={**inner.metrics, **costs},
            cost_seconds=inner.cost_seconds + time.perf_counter() - start,
        )


def with_cost_metrics(evaluator: Evaluator, metrics: Sequence[str]) -> Evaluator:
    """``evaluator`` wrapped in a CostEvaluator when ``metrics`` name costs that only a measurement gives.

    ``latency_ms``, ``latency_spread`` and ``peak_memory_mb`` in a study's objectives or constraints
    make the study measure them when its evaluator trains networks on a task. Other evaluators (a
    function, a table) are left alone: they may report these metrics themselves, e.g. measured on the
    target phone; so is an evaluator that is already a CostEvaluator.
    """
    wanted = [m for m in dict.fromkeys(metrics) if m in _MEASURED]
    if not wanted or isinstance(evaluator, CostEvaluator) or getattr(evaluator, "task", None) is None:
        return evaluator
    return CostEvaluator(evaluator, wanted)


def rebuild_cost_evaluator(
    inner: dict[str, Any] | str | Evaluator,
    metrics: Sequence[str] = ("latency_ms",),
    runtime: str | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
    device: str | None = None,
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = DEFAULT_REPEATS,
    seed: int = 0,
    cache: str | None = None,
    predictor: dict[str, Any] | str | None = None,
    latency_source: str | None = None,
) -> CostEvaluator:
    """A CostEvaluator from the settings ``describe()`` recorded in a study (``inner`` may be a name).

    ``latency_source`` is recorded for readers only. A predictor table that was given as an object
    rather than a file cannot be found again and raises ConfigError.
    """
    from nasflow import catalog  # the catalog registers this function

    if isinstance(inner, dict):
        inner = catalog.rebuild(catalog.EVALUATORS, inner)
    elif isinstance(inner, str):
        inner = catalog.get_evaluator(inner)
    assert isinstance(inner, Evaluator), "the catalog builds evaluators"
    if isinstance(predictor, dict):
        if not predictor.get("path"):
            raise ConfigError(
                "the study's latency table was not given as a file; pass the evaluator explicitly"
            )
        predictor = str(predictor["path"])
    return CostEvaluator(
        inner,
        metrics,
        runtime=runtime,
        batch_size=batch_size,
        threads=threads,
        device=device,
        cache=cache,
        predictor=predictor,
        input_shape=input_shape,
        num_classes=num_classes,
        warmup=warmup,
        repeats=repeats,
        seed=seed,
    )


#: with one objective, at most this many feasible trials are re-measured in search of one that holds
REMEASURE_CANDIDATES = 10


def remeasure_latency(study: Study) -> list[dict[str, Any]]:
    """Measure the latency of the study's result afresh: the Pareto front, or the best trial.

    Strategies may have ranked by predicted or once-measured latency; this is the check that the
    networks a user takes away really meet the bounds. Each row: trial number, recorded and
    re-measured ``latency_ms``, and whether every constraint holds with the re-measured value. With
    one objective the feasible trials are re-measured best first until one still meets the
    constraints (at most REMEASURE_CANDIDATES): on a shared machine a network measured just under
    a bound can measure over it later, and the answer must be one that holds. The rows are also
    stored in the study as a result of kind ``"remeasured_latency"``.

    Raises:
        ConfigError: the study's evaluator does not report ``latency_ms`` through a CostEvaluator.
    """
    evaluator = study.evaluator
    if not isinstance(evaluator, CostEvaluator) or "latency_ms" not in evaluator.metrics:
        raise ConfigError(
            f"study {study.name!r} does not measure latency_ms, so there is nothing to re-measure"
        )
    several = len(study.objectives) > 1
    if several:
        trials = study.pareto_front()
    else:
        first = study.objectives[0]
        feasible = [t for t in study.trials([TrialState.COMPLETE]) if t.values is not None and t.feasible]
        trials = sorted(feasible, key=lambda t: (-first.oriented(t.values[0]), t.number))  # type: ignore[index]
        trials = trials[:REMEASURE_CANDIDATES]
    rows = []
    for trial in trials:
        fresh = evaluator.remeasure(trial.arch)
        metrics = {**trial.metrics, **fresh}
        holds = all(c.violation(metrics) == 0 for c in study.constraints)
        rows.append(
            {
                "trial": trial.number,
                "recorded_ms": trial.metrics.get("latency_ms"),
                "remeasured_ms": fresh["latency_ms"],
                "feasible": holds,
            }
        )
        if holds and not several:
            break
    study.add_result(
        "remeasured_latency",
        {"source": evaluator.describe()["latency_source"], "runtime": evaluator.runtime, "rows": rows},
    )
    return rows
