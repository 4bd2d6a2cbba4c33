"""MONAS: a REINFORCE controller rewarded for accuracy and cost together (Hsu et al. 2018)."""

from __future__ import annotations

import math
from typing import Any

from nasflow.errors import ConfigError
from nasflow.strategies.fitness import Scored
from nasflow.strategies.reinforce import ReinforceStrategy
from nasflow.trial import FrozenTrial


class MONAS(ReinforceStrategy):
    """The LSTM policy of the ``reinforce`` strategy with a reward that trades accuracy against cost.

    Hsu, Chang, Juan, Wei, Chen, Chang, Chang & Lee, "MONAS: Multi-Objective Neural Architecture
    Search using Reinforcement Learning", 2018, reward a controller with ``alpha * accuracy - beta *
    cost``. Here the first objective is the primary one (e.g. accuracy) and every further objective
    is a cost. Each is min-max normalised by the running range of the feasible results seen so far
    (the current one included), in its own direction:

    * ``u = (v - worst) / (best - worst)`` for the primary objective (1 = best seen; 0.5 while the
      range is empty),
    * ``c_k = (v_k - best_k) / (worst_k - best_k)`` for cost ``k`` (0 = cheapest seen),
    * ``reward = alpha * u - beta * mean_k(c_k)`` for a feasible trial,
    * ``reward = -beta - gamma * violation / largest_violation_seen`` for an infeasible one (1 when the
      violation is infinite), below every feasible reward, and lower the more it violates: the
      ordering of constrained domination (Deb 2000).

    The policy learns from the advantage over a moving baseline, divided by the moving standard
    deviation (see the parent class), so mostly the ratio ``alpha : beta`` matters; the default
    ``beta = 0.25`` was chosen on NAS-Bench-201 (accuracy vs parameters, hypervolume after 50-200
    trials) with seeds other than the reported ones (``beta = 1`` gave 2-4% less of the true front's
    hypervolume). The reward of a trial is fixed when it is told; it is what the saved history
    replays. With a single objective the reward is the parent's (the raw oriented objective,
    infeasible trials scored as the worst feasible one), so with ``entropy_weight=0`` ``monas``
    proposes exactly what ``reinforce`` does with its defaults.

    Args:
        alpha: weight of the primary objective.
        beta: weight of the cost objectives (0 ignores them).
        gamma: weight of the normalised constraint violation.
        entropy_weight: see the parent; a small bonus (default 0.01) keeps the controller drawing a
            spread of trade-offs rather than one point of the front.
        **options: the parent's other settings (``hidden_size``, ``lr``, ``baseline_decay``, ...).
    """

    name = "monas"

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 0.25,
        gamma: float = 1.0,
        hidden_size: int = 32,
        lr: float = 0.02,
        baseline_decay: float = 0.9,
        entropy_weight: float = 0.01,
        tanh_constant: float | None = 2.5,
        normalize_rewards: bool = True,
        batch_size: int = 1,
        max_resamples: int = 100,
        dedupe: bool = True,
    ) -> None:
        for label, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{label} must be a finite number >= 0, got {value!r}")
            if value < 0:
                raise ConfigError(f"{label} must be a finite number >= 0, got {value!r}")
        if alpha == 0 and beta == 0:
            raise ConfigError("alpha and beta cannot both be 0: the reward would ignore every objective")
        super().__init__(
            hidden_size=hidden_size,
            lr=lr,
            baseline_decay=baseline_decay,
            entropy_weight=entropy_weight,
            tanh_constant=tanh_constant,
            normalize_rewards=normalize_rewards,
            batch_size=batch_size,
            max_resamples=max_resamples,
            dedupe=dedupe,
        )
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.gamma = float(gamma)

    def setup(self, space: Any, objectives: Any, seed: int | None) -> None:
        super().setup(space, objectives, seed)
        self._low: list[float] = [math.inf] * len(self.objectives)  # oriented: worst feasible value
        self._high: list[float] = [-math.inf] * len(self.objectives)  # oriented: best feasible value
        self._max_violation = 0.0

    def tell(self, trial: FrozenTrial) -> None:
        if len(self.objectives) == 1:
            super().tell(trial)
            return
        scored = Scored.from_trial(trial, self.objectives)
        if scored is None or not self.space.is_valid(trial.arch):
            return
        choices = [int(i) for i in self.space.encode(self.space.validate(trial.arch), "index")]
        if self.dedupe:
            self._seen.add(self.space.canonical(trial.arch))
        self._learn(choices, self.reward(scored), False)

    def reward(self, scored: Scored) -> float:
        """The reward of a result, after adding it to the running ranges (see the class docstring)."""
        if scored.violation > 0:
            if math.isfinite(scored.violation):
                self._max_violation = max(self._max_violation, scored.violation)
                share = scored.violation / self._max_violation
            else:
                share = 1.0
            return -self.beta - self.gamma * share
        self._low = [min(lo, v) for lo, v in zip(self._low, scored.values)]
        self._high = [max(hi, v) for hi, v in zip(self._high, scored.values)]
        scaled = [
            (v - lo) / (hi - lo) if hi > lo else 0.5
            for v, lo, hi in zip(scored.values, self._low, self._high)
        ]
        costs = [1.0 - s for s in scaled[1:]]
        return self.alpha * scaled[0] - self.beta * sum(costs) / len(costs)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            # JSON has no infinity; None marks an objective without a feasible result yet
            "low": [v if math.isfinite(v) else None for v in self._low],
            "high": [v if math.isfinite(v) else None for v in self._high],
            "max_violation": self._max_violation,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._low = [math.inf if v is None else float(v) for v in state["low"]]
        self._high = [-math.inf if v is None else float(v) for v in state["high"]]
        self._max_violation = float(state["max_violation"])
