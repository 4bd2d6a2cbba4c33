"""Learning-curve extrapolation: stop a trial whose curve cannot catch up with the best one."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from nasflow.errors import ConfigError
from nasflow.pruners.base import Pruner, PruningHistory, check_count, own_curve


def _pow3(x: np.ndarray, c: float, a: float, alpha: float) -> np.ndarray:
    return c - a * np.power(x, -alpha)


def _exp3(x: np.ndarray, c: float, a: float, b: float) -> np.ndarray:
    return c - a * np.exp(-b * (x - 1.0))


# name -> (function, start values, (lower bounds, upper bounds)), on curves scaled to rise by ~1.
# a >= 0 makes every model rise and flatten out; the lower bound on the rate keeps a curve that is
# still climbing from being extrapolated as a straight line (alpha or b -> 0).
_MODELS: dict[str, tuple[Callable[..., np.ndarray], list[float], tuple[list[float], list[float]]]] = {
    "pow3": (_pow3, [1.5, 1.0, 0.5], ([-np.inf, 0.0, 0.05], [np.inf, np.inf, 5.0])),
    "exp3": (_exp3, [1.2, 1.0, 0.5], ([-np.inf, 0.0, 0.05], [np.inf, np.inf, 5.0])),
}
MODELS = tuple(_MODELS)


def extrapolate(
    steps: Sequence[int], values: Sequence[float], final_step: int, models: Sequence[str] = MODELS
) -> dict[str, float]:
    """Each saturating model's prediction of a rising curve's value at ``final_step``.

    The models, with ``x`` the step counted from 1 at the first point:
    ``pow3: c - a * x**-alpha`` and ``exp3: c - a * exp(-b * (x - 1))`` (a >= 0). They are fitted by
    bounded least squares (``scipy.optimize.curve_fit``, deterministic) on the curve scaled to its
    range; a model whose fit fails is left out. A flat curve predicts its own value.
    """
    from scipy.optimize import curve_fit

    x = np.asarray(steps, dtype=float) - float(steps[0]) + 1.0
    y = np.asarray(values, dtype=float)
    final_x = float(final_step) - float(steps[0]) + 1.0
    low, span = float(y.min()), float(np.ptp(y))
    if span <= 1e-12 * max(1.0, abs(low)):
        return {name: float(y[-1]) for name in models}
    scaled = (y - low) / span
    predictions: dict[str, float] = {}
    for name in models:
        function, start, bounds = _MODELS[name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. no covariance with as many points as parameters
            try:
                params, _ = curve_fit(function, x, scaled, p0=start, bounds=bounds, maxfev=5000)
            except (RuntimeError, ValueError):
                continue
        prediction = float(function(np.array([final_x]), *params)[0]) * span + low
        if math.isfinite(prediction):
            predictions[name] = prediction
    return predictions


class CurvePruner(Pruner):
    """Stop a trial when even an optimistic extrapolation of its learning curve ends below the best.

    A simple, deterministic take on Domhan et al. 2015, "Speeding up Automatic Hyperparameter
    Optimization of Deep Neural Networks by Extrapolation of Learning Curves": instead of their
    MCMC-weighted ensemble of eleven curve families, a few saturating models (see
    :func:`extrapolate`) are fitted to the trial's curve so far, and the trial is stopped when the
    most optimistic of their predictions for the final step, plus ``margin``, is still worse than the
    final value of the best completed trial.

    Args:
        min_points: reports needed before the first fit (the models have three parameters).
        max_step: the step a full training ends at; default: the last step the completed trials
            reported.
        margin: added to the optimistic prediction before comparing, in the metric's units
            (e.g. 1.0 is one percentage point of accuracy); larger prunes less.
        warmup_trials: no pruning until this many trials have completed.
        interval: check every ``interval``-th report from ``min_points`` on.
        models: which models to fit: any of ``"pow3"``, ``"exp3"``.
        metric: the reported metric to watch; default: the study's first objective.
        direction: ``"max"`` or ``"min"``; default: that objective's direction.

    A trial is never pruned at or after the final step, and the prediction is never below the best
    value the trial has already reached.
    """

    name = "curve"

    def __init__(
        self,
        min_points: int = 4,
        max_step: int | None = None,
        margin: float = 0.0,
        warmup_trials: int = 1,
        interval: int = 1,
        models: Sequence[str] = MODELS,
        metric: str | None = None,
        direction: str | None = None,
    ) -> None:
        super().__init__(metric, direction)
        self.min_points = check_count("min_points", min_points, 3)
        self.max_step = None if max_step is None else check_count("max_step", max_step, 1)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
            raise ConfigError(f"margin must be a number >= 0, got {margin!r}")
        self.margin = float(margin)
        self.warmup_trials = check_count("warmup_trials", warmup_trials, 1)
        self.interval = check_count("interval", interval, 1)
        models = [models] if isinstance(models, str) else list(models)
        unknown = [m for m in models if m not in _MODELS]
        if unknown or not models:
            raise ConfigError(f"unknown curve models {unknown or models!r}; allowed: {', '.join(MODELS)}")
        self.models = tuple(models)

    def predict(self, curve: Mapping[int, float], final_step: int) -> float:
        """The optimistic prediction of the watched metric at ``final_step`` from ``curve`` so far.

        The best of the models' predictions and the curve's best value, in the metric's units.
        """
        points = sorted((int(s), self.oriented(float(v))) for s, v in curve.items() if math.isfinite(v))
        if not points:
            raise ConfigError("predict() needs at least one finite point of the curve")
        steps, values = zip(*points)
        predictions = extrapolate(steps, values, final_step, self.models)
        return self.oriented(max([*predictions.values(), *values]))  # oriented() is its own inverse

    def should_prune(
        self,
        step: int,
        value: float,
        history: PruningHistory,
        curve: Mapping[int, float] | None = None,
    ) -> str | None:
        metric = self.objective.metric if self.objective is not None else "value"
        if math.isnan(value):
            return f"{metric} is NaN"
        completed = history.completed()
        finals = [self.oriented(t.final) for t in completed if t.final is not None]
        if len(completed) < self.warmup_trials or not finals:
            return None
        final_step = self.max_step or history.final_step()
        if final_step is None or step >= final_step:
            return None
        points = {s: v for s, v in own_curve(step, value, curve).items() if math.isfinite(v)}
        if len(points) < self.min_points or (len(points) - self.min_points) % self.interval:
            return None
        predicted = self.oriented(self.predict(points, final_step))
        best = max(finals)
        if predicted + self.margin >= best:
            return None
        return (
            f"its curve extrapolates to {metric} {self.oriented(predicted):.6g} at step {final_step} "
            f"(optimistic, margin {self.margin:g}), worse than the best completed trial's "
            f"{self.oriented(best):.6g}"
        )

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "min_points": self.min_points,
            "max_step": self.max_step,
            "margin": self.margin,
            "warmup_trials": self.warmup_trials,
            "interval": self.interval,
            "models": list(self.models),
        }
