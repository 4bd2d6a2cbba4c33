"""The evaluator interface: how good is one architecture?"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace

if TYPE_CHECKING:
    from nasflow.pruners.base import PruningMonitor

Reporter = Callable[[int, dict[str, float]], None]


@dataclass
class EvalContext:
    """What an evaluation may know besides the architecture.

    Attributes:
        trial_number: the trial's number in its study.
        seed: seed for everything random in this evaluation (derived from the study seed and trial).
        fidelity: optional budget overrides, e.g. ``{"epochs": 3, "data_fraction": 0.5}``.
        device: torch device string.
        report: called as ``report(step, metrics)`` for intermediate results (e.g. per epoch).
        artifact_dir: folder where the evaluation may write files, if any.
        pruning: set by the study when it has a pruner; ``emit`` then raises
            :class:`~nasflow.errors.TrialPruned` to stop an unpromising evaluation (let it propagate).
    """

    trial_number: int = 0
    seed: int = 0
    fidelity: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    report: Reporter | None = None
    artifact_dir: Path | None = None
    pruning: PruningMonitor | None = None

    def emit(self, step: int, metrics: dict[str, float]) -> None:
        """Report intermediate ``metrics`` at ``step`` (e.g. per epoch); may raise TrialPruned."""
        if self.report is not None:
            self.report(step, metrics)


@dataclass
class Measurement:
    """The result of one evaluation."""

    metrics: dict[str, float]
    cost_seconds: float = 0.0
    curve: list[dict[str, float]] = field(default_factory=list)


class Evaluator(ABC):
    """Estimates the metrics of architectures of one search space.

    ``setup(space)`` is called once by the study before any ``evaluate``; evaluators must be
    picklable after setup so that worker processes can run them.
    """

    name: str = "evaluator"

    def setup(self, space: DecisionSpace) -> None:
        """Bind to the study's space; raise ConfigError if the space is not supported."""
        self.space = space

    @abstractmethod
    def evaluate(self, arch: Architecture, context: EvalContext) -> Measurement:
        """Measure ``arch``; raise EvaluationError for a failed evaluation."""

    def precheck(self, arch: Architecture) -> dict[str, float]:
        """Metrics of ``arch`` known before (and much cheaper than) :meth:`evaluate`, e.g. its parameters.

        The study checks its constraints on them first and does not evaluate an architecture that
        violates one (the trial is recorded as screened). The default knows nothing in advance.
        """
        return {}

    def describe(self) -> dict[str, Any]:
        """JSON-able settings, recorded in the study."""
        return {"name": self.name}
