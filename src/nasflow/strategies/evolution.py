"""Regularized (aging) evolution, Real et al. 2019."""

from __future__ import annotations

from collections import deque
from typing import Any

from nasflow.errors import ConfigError
from nasflow.space.architecture import Architecture
from nasflow.strategies.base import Strategy
from nasflow.strategies.fitness import Scored, select_best
from nasflow.trial import FrozenTrial


class RegularizedEvolution(Strategy):
    """Tournament selection over an aging population; children are single mutations of the winner.

    The first ``population_size`` proposals are random samples. Afterwards each proposal draws
    ``sample_size`` members of the population, takes the best (least constraint violation, then best
    objective; a random non-dominated one with several objectives) and mutates it. Each finished
    child joins the population and the *oldest* member leaves, which is what makes it "aging":
    architectures must keep being rediscovered to survive, so lucky evaluations fade out.

    Args:
        population_size: members kept alive (P in the paper).
        sample_size: tournament size (S in the paper). The defaults (P=10, S=10) gave the best test
            accuracy on NAS-Bench-201 among the settings compared in ``docs/benchmarks.md``.
    """

    name = "evolution"

    def __init__(self, population_size: int = 10, sample_size: int = 10) -> None:
        if population_size < 2:
            raise ConfigError(f"population_size must be >= 2, got {population_size}")
        if not 1 <= sample_size <= population_size:
            raise ConfigError(
                f"sample_size must be between 1 and population_size ({population_size}), got {sample_size}"
            )
        self.population_size = population_size
        self.sample_size = sample_size
        self._population: deque[Scored] = deque()
        self._asked = 0

    def ask(self, n: int = 1) -> list[Architecture]:
        return [self._propose() for _ in range(n)]

    def _propose(self) -> Architecture:
        self._asked += 1
        if self._asked <= self.population_size or not self._population:
            return self.space.sample(self.rng)
        members = list(self._population)
        size = min(self.sample_size, len(members))
        picks = self.rng.choice(len(members), size=size, replace=False)
        parent = select_best([members[int(i)] for i in picks], self.rng)
        return self.space.mutate(parent.arch, self.rng)

    def tell(self, trial: FrozenTrial) -> None:
        scored = Scored.from_trial(trial, self.objectives)
        if scored is None:
            return
        self._population.append(scored)
        while len(self._population) > self.population_size:
            self._population.popleft()

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "asked": self._asked,
            "population": [m.to_json() for m in self._population],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._asked = int(state["asked"])
        self._population = deque(Scored.from_json(m) for m in state["population"])
