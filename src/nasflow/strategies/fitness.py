"""Ranking finished trials for selection: feasibility first, then the objectives."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nasflow.objectives.pareto import nondominated_sort
from nasflow.objectives.spec import Objective
from nasflow.space.architecture import Architecture
from nasflow.trial import FrozenTrial


@dataclass(frozen=True)
class Scored:
    """What a strategy remembers about a finished trial: JSON-friendly and comparable."""

    arch: Architecture
    values: tuple[float, ...]  # oriented: larger is better for every objective
    violation: float

    @classmethod
    def from_trial(cls, trial: FrozenTrial, objectives: Sequence[Objective]) -> Scored | None:
        """None for trials that have no objective values (failed, pruned without values)."""
        if trial.values is None:
            return None
        oriented = tuple(o.oriented(v) for o, v in zip(objectives, trial.values))
        return cls(trial.arch, oriented, trial.violation)

    def to_json(self) -> dict[str, Any]:
        return {"arch": self.arch.to_dict(), "values": list(self.values), "violation": self.violation}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scored:
        return cls(Architecture(data["arch"]), tuple(data["values"]), float(data["violation"]))


def select_best(candidates: Sequence[Scored], rng: np.random.Generator) -> Scored:
    """The best candidate: least constraint violation, then best objective value.

    With several objectives every non-dominated candidate is equally good, and one is drawn at random.
    """
    least = min(c.violation for c in candidates)
    pool = [c for c in candidates if c.violation == least]
    if len(pool[0].values) == 1:
        return max(pool, key=lambda c: c.values[0])
    front = nondominated_sort([c.values for c in pool])[0]
    return pool[front[int(rng.integers(len(front)))]]
