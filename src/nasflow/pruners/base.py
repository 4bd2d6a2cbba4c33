"""The pruner interface: stop a trial early when its learning curve says it will not win.

A pruner looks at one running trial's intermediate values of one metric (e.g. validation accuracy per
epoch) and at the curves of the study's finished trials, and decides after each report whether the
trial should go on. The study takes a snapshot of the finished trials (:class:`PruningHistory`) when
it submits a trial; the pruner and the snapshot travel with the evaluation (also to worker processes)
in a :class:`PruningMonitor`, which raises :class:`~nasflow.errors.TrialPruned` from inside
``context.emit(step, metrics)`` to stop the evaluation.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nasflow.errors import ConfigError, EvaluationError, TrialPruned
from nasflow.objectives.spec import Objective

#: trial states whose curves a pruner may learn from
HISTORY_STATES = ("COMPLETE", "PRUNED")


@dataclass(frozen=True)
class TrialCurve:
    """One finished trial's values of the monitored metric.

    Attributes:
        number: the trial's number in its study.
        state: ``"COMPLETE"`` or ``"PRUNED"``.
        values: ``step -> value`` as reported while the trial ran.
        final: the metric in the trial's final metrics (for a pruned trial, its last reported value);
            None when missing or not finite.
    """

    number: int
    state: str
    values: dict[int, float] = field(default_factory=dict)
    final: float | None = None

    @property
    def completed(self) -> bool:
        return self.state == "COMPLETE"

    @property
    def last_step(self) -> int | None:
        return max(self.values) if self.values else None


@dataclass(frozen=True)
class PruningHistory:
    """The curves of a study's finished trials, as they were when a trial was submitted."""

    trials: tuple[TrialCurve, ...] = ()

    @classmethod
    def from_trials(cls, trials: Iterable[Any], metric: str) -> PruningHistory:
        """Collect ``metric`` from finished trials (FrozenTrial or stored TrialRecord objects).

        Trials that are neither COMPLETE nor PRUNED (failed, running) are left out; so are steps where
        the metric is missing or not finite.
        """
        curves = []
        for trial in trials:
            state = getattr(trial.state, "value", trial.state)
            if state not in HISTORY_STATES:
                continue
            values = {
                int(step): float(metrics[metric])
                for step, metrics in sorted(trial.intermediate.items())
                if metric in metrics and math.isfinite(float(metrics[metric]))
            }
            final = trial.metrics.get(metric)
            final = float(final) if final is not None and math.isfinite(float(final)) else None
            curves.append(TrialCurve(int(trial.number), str(state), values, final))
        return cls(tuple(curves))

    def completed(self) -> list[TrialCurve]:
        """The COMPLETE trials, in trial order."""
        return [t for t in self.trials if t.completed]

    def final_step(self) -> int | None:
        """The last step a completed trial reported (the length of a full training); None if none did."""
        steps = [t.last_step for t in self.completed() if t.last_step is not None]
        return max(steps) if steps else None


class Pruner(ABC):
    """Decides, after each intermediate report of a running trial, whether to stop it.

    Args:
        metric: the reported metric to watch; default: the study's first objective.
        direction: ``"max"`` or ``"min"``; default: the direction of the objective of that metric.

    Pruners are configured in the constructor only, picklable, and :meth:`describe` gives the
    settings that rebuild them (``nasflow.catalog.get_pruner(**description)``).
    """

    name: str = "pruner"

    def __init__(self, metric: str | None = None, direction: str | None = None) -> None:
        if direction is not None and direction not in ("max", "min"):
            raise ConfigError(f"pruner direction must be 'max' or 'min', got {direction!r}")
        if metric is not None and (not isinstance(metric, str) or not metric):
            raise ConfigError(f"pruner metric must be a metric name, got {metric!r}")
        self._metric = metric
        self._direction = direction
        self.objective = Objective(metric, direction or "max") if metric is not None else None  # type: ignore[arg-type]

    def setup(self, objectives: Sequence[Objective]) -> None:
        """Bind to the study's objectives (fills in the metric and direction when not given)."""
        by_metric = {o.metric: o for o in objectives}
        metric = self._metric or (objectives[0].metric if objectives else None)
        if metric is None:
            raise ConfigError("the pruner needs a metric to watch; give metric= or an objective")
        direction = self._direction or (by_metric[metric].direction if metric in by_metric else None)
        if direction is None:
            raise ConfigError(
                f"the pruner watches {metric!r}, which is not an objective of the study; give its "
                "direction too, e.g. direction='min' for a loss"
            )
        self.objective = Objective(metric, direction)  # type: ignore[arg-type]

    @property
    def metric(self) -> str:
        """The watched metric (after :meth:`setup` or when given to the constructor)."""
        if self.objective is None:
            raise ConfigError("the pruner has no metric yet; give metric= or call setup(objectives)")
        return self.objective.metric

    def oriented(self, value: float) -> float:
        """``value`` turned so that larger is better."""
        return self.objective.oriented(value) if self.objective is not None else value

    @abstractmethod
    def should_prune(
        self,
        step: int,
        value: float,
        history: PruningHistory,
        curve: Mapping[int, float] | None = None,
    ) -> str | None:
        """The reason to stop the trial at ``step``, or None to let it go on.

        Args:
            step: the step just reported (e.g. the epoch).
            value: the watched metric at ``step``.
            history: the finished trials' curves.
            curve: the trial's own values so far (``step -> value``, ``step`` included or not);
                default: ``{step: value}`` only.
        """

    def describe(self) -> dict[str, Any]:
        """JSON-able settings, recorded in the study; ``name`` plus the constructor arguments."""
        return {"name": self.name, "metric": self._metric, "direction": self._direction}

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({settings})"


def own_curve(step: int, value: float, curve: Mapping[int, float] | None) -> dict[int, float]:
    """The trial's curve up to ``step`` with ``value`` at ``step`` (helper for pruners)."""
    points = {int(s): float(v) for s, v in (curve or {}).items() if int(s) <= step}
    points[int(step)] = float(value)
    return dict(sorted(points.items()))


def check_count(name: str, value: object, low: int) -> int:
    """An integer setting >= ``low``, or a ConfigError naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


@dataclass
class PruningMonitor:
    """Watches one trial's reports and stops the evaluation when the pruner says so.

    Built by the study when it submits a trial; it is sent with the job to the worker, so both
    ``pruner`` and ``history`` must pickle. :func:`nasflow.execution.base.run_evaluation` calls
    :meth:`observe` from the evaluation's report hook.
    """

    pruner: Pruner
    history: PruningHistory
    curve: dict[int, float] = field(default_factory=dict)

    def observe(self, step: int, metrics: Mapping[str, float]) -> None:
        """Record one report; raise TrialPruned (with these metrics) to stop the trial.

        Raises:
            TrialPruned: the pruner decided to stop the trial.
            EvaluationError: the report lacks the watched metric (the pruner is watching the wrong one).
        """
        metric = self.pruner.metric
        if metric not in metrics:
            raise EvaluationError(
                f"the pruner watches {metric!r} but the evaluator reported only {sorted(metrics)} at "
                f"step {step}; give the pruner one of those, e.g. MedianPruner(metric='accuracy')"
            )
        value = float(metrics[metric])
        reason = self.pruner.should_prune(step, value, self.history, self.curve)
        self.curve[int(step)] = value
        if reason is not None:
            raise TrialPruned(
                f"pruned at step {step}: {reason}", metrics={k: float(v) for k, v in metrics.items()}
            )
