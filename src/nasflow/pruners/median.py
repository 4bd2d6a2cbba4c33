"""The median stopping rule."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any

from nasflow.pruners.base import Pruner, PruningHistory, check_count, own_curve


class MedianPruner(Pruner):
    """Stop a trial whose best value so far is worse than the median of completed trials at that step.

    The median stopping rule of Golovin et al. 2017, "Google Vizier: A Service for Black-Box
    Optimization" (as in Optuna's MedianPruner): at step ``s`` the trial's best value over its steps
    up to ``s`` is compared with the median of the values that the COMPLETE trials reported at step
    ``s``; strictly worse means stop. Pruned trials do not enter the median, so it reflects trials
    that ran to the end.

    Args:
        warmup_trials: no pruning until this many trials have completed.
        warmup_steps: every trial makes this many reports before it may be pruned (with epochs
            counted from 1, the default 1 means the first check is after epoch 2).
        interval: after the warm-up, check every ``interval``-th report only.
        metric: the reported metric to watch; default: the study's first objective.
        direction: ``"max"`` or ``"min"``; default: that objective's direction.

    A trial is never pruned at or after the last step the completed trials reported: stopping there
    saves nothing and would throw away a full measurement. A NaN value prunes at once.
    """

    name = "median"

    def __init__(
        self,
        warmup_trials: int = 5,
        warmup_steps: int = 1,
        interval: int = 1,
        metric: str | None = None,
        direction: str | None = None,
    ) -> None:
        super().__init__(metric, direction)
        self.warmup_trials = check_count("warmup_trials", warmup_trials, 1)
        self.warmup_steps = check_count("warmup_steps", warmup_steps, 0)
        self.interval = check_count("interval", interval, 1)

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
        if len(completed) < self.warmup_trials:
            return None
        points = own_curve(step, value, curve)
        reports = len(points)
        if reports <= self.warmup_steps or (reports - self.warmup_steps - 1) % self.interval:
            return None
        final_step = history.final_step()
        if final_step is not None and step >= final_step:
            return None
        others = [t.values[step] for t in completed if step in t.values]
        if not others:
            return None
        median = statistics.median(self.oriented(v) for v in others)
        best = max(self.oriented(v) for v in points.values() if not math.isnan(v))
        if best >= median:
            return None
        return (
            f"best {metric} so far {self.oriented(best):.6g} is worse than the median "
            f"{self.oriented(median):.6g} of {len(others)} completed trials at step {step}"
        )

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "warmup_trials": self.warmup_trials,
            "warmup_steps": self.warmup_steps,
            "interval": self.interval,
        }
