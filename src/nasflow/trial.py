"""Trial states and the frozen (read-only) trial record that users and strategies see."""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nasflow.objectives.spec import Constraint, Objective
from nasflow.space.architecture import Architecture


class TrialState(str, enum.Enum):
    """Life cycle of a trial."""

    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAILED = "FAILED"

    @property
    def finished(self) -> bool:
        return self is not TrialState.RUNNING


#: error text of trials whose process stopped before they finished; such trials do not use budget
INTERRUPTED = "interrupted: the process running this trial stopped before it finished"
#: how the error of a trial screened out before evaluation starts (it violated a constraint on metrics
#: the evaluator knew in advance); such trials are PRUNED and do not count towards the budget
SCREENED = "screened: violates"


@dataclass(frozen=True)
class FrozenTrial:
    """One evaluated (or running) architecture.

    Attributes:
        number: 0-based position of the trial in its study.
        arch: the architecture.
        arch_str: the space's text form of ``arch`` (e.g. the official NAS-Bench-201 string).
        canonical: key shared by architectures that are the same network.
        state: RUNNING, COMPLETE, PRUNED or FAILED.
        metrics: measured metrics (empty unless COMPLETE or PRUNED).
        values: objective values in the study's objective order (None unless COMPLETE).
        violation: summed constraint violation; 0 means feasible.
        error: why the trial failed or was pruned.
        intermediate: ``step -> metrics`` reported while it ran (e.g. per epoch).
        fidelity: the budget it was evaluated at (e.g. ``{"epochs": 3}``); empty means full fidelity.
        attempts: how many times its evaluation was started (more than 1 when a worker died).
    """

    number: int
    arch: Architecture
    arch_str: str
    canonical: str
    state: TrialState
    metrics: dict[str, float] = field(default_factory=dict)
    values: tuple[float, ...] | None = None
    violation: float = 0.0
    error: str | None = None
    intermediate: dict[int, dict[str, float]] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    fidelity: dict[str, float] = field(default_factory=dict)
    attempts: int = 1

    @property
    def feasible(self) -> bool:
        return self.violation == 0.0

    @property
    def interrupted(self) -> bool:
        return self.state is TrialState.FAILED and self.error == INTERRUPTED

    @property
    def screened(self) -> bool:
        """True for a trial skipped before evaluation because it violated a constraint."""
        return is_screened(self.state, self.error)

    @property
    def duration(self) -> float | None:
        """Seconds between start and finish, when both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "arch": self.arch.to_dict(),
            "arch_str": self.arch_str,
            "state": self.state.value,
            "metrics": self.metrics,
            "values": list(self.values) if self.values is not None else None,
            "feasible": self.feasible,
            "error": self.error,
            "fidelity": self.fidelity,
            "attempts": self.attempts,
        }


def objective_values(metrics: dict[str, float], objectives: Sequence[Objective]) -> tuple[float, ...] | None:
    """The objective values found in ``metrics`` (None if any is missing or NaN)."""
    values = []
    for objective in objectives:
        value = metrics.get(objective.metric)
        if value is None or not math.isfinite(float(value)):
            return None
        values.append(float(value))
    return tuple(values)


def is_screened(state: TrialState, error: str | None) -> bool:
    """True for a trial skipped before evaluation because it violated a constraint (see SCREENED)."""
    return state is TrialState.PRUNED and (error or "").startswith(SCREENED)


def total_violation(metrics: dict[str, float], constraints: Sequence[Constraint]) -> float:
    return float(sum(c.violation(metrics) for c in constraints))
